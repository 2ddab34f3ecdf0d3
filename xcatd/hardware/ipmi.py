"""The IPMI implementation of the hardware interface.

Packets go through ``xcatd.hardware.ipmilan``: one event loop for every BMC, sessions kept between
commands (a second ``rpower`` does not log in again), at most ``site.ipmimaxp`` nodes in
flight across all requests, ``site.ipmitimeout`` seconds per attempt and ``site.ipmiretries`` more
attempts. A BMC that does not answer costs its own node that budget and nothing else; nodes
sharing one BMC address, user and password share one login, and its failure, within a request.
A request whose consumer goes away (``job cancel``, a closed generator) stops its BMC work.

Above the packets, pyghmi is the IPMI library: rinv, rvitals and reventlog run pyghmi's
Command (its SDR, FRU and SEL decoding) in a small thread pool, with our session under it
(``PyghmiSession``), so pyghmi's own session layer and its process-wide loop are never used.
"""
from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import datetime
import hashlib
import math
import queue
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from pyghmi import exceptions as pygexc

from xcatd.base import cancel as cancelling
from xcatd.hardware.interfaces import (
    DEFAULT_LIMITS,
    BootDeviceInterface,
    Driver,
    EventLogInterface,
    InventoryInterface,
    Limits,
    Outcome,
    PowerInterface,
    SensorsInterface,
    Target,
)
from xcatd.hardware.ipmilan import (
    CompletionError,
    Engine,
    IpmiError,
    IpmiTimeout,
    LoginRefused,
    Session,
    completion_text,
)

CONFIRM_WAIT = 20.0   # seconds a power change has to show in the power state
CONFIRM_POLL = 0.25
SESSION_IDLE = 30.0   # BMCs drop a session idle for about a minute: log in again before that
DECODER_THREADS = 16  # pyghmi decoding (rinv, rvitals, reventlog) runs in threads
CANCEL_WAIT = 5.0     # seconds a closed request waits for its BMC work to unwind (it is quick)
CANCELLED = "the request was cancelled"

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

    async def get(self, t: Target, limits: Limits,
                  failed: dict[tuple, IpmiError] | None = None) -> tuple[Session, bool]:
        """A logged-in session for the node's BMC, and whether it was reused.

        ``failed`` is the request's memory of failed logins by key (``IpmiManager._run``):
        the nodes waiting here behind a login that failed fail at once with its error,
        instead of each spending a whole login budget on the same dead BMC or the same
        wrong password in turn. Only the same key counts (address, port, user, password):
        another user on the same BMC logs in on its own."""
        key = self.key(t)
        if failed is not None and key in failed:  # no need to queue behind another login
            raise _again(failed[key])
        async with self._locks.setdefault(key, asyncio.Lock()):
            if failed is not None and key in failed:  # it failed while this node waited
                raise _again(failed[key])
            s = self._live.get(key)
            if s is not None and s.logged_in and \
                    self.engine.loop.time() - s.last_used < SESSION_IDLE:
                s.timeout, s.retries = limits.timeout, limits.retries
                return s, True
            if s is not None:
                self.drop(t)
            try:
                s = await self.engine.session(t.address, t.port, t.username, t.password,
                                              timeout=limits.timeout, retries=limits.retries)
            except IpmiError as exc:
                # not 'insufficient resources': the BMC may have a session free for the next
                if failed is not None and not (isinstance(exc, LoginRefused) and exc.transient):
                    failed[key] = exc
                raise
            self._live[key] = s
            return s, False

    def drop(self, t: Target) -> None:
        s = self._live.pop(self.key(t), None)
        if s is not None:
            self.engine.forget(s)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _again(exc: IpmiError) -> IpmiError:
    """The error of a remembered failed login, for another node: the same text (and a
    timeout stays a timeout), a fresh exception (each node raises its own)."""
    return (IpmiTimeout if isinstance(exc, IpmiTimeout) else IpmiError)(str(exc))


