"""IPMI 2.0 over LAN (RMCP+) for thousands of BMCs at once: one event loop, one thread.

Why not pyghmi's own session layer: under load (1.6.19) it stalls 0.5-1 s per request, a
socket can stop receiving when another thread sends on it, and its callback mode breaks in
login. Here every BMC session is a small state machine on one asyncio loop, all sharing one
UDP socket per address family; a BMC that does not answer costs its own timeout and nothing
else. pyghmi stays the IPMI library for what is above the transport (SDR, FRU and SEL
decoding, completion-code texts): ``PyghmiCommand`` hands it our sessions.

Cipher suite 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128), the one every BMC has.

    engine = Engine()                       # starts its loop thread
    s = engine.call(engine.session("10.0.0.5", 623, "admin", password))
    engine.call(s.command(0x00, 0x01))      # chassis status -> response data bytes
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pyghmi.ipmi.private.util import get_ipmi_error

T = TypeVar("T")

RMCP = b"\x06\x00\xff\x07"
AUTH_RMCPP = 0x06
OPEN_REQ, OPEN_RSP, RAKP1, RAKP2, RAKP3, RAKP4 = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15
ENCRYPTED_AUTHENTICATED = 0xC0
ADMIN, OPERATOR = 4, 3
NAME_ONLY_LOOKUP = 0x10

#: RMCP+ status codes (IPMI 2.0 table 13-15) in xCAT's words (its IPMI.pm), so a script
#: that greps xCAT's login errors reads ours the same.
RMCPP_STATUS = {
    0x01: "Insufficient resources to create new session (wait for existing sessions to "
          "timeout)",
    0x02: "Invalid Session ID", 0x03: "Invalid payload type",
    0x04: "Invalid authentication algorithm", 0x05: "Invalid integrity algorithm",
    0x06: "No matching authentication payload", 0x07: "No matching integrity payload",
    0x08: "Inactive Session ID", 0x09: "Invalid role",
    0x0A: "Unauthorised role or privilege level requested",
    0x0B: "Insufficient resources to create a session at the requested role",
    0x0C: "Invalid username length", 0x0D: "Unauthorized name", 0x0E: "Unauthorized GUID",
    0x0F: "Invalid integrity check value", 0x10: "Invalid confidentiality algorithm",
    0x11: "No cipher suite match with proposed security algorithms",
    0x12: "Illegal or unrecognized parameter",
}
#: A login that fails reads as xCAT's does: 'ERROR: <why>', which the client shows as
#: 'node: Error: ERROR: <why>' (xCAT's own tests grep for that).
LOGIN_ERROR = "ERROR: "
WRONG_PASSWORD = LOGIN_ERROR + "Incorrect password provided"


class IpmiError(Exception):
    """A failure talking to one BMC; the text is what the admin sees after 'Error: '."""


class IpmiTimeout(IpmiError):
    pass


class LoginRefused(IpmiError):
    """The BMC answered a login step with an RMCP+ status code (``status``, table 13-15)."""

    #: insufficient resources (for a session, at the role): a session may be free a moment
    #: later, unlike a wrong name, role or algorithm
    TRANSIENT = (0x01, 0x0B)

    def __init__(self, status: int, step: str) -> None:
        self.status, self.step = status, step  # the step only for debugging: not in the text
        text = RMCPP_STATUS.get(status, f"{status} code on opening RMCP+ session")
        super().__init__(LOGIN_ERROR + text)

    @property
    def transient(self) -> bool:
        return self.status in self.TRANSIENT


class CompletionError(IpmiError):
    """The BMC answered with a non-zero completion code."""

    def __init__(self, netfn: int, cmd: int, code: int) -> None:
        self.netfn, self.cmd, self.code = netfn, cmd, code
        super().__init__(completion_text(netfn, cmd, code))


def completion_text(netfn: int, cmd: int, code: int) -> str:
    """pyghmi's wording for a completion code (its table is the library's knowledge)."""
    try:
        return get_ipmi_error({"netfn": netfn + 1, "command": cmd, "code": code}) or ""
    except Exception:  # pyghmi missing or its table changed: still say something exact
        return f"completion code 0x{code:02x}"


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha1).digest()


def _checksum(data: bytes) -> int:
    return -sum(data) & 0xFF


class _Expired(Exception):
    pass


class Session:
    """One logged-in RMCP+ session with one BMC. Commands on a session run one at a time
    (a BMC answers in order); sessions never wait for each other."""

    def __init__(self, engine: Engine, addr: tuple, user: str, password: str,
                 timeout: float, retries: int) -> None:
        self.engine, self.addr = engine, addr
        self.user = user.encode()
        self._key = password.encode()  # never logged: __repr__ leaves it out
        self.timeout, self.retries = timeout, retries
        self.console_sid = engine._new_session_id(self)
        self.bmc_sid = 0
        self.seq = 0
        self.rq_seq = 0
        self.k1 = self.k2 = b""
        self.logged_in = False
        self.last_used = 0.0
        self._lock = asyncio.Lock()
        self._waiter: tuple[asyncio.Future, Callable[[bytes], object]] | None = None

    def __repr__(self) -> str:
        return f"Session({self.addr[0]}:{self.addr[1]}, user={self.user.decode()!r})"

    # ---- the exchange: send, wait for the matching answer, resend on silence ----
    async def _roundtrip(self, build: Callable[[], bytes],
                         accept: Callable[[bytes], T | None]) -> T:
        loop = asyncio.get_running_loop()
        for _attempt in range(self.retries + 1):
            fut: asyncio.Future = loop.create_future()
            self._waiter = (fut, accept)
            timer = loop.call_later(self.timeout, _expire, fut)
            self.engine._send(build(), self.addr)
            try:
                return await fut
            except _Expired:
                continue
            finally:
                timer.cancel()
                self._waiter = None
        raise IpmiTimeout(f"timeout: no answer from the BMC at {self.addr[0]}:{self.addr[1]}")

    def _received(self, packet: bytes) -> None:
        if self._waiter is None:
            return
        fut, accept = self._waiter
        if fut.done():
            return
        try:
            result = accept(packet)
        except IpmiError as exc:
            fut.set_exception(exc)
            return
        if result is not None:
            fut.set_result(result)

    # ---- login: open session, RAKP 1-4, privilege level ----
    async def login(self) -> None:
        tag = self.console_sid & 0xFF
        algorithms_ = bytes([0, 0, 0, 8, 1, 0, 0, 0, 1, 0, 0, 8, 1, 0, 0, 0,
                             2, 0, 0, 8, 1, 0, 0, 0])
        open_req = bytes([tag, ADMIN, 0, 0]) + struct.pack("<I", self.console_sid) + algorithms_
        rsp = await self._roundtrip(lambda: _presession(OPEN_REQ, open_req),
                                    lambda p: _presession_payload(p, OPEN_RSP, tag))
        self._check_status(rsp[1], "opening the session")
        if struct.unpack_from("<I", rsp, 4)[0] != self.console_sid:
            raise IpmiError("the BMC answered for another session")
        self.bmc_sid = struct.unpack_from("<I", rsp, 8)[0]

        console_rand = os.urandom(16)
        role = ADMIN | NAME_ONLY_LOOKUP
        who = bytes([role, len(self.user)]) + self.user
        rakp1 = (bytes([tag, 0, 0, 0]) + struct.pack("<I", self.bmc_sid) + console_rand
                 + bytes([role, 0, 0, len(self.user)]) + self.user)
        rsp = await self._roundtrip(lambda: _presession(RAKP1, rakp1),
                                    lambda p: _presession_payload(p, RAKP2, tag))
        self._check_status(rsp[1], "RAKP 2")
        bmc_rand, guid, code = rsp[8:24], rsp[24:40], rsp[40:60]
        sids = struct.pack("<II", self.console_sid, self.bmc_sid)
        if not hmac.compare_digest(code, _hmac(self._key, sids + console_rand + bmc_rand
                                                + guid + who)):
            raise IpmiError(WRONG_PASSWORD)
        sik = _hmac(self._key, console_rand + bmc_rand + who)
        self.k1, self.k2 = _hmac(sik, b"\x01" * 20), _hmac(sik, b"\x02" * 20)

        rakp3 = (bytes([tag, 0, 0, 0]) + struct.pack("<I", self.bmc_sid)
                 + _hmac(self._key, bmc_rand + struct.pack("<I", self.console_sid) + who))
        rsp = await self._roundtrip(lambda: _presession(RAKP3, rakp3),
                                    lambda p: _presession_payload(p, RAKP4, tag))
        self._check_status(rsp[1], "RAKP 4")
        icv = _hmac(sik, console_rand + struct.pack("<I", self.bmc_sid) + guid)[:12]
        if not hmac.compare_digest(rsp[8:20], icv):
            raise IpmiError("invalid RAKP 4 integrity code")
        self.seq = 0
        self.logged_in = True
        try:
            await self.command(0x06, 0x3B, bytes([ADMIN]))
        except CompletionError as exc:
            if exc.code not in (0x80, 0x81):
                raise
            await self.command(0x06, 0x3B, bytes([OPERATOR]))

    def _check_status(self, status: int, step: str) -> None:
        if status:
            raise LoginRefused(status, step)

    # ---- commands inside the session ----
    async def command(self, netfn: int, cmd: int, data: bytes = b"", lun: int = 0) -> bytes:
        """Send one IPMI request; the response data after the completion code. A non-zero
        completion code raises CompletionError."""
        code, body = await self.raw(netfn, cmd, data, lun)
        if code:
            raise CompletionError(netfn, cmd, code)
        return body

    async def raw(self, netfn: int, cmd: int, data: bytes = b"", lun: int = 0
                  ) -> tuple[int, bytes]:
        if not self.logged_in:
            raise IpmiError("session not logged in")
        async with self._lock:
            self.rq_seq = (self.rq_seq + 1) & 0x3F
            seq = self.rq_seq
            head = bytes([0x20, (netfn << 2) | (lun & 3)])
            body = bytes([0x81, seq << 2, cmd]) + bytes(data)
            msg = head + bytes([_checksum(head)]) + body + bytes([_checksum(body)])
            answer = await self._roundtrip(lambda: self._wrap(msg),
                                           lambda p: self._match(p, netfn, cmd, seq))
            self.last_used = asyncio.get_running_loop().time()
            return answer

    def _wrap(self, payload: bytes) -> bytes:
        iv = os.urandom(16)
        pad = (16 - (len(payload) + 1) % 16) % 16
        enc = Cipher(algorithms.AES(self.k2[:16]), modes.CBC(iv)).encryptor()
        secret = iv + enc.update(payload + bytes(range(1, pad + 1)) + bytes([pad])) \
            + enc.finalize()
        self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
        body = struct.pack("<BBIIH", AUTH_RMCPP, ENCRYPTED_AUTHENTICATED, self.bmc_sid,
                           self.seq, len(secret)) + secret
        ipad = (4 - (len(body) + 2) % 4) % 4
        body += b"\xff" * ipad + bytes([ipad, 0x07])
        return RMCP + body + _hmac(self.k1, body)[:12]

    def _match(self, packet: bytes, netfn: int, cmd: int, seq: int) -> tuple[int, bytes] | None:
        if len(packet) < 16 or packet[4] != AUTH_RMCPP or packet[5] & 0x3F:
            return None
        ptype = packet[5]
        sid, _, length = struct.unpack_from("<IIH", packet, 6)
        if sid != self.console_sid:
            return None
        if ptype & 0x40 and not hmac.compare_digest(
                packet[-12:], _hmac(self.k1, packet[4:-12])[:12]):
            return None  # not from the BMC we logged in to: ignore, do not fail
        payload = packet[16:16 + length]
        if ptype & 0x80:
            if len(payload) < 32 or len(payload) % 16:
                return None
            dec = Cipher(algorithms.AES(self.k2[:16]), modes.CBC(payload[:16])).decryptor()
            plain = dec.update(payload[16:]) + dec.finalize()
            payload = plain[:-1 - plain[-1]]
        if (len(payload) < 8 or payload[1] >> 2 != netfn + 1 or payload[4] >> 2 != seq
                or payload[5] != cmd):
            return None
        return payload[6], bytes(payload[7:-1])

    async def close(self) -> None:
        """Close Session, best effort and quick: a BMC keeps few sessions."""
        if not self.logged_in:
            return
        saved = self.retries, self.timeout
        self.retries, self.timeout = 0, min(self.timeout, 1.0)
        try:
            await self.command(0x06, 0x3C, struct.pack("<I", self.bmc_sid))
        except IpmiError:
            pass
        finally:
            self.retries, self.timeout = saved
            self.logged_in = False


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(_Expired())


def _presession(ptype: int, payload: bytes) -> bytes:
    return RMCP + struct.pack("<BBIIH", AUTH_RMCPP, ptype, 0, 0, len(payload)) + payload


def _presession_payload(packet: bytes, ptype: int, tag: int) -> bytes | None:
    if len(packet) < 18 or packet[4] != AUTH_RMCPP or packet[5] & 0x3F != ptype:
        return None
    length = struct.unpack_from("<H", packet, 14)[0]
    payload = packet[16:16 + length]
    if not payload or payload[0] != tag:
        return None
    if payload[1] == 0 and len(payload) < {OPEN_RSP: 36, RAKP2: 60, RAKP4: 20}[ptype]:
        raise IpmiError("short RMCP+ answer from the BMC")
    return payload


def _console_session_id(packet: bytes) -> int | None:
    """Which of our sessions a packet is for: the session ID in the header of session
    packets, the remote console session ID in the payload of RMCP+ login answers."""
    if len(packet) < 16 or packet[:4] != RMCP or packet[4] != AUTH_RMCPP:
        return None
    ptype = packet[5] & 0x3F
    if ptype in (OPEN_RSP, RAKP2, RAKP4):
        return struct.unpack_from("<I", packet, 20)[0] if len(packet) >= 24 else None
    return struct.unpack_from("<I", packet, 6)[0]


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        session = self.engine._sids.get(_console_session_id(data) or 0)
        if session is not None and session.addr == tuple(addr[:2]):
            session._received(data)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable: the timeout says it
        pass


class Engine:
    """The event loop (in its own daemon thread) and the sessions it keeps. Thread-safe:
    other threads submit coroutines with ``submit``/``call``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._sids: dict[int, Session] = {}  # our (console) session IDs: how answers route
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._transport_lock: asyncio.Lock | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ipmi-engine", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def submit(self, coro: Awaitable[T]):
        """Run a coroutine on the engine's loop; a concurrent.futures.Future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        return self.submit(coro).result(timeout)

    def _new_session_id(self, session: Session) -> int:
        while True:
            sid = struct.unpack("<I", os.urandom(4))[0]
            if sid and sid not in self._sids:
                self._sids[sid] = session
                return sid

    async def _transport(self, family: int) -> asyncio.DatagramTransport:
        if self._transport_lock is None:
            self._transport_lock = asyncio.Lock()
        async with self._transport_lock:  # one socket per family: the BMC sees one client
            if family in self._transports:
                return self._transports[family]
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
            transport, _ = await self.loop.create_datagram_endpoint(
                lambda: _Endpoint(self), sock=sock)
            self._transports[family] = transport
            return transport

    def _send(self, packet: bytes, addr: tuple) -> None:
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self._transports[family].sendto(packet, addr)

    async def resolve(self, host: str, port: int) -> tuple:
        infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        if not infos:
            raise IpmiError(f"cannot resolve BMC address {host}")
        family, _, _, _, sockaddr = infos[0]
        await self._transport(family)
        return sockaddr[:2]

    async def session(self, host: str, port: int, user: str, password: str, *,
                      timeout: float = 2.0, retries: int = 3) -> Session:
        """A new logged-in session (the caller keeps it; see xcatd.hardware.ipmi). Answers are
        routed by session ID, so one BMC may hold sessions for several users at once."""
        try:
            addr = await self.resolve(host, port)
        except OSError as exc:
            raise IpmiError(f"cannot resolve BMC address {host}: {exc.strerror}") from None
        session = Session(self, tuple(addr), user, password, timeout, retries)
        try:
            await session.login()
        except BaseException:
            self.forget(session)
            raise
        return session

    def forget(self, session: Session) -> None:
        self._sids.pop(session.console_sid, None)
        session.logged_in = False

    async def close_all(self) -> None:
        sessions = [s for s in self._sids.values() if s.logged_in]
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        for s in sessions:
            self.forget(s)

    def stop(self) -> None:
        if not self.loop.is_running():
            return
        try:
            self.call(self.close_all(), timeout=3)
        except Exception:  # closing is a courtesy to the BMCs; exiting must not wait on it
            pass
        for t in self._transports.values():
            self.loop.call_soon_threadsafe(t.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=3)
