"""One short-lived cache of the tables every request reads (site, policy), shared by the
request pipeline, the HTTP site and the TFTP server, so a burst of requests reads them once.

Writers call ``invalidate`` (the pipeline does after any request that writes); other
processes' changes show within ``ttl`` seconds.
"""
from __future__ import annotations

import threading
import time

from xcatd.base.site import SiteValues
from xcatd.db.database import Database

DEFAULT_TTL = 1.0


class TableCache:
    def __init__(self, db: Database, ttl: float = DEFAULT_TTL) -> None:
        self.db = db
        self.ttl = ttl
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._site = SiteValues()
        self._policy: list[dict] = []

    def _refresh(self) -> None:  # with the lock held
        if time.monotonic() - self._at > self.ttl:
            with self.db.connect() as conn:
                self._site = self.db.site(conn)
                self._policy = self.db.rows("policy", conn)
            self._at = time.monotonic()

    def site(self) -> SiteValues:
        with self._lock:
            self._refresh()
            return self._site

    def policy(self) -> list[dict]:
        with self._lock:
            self._refresh()
            return self._policy

    def invalidate(self) -> None:
        """Read the tables afresh on the next call."""
        with self._lock:
            self._at = -float("inf")
