"""TFTP for network boot: Debian's tftpd-hpa, configured by xcatconfig, or a small read-only
server inside xcatd when tftpd-hpa is not installed (or the site asks for it).

The embedded server answers read requests only (RFC 1350, octet and netascii, with the
options of RFC 2347/2348/2349: blksize, tsize, timeout); a write request gets an error
packet. It serves what the HTTP site serves under /tftpboot/ (xcatd.base.safepath):
regular, world-readable files inside the tree, no ``..``, no hidden names, no symlink out.
A refused name gets the same "File not found" as a missing one. Each client (address and
port) has one transfer at a time, from its own port (its transfer ID). Block numbers roll
over from 65535 to 0 (as tftpd-hpa does), so files beyond 65535 blocks go through.
Transfers are logged at debug level, file contents never.

One client address cannot take every slot, and no transfer holds its slot for long, so a
flood of requests that are never acknowledged leaves the other clients served: at most
``MAX_PER_CLIENT`` transfers run at once for one client address and ``max_transfers`` in
all (further requests are dropped: the client asks again); a client's timeout option is
honoured up to ``MAX_TIMEOUT`` seconds, so a block nobody acknowledges frees its slot
within (RETRIES + 1) x MAX_TIMEOUT; and every transfer ends, with an error packet, when it
outlives its bound (``TftpServer.life``, from its size: TRANSFER_LIFE_BASE and
MIN_BLOCK_RATE), however its client paces its acknowledgements. The counters (``dropped``,
``dropped_per_client``, ``timed_out``, ``expired``) say how often; a warning of each kind
is logged at most once a minute.

Who serves TFTP, where, and with which block size is xcatd.netconf.tftpd's (the site
settings, read by xcatconfig for tftpd-hpa too).
"""
from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import os
import socket
import stat as stat_mod
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xcatd.base.paths import Paths
from xcatd.base.safepath import safe_file
from xcatd.base.site import SiteValueError
from xcatd.daemon.pipeline import Pipeline
from xcatd.fronts.servicethread import ServiceThread
from xcatd.netconf.tftpd import (
    DEFAULT_MAX_BLKSIZE,
    DEFAULT_PORT,
    MAX_BLKSIZE,
    max_blksize,
    tftp_bind,
    tftp_mode,
)

log = logging.getLogger("xcatd.fronts.tftp")

DEFAULT_BLKSIZE = 512            # RFC 1350's block, when the client asks for none
MIN_BLKSIZE = 8                  # RFC 2348
DEFAULT_TIMEOUT = 1.0            # seconds before a block is sent again
RETRIES = 5                      # sends of one block after the first, then give up
# The largest retransmit interval a client may ask for (RFC 2349's timeout option, which
# allows 1..255). A block nobody acknowledges holds its transfer's slot for (RETRIES + 1)
# intervals: 6 x 255 s is 25 minutes, 6 x 5 s half a minute. RFC 2349 lets the server
# acknowledge the client's own value only, so a larger one is left out of the OACK (the
# transfer then uses DEFAULT_TIMEOUT): RFC 2347 clients take an OACK without an option they
# asked for. 5 is what U-Boot asks for (its 5000 ms default); PXE ROMs, iPXE, pxelinux and
# GRUB ask for blksize and tsize only.
MAX_TIMEOUT = 5
MAX_TRANSFERS = 128
# Transfers at once from one client address: a booting node fetches one file at a time
# (4 leaves room for a client that restarted while its old transfer still times out).
# Further requests from that address are dropped, not refused: the client asks again and is
# served once a slot of its own frees, and no error packet goes to a (spoofable) sender.
MAX_PER_CLIENT = 4
# A transfer's whole life, however its client paces its acknowledgements (a client that
# acknowledges each block just before the timeout would otherwise hold a slot for days):
# TRANSFER_LIFE_BASE seconds, plus one second per MIN_BLOCK_RATE blocks of the file.
# TFTP is lock-step, one block per round trip, so a file's time goes with its blocks: a
# 100 MiB initrd is 71,430 blocks of 1468 bytes, 60 + 2857 s (49 minutes) allowed, where a
# LAN (round trips under 1 ms) takes a minute or two; in 512-byte blocks, 204,800 blocks and
# 2.3 hours. That is room for round trips of 40 ms on average, and a 70 KB boot loader
# gets a little over a minute.
TRANSFER_LIFE_BASE = 60.0
MIN_BLOCK_RATE = 25.0            # blocks a second
READ_CHUNK = 65536               # bytes read from disk at once, in a worker thread
QUEUE_MAX = 64                   # packets held for a transfer before more are dropped
BUSY_WARN_EVERY = 60.0           # seconds between two warnings of one kind

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6
# RFC 1350 error codes
E_UNDEF, E_NOTFOUND, E_ACCESS, E_ILLEGAL, E_BADTID, E_OPTION = 0, 1, 2, 4, 5, 8

