"""The parallel shell's engine: one asyncio event loop, shared by every run of the process,
drives the ssh connections of all nodes (asyncssh). A run keeps one connection per node for
its whole length and multiplexes channels on it: the command, a script's upload (SFTP), the
kill of a command that ran past its time.

- ``fanout`` bounds the nodes in flight at once; ``timeout`` bounds each node's whole run,
  connection included. At its timeout a node's command is killed on the node (its process
  group, TERM then KILL), not only its channel: a closed channel leaves the remote command
  running, and xCAT's timeout did only that.
- Host keys are checked against the management node's known_hosts (makeknownhosts) unless
  the caller says otherwise (``strict=False``); an unknown or changed key refuses the node.
- Every failure of a node is one line (``NodeError``), and a dead node costs the others
  nothing: each node has its own task and deadline.

The engine reports ``Event``\\s through a callback, from the loop's thread; ``Run`` turns them
into an iterator for a handler running in another thread, and stops the run (killing what
still runs on the nodes) when the iterator is closed or the request is cancelled.

>>> wrap("uptime", {"A": "x y"})
"echo '\\x1excat-pgid' $$ 1>&2; export A='x y'; uptime"
>>> split_lines(b"a\\nb\\r\\nc", b"")
(['a', 'b'], b'c')
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import shlex
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

with warnings.catch_warnings():      # asyncssh still names DSA, which cryptography deprecates
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        from cryptography.utils import CryptographyDeprecationWarning
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    except ImportError:   # pragma: no cover
        pass
    import asyncssh

#: The first line the wrapped command writes to stderr: the process group to kill.
MARK = "\x1excat-pgid"
DEFAULT_FANOUT = 64
#: Seconds the kill of a timed-out command may take (TERM, then KILL) before we give up on it.
KILL_GRACE = 3.0
#: Longest line kept whole; longer lines are cut (a node printing megabytes without a newline
#: must not hold them all in memory).
MAX_LINE = 64 * 1024
#: Algorithms in our order of preference: fast on x86 with AES-NI and on anything else.
CIPHERS = ("aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com",
           "aes128-ctr", "aes256-ctr")
KEX = ("curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256")


@dataclass(frozen=True)
class Target:
    node: str
    host: str
    port: int = 22


@dataclass(frozen=True)
class Event:
    """``kind``: "out" or "err" (a line of the command's output), "rc" (its exit code, in
    ``rc``), or "error" (the node failed: ``text`` says why in one line)."""

    node: str
    kind: str
    text: str = ""
    rc: int | None = None


class NodeError(Exception):
    """One node's failure, in one line."""


@dataclass
class Settings:
    user: str = "root"
    client_keys: Sequence[Any] = ()
    known_hosts: Any = None          # an asyncssh known_hosts object, a path, or None
    strict: bool = True              # False: accept any host key (the admin said so)
    fanout: int = DEFAULT_FANOUT
    timeout: float | None = None     # each node's whole run
    connect_timeout: float = 30.0
    env: dict[str, str] = field(default_factory=dict)
    maxssh: int | None = None        # connections of the whole process at once
    sudo: bool = False               # run the commands under sudo -n (xdsh --sudo)
    #: xdsh -K's first login, when no key opens the node (never in a repr or a log)
    password: str | None = field(default=None, repr=False)

    def options(self) -> Any:
        """asyncssh's connection options, made once for the whole run (parsing keys and
        known_hosts once, not once per node)."""
        known = self.known_hosts if self.strict else None
        if self.strict and known is None:     # strict with no list: nothing is trusted
            known = asyncssh.import_known_hosts("")
        if isinstance(known, str | Path):
            known = asyncssh.read_known_hosts(str(known)) if Path(known).exists() else \
                asyncssh.import_known_hosts("")
        return asyncssh.SSHClientConnectionOptions(
            username=self.user, client_keys=list(self.client_keys), known_hosts=known,
            agent_path=None, config=[], password=self.password,
            preferred_auth="publickey,password" if self.password else "publickey",
            encryption_algs=CIPHERS, kex_algs=KEX, compression_algs=["none"],
            connect_timeout=self.connect_timeout, login_timeout=self.connect_timeout,
            keepalive_interval=15, keepalive_count_max=4)