class IpmiManager(Driver, PowerInterface, BootDeviceInterface, InventoryInterface,
                  SensorsInterface, EventLogInterface):
    """nodehm.mgt=ipmi (registered in setup.cfg's pyxcat.hardware entry points)."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.sessions = _SessionCache(self.engine)
        self._gate_sem: asyncio.Semaphore | None = None
        self._gate_size = 0
        self._decoders = ThreadPoolExecutor(DECODER_THREADS, thread_name_prefix="ipmi-decode")
        atexit.register(self.close)

    def _gate(self, maxp: int) -> asyncio.Semaphore:
        """The bound on BMC conversations in flight, shared by every request (on the loop).
        A new site.ipmimaxp takes effect for requests that start after the change."""
        if self._gate_size != maxp:
            self._gate_sem, self._gate_size = asyncio.Semaphore(maxp), maxp
        return self._gate_sem

    # ---- running one coroutine per node, results in the caller's thread as they come ----
    def _run(self, targets: list[Target], limits: Limits,
             work: Callable[[Target, Session], Awaitable[Outcome]]) -> Iterator[Outcome]:
        """Each node's Outcome as it comes. The request's memory of failed logins lives as
        long as this call: a later request tries again. (No negative cache across requests:
        a BMC that was down answers the next rpower the moment it is back, and a wrong
        password fixed in the table takes at once; one dead BMC costs a request one login
        budget per key.) Closing the generator (the consumer went away: ``job cancel``)
        cancels the request's work on the engine and frees its slots before close() returns."""
        results: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        failed: dict[tuple, IpmiError] = {}  # this request's failed logins, by session key
        running: list[asyncio.Task] = []

        async def all_nodes() -> None:
            running.append(asyncio.current_task())
            gate = self._gate(limits.maxp)

            async def one(t: Target) -> None:
                async with gate:
                    try:
                        out = await self._with_session(t, limits, work, failed)
                    except IpmiError as exc:
                        out = Outcome(t.node, error=str(exc))
                    except Exception as exc:  # a bug here must still be one node's line
                        out = Outcome(t.node, error=f"{exc.__class__.__name__}: {exc}")
                results.put(out)
            await asyncio.gather(*(one(t) for t in targets))

        if not self.engine.loop.is_running():
            yield from (Outcome(t.node, error="the IPMI engine has stopped") for t in targets)
            return
        done = self.engine.submit(all_nodes())
        pending = {t.node for t in targets}
        try:
            while pending:
                if cancelling.requested():  # job cancel, or its client went away: stop now
                    return  # (the finally below cancels the work and frees its slots)
                try:
                    out = results.get(timeout=0.5)
                except queue.Empty:  # every node answers or times out; a dead loop must not
                    if done.done() or not self.engine.loop.is_running():  # hang us
                        why = "the IPMI engine has stopped"
                        yield from (Outcome(n, error=why) for n in sorted(pending))
                        return
                    continue
                pending.discard(out.node)
                yield out
        finally:  # nodes left: the consumer stopped early (close, an exception of its own)
            if pending and not done.done():
                self._cancel(done, running)

    def _cancel(self, done: concurrent.futures.Future, running: list[asyncio.Task]) -> None:
        """Cancel a request's work on the engine (its logins, commands, power waits and
        decoders) and wait, briefly, until it has unwound: its ``ipmimaxp`` slots are free
        and its BMCs hear nothing more from it when this returns."""
        async def unwind() -> None:
            tasks = [t for t in running if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=CANCEL_WAIT)

        if self.engine.loop.is_running() and not _on_loop(self.engine.loop):
            try:  # (on the loop itself it could not wait: done.cancel() alone, below)
                self.engine.call(unwind(), timeout=CANCEL_WAIT + 1)
            except Exception:  # the loop stopped meanwhile: nothing of ours runs there
                pass
        done.cancel()  # cancels the task if unwind did not run (the loop's own thread)

    async def _with_session(self, t: Target, limits: Limits,
                            work: Callable[[Target, Session], Awaitable[Outcome]],
                            failed: dict[tuple, IpmiError] | None = None) -> Outcome:
        """Run ``work`` on the node's session. A kept session the BMC no longer knows (it
        was reset, or dropped us) gets one fresh login; a fresh one that fails is the node's
        error (and, for the rest of the request, that of every node on the same key:
        ``failed``)."""
        while True:
            s, reused = await self.sessions.get(t, limits, failed)
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
            ours = cmd.ipmi_session  # fn may wrap it (_FruChunks)
            try:
                lines = await self.engine.loop.run_in_executor(self._decoders, fn, cmd)
            except asyncio.CancelledError:  # the thread runs on: stop its calls to the BMC
                ours.cancel()
                raise
            return Outcome(t.node, lines=lines)
        return self._run(targets, limits, work)

    # ---- rinv, rvitals, reventlog: pyghmi decodes, the helpers below speak xCAT ----
    def inventory(self, targets: list[Target], what: str, limits: Limits = DEFAULT_LIMITS
                  ) -> Iterator[Outcome]:
        """``what``: an INVENTORY word or xCAT's vpd, mprom, deviceid, asset, misc."""
        kinds = inventory_kinds(what)
        return self.with_pyghmi(targets, limits, _decoding(lambda cmd: _inventory(cmd, kinds)))

    def vitals(self, targets: list[Target], what: str, limits: Limits = DEFAULT_LIMITS
               ) -> Iterator[Outcome]:
        """``what``: a VITALS word, 'wattage', or several joined by commas."""
        wanted = vitals_categories(what)
        return self.with_pyghmi(targets, limits, _decoding(lambda cmd: _vitals(cmd, wanted)))

    def event_log(self, targets: list[Target], count: int | None, clear: bool,
                  limits: Limits = DEFAULT_LIMITS) -> Iterator[Outcome]:
        if count is not None and count < 1:
            raise ValueError(f"count must be positive, not {count}")
        return self.with_pyghmi(targets, limits,
                                _decoding(lambda cmd: _event_log(cmd, count, clear)))

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
        self._cancelled = False
        self._call: concurrent.futures.Future | None = None  # the command in flight

    def cancel(self) -> None:
        """The request was cancelled: the command in flight stops, the next one fails
        without reaching the BMC (any thread)."""
        self._cancelled = True
        call = self._call
        if call is not None:
            call.cancel()

    def raw_command(self, netfn, command, bridge_request=(), data=(), retry=True,
                    delay_xmit=None, timeout=None, rslun=0):
        if bridge_request:
            raise IpmiError("bridged IPMI requests are not supported")
        if self._cancelled:
            raise IpmiError(CANCELLED)
        self._call = call = self._engine.submit(
            self._session.raw(netfn, command, bytes(data), rslun))
        if self._cancelled:  # cancel() ran between the check and the submit
            call.cancel()
        try:
            code, body = call.result()
        except concurrent.futures.CancelledError:
            raise IpmiError(CANCELLED) from None
        finally:
            self._call = None
        rsp = {"netfn": netfn + 1, "command": command, "code": code, "data": bytearray(body)}
        if code:
            rsp["error"] = completion_text(netfn, command, code)
        return rsp

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)


