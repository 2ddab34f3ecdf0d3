"""Progress of long work (copycds, makedhcp, makedns, nodeset on many nodes) as Responses
that only a terminal shows.

A progress Response carries ``progress`` and nothing else: the daemon streams it like any
other, but the job record never keeps it, the REST API never sends it, and the command line
draws it on one status line of stderr only when stderr is a terminal and --json is off.
A Meter makes them no more often than every ``interval`` seconds, however often the work
ticks, so a fast loop costs nothing and a slow one says it is alive.

>>> t = [0.0]
>>> m = Meter("Copying", total=300, unit="bytes", interval=0.25, clock=lambda: t[0])
>>> m.tick(100) is None                      # too soon after the start
True
>>> t[0] = 0.3; m.tick(200).progress
{'what': 'Copying', 'done': 200, 'total': 300, 'unit': 'bytes'}
>>> t[0] = 0.4; m.tick(250) is None          # too soon after the last one
True
>>> def copying():
...     for done in (100, 200, 300):
...         t[0] += 0.3
...         yield done
...     return "copied"
>>> def copycds():
...     meter = Meter("Copying", total=300, interval=0.25, clock=lambda: t[0])
...     result = yield from meter.follow(copying())
...     yield result
>>> [r if isinstance(r, str) else r.progress["done"] for r in copycds()]
[100, 200, 300, 'copied']
"""
from __future__ import annotations

import contextvars
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

from xcatd.base.request import Response

#: Seconds between two progress Responses of one meter (a few a second at most);
#: $XCAT_PROGRESS_INTERVAL changes it (0: every step, as the tests want).
INTERVAL = 0.25
INTERVAL_ENV = "XCAT_PROGRESS_INTERVAL"

T = TypeVar("T")


def progress(what: str, done: int | None = None, total: int | None = None,
             unit: str = "") -> Response:
    """A progress Response: ``what`` is under way, ``done`` of ``total`` ``unit`` (bytes,
    nodes...); without ``done``, only that it goes on (drawn as a growing line of dots)."""
    state: dict[str, Any] = {"what": what}
    if done is not None:
        state["done"] = done
    if total is not None:
        state["total"] = total
    if unit:
        state["unit"] = unit
    return Response(progress=state)


def default_interval() -> float:
    """INTERVAL, or $XCAT_PROGRESS_INTERVAL when it is a number of seconds (0 to 60)."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, INTERVAL))
    except ValueError:
        return INTERVAL
    return value if 0 <= value <= 60 else INTERVAL


class Meter:
    """Progress of one piece of work, rate-limited (see the module docstring)."""

    def __init__(self, what: str, total: int | None = None, unit: str = "", *,
                 interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.interval = default_interval() if interval is None else interval
        self.clock = clock
        self.last = clock()  # nothing in the first interval: quick work shows no line

    def tick(self, done: int | None = None) -> Response | None:
        """A progress Response if one is due, else None."""
        now = self.clock()
        if now - self.last < self.interval:
            return None
        self.last = now
        return progress(self.what, done, self.total, self.unit)

    def follow(self, steps: Generator[int, None, T]) -> Generator[Response, None, T]:
        """Progress for the counts ``steps`` yields (when due); returns what it returns.
        Closing this generator closes ``steps`` at once (its cleanup runs now)."""
        try:
            while True:
                try:
                    done = next(steps)
                except StopIteration as stop:
                    return stop.value
                resp = self.tick(done)
                if resp is not None:
                    yield resp
        finally:
            steps.close()

    def around(self, work: Iterator[Response]) -> Iterator[Response]:
        """``work``'s responses as they come, with a progress Response each interval it is
        quiet: for work that cannot count its steps (a rebuild that plans, renders and
        checks before its first answer). It runs in a helper thread, in this thread's
        context (the request's cancel signal and time budgets); closing this generator
        stops it after its current step and waits for it, so the caller's node locks are
        held until the work has really ended."""
        items: queue.Queue = queue.Queue()
        stop = threading.Event()
        context = contextvars.copy_context()

        def worker() -> None:
            try:
                for item in work:
                    items.put(("item", item))
                    if stop.is_set():
                        break
            except BaseException as exc:  # handed to the caller's thread, raised there
                items.put(("raise", exc))
            finally:
                close = getattr(work, "close", None)
                if close is not None:
                    close()
                items.put(("end", None))

        thread = threading.Thread(target=context.run, args=(worker,), daemon=True,
                                  name=f"progress-{self.what[:20]}")
        thread.start()
        counts = False  # the work reports its own progress: no dots over it
        try:
            while True:
                try:
                    kind, value = items.get(timeout=max(self.interval, 0.05))
                except queue.Empty:
                    resp = None if counts else self.tick()
                    if resp is not None:
                        yield resp
                    continue
                if kind == "end":
                    return
                if kind == "raise":
                    raise value
                counts = counts or value.progress is not None
                yield value
        finally:
            stop.set()
            thread.join()