def wrap(command: str, env: dict[str, str], sudo: bool = False) -> str:
    """The command as sent: it first tells its process group on stderr (so a timeout can
    kill the whole group), then exports ``env``, then runs in the login shell of the user;
    with ``sudo`` under ``sudo -n`` (which resets the environment: ``env`` is given to it)."""
    if sudo:
        assigns = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
        return (f"echo {shlex.quote(MARK)} $$ 1>&2; exec sudo -n env {assigns} "
                f"sh -c {shlex.quote(command)}")
    exports = "".join(f"export {k}={shlex.quote(v)}; " for k, v in env.items())
    return f"echo {shlex.quote(MARK)} $$ 1>&2; {exports}{command}"


def split_lines(data: bytes, pending: bytes) -> tuple[list[str], bytes]:
    """Complete lines of ``pending + data`` (decoded, without line ends) and what is left."""
    buf = pending + data
    *whole, rest = buf.split(b"\n")
    lines = [_text(x) for x in whole]
    if len(rest) > MAX_LINE:
        lines.append(_text(rest[:MAX_LINE]))
        rest = b""
    return lines, rest


def _text(raw: bytes) -> str:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw[:MAX_LINE].decode("utf-8", "replace")


def describe(exc: BaseException, target: Target) -> str:
    """One line saying why a node failed, in an admin's words."""
    where = _where(target)
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return (f"host key of {target.node} ({where}) is not in the management node's "
                f"known_hosts or does not match it ({exc.reason}); if the node was "
                f"reinstalled, run makeknownhosts {target.node}")
    if isinstance(exc, asyncssh.PermissionDenied):
        return f"permission denied connecting to {where} (the management node's key is not " \
               "in the node's authorized_keys: xdsh -K sets it up)"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {where}: connection refused (is sshd running?)"
    if isinstance(exc, asyncssh.DisconnectError | asyncssh.ChannelOpenError):
        return f"ssh connection to {where} failed: {exc.reason}"
    if isinstance(exc, TimeoutError):     # an OSError too: before the general case
        return f"cannot connect to {where}: timed out"
    if isinstance(exc, asyncssh.SFTPError):
        return f"SFTP failed on the node: {exc.reason}"
    if isinstance(exc, OSError):
        why = os.strerror(exc.errno).lower() if exc.errno else (str(exc) or type(exc).__name__)
        return f"cannot connect to {where}: {why}"
    return f"{type(exc).__name__}: {exc}"[:400]


def _where(target: Target) -> str:
    return f"{target.host}:{target.port}" if target.port != 22 else target.host


class _Session(asyncssh.SSHClientSession):
    """One command's channel: lines to the run's callback, the process group kept aside."""

    def __init__(self, node: str, emit: Callable[[Event], None],
                 intercept: Callable[[Any, str], bool] | None = None) -> None:
        self.node = node
        self.emit = emit
        #: intercept(channel, stdout line): True when the line was a request to us (xdcp -F's
        #: fetches), not output
        self.intercept = intercept
        self.chan: Any = None
        self.pending = {"out": b"", "err": b""}
        self.pgid: int | None = None
        self.marked = False
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes, datatype: Any) -> None:
        kind = "err" if datatype == asyncssh.EXTENDED_DATA_STDERR else "out"
        lines, self.pending[kind] = split_lines(data, self.pending[kind])
        for line in lines:
            # the marker comes first from the command itself; a login shell may print
            # before it (a .bashrc's stty complaint), so it is looked for until found
            if kind == "err" and not self.marked and line.startswith(MARK):
                self.marked = True
                with contextlib.suppress(ValueError):
                    self.pgid = int(line[len(MARK):].strip())
                continue
            if kind == "out" and self.intercept is not None and \
                    self.intercept(self.chan, line):
                continue
            self.emit(Event(self.node, kind, line))

    def connection_made(self, chan: Any) -> None:
        self.chan = chan

    def flush(self) -> None:
        for kind, rest in self.pending.items():
            if rest:
                self.emit(Event(self.node, kind, _text(rest)))
        self.pending = {"out": b"", "err": b""}

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