def pyghmi_command(engine: Engine, session: Session, target: Target):
    """pyghmi's Command for the node, without pyghmi's session layer: the attributes its
    constructor would set, and our session as its ``ipmi_session``."""
    # Imported on first use: pyghmi's Command pulls in every OEM decoder (about 120 ms), and
    # power and boot-device control, the commands that must start fast, never need it.
    from pyghmi.ipmi import command
    cmd = command.Command.__new__(command.Command)
    cmd.__dict__.update(onlogon=None, bmc=target.address, _sdrcachedir=None, _sdr=None,
                        _oem=None, _oemknown=False, _netchannel=None, _ipv6support=None,
                        certverify=None, kwargs={})
    cmd.ipmi_session = PyghmiSession(engine, session, target)
    return cmd


# ---- rinv, rvitals, reventlog in xCAT's words ------------------------------------------------
# Everything below runs in a decoder thread with pyghmi's Command over our session. pyghmi
# decodes (FRU areas, SDRs and readings, SEL records); the labels, units and layouts are
# xCAT's (its ipmi.pm), so scripts written for xCAT read the same lines.

class DecodeError(CompletionError):
    """pyghmi refused an answer (an error code, a record it cannot decode). The session is
    fine, so it is the node's error and no reason to log in again."""

    def __init__(self, message: str) -> None:
        IpmiError.__init__(self, message)
        self.netfn = self.cmd = self.code = None


