"""The current request's cancel signal, for work deep below its handler that waits (a driver
waiting for BMCs): set by ``job cancel``, or when the client of a request that is not
``--async`` goes away. Dispatch binds it around the handler; a waiting loop polls
``requested()`` and stops early, so a cancelled request frees what it holds at once, not
after its next answer.

>>> import threading
>>> event = threading.Event()
>>> with bound(event):
...     before = requested(); event.set(); after = requested()
>>> before, after, requested()
(False, True, False)
"""
from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_current: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "request_cancel", default=None)


def bind(event: threading.Event | None) -> contextvars.Token:
    return _current.set(event)


def unbind(token: contextvars.Token) -> None:
    _current.reset(token)


@contextmanager
def bound(event: threading.Event | None) -> Iterator[None]:
    token = bind(event)
    try:
        yield
    finally:
        unbind(token)


def requested() -> bool:
    """Whether the current request has been cancelled."""
    event = _current.get()
    return event is not None and event.is_set()
