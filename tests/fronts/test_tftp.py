"""TFTP: the embedded read-only server against real clients (busybox tftp, curl) on
127.0.0.1, what it refuses, its option negotiation, retransmission and limits; xcatconfig's
tftpd-hpa configuration, and Debian's in.tftpd serving with exactly that configuration."""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from xcatd.base.paths import Paths
from xcatd.daemon.initialize import initialize
from xcatd.fronts import tftp
from xcatd.fronts.tftp import TftpServerThread
from xcatd.lab.ports import free_port

LO = "127.0.0.1"
BIG = 3 * 1024 * 1024


def _need(program: str) -> None:
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed")


def busybox_get(port: int, remote: str, local: Path, blksize: int | None = None,
                host: str = LO) -> subprocess.CompletedProcess:
    _need("busybox")
    argv = ["busybox", "tftp", "-g", "-r", remote, "-l", str(local)]
    if blksize:
        argv += ["-b", str(blksize)]
    return subprocess.run([*argv, host, str(port)], capture_output=True, text=True, timeout=90)


def curl_has_tftp() -> bool:
    if shutil.which("curl") is None:
        return False
    out = subprocess.run(["curl", "-V"], capture_output=True, text=True, timeout=30).stdout
    return any(line.startswith("Protocols:") and " tftp" in line for line in out.splitlines())


# ---- a raw client, for what the real clients do not show ----------------------------------------
def rrq(name: str, mode: str = "octet", **options: str) -> bytes:
    opts = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in options.items())
    return struct.pack("!H", tftp.RRQ) + name.encode() + b"\0" + mode.encode() + b"\0" + opts