def _decoding(fn: Callable[[object], list[str]]) -> Callable[[object], list[str]]:
    """``fn`` with pyghmi's exceptions turned into the node's error text."""
    def run(cmd) -> list[str]:
        try:
            return fn(cmd)
        except pygexc.PyghmiException as exc:
            raise DecodeError(str(exc) or exc.__class__.__name__) from exc
        except NotImplementedError as exc:
            raise DecodeError(f"the BMC's data is in a format pyghmi cannot decode "
                              f"({exc or 'unsupported record'})") from exc
    return run


# -- rinv --
#: What each rinv word prints, as xCAT's record kinds (ipmi.pm's rec_type).
INVENTORY_KINDS = {
    "all": {"model", "serial", "deviceid", "mprom", "guid", "misc", "hw", "asset", "firmware",
            "mac", "dimm"},
    "model": {"model"}, "serial": {"serial"}, "asset": {"asset"}, "misc": {"misc"},
    "vpd": {"model", "serial", "deviceid", "mprom"}, "mprom": {"mprom"},
    "firm": {"firmware"}, "deviceid": {"deviceid"}, "guid": {"guid"}, "uuid": {"guid"},
    "mac": {"mac"}, "dimm": {"dimm"},
}
_FRU_KINDS = {"model", "serial", "asset", "misc", "hw", "mac", "dimm"}
_OTHER_FRU_KINDS = {"hw", "mac", "dimm"}
#: FRU 0 fields as pyghmi names them -> (xCAT's label, kind), in xCAT's order.
_SYSTEM_FIELDS = (
    ("Manufacturer", "System Manufacturer", "misc"),
    ("Product name", "System Description", "model"),
    ("Model", "System Model/MTM", "model"),
    ("Hardware Version", "System Revision", "misc"),
    ("Serial Number", "System Serial Number", "serial"),
    ("Asset Number", "System Asset Number", "asset"),
    ("product_extra", "Product Extra data", "misc"),
    ("Chassis serial number", "Chassis Serial Number", "serial"),
    ("Chassis part number", "Chassis Part Number", "model"),
    ("chassis_extra", "Chassis Extra data", "misc"),
    ("Board manufacture date", "Board manufacture date", "misc"),
    ("Board manufacturer", "Board manufacturer", "misc"),
    ("Board product name", "Board Description", "misc"),
    ("Board serial number", "Board Serial Number", "misc"),
    ("Board model", "Board Model Number", "misc"),
    ("board_extra", "Board Extra data", "misc"),
)
#: Other FRUs (pyghmi's keys) -> the suffix xCAT puts after the FRU's name.
_PART_FIELDS = (
    ("Board model", "Board Part Number"), ("Board manufacturer", "Board Manufacturer"),
    ("Board serial number", "Board Serial Number"), ("Board product name", "Board"),
    ("Model", "Product Part Number"), ("Manufacturer", "Product Manufacturer"),
    ("Serial Number", "Product Serial Number"), ("Hardware Version", "Product Version"),
    ("Product name", "Product"),
    ("Chassis part number", "Chassis Part Number"),
    ("Chassis serial number", "Chassis Serial Number"),
)
_DIMM_FIELDS = (("model", "Part Number"), ("manufacturer", "Manufacturer"),
                ("serial", "Serial Number"), ("manufacture_date", "Manufacture Date"))
_MANUFACTURERS = {2: "IBM", 343: "Intel", 20301: "IBM"}
_PRODUCTS = {(2, 34869): "e325", (2, 3): "x346", (2, 4): "x336", (343, 258): "Tiger 2",
             (343, 256): "Tiger 4"}


def inventory_kinds(what: str) -> set[str]:
    """The record kinds an rinv word shows; ValueError names an unknown word."""
    try:
        return INVENTORY_KINDS[what]
    except KeyError:
        raise ValueError(f"unknown inventory item {what!r}") from None


