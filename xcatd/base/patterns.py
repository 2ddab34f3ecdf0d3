"""Regular expressions that come in requests (``lsdef -w attr=~RE``, noderange selectors
``attr=~RE``, ``/regex`` noderanges): matched with a time bound and without holding the
interpreter, so a pathological pattern costs its own request an error, never the daemon its
other clients.

Python's ``re`` holds the GIL for a whole match, so one ``(a|aa)+$`` froze every thread of
xcatd (its event loop, the HTTP site, TFTP). The ``regex`` package matches with the GIL
released (``concurrent=True``) and stops at a ``timeout``. A request gets one budget for all
its matches (``budget``), set by the pipeline from ``site.regextimeout``; over it, the
request fails with an error naming the pattern.

>>> with budget(1.0):
...     bool(search("^n[0-9]+$", "n12")), bool(search("gpu", "compute,all"))
(True, False)
>>> compile_pattern("(")
Traceback (most recent call last):
...
xcatd.base.patterns.PatternError: Invalid regular expression '(': missing ) at position 1
"""
from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import regex

DEFAULT_BUDGET = 2.0     # seconds of matching a request may spend (site.regextimeout)
MAX_LENGTH = 1000        # characters of a pattern

#: monotonic deadline of the current request's matching, None: DEFAULT_BUDGET per match
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("regex_deadline",
                                                                         default=None)


class PatternError(ValueError):
    """A request's pattern that cannot be used; ``part`` is the pattern."""

    def __init__(self, message: str, part: str) -> None:
        super().__init__(message)
        self.part = part


class PatternTimeout(PatternError):
    """A request's matching ran out of its time."""


def shown(pattern: str, limit: int = 80) -> str:
    """The pattern as an error message quotes it (long ones cut)."""
    return repr(pattern if len(pattern) <= limit else pattern[:limit] + "...")


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> regex.Pattern:
    """The compiled pattern (Python's syntax); PatternError names a bad or huge one."""
    if len(pattern) > MAX_LENGTH:
        raise PatternError(f"The regular expression {shown(pattern)} is longer than "
                           f"{MAX_LENGTH} characters", pattern)
    try:
        return regex.compile(pattern, regex.VERSION0)
    except (regex.error, ValueError, OverflowError) as exc:
        raise PatternError(f"Invalid regular expression {shown(pattern)}: {exc}",
                           pattern) from None


def start_budget(seconds: float) -> contextvars.Token:
    """From now on the matches of this thread share ``seconds`` (a request's budget); give
    the token back to ``end_budget`` when the request ends."""
    return _deadline.set(time.monotonic() + seconds)


def end_budget(token: contextvars.Token) -> None:
    _deadline.reset(token)


@contextmanager
def budget(seconds: float) -> Iterator[None]:
    """Every match inside shares ``seconds`` of matching time."""
    token = start_budget(seconds)
    try:
        yield
    finally:
        end_budget(token)


def _left(pattern: str) -> float:
    deadline = _deadline.get()
    if deadline is None:
        return DEFAULT_BUDGET
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timeout(pattern)
    return left


def _timeout(pattern: str) -> PatternTimeout:
    return PatternTimeout(f"The regular expression {shown(pattern)} took too long to match "
                          "(site.regextimeout): simplify it", pattern)


def search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches somewhere in ``text``, within the request's budget."""
    compiled = compile_pattern(pattern)
    try:
        return compiled.search(text, timeout=_left(pattern), concurrent=True) is not None
    except TimeoutError:
        raise _timeout(pattern) from None


def fullmatch(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches all of ``text``, within the request's budget."""
    compiled = compile_pattern(pattern)
    try:
        return compiled.fullmatch(text, timeout=_left(pattern), concurrent=True) is not None
    except TimeoutError:
        raise _timeout(pattern) from None