_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


# ---- packets ----------------------------------------------------------------------------------
class BadPacket(ValueError):
    pass


@dataclass
class ReadRequest:
    filename: str
    mode: str                                   # octet or netascii
    options: dict[str, str] = field(default_factory=dict)


def parse_request(data: bytes) -> ReadRequest:
    """An RRQ or WRQ's filename, mode and options (names in lower case)."""
    fields = data[2:].split(b"\0")
    if len(fields) < 3 or fields[-1] != b"" or len(fields) % 2 != 1:
        raise BadPacket("malformed request")
    fields = fields[:-1]
    name = os.fsdecode(fields[0])
    try:
        mode = fields[1].decode("ascii").lower()
        opts = {fields[i].decode("ascii").lower(): fields[i + 1].decode("ascii")
                for i in range(2, len(fields), 2)}
    except UnicodeDecodeError:
        raise BadPacket("malformed request") from None
    if not name:
        raise BadPacket("no file name")
    if mode not in ("octet", "netascii"):
        raise BadPacket(f"unsupported mode {mode!r}")
    return ReadRequest(name, mode, opts)


def error_packet(code: int, message: str) -> bytes:
    return struct.pack("!HH", ERROR, code) + message.encode("ascii", "replace") + b"\0"


def data_packet(block: int, payload: bytes) -> bytes:
    return struct.pack("!HH", DATA, block & 0xFFFF) + payload


def oack_packet(options: dict[str, str]) -> bytes:
    return struct.pack("!H", OACK) + b"".join(
        k.encode() + b"\0" + v.encode() + b"\0" for k, v in options.items())


def negotiate(req: ReadRequest, size: int, limit: int,
              default_timeout: float) -> tuple[dict[str, str], int, float]:
    """The options to acknowledge, the block size and the retransmit interval. Values we
    cannot honour are lowered (blksize) or left out of the OACK (RFC 2347; a timeout above
    MAX_TIMEOUT: RFC 2349 lets the server acknowledge the client's value only).

    >>> negotiate(ReadRequest("f", "octet", {"timeout": "255"}), 10, 1468, 1.0)
    ({}, 512, 1.0)
    >>> negotiate(ReadRequest("f", "octet", {"timeout": "5"}), 10, 1468, 1.0)
    ({'timeout': '5'}, 512, 5.0)
    """
    accepted: dict[str, str] = {}
    blksize, timeout = DEFAULT_BLKSIZE, default_timeout
    value = req.options.get("blksize", "")
    if value.isdigit() and int(value) >= MIN_BLKSIZE:
        blksize = min(int(value), limit)
        accepted["blksize"] = str(blksize)
    value = req.options.get("timeout", "")
    if value.isdigit() and 1 <= int(value) <= MAX_TIMEOUT:
        timeout = float(value)
        accepted["timeout"] = value
    if "tsize" in req.options and req.mode == "octet":  # netascii's size is not the file's
        accepted["tsize"] = str(size)
    return accepted, blksize, timeout


def to_netascii(data: bytes) -> bytes:
    """CR becomes CR NUL and LF becomes CR LF (RFC 764); byte by byte, so any chunking of
    the file gives the same stream."""
    return data.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")


# ---- addresses ---------------------------------------------------------------------------------
def _plain(addr: tuple) -> tuple:
    """An IPv4 peer seen through a dual-stack socket (::ffff:a.b.c.d) as a plain IPv4 one."""
    host = addr[0]
    if ":" in host and host.lower().startswith("::ffff:") and "." in host:
        return host[7:], addr[1]
    return addr