class _FruChunks:
    """pyghmi reads FRUs in 224-byte chunks and halves them when the BMC answers C9h/CAh;
    some BMCs (ipmi_sim among them) say C8h, 'request data field length limit exceeded',
    instead. Give pyghmi the answer it knows how to retry."""

    def __init__(self, session) -> None:
        self._session = session

    def __getattr__(self, name: str):
        return getattr(self._session, name)

    def raw_command(self, netfn, command, *args, **kw):
        rsp = self._session.raw_command(netfn, command, *args, **kw)
        if (netfn, command, rsp.get("code")) == (0x0A, 0x11, 0xC8):
            rsp["code"] = 0xCA
        return rsp


#: The kinds FRU 0 answers for: its line when it cannot be read shows for each of them.
_SYSTEM_KINDS = "model serial asset misc mac"
SYSTEM_FRU = "System FRU"


def _inventory(cmd, kinds: set[str]) -> list[str]:
    """xCAT's rinv lines: FRU 0, the other FRUs, then the BMC's identity (xCAT's order).
    A part that cannot be read is one line of its own, in xCAT's words ('<part>: Not
    Present', '<part>: Unable to read (<why>)'), and the rest still print; only a BMC that
    cannot say who it is (Get Device ID) fails the node."""
    records: list[tuple[str, str, object]] = []
    if kinds & _FRU_KINDS:
        cmd.ipmi_session = _FruChunks(cmd.ipmi_session)
        records += _system_part(cmd)
        if kinds & _OTHER_FRU_KINDS:  # reading every FRU is slow (xCAT skips it too)
            records += _other_parts(cmd)
    records += _bmc_records(cmd, kinds)
    return [f"{label}: {value}" for kind, label, value in records
            if value not in (None, "") and kinds & set(kind.split())]


def _unreadable(code: int, text: str | None = None) -> str:
    """xCAT's words for a part the BMC would not give: 'Not Present' for 'requested
    data not present' (CBh), else 'Unable to read (<why>)'."""
    if code == 0xCB:
        return "Not Present"
    return f"Unable to read ({text or completion_text(0x0A, 0x10, code)})"


def _part(read: Callable[[], list], kind: str, label: str) -> list:
    """``read()``'s records, or one record saying why the part could not be read. Our
    transport's errors (timeout, cancel) still fail the node: the BMC is gone, not the
    part."""
    try:
        return read()
    except IpmiError:
        raise
    except Exception as exc:
        return [_why(exc, kind, label)]


def _why(exc: Exception, kind: str, label: str) -> tuple[str, str, str]:
    if isinstance(exc, pygexc.IpmiException):  # the BMC refused
        return kind, label, _unreadable(getattr(exc, "ipmicode", 0) or 0, str(exc))
    # pyghmi could not decode what the BMC holds
    return kind, label, f"Unable to read ({exc or exc.__class__.__name__})"


def _fru_area(cmd, fruid: int) -> int:
    """Get FRU Inventory Area Info's completion code: 0 when the FRU is there to read."""
    return cmd.raw_command(netfn=0x0A, command=0x10, data=[fruid]).get("code", 0)


def _system_part(cmd) -> list[tuple[str, str, object]]:
    code = _fru_area(cmd, 0)
    if code:
        return [(_SYSTEM_KINDS, SYSTEM_FRU, _unreadable(code))]
    return _part(lambda: _system_records(cmd.get_inventory_of_component("System")),
                 _SYSTEM_KINDS, SYSTEM_FRU)


def _other_parts(cmd) -> list[tuple[str, str, object]]:
    """The FRUs the SDRs locate (DIMMs, power supplies, risers), then the OEM's parts."""
    from pyghmi.ipmi import fru

    out: list[tuple[str, str, object]] = []
    try:
        locators = prime_sdr(cmd).fru
    except IpmiError:
        raise
    except Exception as exc:
        locators = {}
        out.append(_why(exc, "hw", "FRU locators"))
    for fruid in sorted(locators):
        locator = locators[fruid]
        name = locator.fru_name
        kind = "dimm hw" if _is_spd(locator.fru_type_and_modifier) else "hw"
        code = _fru_area(cmd, fruid)
        if code:
            out.append((kind, name, _unreadable(code)))
            continue

        def read(fruid=fruid, locator=locator, name=name):
            info = fru.FRU(ipmicmd=cmd, fruid=fruid, sdr=locator).info
            info = cmd._oem.process_fru(info, name) if info is not None else None
            return _part_records(name, info) if info else []
        out += _part(read, kind, name)
    out += _part(lambda: [r for name, info in cmd._oem.get_oem_inventory()
                          for r in _part_records(name, info)], "hw", "OEM inventory")
    return out