def client_socket(host: str = LO) -> socket.socket:
    """A client on ``host`` (any of 127.0.0.0/8: every one is a local address)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(30)
    return sock


def ask(port: int, packet: bytes) -> tuple[bytes, tuple]:
    """Send one request to the well-known port; the first answer and where it came from."""
    with client_socket() as sock:
        sock.sendto(packet, (LO, port))
        return sock.recvfrom(70000)


def options_of(oack: bytes) -> dict[bytes, bytes]:
    assert struct.unpack("!H", oack[:2])[0] == tftp.OACK, oack[:4]
    fields = oack[2:].split(b"\0")[:-1]
    return dict(zip(fields[::2], fields[1::2]))


def fetch(port: int, name: str, host: str = LO, tries: int = 10) -> bytes:
    """A minimal client, as a boot ROM's: the request (no options), sent again each second
    until answered, at most ``tries`` times, then each block acknowledged; the file."""
    with client_socket(host) as sock:
        sock.settimeout(1.0)
        for _ in range(tries):
            sock.sendto(rrq(name), (LO, port))
            try:
                data, tid = sock.recvfrom(70000)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError(f"{host}: no answer to {tries} requests for {name}")
        sock.settimeout(30)
        got, want = b"", 1
        while True:
            opcode, block = struct.unpack("!HH", data[:4])
            assert opcode == tftp.DATA, error_of(data)
            if block == want & 0xFFFF:
                got += data[4:]
                want += 1
            sock.sendto(struct.pack("!HH", tftp.ACK, block), tid)
            if block == (want - 1) & 0xFFFF and len(data) - 4 < 512:
                return got
            data = sock.recv(70000)


def error_of(packet: bytes) -> tuple[int, str]:
    opcode, code = struct.unpack("!HH", packet[:4])
    assert opcode == tftp.ERROR, f"expected an ERROR packet, got opcode {opcode}"
    return code, packet[4:].rstrip(b"\0").decode()


def wait_until(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def drain(sock: socket.socket) -> list[bytes]:
    sock.setblocking(False)
    out = []
    try:
        while True:
            out.append(sock.recv(70000))
    except BlockingIOError:
        return out
    finally:
        sock.setblocking(True)


# ---- the tree and the server -------------------------------------------------------------------
SIZES = {"empty": 0, "b512": 512, "b513": 513, "b3585": 512 * 7 + 1, "b1468": 1468,
         "b4405": 1468 * 3 + 1}


def _file(path: Path, data: bytes, mode: int = 0o644) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return data


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "tftpboot"
    root.mkdir(mode=0o755)
    for name, size in SIZES.items():
        _file(root / name, os.urandom(size))
    _file(root / "big", os.urandom(BIG))
    _file(root / "sub/file", b"in a subdirectory\n")
    _file(root / ".hidden", b"a temporary file\n")
    _file(root / "sub/.hidden", b"a temporary file\n")
    _file(root / "private", b"root's alone\n", 0o600)
    _file(root / "xcat/xnba/nodes/n1", b"#!ipxe token\n", 0o600)
    _file(tmp_path / "outside", b"not in the tree\n")
    (root / "escape").symlink_to(tmp_path / "outside")
    (root / "inlink").symlink_to("sub/file")
    return root


@pytest.fixture
def server(tree):
    with TftpServerThread(tree) as srv:
        yield srv


# ---- real clients ------------------------------------------------------------------------------
@pytest.mark.parametrize("blksize", [None, 1468])
def test_busybox_fetches_every_edge_size(server, tree, tmp_path, blksize):
    for name in SIZES:
        out = tmp_path / f"{name}.out"
        r = busybox_get(server.port, name, out, blksize)
        assert r.returncode == 0, f"{name}: {r.stderr}"
        assert out.read_bytes() == (tree / name).read_bytes(), name


@pytest.mark.parametrize("blksize", [None, 1468])
def test_busybox_fetches_three_megabytes(server, tree, tmp_path, blksize):
    out = tmp_path / "big.out"
    r = busybox_get(server.port, "big", out, blksize)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == (tree / "big").read_bytes()
    # the client may exit before the server has taken its last ACK
    wait_until(lambda: server.server.completed == 1, "the transfer to be counted complete")


def test_block_numbers_roll_over_past_65535(server, tree, tmp_path):
    data = _file(tree / "wrap", os.urandom(64 * 65536 + 100))  # 65538 blocks of 64 bytes
    out = tmp_path / "wrap.out"
    r = busybox_get(server.port, "wrap", out, 64)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == data


def test_curl_fetches_with_blksize_and_tsize(server, tree, tmp_path):
    if not curl_has_tftp():
        pytest.skip("curl without tftp:// support")
    for blksize in ("512", "1468"):
        out = tmp_path / f"big.{blksize}"
        r = subprocess.run(["curl", "-sS", "--tftp-blksize", blksize, "-o", str(out),
                            f"tftp://{LO}:{server.port}/big"], capture_output=True, text=True,
                           timeout=90)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == (tree / "big").read_bytes()


def test_netascii_turns_line_ends_into_cr_lf(server, tree):
    if not curl_has_tftp():
        pytest.skip("curl without tftp:// support")
    _file(tree / "text", b"a\nb\r\nc")
    r = subprocess.run(["curl", "-sS", f"tftp://{LO}:{server.port}/text;mode=netascii"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"a\r\nb\r\0\r\nc"  # curl shows the wire form


def test_missing_file_is_an_error_packet_and_the_client_fails(server, tmp_path):
    r = busybox_get(server.port, "nosuchfile", tmp_path / "out")
    assert r.returncode != 0 and "File not found" in r.stderr
    assert error_of(ask(server.port, rrq("nosuchfile"))[0])[0] == tftp.E_NOTFOUND
    if curl_has_tftp():
        c = subprocess.run(["curl", "-sS", "-o", str(tmp_path / "c"),
                            f"tftp://{LO}:{server.port}/nosuchfile"], capture_output=True,
                           timeout=60)
        assert c.returncode != 0


@pytest.mark.parametrize("name", [
    "../outside", "sub/../../outside", "sub/../b512", ".hidden", "sub/.hidden", "escape",
    "private", "xcat/xnba/nodes/n1", "sub", "sub/", "", "//",
])
def test_refuses_what_the_http_site_refuses(server, name):
    answer, _ = ask(server.port, rrq(name))
    code, _ = error_of(answer)
    assert code in (tftp.E_NOTFOUND, tftp.E_ILLEGAL), name


def test_busybox_cannot_fetch_a_symlink_out_of_the_tree(server, tmp_path):
    r = busybox_get(server.port, "escape", tmp_path / "out")
    assert r.returncode != 0 and "File not found" in r.stderr


@pytest.mark.parametrize("name", ["sub/file", "/sub/file", "inlink"])
def test_serves_subdirectories_leading_slashes_and_links_inside(server, tmp_path, name):
    out = tmp_path / "out"
    r = busybox_get(server.port, name, out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == b"in a subdirectory\n"


def test_write_request_is_refused(server, tree, tmp_path):
    wrq = struct.pack("!H", tftp.WRQ) + b"upload\0octet\0"
    assert error_of(ask(server.port, wrq)[0])[0] == tftp.E_ACCESS
    src = _file(tmp_path / "up", b"data")
    _need("busybox")
    r = subprocess.run(["busybox", "tftp", "-p", "-r", "upload", "-l", str(tmp_path / "up"),
                        LO, str(server.port)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "read-only" in r.stderr
    assert src and not (tree / "upload").exists()


def test_unsupported_mode_is_an_error(server):
    code, text = error_of(ask(server.port, rrq("b512", mode="mail"))[0])
    assert code == tftp.E_ILLEGAL and "mode" in text


# ---- the protocol --------------------------------------------------------------------------------
def test_options_are_acknowledged_and_blksize_capped(server, tree):
    with client_socket() as sock:
        sock.sendto(rrq("b4405", blksize="9000", tsize="0", timeout="3", windowsize="8"),
                    (LO, server.port))
        oack, tid = sock.recvfrom(70000)
        assert tid[1] != server.port  # a transfer talks from its own port
        fields = oack[2:].split(b"\0")[:-1]
        assert struct.unpack("!H", oack[:2])[0] == tftp.OACK
        assert dict(zip(fields[::2], fields[1::2])) == {
            b"blksize": b"1468", b"tsize": b"4405", b"timeout": b"3"}
        got = b""
        for block in range(4):
            sock.sendto(struct.pack("!HH", tftp.ACK, block), tid)
            data = sock.recv(70000)
            assert struct.unpack("!HH", data[:4]) == (tftp.DATA, block + 1)
            got += data[4:]
        sock.sendto(struct.pack("!HH", tftp.ACK, 4), tid)
    assert got == (tree / "b4405").read_bytes()
    wait_until(lambda: server.server.completed == 1, "the transfer to end")


def test_no_options_means_no_oack_and_512_byte_blocks(server, tree):
    with client_socket() as sock:
        sock.sendto(rrq("b513"), (LO, server.port))
        first, tid = sock.recvfrom(70000)
        assert struct.unpack("!HH", first[:4]) == (tftp.DATA, 1) and len(first) == 516
        sock.sendto(struct.pack("!HH", tftp.ACK, 1), tid)
        second = sock.recv(70000)
        assert struct.unpack("!HH", second[:4]) == (tftp.DATA, 2) and len(second) == 5
        sock.sendto(struct.pack("!HH", tftp.ACK, 2), tid)


def test_another_port_gets_unknown_transfer_id(server):
    with client_socket() as sock, client_socket() as stranger:
        sock.sendto(rrq("b3585"), (LO, server.port))
        _, tid = sock.recvfrom(70000)
        stranger.sendto(struct.pack("!HH", tftp.ACK, 1), tid)
        assert error_of(stranger.recv(70000))[0] == tftp.E_BADTID
        sock.sendto(struct.pack("!HH", tftp.ERROR, 0) + b"bye\0", tid)


def test_retransmits_a_bounded_number_of_times_then_gives_up(tree):
    with TftpServerThread(tree, timeout=0.2, retries=2) as srv, client_socket() as sock:
        sock.sendto(rrq("b512"), (LO, srv.port))
        first = sock.recv(70000)
        wait_until(lambda: srv.server.active == 0, "the transfer to give up")
        again = drain(sock)
    assert [first, *again] == [first] * 3  # the first send and two retransmissions


def test_transfers_beyond_the_limit_are_dropped_until_a_slot_frees(tree):
    with TftpServerThread(tree, max_transfers=1) as srv, \
            client_socket() as a, client_socket() as b:
        a.sendto(rrq("b513"), (LO, srv.port))
        _, tid = a.recvfrom(70000)
        b.sendto(rrq("b513"), (LO, srv.port))
        wait_until(lambda: srv.server.dropped == 1, "the second request to be dropped")
        a.sendto(struct.pack("!HH", tftp.ACK, 1), tid)
        assert struct.unpack("!HH", a.recv(70000)[:4]) == (tftp.DATA, 2)
        a.sendto(struct.pack("!HH", tftp.ACK, 2), tid)
        wait_until(lambda: srv.server.active == 0, "the first transfer to end")
        assert drain(b) == [] and srv.server.dropped == 1
        b.sendto(rrq("b513"), (LO, srv.port))  # the client asks again: now it is served
        assert struct.unpack("!HH", b.recv(70000)[:4]) == (tftp.DATA, 1)


# ---- what one client can hold ------------------------------------------------------------------
ATTACKER = "127.0.0.2"  # another loopback address: the server tells clients apart by address


def test_one_address_with_many_unacknowledged_transfers_cannot_starve_the_others(server, tree):
    """The report: 130 requests asking timeout=255 and never acknowledging filled every slot
    for 25 minutes. Now that address holds MAX_PER_CLIENT transfers, and others are served."""
    attackers = []
    try:
        for _ in range(tftp.MAX_TRANSFERS + 2):
            sock = client_socket(ATTACKER)
            attackers.append(sock)
            sock.sendto(rrq("big", timeout="255", blksize="1468"), (LO, server.port))
        # requests on the well-known port are taken in order: these come after the flood
        assert fetch(server.port, "b3585") == (tree / "b3585").read_bytes()
        assert fetch(server.port, "b513", host="127.0.0.3") == (tree / "b513").read_bytes()
        answers = [drain(sock) for sock in attackers]
    finally:
        for sock in attackers:
            sock.close()
    served = [packets[0] for packets in answers if packets]
    assert len(served) == tftp.MAX_PER_CLIENT  # the rest were dropped, never answered
    assert all(options_of(oack) == {b"blksize": b"1468"} for oack in served)  # no timeout
    assert server.server.dropped_per_client == len(attackers) - tftp.MAX_PER_CLIENT
    assert server.server.dropped == 0  # the limit of all transfers was never reached


def test_requests_beyond_the_per_address_limit_are_dropped_until_one_ends(tree):
    with TftpServerThread(tree, max_per_client=1) as srv, \
            client_socket() as a, client_socket() as b:
        a.sendto(rrq("b513"), (LO, srv.port))
        _, tid = a.recvfrom(70000)
        b.sendto(rrq("b513"), (LO, srv.port))  # the same address, another port
        wait_until(lambda: srv.server.dropped_per_client == 1, "b's request to be dropped")
        assert fetch(srv.port, "b512", host=ATTACKER) == (tree / "b512").read_bytes()
        a.sendto(struct.pack("!HH", tftp.ACK, 1), tid)
        assert struct.unpack("!HH", a.recv(70000)[:4]) == (tftp.DATA, 2)
        a.sendto(struct.pack("!HH", tftp.ACK, 2), tid)
        wait_until(lambda: srv.server.active == 0, "a's transfer to end")
        assert drain(b) == []
        b.sendto(rrq("b513"), (LO, srv.port))  # b asks again: now it is served
        assert struct.unpack("!HH", b.recv(70000)[:4]) == (tftp.DATA, 1)
    assert srv.server.dropped_per_client == 1 and srv.server.dropped == 0


@pytest.mark.parametrize("asked", ["1", str(tftp.MAX_TIMEOUT), str(tftp.MAX_TIMEOUT + 1),
                                   "60", "255"])
def test_the_negotiated_timeout_never_exceeds_the_cap(server, asked):
    assert tftp.MAX_TIMEOUT <= 5  # "a few seconds"
    oack, _ = ask(server.port, rrq("b4405", timeout=asked, tsize="0"))
    options = options_of(oack)
    if int(asked) <= tftp.MAX_TIMEOUT:
        assert options == {b"timeout": asked.encode(), b"tsize": b"4405"}
    else:  # RFC 2349: the server acknowledges the client's value or leaves it out
        assert options == {b"tsize": b"4405"}


def test_an_unacknowledged_transfer_asking_timeout_255_is_given_up_on(tree):
    """The retransmit interval is the server's own (0.2 s here), not the 255 s asked for:
    the transfer gives up after its retries and frees its slot."""
    with TftpServerThread(tree, timeout=0.2, retries=2) as srv, client_socket() as sock:
        sock.sendto(rrq("big", timeout="255", tsize="0"), (LO, srv.port))
        first = sock.recv(70000)
        assert options_of(first) == {b"tsize": str(BIG).encode()}
        wait_until(lambda: srv.server.active == 0, "the transfer to give up")
        assert [first, *drain(sock)] == [first] * 3
    assert srv.server.timed_out == 1 and srv.server.completed == 0


def test_an_unacknowledged_transfer_ends_within_its_life_bound(tree):
    """However many retransmissions it has left (1000 x 0.2 s here), a transfer ends at its
    life bound (about a second here), with an error packet, and frees its slot."""
    with TftpServerThread(tree, timeout=0.2, retries=1000, life_base=1.0,
                          min_block_rate=1e6) as srv, client_socket() as sock:
        sock.sendto(rrq("big"), (LO, srv.port))
        assert struct.unpack("!HH", sock.recv(70000)[:4]) == (tftp.DATA, 1)
        assert srv.server.active == 1
        wait_until(lambda: srv.server.active == 0, "the transfer's life to end")
        packets = drain(sock)
    assert packets and error_of(packets[-1])[1] == "transfer took too long"
    assert srv.server.expired == 1 and srv.server.completed == 0


def test_a_client_pacing_its_acknowledgements_is_cut_off_at_the_life_bound(tree):
    """A client that acknowledges every block, slowly (never letting a block time out), still
    holds its slot no longer than the transfer's life."""
    with TftpServerThread(tree, life_base=1.0, min_block_rate=1e6) as srv, \
            client_socket() as sock:
        sock.sendto(rrq("big"), (LO, srv.port))  # 6145 blocks: 10 minutes at this pace
        deadline = time.monotonic() + 30
        while True:
            packet, tid = sock.recvfrom(70000)
            opcode, number = struct.unpack("!HH", packet[:4])
            if opcode == tftp.ERROR:
                break
            assert time.monotonic() < deadline, "the transfer outlived its life bound"
            time.sleep(0.1)  # well inside the server's 1-second retransmit interval
            sock.sendto(struct.pack("!HH", tftp.ACK, number), tid)
        wait_until(lambda: srv.server.active == 0, "the slot to be freed")
    assert srv.server.expired == 1 and srv.server.completed == 0