def _local_address(ancillary: list, fallback: tuple | None) -> tuple | None:
    """The local address a request came to ((family, host, scope id)), from IP_PKTINFO
    / IPV6_PKTINFO, so that the reply leaves from the address the client talked to."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == _IP_PKTINFO and len(data) >= 12:
            return socket.AF_INET, socket.inet_ntop(socket.AF_INET, data[4:8]), 0
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 20:
            ip = ipaddress.IPv6Address(data[:16])
            ifindex = struct.unpack("@I", data[16:20])[0]
            if ip.ipv4_mapped is not None:
                return socket.AF_INET, str(ip.ipv4_mapped), 0
            return socket.AF_INET6, str(ip), ifindex if ip.is_link_local else 0
    return fallback


def _reply_socket(local: tuple) -> socket.socket:
    """A fresh socket (a new transfer ID) on the address the request came to."""
    family, host, scope = local
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, 0, 0, scope) if family == socket.AF_INET6 else (host, 0))
    except OSError:
        sock.close()
        raise
    return sock


def _listener(host: str | None, port: int) -> tuple[socket.socket, tuple | None]:
    """The well-known-port socket, asking the kernel for each request's local address.
    No SO_REUSEADDR: a port another TFTP server holds is an error, not a shared port."""
    if host in (None, "", "::") and socket.has_ipv6:  # every address, IPv4 and IPv6
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        except OSError:
            sock = None
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
                sock.bind(("::", port))
                sock.setblocking(False)
                return sock, None
            except OSError:
                sock.close()
                if host == "::":
                    raise
    if host in (None, "", "0.0.0.0"):
        family, addr = socket.AF_INET, ("0.0.0.0", port)
    else:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM,
                                  flags=socket.AI_PASSIVE)[0]
        family, addr = info[0], info[4]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
        sock.bind(addr)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    wildcard = addr[0] in ("0.0.0.0", "::")
    return sock, None if wildcard else (family, addr[0], addr[3] if len(addr) > 3 else 0)


# ---- one transfer ------------------------------------------------------------------------------
class TransferFailed(Exception):
    pass


class NoAcknowledgement(TransferFailed):
    """The client did not acknowledge a block, however often it was sent."""


class TransferExpired(TransferFailed):
    """The transfer outlived its bound (TftpServer.life)."""


class _Channel(asyncio.DatagramProtocol):
    """The packets that reach one transfer's socket, handed to its coroutine."""

    def __init__(self) -> None:
        self.queue: collections.deque[tuple[bytes, tuple]] = collections.deque()
        self.failed: Exception | None = None
        self._waiter: asyncio.Future | None = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if len(self.queue) < QUEUE_MAX:
            self.queue.append((data, addr))
        self._wake()

    def error_received(self, exc: Exception) -> None:  # ICMP: the client has gone
        self.failed = exc
        self._wake()

    async def receive(self, timeout: float) -> tuple[bytes, tuple] | None:
        """The next packet, or None after ``timeout`` seconds."""
        if not self.queue and self.failed is None:
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            timer = loop.call_later(timeout, self._wake)
            try:
                await self._waiter
            finally:
                timer.cancel()
                self._waiter = None
        if self.failed is not None:
            raise TransferFailed(f"the client is unreachable ({self.failed})")
        return self.queue.popleft() if self.queue else None


class _Source:
    """A file's blocks, read from disk in large chunks by a worker thread."""

    def __init__(self, fh: Any, netascii: bool, pool: ThreadPoolExecutor) -> None:
        self.fh, self.netascii, self.pool = fh, netascii, pool
        self.buf = bytearray()
        self.eof = False

    async def block(self, size: int) -> bytes:
        loop = asyncio.get_running_loop()
        while len(self.buf) < size and not self.eof:
            chunk = await loop.run_in_executor(self.pool, self.fh.read, max(READ_CHUNK, size))
            if not chunk:
                self.eof = True
            self.buf += to_netascii(chunk) if self.netascii else chunk
        out = bytes(self.buf[:size])
        del self.buf[:size]
        return out