def _is_spd(type_and_modifier: int) -> bool:
    """A FRU locator's device type 08h-10h with modifier 01h: a DIMM's SPD (pyghmi's test
    too)."""
    return 0x08 <= type_and_modifier >> 8 <= 0x10 and type_and_modifier & 0xFF == 1


def _bmc_records(cmd, kinds: set[str]) -> list[tuple[str, str, object]]:
    """The BMC's own identity (Get Device ID, Get System GUID), in xCAT's order."""
    records: list[tuple[str, str, object]] = []
    device = bytes(cmd.xraw_command(netfn=6, command=1)["data"])
    mfg = int.from_bytes(device[6:9], "little")
    prod = int.from_bytes(device[9:11], "little")
    records.append(("deviceid", "Device ID", device[0]))
    if "guid" in kinds:
        records += _part(lambda: [("guid", "UUID/GUID", _xcat_guid(bytes(
            cmd.xraw_command(netfn=6, command=0x37)["data"])))], "guid", "UUID/GUID")
    records.append(("deviceid", "Manufacturer ID", _named(_MANUFACTURERS.get(mfg), mfg)))
    records.append(("mprom firmware", "BMC Firmware",
                    f"{device[2] & 0x7F}.{_bcd(device[3])}"))
    if "firmware" in kinds:
        records += _part(lambda: [("firmware", name, info["version"])
                                  for name, info in cmd.get_firmware()
                                  if name != "BMC Version" and info.get("version")],
                         "firmware", "Firmware")
    records.append(("deviceid", "Product ID", _named(_PRODUCTS.get((mfg, prod)), prod)))
    return records


def _system_records(info: dict | None) -> list[tuple[str, str, object]]:
    out: list[tuple[str, str, object]] = []
    for key, label, kind in _SYSTEM_FIELDS:
        value = (info or {}).get(key)
        if key.endswith("_extra"):
            out += [(kind, label, v) for v in value or () if isinstance(v, str) and v]
        elif key == "Board manufacture date" and value:
            out.append((kind, label, _fru_date(value)))
        elif isinstance(value, str):
            out.append((kind, label, value))
    return out + _mac_records(info)


def _part_records(name: str, info: dict | None) -> list[tuple[str, str, object]]:
    """Another FRU (a DIMM's SPD, a power supply, a riser): '<FRU name> <field>' lines."""
    info = info or {}
    if "memory_type" in info:  # pyghmi decoded an SPD: a DIMM
        out = [("dimm hw", f"{name} {label}", _text(info.get(key)))
               for key, label in _DIMM_FIELDS]
        size = info.get("capacity_mb")
        desc = " ".join(str(v) for v in (f"{int(size)} MB" if size else None,
                                         info.get("memory_type"), info.get("module_type"))
                        if v)
        return out + [("dimm hw", f"{name} Description", desc)]
    out = [("hw", f"{name} {label}", info.get(key)) for key, label in _PART_FIELDS
           if isinstance(info.get(key), str)]
    return out + _mac_records(info, prefix=f"{name} ")


def _text(value: object) -> object:
    """pyghmi leaves some SPD strings as bytes (the part number)."""
    if isinstance(value, bytes | bytearray):
        return value.decode("ascii", "replace").strip()
    return value


def _mac_records(info: dict | None, prefix: str = "") -> list[tuple[str, str, object]]:
    """MAC addresses an OEM's FRU layout carries (pyghmi's OEM handlers name them)."""
    macs = sorted((k, v) for k, v in (info or {}).items()
                  if k.startswith("MAC Address") and isinstance(v, str))
    return [("mac", f"{prefix}{k}", v) for k, v in macs]


def _named(name: str | None, number: int) -> str:
    return f"{name} ({number})" if name else str(number)