async def _kill(conn: Any, pgid: int) -> None:
    """TERM the command's process group on the node, KILL what is left a moment later."""
    # no "--": dash's kill takes "-PGID" as a group but rejects "--"
    script = (f"kill -TERM -{pgid} 2>/dev/null || exit 0; i=0; while [ $i -lt 20 ]; do "
              f"kill -0 -{pgid} 2>/dev/null || exit 0; sleep 0.1; i=$((i+1)); done; "
              f"kill -KILL -{pgid} 2>/dev/null; exit 0")
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.run(script, check=False), KILL_GRACE)


class NodeJob:
    """What a run does on one node, given its open connection: ``command`` runs a shell
    command; subclasses (file copies) override ``work``."""

    def __init__(self, command: str | None = None) -> None:
        self.command = command

    async def work(self, conn: Any, target: Target, settings: Settings,
                   emit: Callable[[Event], None], state: dict) -> int:
        return await run_command(conn, target.node, self.command or "true", settings.env,
                                 emit, state, sudo=settings.sudo)


async def run_command(conn: Any, node: str, command: str, env: dict[str, str],
                      emit: Callable[[Event], None], state: dict,
                      intercept: Callable[[Any, str], bool] | None = None,
                      sudo: bool = False) -> int:
    """Run one command on an open connection; its exit code (128+N for a signal N). Its
    stdin is closed at once, unless ``intercept`` talks with it."""
    chan, session = await conn.create_session(lambda: _Session(node, emit, intercept),
                                              wrap(command, {"NODE": node, **env}, sudo),
                                              encoding=None)
    state["session"] = session
    if intercept is None:
        chan.write_eof()
    await chan.wait_closed()
    session.flush()
    state.pop("session", None)
    status = chan.get_exit_status()
    if status is None or status < 0:
        sig = chan.get_exit_signal()
        if sig:
            number = getattr(signal, "SIG" + sig[0], None)
            return 128 + int(number) if number else 255
        return 255
    return status


# ---- the shared loop --------------------------------------------------------------------
_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def loop() -> asyncio.AbstractEventLoop:
    """The process's engine loop, in its own daemon thread (started on first use)."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            new = asyncio.new_event_loop()
            threading.Thread(target=new.run_forever, name="xcat-remote", daemon=True).start()
            _loop = new
        return _loop


#: site.maxssh: the ssh connections this process holds at once, all runs together.
_limit: tuple[int, asyncio.Semaphore] | None = None


def _cap(maxssh: int | None) -> asyncio.Semaphore | None:
    """The shared semaphore for ``maxssh`` connections (made again when the value changes;
    runs already going keep theirs). Called in the loop's thread."""
    global _limit
    if not maxssh:
        return None
    if _limit is None or _limit[0] != maxssh:
        _limit = (maxssh, asyncio.Semaphore(maxssh))
    return _limit[1]