# ---- the server ----------------------------------------------------------------------------
class TftpServer:
    """A read-only TFTP server for ``tftpdir`` (a path, or a callable giving it, so that a
    change of site.tftpdir needs no restart). ``start`` binds and returns the port."""

    def __init__(self, tftpdir: Path | Callable[[], Path], *,
                 max_blksize: int = DEFAULT_MAX_BLKSIZE, max_transfers: int = MAX_TRANSFERS,
                 max_per_client: int = MAX_PER_CLIENT, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = RETRIES, life_base: float = TRANSFER_LIFE_BASE,
                 min_block_rate: float = MIN_BLOCK_RATE) -> None:
        self._tftpdir = tftpdir if callable(tftpdir) else (lambda: Path(tftpdir))
        self.max_blksize = max(MIN_BLKSIZE, min(max_blksize, MAX_BLKSIZE))
        self.max_transfers, self.max_per_client = max_transfers, max(1, max_per_client)
        self.timeout, self.retries = timeout, retries
        self.life_base, self.min_block_rate = life_base, min_block_rate
        self.port: int | None = None
        self.completed = 0      # transfers that ended with the client's last ACK
        self.dropped = 0        # requests dropped at the limit of concurrent transfers
        self.dropped_per_client = 0  # requests dropped at the limit for one client address
        self.timed_out = 0      # transfers given up: a block never acknowledged
        self.expired = 0        # transfers ended at their life bound (see life)
        self._sock: socket.socket | None = None
        self._bound: tuple | None = None
        self._active: dict[tuple, asyncio.Task] = {}
        self._per_client: dict[str, int] = {}  # transfers under way by client address
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="tftp")
        self._warned: dict[str, float] = {}

    @property
    def active(self) -> int:
        return len(self._active)

    async def start(self, host: str | None = None, port: int = DEFAULT_PORT) -> int:
        self._sock, self._bound = _listener(host, port)
        self.port = self._sock.getsockname()[1]
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._readable)
        return self.port

    async def stop(self) -> None:
        """Close the port and end the transfers under way."""
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        tasks = list(self._active.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- requests on the well-known port ------------------------------------------------------
    def _readable(self) -> None:
        space = socket.CMSG_SPACE(20) + socket.CMSG_SPACE(12)
        for _ in range(64):  # a burst, then let the transfers run
            if self._sock is None:
                return
            try:
                data, anc, _flags, peer = self._sock.recvmsg(65536, space)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("tftp: receive failed: %s", exc)
                return
            local = _local_address(anc, self._bound)
            if local is not None and len(data) >= 2:
                self._request(data, local, peer)

    def _request(self, data: bytes, local: tuple, peer: tuple) -> None:
        opcode = struct.unpack("!H", data[:2])[0]
        client = _plain(peer)
        if opcode == WRQ:
            log.debug("tftp: refused a write request from %s:%d", *client[:2])
            self._send_error(local, peer, E_ACCESS, "this server is read-only")
            return
        if opcode != RRQ:
            return  # a stray packet for the well-known port: tftpd-hpa ignores these too
        key = client[:2]
        if key in self._active:
            return  # the client asked again before our first answer reached it
        try:
            req = parse_request(data)
        except BadPacket as exc:
            self._send_error(local, peer, E_ILLEGAL, str(exc))
            return
        ip = client[0]
        if self._per_client.get(ip, 0) >= self.max_per_client:
            self.dropped_per_client += 1  # dropped, as below: it asks again, or it gives up
            self._warn("client", "tftp: %s has %d transfers under way, the limit for one "
                       "address: its further requests are dropped until one ends (%d "
                       "dropped so far)", ip, self.max_per_client, self.dropped_per_client)
            return
        if len(self._active) >= self.max_transfers:
            self.dropped += 1
            self._warn("busy", "tftp: %d transfers under way, the limit: further requests "
                       "are dropped until one ends (%d dropped so far)", self.max_transfers,
                       self.dropped)
            return  # dropped: the client repeats its request, by then a slot may be free
        task = asyncio.get_running_loop().create_task(self._transfer(req, local, peer))
        self._active[key] = task
        self._per_client[ip] = self._per_client.get(ip, 0) + 1
        task.add_done_callback(lambda _t, k=key: self._ended(k))

    def _ended(self, key: tuple) -> None:
        if self._active.pop(key, None) is None:
            return
        left = self._per_client.get(key[0], 1) - 1
        if left > 0:
            self._per_client[key[0]] = left
        else:
            self._per_client.pop(key[0], None)

    def _warn(self, kind: str, message: str, *args: object) -> None:
        """A warning of this kind at most every BUSY_WARN_EVERY seconds (the counters have
        the rest): a flood of requests must not flood the log too."""
        now = time.monotonic()
        if now - self._warned.get(kind, -BUSY_WARN_EVERY) >= BUSY_WARN_EVERY:
            self._warned[kind] = now
            log.warning(message, *args)

    def _send_error(self, local: tuple, peer: tuple, code: int, message: str) -> None:
        try:
            with _reply_socket(local) as sock:
                sock.sendto(error_packet(code, message), _plain(peer) if
                            sock.family == socket.AF_INET else peer)
        except OSError as exc:
            log.debug("tftp: cannot answer %s: %s", peer[0], exc)

    # ---- a transfer ---------------------------------------------------------------------------
    def _open(self, name: str) -> tuple[Any, int] | None:
        """The file the client named, opened, and its size; None for anything not served.
        Leading slashes are dropped: with tftpd-hpa's --secure the tree is the root."""
        path = safe_file(self._tftpdir(), name.lstrip("/"))
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode) or not st.st_mode & stat_mod.S_IROTH:
            os.close(fd)
            return None  # replaced between the check and the open
        return os.fdopen(fd, "rb", buffering=0), st.st_size

    async def _transfer(self, req: ReadRequest, local: tuple, peer: tuple) -> None:
        loop = asyncio.get_running_loop()
        client = _plain(peer)
        who = f"{client[0]}:{client[1]}"
        sock = _reply_socket(local)
        dest = client if sock.family == socket.AF_INET else peer
        transport, channel = await loop.create_datagram_endpoint(_Channel, sock=sock)
        try:
            opened = await loop.run_in_executor(self._pool, self._open, req.filename)
            if opened is None:
                log.debug("tftp: %s asked for %s: not served", who, req.filename)
                transport.sendto(error_packet(E_NOTFOUND, "File not found"), dest)
                return
            fh, size = opened
            with fh:
                sent, blocks, blksize = await self._send(req, fh, size, transport, channel,
                                                         dest)
            self.completed += 1
            log.debug("tftp: sent %s to %s (%s): %d bytes in %d blocks of %d", req.filename,
                      who, req.mode, sent, blocks, blksize)
        except TransferExpired as exc:
            self.expired += 1
            self._warn("life", "tftp: %s to %s ended unfinished: %s (%d transfers ended so "
                       "far)", req.filename, who, exc, self.expired)
        except TransferFailed as exc:
            if isinstance(exc, NoAcknowledgement):
                self.timed_out += 1
            log.debug("tftp: %s to %s failed: %s", req.filename, who, exc)
        except OSError as exc:
            log.debug("tftp: %s to %s failed: %s", req.filename, who, exc)
        finally:
            transport.close()

    def life(self, size: int, blksize: int, mode: str = "octet") -> float:
        """The seconds a transfer of ``size`` bytes in blocks of ``blksize`` may take in all:
        ``life_base`` plus a second per ``min_block_rate`` blocks (see TRANSFER_LIFE_BASE).

        >>> round(TftpServer(Path("/")).life(100 << 20, 1468) / 60)
        49
        """
        if mode == "netascii":
            size *= 2  # at most: every byte a line end
        return self.life_base + (size // blksize + 1) / self.min_block_rate

    async def _send(self, req: ReadRequest, fh: Any, size: int, transport: Any,
                    channel: _Channel, dest: tuple) -> tuple[int, int, int]:
        accepted, blksize, timeout = negotiate(req, size, self.max_blksize, self.timeout)
        life = self.life(size, blksize, req.mode)
        bound = asyncio.timeout(life)
        try:
            async with bound:
                if accepted:
                    await self._exchange(oack_packet(accepted), 0, transport, channel, dest,
                                         timeout)
                source = _Source(fh, req.mode == "netascii", self._pool)
                block, sent = 0, 0
                while True:
                    payload = await source.block(blksize)
                    block += 1
                    await self._exchange(data_packet(block, payload), block & 0xFFFF,
                                         transport, channel, dest, timeout)
                    sent += len(payload)
                    if len(payload) < blksize:
                        return sent, block, blksize
        except TimeoutError:
            if not bound.expired():
                raise
            transport.sendto(error_packet(E_UNDEF, "transfer took too long"), dest)
            raise TransferExpired(f"not done after {life:.0f} s (its bound for {size} "
                                  f"bytes in blocks of {blksize})") from None

    async def _exchange(self, packet: bytes, want: int, transport: Any, channel: _Channel,
                        dest: tuple, timeout: float) -> None:
        """Send ``packet`` until the client acknowledges block ``want``. Duplicate ACKs of
        earlier blocks are ignored (no answer to each: that way lies the Sorcerer's
        Apprentice bug); another port gets "Unknown transfer ID"."""
        loop = asyncio.get_running_loop()
        for _ in range(self.retries + 1):
            transport.sendto(packet, dest)
            deadline = loop.time() + timeout
            while (left := deadline - loop.time()) > 0:
                got = await channel.receive(left)
                if got is None:
                    break
                data, addr = got
                if _plain(addr)[:2] != _plain(dest)[:2]:
                    transport.sendto(error_packet(E_BADTID, "Unknown transfer ID"), addr)
                    continue
                if len(data) < 4:
                    continue
                opcode, number = struct.unpack("!HH", data[:4])
                if opcode == ACK and number == want:
                    return
                if opcode == ERROR:
                    message = data[4:].split(b"\0")[0].decode("ascii", "replace")
                    raise TransferFailed(f"the client ended it: {number} {message}")
        raise NoAcknowledgement(f"no acknowledgement of block {want} after "
                                f"{self.retries + 1} sends")


# ---- running it inside xcatd ------------------------------------------------------------------
async def start_tftp(paths: Paths, pipeline: Pipeline, host: str | None, *,
                     ephemeral: bool = False) -> TftpServer | None:
    """xcatd's hook: serve TFTP when the site wants the embedded server (see tftp_mode).
    ``ephemeral``: on a free port at ``host``, for a daemon that was itself asked for a free
    port (tests). A port that cannot be bound, or a bad setting, is logged, not fatal."""
    site = pipeline.site()
    try:
        mode = tftp_mode(site)
        where = tftp_bind(site)
        limit = max_blksize(site)
        site.tftpdir(paths)
    except SiteValueError as exc:
        log.error("TFTP not served: %s", exc)
        return None
    if mode != "embedded" or where is None:
        log.info("TFTP: not served by xcatd (%s)", "disabled by the site table"
                 if mode == "none" else "tftpd-hpa serves it")
        return None
    addr, port = where
    if addr is None and host not in (None, "", "0.0.0.0"):
        addr = host
    if ephemeral:
        addr, port = host, 0

    def tree() -> Path:  # site.tftpdir as the shared cache has it (from worker threads)
        return pipeline.site().tftpdir(paths)

    server = TftpServer(tree, max_blksize=limit)
    try:
        bound = await server.start(addr, port)
    except OSError as exc:
        log.error("cannot serve TFTP on %s:%s: %s; nodes that boot over TFTP cannot until "
                  "it can (see site.tftpbind and site.tftpserver)", addr or "*", port, exc)
        await server.stop()
        return None
    log.info("TFTP on %s:%d from %s", addr or "*", bound, site.tftpdir(paths))
    return server


class TftpServerThread(ServiceThread):
    """The embedded server on its own event loop in a thread (tests, the demo lab)."""

    def __init__(self, tftpdir: Path | Callable[[], Path], host: str = "127.0.0.1",
                 port: int = 0, **options: Any) -> None:
        self.server = TftpServer(tftpdir, **options)
        super().__init__(self.server, host, port, name="tftp")
