"""The IPMI implementation of the hardware interface.

Packets go through ``xcatd.ipmilan``: one event loop for every BMC, sessions kept between
commands (a second ``rpower`` does not log in again), at most ``site.ipmimaxp`` nodes in
flight per request, ``site.ipmitimeout`` seconds per attempt and ``site.ipmiretries`` more
attempts. A BMC that does not answer costs its own node that budget and nothing else.

Above the packets, pyghmi is the IPMI library: rinv, rvitals and reventlog run pyghmi's
Command (its SDR, FRU and SEL decoding) in a small thread pool, with our session under it
(``PyghmiSession``), so pyghmi's own session layer and its process-wide loop are never used.
"""
from __future__ import annotations

import asyncio
import atexit
import hashlib
import queue
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from xcatd.hardware import DEFAULT_LIMITS, HardwareManager, Limits, Outcome, Target, register
from xcatd.ipmilan import CompletionError, Engine, IpmiError, Session, completion_text

CONFIRM_WAIT = 20.0   # seconds a power change has to show in the power state
CONFIRM_POLL = 0.25
SESSION_IDLE = 30.0   # BMCs drop a session idle for about a minute: log in again before that
DECODER_THREADS = 16  # pyghmi decoding (rinv, rvitals, reventlog) runs in threads

CONTROL = {"off": 0, "on": 1, "cycle": 2, "reset": 3, "nmi": 4, "softoff": 5}
BOOT_CODES = {"network": 1, "hd": 2, "optical": 5, "setup": 6, "floppy": 0xF}
BOOT_NAMES = {1: "network", 2: "hd", 3: "hd", 5: "optical", 6: "setup", 0xF: "floppy"}


class _SessionCache:
    """Sessions by BMC, user and password; used only on the engine's loop."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._live: dict[tuple, Session] = {}
        self._locks: dict[tuple, asyncio.Lock] = {}

    @staticmethod
    def key(t: Target) -> tuple:
        # the password only as a digest, so a changed password is a new session
        return t.address, t.port, t.username, hashlib.sha256(t.password.encode()).digest()

    async def get(self, t: Target, limits: Limits) -> tuple[Session, bool]:
        """A logged-in session for the node's BMC, and whether it was reused."""
        key = self.key(t)
        async with self._locks.setdefault(key, asyncio.Lock()):
            s = self._live.get(key)
            if s is not None and s.logged_in and \
                    self.engine.loop.time() - s.last_used < SESSION_IDLE:
                s.timeout, s.retries = limits.timeout, limits.retries
                return s, True
            if s is not None:
                self.drop(t)
            s = await self.engine.session(t.address, t.port, t.username, t.password,
                                          timeout=limits.timeout, retries=limits.retries)
            self._live[key] = s
            return s, False

    def drop(self, t: Target) -> None:
        s = self._live.pop(self.key(t), None)
        if s is not None:
            self.engine.forget(s)


