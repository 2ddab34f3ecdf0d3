"""Waiting in tests for something another process does, without a timing assertion."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(what: Callable[[], T], timeout: float = 20.0, step: float = 0.1) -> T:
    """``what()`` until it is truthy or ``timeout`` seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)
