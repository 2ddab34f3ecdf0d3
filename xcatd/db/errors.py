"""The database's error, in a module of its own so that every part of xcatd.db can raise it
(xcatd.db.database re-exports it)."""
from __future__ import annotations

from xcatd.base.request import ErrorKind


class DBError(Exception):
    """A database request that cannot be honoured; the message names the bad part. ``kind``
    is an xcatd.base.request.ErrorKind (a missing table or object is NOT_FOUND)."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.BAD_REQUEST) -> None:
        super().__init__(message)
        self.kind = kind