@register("ipmi")
class IpmiManager(HardwareManager):
    def __init__(self) -> None:
        self.engine = Engine()
        self.sessions = _SessionCache(self.engine)
        self._decoders = ThreadPoolExecutor(DECODER_THREADS, thread_name_prefix="ipmi-decode")
        atexit.register(self.close)

    # ---- running one coroutine per node, results in the caller's thread as they come ----
    def _run(self, targets: list[Target], limits: Limits,
             work: Callable[[Target, Session], Awaitable[Outcome]]) -> Iterator[Outcome]:
        results: queue.SimpleQueue[Outcome] = queue.SimpleQueue()

        async def all_nodes() -> None:
            gate = asyncio.Semaphore(limits.maxp)

            async def one(t: Target) -> None:
                async with gate:
                    try:
                        out = await self._with_session(t, limits, work)
                    except IpmiError as exc:
                        out = Outcome(t.node, error=str(exc))
                    except Exception as exc:  # a bug here must still be one node's line
                        out = Outcome(t.node, error=f"{exc.__class__.__name__}: {exc}")
                results.put(out)
            await asyncio.gather(*(one(t) for t in targets))

        done = self.engine.submit(all_nodes())
        for _ in targets:
            yield results.get()
        done.result()

    async def _with_session(self, t: Target, limits: Limits,
                            work: Callable[[Target, Session], Awaitable[Outcome]]) -> Outcome:
        """Run ``work`` on the node's session. A kept session the BMC no longer knows (it
        was reset, or dropped us) gets one fresh login; a fresh one that fails is the node's
        error."""
        while True:
            s, reused = await self.sessions.get(t, limits)
            try:
                return await work(t, s)
            except CompletionError:
                raise
            except IpmiError:
                self.sessions.drop(t)
                if not reused:
                    raise

    # ---- power ----
    def power_state(self, targets, limits=DEFAULT_LIMITS):
        async def work(t, s):
            return Outcome(t.node, await _power(s))
        return self._run(targets, limits, work)

    def set_power(self, targets, action, limits=DEFAULT_LIMITS):
        async def work(t, s):
            if action == "cycle":
                await s.command(0x00, 0x02, bytes([CONTROL["off"]]))
                await _confirm(s, "off", "off")
                await s.command(0x00, 0x02, bytes([CONTROL["on"]]))
                return Outcome(t.node, await _confirm(s, "on", "on"))
            await s.command(0x00, 0x02, bytes([CONTROL[action]]))
            if action in ("on", "off"):
                return Outcome(t.node, await _confirm(s, action, action))
            return Outcome(t.node, await _power(s))
        return self._run(targets, limits, work)

    # ---- boot device (Get/Set System Boot Options, parameter 5) ----
    def boot_device(self, targets, limits=DEFAULT_LIMITS):
        async def work(t, s):
            data = await s.command(0x00, 0x09, bytes([5, 0, 0]))
            flags, device = (data[2], data[3]) if len(data) >= 4 else (0, 0)
            if not flags & 0x80:
                return Outcome(t.node, "default")
            return Outcome(t.node, BOOT_NAMES.get((device >> 2) & 0x0F, "default"))
        return self._run(targets, limits, work)

    def set_boot_device(self, targets, device, persistent, uefi, limits=DEFAULT_LIMITS):
        if device == "default":
            data = bytes([5, 0, 0, 0, 0, 0])
        else:
            flags = 0x80 | (0x40 if persistent else 0) | (0x20 if uefi else 0)
            data = bytes([5, flags, BOOT_CODES[device] << 2, 0, 0, 0])

        async def work(t, s):
            await s.command(0x00, 0x08, data)
            return Outcome(t.node, device)
        return self._run(targets, limits, work)

    # ---- pyghmi's decoders over our sessions ----
    def with_pyghmi(self, targets: list[Target], limits: Limits,
                    fn: Callable[[object], list[str]]) -> Iterator[Outcome]:
        """Run ``fn(command)`` for each node, ``command`` being pyghmi's Command on the node's
        session; fn returns the node's output lines."""
        async def work(t, s):
            cmd = pyghmi_command(self.engine, s, t)
            lines = await self.engine.loop.run_in_executor(self._decoders, fn, cmd)
            return Outcome(t.node, lines=lines)
        return self._run(targets, limits, work)

    def close(self) -> None:
        """Log out of every BMC (briefly) and stop the loop: exiting never waits long on a
        BMC that does not answer."""
        self._decoders.shutdown(wait=False, cancel_futures=True)
        self.engine.stop()


async def _power(s: Session) -> str:
    return "on" if (await s.command(0x00, 0x01))[0] & 1 else "off"


async def _confirm(s: Session, want: str, action: str) -> str:
    deadline = asyncio.get_running_loop().time() + CONFIRM_WAIT
    while True:
        state = await _power(s)
        if state == want or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(CONFIRM_POLL)
    if state != want:
        raise IpmiError(f"the BMC accepted '{action}' but the power state is still {state}")
    return state


class PyghmiSession:
    """What pyghmi's Command asks of its session, served by one of ours. Called from a
    decoder thread, never from the engine's loop."""

    ipmiversion = 2.0
    logged = 1

    def __init__(self, engine: Engine, session: Session, target: Target) -> None:
        self._engine, self._session = engine, session
        self.userid = target.username
        self.bmc = target.address

    def raw_command(self, netfn, command, bridge_request=(), data=(), retry=True,
                    delay_xmit=None, timeout=None, rslun=0):
        if bridge_request:
            raise IpmiError("bridged IPMI requests are not supported")
        code, body = self._engine.call(self._session.raw(netfn, command, bytes(data), rslun))
        rsp = {"netfn": netfn + 1, "command": command, "code": code, "data": bytearray(body)}
        if code:
            rsp["error"] = completion_text(netfn, command, code)
        return rsp

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)


def pyghmi_command(engine: Engine, session: Session, target: Target):
    """pyghmi's Command for the node, without pyghmi's session layer: the attributes its
    constructor would set, and our session as its ``ipmi_session``."""
    from pyghmi.ipmi import command
    cmd = command.Command.__new__(command.Command)
    cmd.__dict__.update(onlogon=None, bmc=target.address, _sdrcachedir=None, _sdr=None,
                        _oem=None, _oemknown=False, _netchannel=None, _ipv6support=None,
                        certverify=None, kwargs={})
    cmd.ipmi_session = PyghmiSession(engine, session, target)
    return cmd
