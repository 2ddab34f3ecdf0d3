"""Where things live: every path the toolkit touches sits under one root, ``XCATROOT``.

>>> p = Paths("/tmp/r")
>>> str(p.etc / "cfgloc")
'/tmp/r/etc/xcat/cfgloc'
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    """The directory layout of one management node under its root."""

    root: Path

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        object.__setattr__(self, "root", Path(root if root is not None else xcatroot()))

    def under(self, path: str) -> Path:
        """Map an absolute path like ``/install`` onto this root."""
        return self.root / path.lstrip("/")

    @property
    def etc(self) -> Path:
        return self.under("/etc/xcat")

    @property
    def var_lib(self) -> Path:
        return self.under("/var/lib/xcat")

    @property
    def var_log(self) -> Path:
        return self.under("/var/log/xcat")

    @property
    def daemon_pidfile(self) -> Path:
        """xcatd's pid file (held locked while it runs)."""
        return self.under("/var/run/xcat/xcatd.pid")

    @property
    def cfgloc(self) -> Path:
        return self.etc / "cfgloc"

    @property
    def default_db_url(self) -> str:
        return f"sqlite:///{self.var_lib / 'xcat.sqlite'}"

    def db_url(self) -> str:
        """The SQLAlchemy URL from ``etc/xcat/cfgloc``, else the default SQLite file."""
        try:
            text = self.cfgloc.read_text().strip()
        except FileNotFoundError:
            return self.default_db_url
        return text or self.default_db_url


def xcatroot() -> str:
    return os.environ.get("XCATROOT") or "/"