def _bcd(byte: int) -> str:
    """xCAT's decodebcd: the firmware minor revision is BCD (0x08 -> '08')."""
    digits = {0xA: " ", 0xB: "-", 0xC: "."}
    return "".join(str(n) if n < 10 else digits.get(n, "") for n in (byte >> 4, byte & 0xF))


def _xcat_guid(data: bytes) -> str:
    """The GUID bytes in the order the BMC sends them, as xCAT prints them."""
    h = data[:16].hex().upper()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _fru_date(iso: str) -> str:
    """pyghmi's ISO board date (UTC) as a ctime-style date, like ipmitool and xCAT."""
    try:
        when = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M")
    except ValueError:
        return iso
    return f"{when:%a %b} {when.day:2d} {when:%H:%M:%S %Y}"


# -- rvitals --
#: rvitals words -> the categories they show ("status": the power state, "leds").
VITALS_CATEGORIES = {
    "temp": {"temp"}, "voltage": {"voltage"}, "wattage": {"wattage"},
    "fanspeed": {"fanspeed"}, "power": {"wattage", "status"}, "leds": {"leds"},
    "all": {"temp", "voltage", "wattage", "fanspeed", "other", "status"},
}
#: pyghmi's sensor type names -> rvitals categories (xCAT filters on the same IPMI types).
_SENSOR_CATEGORY = {"Temperature": "temp", "Voltage": "voltage", "Current": "wattage",
                    "Power": "wattage", "Fan": "fanspeed"}
#: pyghmi's unit strings -> xCAT's.
_UNITS = {"°C": "C", "°F": "F", "V": "Volts", "A": "Amps", "W": "Watts", "J": "Joules",
          "nt": "Nits", "lm": "lumen", "lx": "lux", "cd": "Candela", "N": "Newton"}
_IDENTIFY = {0: "off", 1: "on (temporary)", 2: "on"}


def vitals_categories(what: str) -> set[str]:
    """The categories of one word, or of several joined by commas ('temp,voltage')."""
    out: set[str] = set()
    for word in what.split(","):
        if word not in VITALS_CATEGORIES:
            raise ValueError(f"unknown vitals item {word!r}")
        out |= VITALS_CATEGORIES[word]
    return out


def _vitals(cmd, wanted: set[str]) -> list[str]:
    lines = []
    if wanted - {"status", "leds"}:
        prime_sdr(cmd)
        readings = sorted(cmd.get_sensor_data(), key=lambda r: r.name)
        lines += [_reading_line(r) for r in readings
                  if _SENSOR_CATEGORY.get(r.type, "other") in wanted]
    if "status" in wanted:
        lines.append(f"Power Status: {cmd.get_power()['powerstate']}")
    if "leds" in wanted:
        lines.append(_identify_line(cmd))
    return lines


def _reading_line(r) -> str:
    if r.unavailable:
        return f"{r.name}: N/A"
    if r.value is None:  # a discrete sensor: its asserted states
        return f"{r.name}: {', '.join(r.states) or 'N/A'}"
    text = f"{r.name}: {xcat_value(r.value, r.units)}"
    alarm = _threshold_text(r.states)
    return f"{text} ({alarm})" if alarm else text


def xcat_value(value: float, units: str) -> str:
    """A reading the way xCAT prints it: '40 C (104 F)', '12 Volts', '120 Watts (410
    BTUs/hr)'."""
    number = f"{round(value, 6):.15g}"
    unit = _UNITS.get(units, units)
    if unit == "C":
        return f"{number} C ({math.floor(value * 9 / 5 + 32 + 0.5)} F)"
    if unit == "F":
        return f"{number} F ({math.floor((value - 32) * 5 / 9 + 0.5)} C)"
    if unit == "Watts":
        return f"{number} Watts ({math.floor(value * 3.413 + 0.5)} BTUs/hr)"
    return f"{number} {unit}".rstrip()


def _threshold_text(states: list[str]) -> str:
    """xCAT's words for the most severe threshold crossed (pyghmi lists them mildest
    first)."""
    upper = [s for s in states if s.startswith("upper ")]
    lower = [s for s in states if s.startswith("lower ")]
    if lower:
        return f"At or below {lower[-1]}"
    if upper:
        return f"At or above {upper[-1]}"
    return ""