def test_a_transfers_life_grows_with_its_blocks():
    srv = tftp.TftpServer(Path("/"))
    assert srv.life(0, 512) == pytest.approx(tftp.TRANSFER_LIFE_BASE, abs=1)
    # a 100 MiB initrd: 71,430 blocks of 1468 bytes; a LAN sends it in a minute or two
    initrd = srv.life(100 << 20, 1468)
    assert 30 * 60 <= initrd <= 60 * 60
    assert srv.life(100 << 20, 512) > initrd  # more blocks, more round trips
    assert srv.life(1000, 512, "netascii") > srv.life(1000, 512)


def test_stop_ends_transfers_and_frees_the_port(tree):
    srv = TftpServerThread(tree)
    port = srv.start()
    try:
        with client_socket() as sock:
            sock.sendto(rrq("big"), (LO, port))
            sock.recv(70000)  # a transfer under way, never acknowledged
            assert srv.server.active == 1
    finally:
        srv.stop()
    assert srv.server.active == 0 and not srv._thread.is_alive()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind((LO, port))


# ---- tftpd-hpa, started from the configuration xcatconfig wrote ---------------------------
def read_defaults(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = shlex.split(value)[0]
    return values


def _udp_listening(port: int) -> bool:
    want = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as fh:
        return any(line.split()[1] == want for line in list(fh)[1:])


def test_in_tftpd_serves_with_the_configuration_xcatconfig_wrote(tmp_path):
    _need("in.tftpd")
    _need("busybox")
    if os.geteuid() != 0:
        pytest.skip("in.tftpd --secure chroots: root only")
    paths = Paths(tmp_path / "root")
    paths.root.mkdir()
    initialize(paths)
    conf = read_defaults(paths.under("/etc/default/tftpd-hpa"))
    data = _file(Path(conf["TFTP_DIRECTORY"]) / "undionly.kpxe", os.urandom(70000))
    port = free_port(socket.SOCK_DGRAM, LO)
    # As Debian's init script runs it, on a test address: --listen --user U --address A
    # OPTIONS DIRECTORY (--foreground: not detached, so the test owns its PID).
    argv = ["in.tftpd", "--listen", "--user", conf["TFTP_USERNAME"], "--address",
            f"{LO}:{port}", *shlex.split(conf["TFTP_OPTIONS"]), conf["TFTP_DIRECTORY"],
            "--foreground"]
    proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_until(lambda: _udp_listening(port) or proc.poll() is not None, "in.tftpd")
        assert proc.poll() is None, proc.stderr.read().decode()
        out = tmp_path / "out"
        r = busybox_get(port, "undionly.kpxe", out, 1468)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == data
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


# ---- xcatd's hook ------------------------------------------------------------------------------
@pytest.mark.parametrize("setting,served", [("embedded", True), ("tftpd-hpa", False)])
def test_xcatd_runs_the_embedded_server_when_the_site_says(mn_sqlite, tmp_path, setting,
                                                           served):
    from xcatd.lab.daemon import DaemonThread
    mn_sqlite.ok("chtab", "key=tftpserver", f"site.value={setting}")
    data = _file(mn_sqlite.root / "tftpboot/pxelinux.0", os.urandom(3000))
    thread = DaemonThread(mn_sqlite.paths)
    try:
        listening = thread.start()
        assert (listening.tftp_port is not None) == served
        if served:
            out = tmp_path / "out"
            r = busybox_get(listening.tftp_port, "pxelinux.0", out)
            assert r.returncode == 0, r.stderr
            assert out.read_bytes() == data
    finally:
        thread.stop()
