"""Work for node agents: how updatenode reaches a node without ssh.

Each node agent keeps one long poll open to xcatd (``GET /xcat/agent/task?wait=S``, mutual
TLS with its node certificate): the request waits in xcatd's event loop, costing no thread,
until a task for that node arrives or the wait ends, and the agent asks again at once. So
the management node never connects to nodes, a node needs no open port, and a node behind
NAT or a firewall that lets it reach its master is reachable.

``submit`` (any thread; updatenode's handler) hands a task to the node's waiting poll, or
queues it for a poll that comes within CONNECT_GRACE seconds; a node with no poll in that
time is "not connected" (the answer's future fails at once, with a clear error). The
agent runs the task and posts its result to ``/xcat/agent/task/<id>``, which completes the
future. One board per XCATROOT's xcatd (board_for); XCATBYPASS has no board (no daemon the
agents could reach), and says so.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

#: Seconds a node may be between two polls and still count as connected
CONNECT_GRACE = 5.0
#: Longest poll a node may ask for
MAX_WAIT = 60.0


class NotConnected(RuntimeError):
    """The node has no agent polling this xcatd."""


@dataclass
class Task:
    node: str
    kind: str
    args: dict[str, Any]
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    future: Future = field(default_factory=Future)
    handed: bool = False

    def as_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, **self.args}


class Board:
    """Tasks waiting for node agents, and the agents' polls waiting for tasks."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._pending: dict[str, deque[Task]] = {}
        self._polls: dict[str, asyncio.Future] = {}
        self._last_seen: dict[str, float] = {}
        self._tasks: dict[str, Task] = {}
        self._count = itertools.count()

    # ---- the daemon's side -----------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def detach(self) -> None:
        """xcatd stops: every task still open fails."""
        with self._lock:
            tasks, self._tasks = list(self._tasks.values()), {}
            self._pending.clear()
            self.loop = None
        for t in tasks:
            if not t.future.done():
                t.future.set_exception(NotConnected("xcatd stopped"))

    @property
    def attached(self) -> bool:
        return self.loop is not None

    def connected(self, node: str) -> bool:
        with self._lock:
            return node in self._polls or (
                time.monotonic() - self._last_seen.get(node, -1e9) < CONNECT_GRACE)

    # ---- updatenode's side (any thread) ----------------------------------------------------
    def submit(self, node: str, kind: str, args: dict[str, Any]) -> Task:
        """Queue a task for the node; its future completes with the agent's result, or fails
        with NotConnected if no poll takes it within CONNECT_GRACE."""
        if self.loop is None:
            raise NotConnected("node agents reach xcatd only: run updatenode through xcatd "
                               "(not with XCATBYPASS)")
        task = Task(node, kind, args)
        with self._lock:
            self._tasks[task.id] = task
            self._pending.setdefault(node, deque()).append(task)
            poll = self._polls.pop(node, None)
        if poll is not None:
            self.loop.call_soon_threadsafe(_wake, poll)
        self.loop.call_soon_threadsafe(self.loop.call_later, CONNECT_GRACE, self._expire,
                                       task)
        return task

    def cancel(self, task: Task) -> None:
        """Forget a task (its run timed out, or updatenode ended)."""
        with self._lock:
            self.cancel_locked(task)

    def _expire(self, task: Task) -> None:
        with self._lock:
            if task.handed or task.id not in self._tasks:
                return
            self.cancel_locked(task)
        if not task.future.done():
            task.future.set_exception(NotConnected(
                f"no node agent is connected (nothing polled xcatd within {CONNECT_GRACE:g} "
                "s): is xcatagent running on the node, and enrolled?"))

    def cancel_locked(self, task: Task) -> None:
        self._tasks.pop(task.id, None)
        queue = self._pending.get(task.node)
        if queue and task in queue:
            queue.remove(task)

    # ---- the agent's side (the event loop) -------------------------------------------------
    async def poll(self, node: str, wait: float) -> Task | None:
        """The next task for the node, waiting up to ``wait`` seconds for one."""
        wait = max(0.0, min(wait, MAX_WAIT))
        while True:
            with self._lock:
                self._last_seen[node] = time.monotonic()
                queue = self._pending.get(node)
                if queue:
                    task = queue.popleft()
                    task.handed = True
                    return task
                old = self._polls.pop(node, None)
                fut = asyncio.get_running_loop().create_future()
                self._polls[node] = fut
            if old is not None:
                _wake(old, "replaced")   # a newer poll of the same node replaces it
            try:
                got = await asyncio.wait_for(asyncio.shield(fut), wait)
            except TimeoutError:
                got = None
            finally:
                with self._lock:
                    if self._polls.get(node) is fut:
                        del self._polls[node]
                    self._last_seen[node] = time.monotonic()
            if got == "replaced":
                return None
            if got is None:
                with self._lock:
                    if not self._pending.get(node):
                        return None
            # woken (or a task came as the wait ended): take it on the next round

    def requeue(self, task: Task) -> None:
        """A task handed to a poll whose connection went away: first in line again, for the
        node's next poll (or NotConnected after CONNECT_GRACE, as a new task)."""
        with self._lock:
            if task.id not in self._tasks or task.future.done():
                return
            task.handed = False
            self._pending.setdefault(task.node, deque()).appendleft(task)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.call_later, CONNECT_GRACE, self._expire,
                                           task)

    def complete(self, node: str, task_id: str, result: dict) -> bool:
        """The agent's result; False for a task the node was not given."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.node != node or not task.handed:
                return False
            del self._tasks[task_id]
        if not task.future.done():
            task.future.set_result(result)
        return True


def _wake(fut: asyncio.Future, why: str = "task") -> None:
    if not fut.done():
        fut.set_result(why)


_BOARDS: dict[str, Board] = {}
_BOARDS_LOCK = threading.Lock()


def board_for(root: str | os.PathLike) -> Board:
    """The board of the xcatd serving this XCATROOT (one per root: tests run several)."""
    key = os.fspath(root)
    with _BOARDS_LOCK:
        board = _BOARDS.get(key)
        if board is None:
            board = _BOARDS[key] = Board()
        return board