async def _node(target: Target, job: NodeJob, settings: Settings, options: Any,
                sem: asyncio.Semaphore, emit: Callable[[Event], None]) -> None:
    cap = _cap(settings.maxssh)
    async with sem, (cap or contextlib.nullcontext()):
        state: dict = {}
        conn = None
        bound = asyncio.timeout(settings.timeout)
        try:
            async with bound:
                conn = await asyncssh.connect(target.host, target.port, options=options)
                rc = await job.work(conn, target, settings, emit, state)
            emit(Event(target.node, "rc", rc=rc))
        except TimeoutError as exc:
            if not bound.expired():      # the connection's own timeout
                emit(Event(target.node, "error", describe(exc, target)))
                return
            if conn is None:
                emit(Event(target.node, "error", f"cannot connect to {_where(target)}: "
                           "no answer within the timeout "
                           f"({settings.timeout:g} seconds)"))
                return
            killed = await _end(conn, state)
            emit(Event(target.node, "error", f"timed out after {settings.timeout:g} seconds"
                       + ("; the command was killed on the node" if killed else "")))
        except asyncio.CancelledError:
            killed = await _end(conn, state)
            emit(Event(target.node, "error", "cancelled; the command was killed on the node"
                       if killed else "cancelled"))
            raise
        except NodeError as exc:
            emit(Event(target.node, "error", str(exc)))
        except Exception as exc:   # one node's failure, whatever it is, is one line
            emit(Event(target.node, "error", describe(exc, target)))
        finally:
            if conn is not None:
                conn.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.wait_closed(), 2)


async def _end(conn: Any, state: dict) -> bool:
    """Flush and kill the command still running on an interrupted node; whether it was."""
    session = state.get("session")
    killed = False
    if session is not None:
        session.flush()
        if conn is not None and session.pgid:
            await _kill(conn, session.pgid)
            killed = True
    for command in state.get("cleanup", ()) if conn is not None else ():
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.run(command, check=False), KILL_GRACE)
    return killed


async def _run(targets: Sequence[Target], job: NodeJob, settings: Settings,
               emit: Callable[[Event], None]) -> None:
    options = settings.options()
    sem = asyncio.Semaphore(max(1, settings.fanout))
    tasks = [asyncio.create_task(_node(t, job, settings, options, sem, emit)) for t in targets]
    try:
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        # Cancelled (the run was stopped): gather has cancelled every node once; wait for
        # their kills to be done on the nodes, without cancelling them again.
        await asyncio.gather(*tasks, return_exceptions=True)


class Run:
    """A run over ``targets`` in the shared loop, read as an iterator of Events from another
    thread. Leaving the iterator early (``close()``, or ``stop()`` from a cancel) stops the
    run: commands still running are killed on their nodes before ``stop`` returns (within
    KILL_GRACE and a little more)."""

    def __init__(self, targets: Sequence[Target], job: NodeJob, settings: Settings) -> None:
        self.events: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._done = threading.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._loop = loop()
        asyncio.run_coroutine_threadsafe(self._main(targets, job, settings), self._loop)

    async def _main(self, targets, job, settings) -> None:
        self._task = asyncio.current_task()
        try:
            if self._stopping:
                return
            await _run(targets, job, settings, self.events.put)
        except asyncio.CancelledError:
            pass
        finally:
            self.events.put(None)
            self._done.set()

    def __iter__(self) -> Iterator[Event]:
        return self.iter()

    def iter(self, poll: float = 0.5, stopped: Callable[[], bool] | None = None
             ) -> Iterator[Event]:
        """Events as they come; ``stopped()`` is asked every ``poll`` seconds while nothing
        comes, and a True stops the run (the nodes' last events still come)."""
        asked = time.monotonic()
        try:
            while True:
                try:
                    event = self.events.get(timeout=poll)
                except queue.Empty:
                    event = False
                if stopped is not None and not self._stopping and \
                        time.monotonic() - asked >= poll:
                    asked = time.monotonic()   # asked while output flows, too
                    if stopped():
                        self._cancel()
                if event is False:
                    continue
                if event is None:
                    return
                yield event
        finally:
            if not self._done.is_set():
                self.stop()

    def _cancel(self) -> None:
        """Cancel the run once: a second cancel would cut the kills of the first short."""
        if self._stopping:
            return
        self._stopping = True
        self._loop.call_soon_threadsafe(lambda: self._task is not None and self._task.cancel())

    def stop(self, wait: float = KILL_GRACE + 5) -> None:
        """Stop the run and wait (at most ``wait`` seconds) for its kills to be done."""
        self._cancel()
        self._done.wait(wait)
