"""Per-node locks: requests that change nodes take them; disjoint requests never wait.

All of a request's nodes are taken at once or not at all (no lock-order deadlocks), waits
are bounded, and a timeout names the nodes and the job holding them.

>>> locks = NodeLocks()
>>> with locks.hold({"n1", "n2"}, "job-a", timeout=1):
...     locks.owners(["n1", "n3"])
{'n1': 'job-a'}
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from xcatd.base.noderange import fold


class LockTimeout(Exception):
    def __init__(self, busy: dict[str, str], waited: float) -> None:
        self.busy = busy
        by_owner: dict[str, list[str]] = {}
        for node, owner in busy.items():
            by_owner.setdefault(owner, []).append(node)
        text = "; ".join(f"{fold(nodes)} by {owner}" for owner, nodes in by_owner.items())
        super().__init__(f"Timed out after {waited:.0f}s waiting for nodes locked: {text}")


class NodeLocks:
    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._owner: dict[str, str] = {}

    def owners(self, nodes: Iterable[str]) -> dict[str, str]:
        with self._cv:
            return {n: self._owner[n] for n in nodes if n in self._owner}

    def acquire(self, nodes: set[str], owner: str, timeout: float) -> float:
        """Take every node or none; return how long it waited."""
        start = time.monotonic()
        deadline = start + timeout
        with self._cv:
            while True:
                busy = {n: self._owner[n] for n in nodes
                        if n in self._owner and self._owner[n] != owner}
                if not busy:
                    for n in nodes:
                        self._owner[n] = owner
                    return time.monotonic() - start
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LockTimeout(busy, time.monotonic() - start)
                self._cv.wait(left)

    def release(self, nodes: Iterable[str], owner: str) -> None:
        with self._cv:
            for n in nodes:
                if self._owner.get(n) == owner:
                    del self._owner[n]
            self._cv.notify_all()

    @contextmanager
    def hold(self, nodes: set[str], owner: str, timeout: float) -> Iterator[float]:
        waited = self.acquire(nodes, owner, timeout)
        try:
            yield waited
        finally:
            self.release(nodes, owner)
