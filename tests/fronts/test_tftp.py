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


def client_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LO, 0))
    sock.settimeout(30)
    return sock


def ask(port: int, packet: bytes) -> tuple[bytes, tuple]:
    """Send one request to the well-known port; the first answer and where it came from."""
    with client_socket() as sock:
        sock.sendto(packet, (LO, port))
        return sock.recvfrom(70000)


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
    assert server.server.completed == 1


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
