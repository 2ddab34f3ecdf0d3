"""Is a node there? ICMP echo and TCP connects to many addresses at once, on one thread.

One asyncio loop sends an echo request to every address from a single ICMP socket and
connects to the ports asked for, so a thousand nodes cost a thousand packets and sockets,
never a thousand ``ping`` processes; every wait is bounded, so dead nodes cost the timeout
once, not once each. The ICMP socket is an unprivileged datagram socket where
``net.ipv4.ping_group_range`` admits this process's group, else a raw socket (root or
CAP_NET_RAW); without either, a node counts as up when it answers a TCP connection (either
way: accepted or refused), and ``Probe.icmp_problem`` says why.

>>> r = Reach("10.0.0.1", closed={22})
>>> r.alive, r.echo
(True, False)
>>> icmp_checksum(bytes([8, 0, 0, 0, 0x12, 0x34, 0, 1])) == 0xE5CA
True
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import queue
import resource
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

#: Seconds a node has to answer: an echo is sent up to ECHO_TRIES times within it, and a TCP
#: connect that has had no answer by then counts as silent.
DEFAULT_TIMEOUT = 1.0
ECHO_TRIES = 3
#: Echo requests sent between two looks at the replies (the socket's buffer must not fill).
SEND_BATCH = 64
PAYLOAD = b"pyxcat-reach"

#: connect() errors that say no host answers there, at once (no point waiting)
UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EACCES,
               errno.EPERM, errno.EINVAL, errno.EAFNOSUPPORT}


@dataclass
class Reach:
    """What one address answered."""

    address: str
    echo: bool = False                            # an ICMP echo reply came back
    open: set[int] = field(default_factory=set)   # ports that accepted a connection
    closed: set[int] = field(default_factory=set)  # ports that refused: the host is there

    @property
    def alive(self) -> bool:
        return self.echo or bool(self.open or self.closed)


def icmp_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _echo_packet(family: int, ident: int, seq: int) -> bytes:
    kind = 8 if family == socket.AF_INET else 128  # ICMPv6: the kernel sums it
    head = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if family == socket.AF_INET:
        head = struct.pack("!BBHHH", kind, 0, icmp_checksum(head + PAYLOAD), ident, seq)
    return head + PAYLOAD


def family_of(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def normal(address: str) -> str:
    """An address as recvfrom gives it back (``::0001`` -> ``::1``)."""
    try:
        return str(ipaddress.ip_address(address.split("%", 1)[0]))
    except ValueError:
        return address


def ping_group_range() -> str:
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as fh:
            return " ".join(fh.read().split())
    except OSError:
        return "unknown"


def open_icmp(family: int) -> tuple[socket.socket, bool]:
    """An ICMP socket for ``family`` and whether it is raw: the unprivileged datagram kind
    first, then a raw one. OSError when neither may be opened."""
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    try:
        return socket.socket(family, socket.SOCK_DGRAM, proto), False
    except OSError:
        pass
    return socket.socket(family, socket.SOCK_RAW, proto), True


def icmp_problem() -> str | None:
    """Why this process cannot send ICMP echo requests, or None when it can."""
    try:
        sock, _ = open_icmp(socket.AF_INET)
    except OSError:
        return ("ICMP echo needs root (CAP_NET_RAW) or this process's group in "
                f"net.ipv4.ping_group_range (now '{ping_group_range()}'): nodes count as "
                "up when they answer a TCP connection")
    sock.close()
    return None


class _Echoer:
    """One ICMP socket of one family for a whole run; ``waiting`` maps an address to the
    future its reply resolves."""

    def __init__(self, loop: asyncio.AbstractEventLoop, family: int) -> None:
        self.loop, self.family = loop, family
        self.sock, self.raw = open_icmp(family)
        self.sock.setblocking(False)
        for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if opt is None:
                continue
            try:  # a thousand replies at once must not overflow the default buffer
                self.sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
                break
            except OSError:
                continue
        self.ident = (os.getpid() ^ id(self)) & 0xFFFF  # a datagram socket's is the kernel's
        self.reply = 0 if family == socket.AF_INET else 129
        self.waiting: dict[str, asyncio.Future[bool]] = {}
        loop.add_reader(self.sock.fileno(), self._read)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _read(self) -> None:
        for _ in range(4096):  # then let the loop breathe; the reader is called again
            try:
                data, src = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # a queued ICMP error: reported once, then cleared
                if exc.errno in UNREACHABLE | {errno.ECONNREFUSED}:
                    continue
                return
            if self.raw and self.family == socket.AF_INET:
                data = data[(data[0] & 0x0F) * 4:] if data else b""
            if len(data) < 8 or data[0] != self.reply:
                continue
            if self.raw and struct.unpack("!H", data[4:6])[0] != self.ident:
                continue  # someone else's ping
            fut = self.waiting.get(normal(src[0]))
            if fut is not None and not fut.done():
                fut.set_result(True)

    async def send(self, address: str, seq: int) -> None:
        fut = self.waiting[address]
        if fut.done():
            return
        try:
            await self.loop.sock_sendto(self.sock, _echo_packet(self.family, self.ident, seq),
                                        (address, 0))
        except OSError as exc:
            if exc.errno in UNREACHABLE and not fut.done():
                fut.set_result(False)  # no route, no such address: no answer will come


class Probe:
    """One run over many addresses: ICMP echo (unless ``icmp`` is False) and TCP connects
    to ``ports``; ``run`` calls ``report`` with each address's Reach as soon as it is
    settled. A node that answers neither within ``timeout`` is down."""

    def __init__(self, addresses: Iterable[str], ports: Sequence[int] = (), *,
                 timeout: float = DEFAULT_TIMEOUT, icmp: bool = True,
                 known_up: Iterable[str] = (), concurrency: int | None = None) -> None:
        self.addresses = list(dict.fromkeys(normal(a) for a in addresses))
        #: addresses found up already (by fping): only their ports are probed
        self.known_up = {normal(a) for a in known_up}
        self.ports = list(dict.fromkeys(ports))
        self.timeout = timeout
        self.icmp = icmp
        self.concurrency = concurrency or _fd_budget()
        #: why ICMP was not used (None: it was, or was not asked for)
        self.icmp_problem: str | None = None

    async def run(self, report: Callable[[Reach], None]) -> None:
        loop = asyncio.get_running_loop()
        echoers: dict[int, _Echoer] = {}
        if self.icmp:
            for fam in {family_of(a) for a in self.addresses}:
                try:
                    echoers[fam] = _Echoer(loop, fam)
                except OSError:
                    self.icmp_problem = icmp_problem() or (
                        "ICMP echo over IPv6 is not available to this process: those nodes "
                        "count as up when they answer a TCP connection")
        gate = asyncio.Semaphore(self.concurrency)
        echo: dict[str, asyncio.Future[bool]] = {}
        for a in self.addresses:
            e = echoers.get(family_of(a))
            if e is not None:
                echo[a] = e.waiting.setdefault(a, loop.create_future())
        sender = asyncio.create_task(self._send_echoes(echoers, echo))
        # without ICMP, liveness comes from TCP alone: port 22 at least
        ports = self.ports or ([] if self.icmp and not self.icmp_problem else [22])
        try:
            await asyncio.gather(*(self._one(a, echo.get(a), ports, gate, report)
                                   for a in self.addresses))
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            for e in echoers.values():
                e.close()

    async def _send_echoes(self, echoers: dict[int, _Echoer],
                           echo: dict[str, asyncio.Future[bool]]) -> None:
        """Up to ECHO_TRIES rounds to the addresses that have not answered, then settle the
        rest as silent at the deadline."""
        start = time.monotonic()
        seq = 0
        try:
            for attempt in range(ECHO_TRIES):
                pending = [a for a, f in echo.items() if not f.done()]
                for i, a in enumerate(pending):
                    await echoers[family_of(a)].send(a, seq & 0xFFFF)
                    seq += 1
                    if i % SEND_BATCH == SEND_BATCH - 1:
                        await asyncio.sleep(0)  # read the replies that came meanwhile
                nxt = start + self.timeout * (attempt + 1) / ECHO_TRIES
                await asyncio.sleep(max(0.0, nxt - time.monotonic()))
        finally:
            for f in echo.values():
                if not f.done():
                    f.set_result(False)

    async def _one(self, address: str, echo: asyncio.Future[bool] | None, ports: list[int],
                   gate: asyncio.Semaphore, report: Callable[[Reach], None]) -> None:
        r = Reach(address, echo=address in self.known_up)
        rest = ports
        if ports:  # the first port says whether anyone is there, beside the echo
            await self._connect(r, ports[0], gate)
            rest = ports[1:]
        if echo is not None:
            if not r.alive:
                r.echo = await echo
            elif echo.done():
                r.echo = echo.result()
            else:  # up by TCP: no need to wait for the echo (it may still come)
                r.echo = False
        if r.alive and rest:
            await asyncio.gather(*(self._connect(r, p, gate) for p in rest))
        report(r)

    async def _connect(self, r: Reach, port: int, gate: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        async with gate:
            try:
                sock = socket.socket(family_of(r.address), socket.SOCK_STREAM)
            except OSError:
                return
            try:
                sock.setblocking(False)
                await asyncio.wait_for(loop.sock_connect(sock, (r.address, port)),
                                       self.timeout)
                r.open.add(port)
            except ConnectionRefusedError:
                r.closed.add(port)
            except OSError:  # TimeoutError too: silent
                pass
            finally:
                sock.close()


def _fd_budget() -> int:
    """Connections to have in flight at once: half the descriptors this process may open,
    between 64 and 4096."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 8192
    return max(64, min(4096, (soft - len(os.listdir("/proc/self/fd"))) // 2))


def run(p: Probe, report: Callable[[Reach], None]) -> None:
    """Run ``p`` to its end in this thread (on an event loop of its own)."""
    asyncio.run(p.run(report))


def probe(addresses: Iterable[str], ports: Sequence[int] = (), **kw) -> tuple[
        dict[str, Reach], str | None]:
    """Every address's Reach, and why ICMP was not used (None when it was)."""
    p = Probe(addresses, ports, **kw)
    out: dict[str, Reach] = {}
    run(p, lambda r: out.__setitem__(r.address, r))
    return out, p.icmp_problem


def stream(addresses: Iterable[str], ports: Sequence[int] = (), **kw) -> Iterator[
        Reach | str]:
    """Each address's Reach as soon as it is settled (a warning string first when ICMP
    could not be used). The probe runs on a thread of its own; closing the iterator early
    stops it."""
    p = Probe(addresses, ports, **kw)
    q: queue.Queue = queue.Queue()
    done = object()
    state: dict = {}

    async def main() -> None:
        state["task"] = asyncio.current_task()
        state["loop"] = asyncio.get_running_loop()
        await p.run(q.put)

    def worker() -> None:
        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # handed to the reader, raised there
            q.put(exc)
        finally:
            q.put(done)

    t = threading.Thread(target=worker, name="reach", daemon=True)
    t.start()
    warned = False
    try:
        while True:
            item = q.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            if p.icmp_problem and not warned:
                warned = True
                yield p.icmp_problem
            yield item
    finally:
        loop, task = state.get("loop"), state.get("task")
        if t.is_alive() and loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        t.join(timeout=10)


# ---- fping, for -f (xCAT's --usefping) and the benchmark -----------------------------------
def fping_path() -> str | None:
    return shutil.which("fping") or next(
        (p for p in ("/usr/sbin/fping", "/usr/bin/fping", "/sbin/fping", "/bin/fping")
         if os.access(p, os.X_OK)), None)


def fping_alive(addresses: Iterable[str], timeout: float = DEFAULT_TIMEOUT) -> set[str]:
    """The addresses that answer fping (one process for all of them), with about the same
    budget as Probe: ECHO_TRIES tries within ``timeout``. FileNotFoundError without fping."""
    exe = fping_path()
    if exe is None:
        raise FileNotFoundError("fping")
    addrs = list(dict.fromkeys(normal(a) for a in addresses))
    if not addrs:
        return set()
    per_try = max(10, int(timeout * 1000 / ECHO_TRIES))
    out = subprocess.run([exe, "-a", "-q", "-r", str(ECHO_TRIES - 1), "-t", str(per_try),
                          "-B", "1", "-i", "1"], input="\n".join(addrs) + "\n",
                         capture_output=True, text=True, timeout=60 + 2 * timeout)
    return {normal(line.split()[0]) for line in out.stdout.splitlines() if line.strip()}