def _identify_line(cmd) -> str:
    """The chassis identify LED from Get Chassis Status, when the BMC reports it; xCAT's
    words when it does not (the other LEDs are OEM commands)."""
    data = bytes(cmd.xraw_command(netfn=0, command=1)["data"])
    if len(data) >= 3 and data[2] & 0x40:
        return f"Identify LED: {_IDENTIFY.get((data[2] >> 4) & 3, 'unknown')}"
    return "LED status not supported on this system"


# -- reventlog --
NO_ENTRIES = "no SEL entries"  # xCAT's words, for reading and for clearing an empty SEL
CLEARED = "SEL cleared"


def sel_entries(cmd) -> int:
    """How many entries the SEL holds, from Get SEL Info (read first, as xCAT does: an
    empty SEL is a state to report, not an entry to ask for)."""
    info = bytes(cmd.xraw_command(netfn=0x0A, command=0x40)["data"])
    return int.from_bytes(info[1:3], "little")


def _event_log(cmd, count: int | None, clear: bool) -> list[str]:
    if not sel_entries(cmd):
        return [NO_ENTRIES]
    sdr = prime_sdr(cmd)
    if clear:
        cmd.get_event_log(clear=True)  # pyghmi reads, then clears under a reservation
        return [CLEARED]
    records = list(cmd.get_event_log())
    if not records:  # emptied since Get SEL Info
        return [NO_ENTRIES]
    lines = [_event_line(cmd, sdr, r) for r in records]
    return lines[-count:] if count else lines


# -- the SDR repository --
def prime_sdr(cmd):
    """pyghmi's SDR for the node, also when the BMC's repository holds no records: pyghmi
    asks for record 0 anyway and fails on the answer 'not present' (CBh), which would fail
    rvitals, reventlog and rinv on a BMC that simply has no sensors."""
    if cmd._sdr is None:
        rsp = cmd.raw_command(netfn=0x0A, command=0x20)  # Get SDR Repository Info
        data = bytes(rsp.get("data") or b"")
        if not rsp.get("code") and len(data) >= 3 and not int.from_bytes(data[1:3], "little"):
            from pyghmi.ipmi import sdr
            empty = sdr.SDR.__new__(sdr.SDR)
            empty.sensors, empty.fru, empty.cachedir = {}, {}, None
            cmd._sdr = empty
    return cmd.init_sdr()


def _event_line(cmd, sdr, r: dict) -> str:
    """'MM/DD/YYYY HH:MM:SS <sensor type>, <event> (<sensor> reading .. with threshold ..)
    [- Recovered]', xCAT's layout."""
    when = _event_time(r)
    if "event" not in r:  # OEM record: xCAT shows the bytes
        return f"{when} OEM record: {bytes(r.get('oemdata', b'')).hex(' ')}".strip()
    what = ", ".join(p for p in (r.get("component_type") or "", r["event"]) if p)
    if r.get("event_data"):
        what += f" {r['event_data']}"
    return f"{when} {what} ({_event_sensor(cmd, sdr, r)})" + \
        (" - Recovered" if r.get("deassertion") else "")


def _event_time(r: dict) -> str:
    if r.get("timestamp"):
        when = datetime.datetime.strptime(r["timestamp"], "%Y-%m-%dT%H:%M:%S")
        return when.strftime("%m/%d/%Y %H:%M:%S")
    if "timecode" in r:
        return f"BMC Uptime {r['timecode']:6d} s"
    return ""


def _event_sensor(cmd, sdr, r: dict) -> str:
    entry = sdr.sensors.get(r.get("component_id"))
    if entry is None:
        number = str(r.get("component_id") or "0.0.0").split(".")[1]
        return f"Sensor 0x{int(number):02x}"
    def value(raw: int) -> str:
        return xcat_value(entry.decode_value(cmd, raw), entry.unit_suffix)

    text = entry.name
    if "triggered_value" in r and entry.linearization is not None:
        text += f" reading {value(r['triggered_value'])}"
        if "threshold_value" in r:
            text += f" with threshold {value(r['threshold_value'])}"
    return text
