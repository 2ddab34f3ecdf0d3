"""xcatd under abuse: garbage on the TLS port, stalled handshakes, idle and stalled
connections, oversized and malformed requests, unknown commands, a client that dies
mid-request, and a second daemon on the same root. (What many idle clients cost in CPU is
measured by bench/idle.py: no test asserts on time spent.)

Every abuse is followed by a check that the daemon still serves an ordinary command. Every
wait is bounded; wall-clock is only ever asserted as a generous upper bound on "the
connection is closed eventually". Only 127.0.0.1 and the daemon's unix socket are used.
"""
from __future__ import annotations

import asyncio
import contextlib
import http.client
import importlib
import io
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.privileges import DAEMON_IS_ROOTS, need_root

import xcatd.fronts.https as https
import xcatd.fronts.server as server
from xcatd.base.paths import Paths
from xcatd.base.request import Response
from xcatd.daemon.initialize import initialize
from xcatd.db.database import Database
from xcatd.db.jobs import list_jobs
from xcatd.handler import CommandSpec, register, unregister
from xcatd.lab.daemon import DaemonThread
from xcatd.lab.ports import free_port
from xcatd.security.credentials import client_files

LOCALHOST = "127.0.0.1"
FAST = 1.0           # handshake / keep-alive timeout of the fast_daemon fixture
CLOSE_BOUND = 10.0   # "closed eventually": generous upper bound for FAST timeouts
XCATD_EXE = os.path.join(os.path.dirname(sys.executable), "xcatd")


# ---- helpers -------------------------------------------------------------------------------
def client_context(with_cert: bool = True) -> ssl.SSLContext:
    """TLS as the xcat client does it: the MN's CA, root's client certificate from HOME."""
    files = client_files()
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if with_cert:
        ctx.load_cert_chain(str(files.cred))
    return ctx


def tls_socket(port: int, *, with_cert: bool = True, timeout: float = 10.0) -> ssl.SSLSocket:
    raw = socket.create_connection((LOCALHOST, port), timeout=timeout)
    try:
        return client_context(with_cert).wrap_socket(raw, server_hostname=LOCALHOST)
    except BaseException:
        raw.close()
        raise


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True once the peer closes (EOF, reset, TLS EOF/alert); False if still open after
    ``seconds``. Any data the server sends first (a TLS alert, a response) is drained."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return False
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            return True
        except ssl.SSLError:  # SSLEOFError, an alert: the server ended the TLS session
            return True
        if not data:
            return True


def send_ignoring_close(sock: socket.socket, data: bytes) -> None:
    """sendall, but the server may rightly hang up before it has read everything."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
        sock.sendall(data)


def post(port: int, body: bytes, path: str = "/v1/request", *, with_cert: bool = True,
         content_type: str = "application/json") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPSConnection(LOCALHOST, port, context=client_context(with_cert),
                                       timeout=30)
    try:
        conn.request("POST", path, body, {"Content-Type": content_type})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def post_json(port: int, obj) -> tuple[int, dict[str, str], bytes]:
    return post(port, json.dumps(obj).encode())


def ndjson(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def client_hello() -> bytes:
    """The bytes a real TLS client sends first, captured with a memory-BIO handshake."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=LOCALHOST)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16" and len(hello) > 100, hello[:16]  # a handshake record
    return hello


def run_cmd(cmd: str, *args: str) -> tuple[int, str, str]:
    """Run a command in process as its console script would (through xcatd: XCATHOST)."""
    mod = importlib.import_module(f"xcatd.commands.{cmd}")
    out, err = io.StringIO(), io.StringIO()
    rc = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            mod.main.main(args=list(args), prog_name=cmd)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return rc, out.getvalue(), err.getvalue()


# ---- a daemon with short timeouts ----------------------------------------------------------
@dataclass
class FastMN:
    root: Path
    paths: Paths
    daemon: DaemonThread

    @property
    def port(self) -> int:
        return self.daemon.listening.port

    def ok(self, cmd: str, *args: str) -> str:
        rc, out, err = run_cmd(cmd, *args)
        assert rc == 0, f"{cmd} {' '.join(args)} failed ({rc}): {err}"
        return out


@pytest.fixture
def fast_daemon(tmp_path, monkeypatch):
    """xcatd with HANDSHAKE_TIMEOUT, KEEPALIVE_TIMEOUT and BODY_TIMEOUT of 1 s (patched
    before start); commands go through it as root (need_root: its policy allows root alone)."""
    need_root(DAEMON_IS_ROOTS)
    monkeypatch.setattr(server, "HANDSHAKE_TIMEOUT", FAST)
    monkeypatch.setattr(server, "KEEPALIVE_TIMEOUT", FAST)
    monkeypatch.setattr(https, "BODY_TIMEOUT", FAST)
    root = tmp_path / "fastroot"
    root.mkdir()
    paths = Paths(root)
    initialize(paths)  # also issues root's client certificate into the per-test HOME
    db = Database.open(paths)
    with db.begin() as conn:
        db.set_rows(conn, "site", {("auditskipcmds",): {"value": "ALL"}})
    monkeypatch.setenv("XCATROOT", str(root))
    for var in ("XCATBYPASS", "XCAT_NODE_PREFIX", "XCAT_NODE_SUFFIX"):
        monkeypatch.delenv(var, raising=False)
    thread = DaemonThread(paths)
    try:
        listening = thread.start()
        monkeypatch.setenv("XCATHOST", f"{LOCALHOST}:{listening.port}")
        yield FastMN(root, paths, thread)
    finally:
        thread.stop()
        Database.open(paths).dispose()


# ---- 1. garbage on the TLS port ------------------------------------------------------------
@pytest.mark.parametrize("garbage", [b"\x00\xffGARBAGE" * 1000, b"GET / HTTP/1.1\r\n\r\n"],
                         ids=["binary", "plain-http"])
def test_garbage_on_tls_port_is_hung_up(mn_daemon, garbage):
    port = mn_daemon.daemon.listening.port
    with socket.create_connection((LOCALHOST, port), timeout=10) as s:
        send_ignoring_close(s, garbage)
        # 3x the (default, unpatched) handshake timeout: generous; it is immediate in practice
        assert closed_within(s, 3 * server.HANDSHAKE_TIMEOUT), \
            "xcatd kept a connection open after non-TLS bytes"
    mn_daemon.ok("nodels")


# ---- 2. a TCP connection that never says anything ------------------------------------------
def test_silent_tcp_connection_closed_by_handshake_timeout(fast_daemon):
    with socket.create_connection((LOCALHOST, fast_daemon.port), timeout=10) as s:
        assert closed_within(s, 3 * FAST + 2), \
            f"a silent TCP connection outlived the {FAST}s TLS handshake timeout"
    fast_daemon.ok("nodels")


# ---- 3. a TLS handshake that stops half-way ------------------------------------------------
def test_half_clienthello_closed_by_handshake_timeout(fast_daemon):
    hello = client_hello()
    with socket.create_connection((LOCALHOST, fast_daemon.port), timeout=10) as s:
        s.sendall(hello[: len(hello) // 2])
        assert closed_within(s, 3 * FAST + 2), \
            f"a half-finished TLS handshake outlived the {FAST}s handshake timeout"
    fast_daemon.ok("nodels")


# ---- 4. idle after TLS ---------------------------------------------------------------------
def test_idle_tls_connection_closed_by_keepalive_timeout(fast_daemon):
    with tls_socket(fast_daemon.port) as s:
        assert s.getpeercert() is not None  # the handshake did complete
        assert closed_within(s, CLOSE_BOUND), \
            f"an idle TLS connection (no request) was still open after {CLOSE_BOUND}s " \
            f"with KEEPALIVE_TIMEOUT={FAST}"
    fast_daemon.ok("nodels")


def test_idle_after_a_request_closed_by_keepalive_timeout(fast_daemon):
    with tls_socket(fast_daemon.port) as s:
        s.sendall(f"GET /v1/ping HTTP/1.1\r\nHost: {LOCALHOST}\r\n\r\n".encode())
        resp = http.client.HTTPResponse(s)
        resp.begin()
        assert resp.status == 200
        assert json.loads(resp.read())["xcatd"] == "ok"
        assert not resp.will_close  # a keep-alive connection, now idle
        assert closed_within(s, CLOSE_BOUND), \
            f"an idle keep-alive connection was still open after {CLOSE_BOUND}s"
    fast_daemon.ok("nodels")


def test_partial_headers_then_silence_closed(fast_daemon):
    with tls_socket(fast_daemon.port) as s:
        s.sendall(f"POST /v1/request HTTP/1.1\r\nHost: {LOCALHOST}\r\n".encode())
        assert closed_within(s, CLOSE_BOUND), \
            f"a request stalled in its headers was still open after {CLOSE_BOUND}s"
    fast_daemon.ok("nodels")


def test_stalled_request_body_closed(fast_daemon):
    s = tls_socket(fast_daemon.port)
    try:
        s.sendall(f"POST /v1/request HTTP/1.1\r\nHost: {LOCALHOST}\r\n"
                  "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                  '{"request": '.encode())
        closed = closed_within(s, CLOSE_BOUND)
    finally:
        s.close()  # frees the handler either way, so the fixture can stop the daemon
    fast_daemon.ok("nodels")
    assert closed, (f"a request whose body stalled was still open after {CLOSE_BOUND}s "
                    f"(HANDSHAKE/KEEPALIVE timeouts {FAST}s)")


# ---- 5. a body over MAX_REQUEST ------------------------------------------------------------
def test_oversized_body_is_refused_without_reading_it_all(mn_daemon):
    port = mn_daemon.daemon.listening.port
    declared = 100 * 1000 * 1000
    assert declared > https.MAX_REQUEST
    chunk = b"x" * (1024 * 1024)
    sent = 0
    answer: bytes | None = None
    closed = False
    s = tls_socket(port, timeout=30)
    try:
        s.sendall(f"POST /v1/request HTTP/1.1\r\nHost: {LOCALHOST}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
                  .encode())
        while sent < declared:
            # a non-blocking look for an answer between chunks (select() is no use here:
            # a TLS 1.3 session ticket makes the socket readable with no data for us)
            s.settimeout(0)
            try:
                answer = s.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                answer = None
            except (ConnectionResetError, ssl.SSLError):
                answer = b""
            s.settimeout(30)
            if answer is not None:
                closed = not answer
                break
            piece = chunk[: declared - sent]
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                closed = True
                break
            sent += len(piece)
        if answer is None and not closed:  # sent it all: the answer must come now
            try:
                answer = s.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                answer = b""
            closed = not answer
    finally:
        s.close()
    assert closed or answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < declared, "xcatd took the whole 100 MB body before refusing it"
    # what socket buffers hold in flight comes on top of MAX_REQUEST (~4-10 MiB seen)
    assert sent <= https.MAX_REQUEST + 24 * len(chunk), \
        f"xcatd read {sent} bytes, far past MAX_REQUEST={https.MAX_REQUEST}, before refusing"
    mn_daemon.ok("nodels")


# ---- 6. malformed requests -----------------------------------------------------------------
@pytest.mark.parametrize("body, words", [
    (b'{"request": {"command": "nodels"', ["not valid JSON"]),
    (b"", ["not valid JSON"]),
    (b"\xff\xfe\x00garbage", ["not valid JSON"]),
    (b'[{"request": {"command": "nodels"}}]', ["expected", "request"]),
    (b'"nodels"', ["expected", "request"]),
    (b"42", ["expected", "request"]),
    (b'{"command": "nodels"}', ["expected", "request"]),
    (b'{"request": "nodels"}', ["expected", "request"]),
    (b'{"request": {"noderange": "all"}}', ["malformed request", "command"]),
    (b'{"request": {"command": "nodels", "args": ["-S"]}}', ["malformed request", "args"]),
    (b'{"request": {"command": 7}}', ["malformed request", "command"]),
], ids=["truncated", "empty", "not-utf8", "list", "string", "number", "no-request",
        "request-not-object", "no-command", "args-list", "command-not-string"])
def test_malformed_request_is_400(mn_daemon, body, words):
    status, headers, raw = post(mn_daemon.daemon.listening.port, body)
    assert status == 400, (status, raw[:300])
    assert headers["content-type"].startswith("application/json")
    error = json.loads(raw)["error"]
    for word in words:
        assert word in error, (word, error)
    assert "x-xcat-job" not in headers  # no job was created for it
    mn_daemon.ok("nodels")


def test_request_without_client_certificate_is_401(mn_daemon):
    status, _headers, raw = post(mn_daemon.daemon.listening.port,
                                 b'{"request": {"command": "nodels"}}', with_cert=False)
    assert status == 401, (status, raw[:300])
    assert "client certificate" in json.loads(raw)["error"]
    mn_daemon.ok("nodels")


# ---- 7. an unknown command -----------------------------------------------------------------
def test_unknown_command_streams_error_and_exit_code_1(mn_daemon):
    status, headers, raw = post_json(mn_daemon.daemon.listening.port,
                                     {"request": {"command": "nosuchcommand", "args": {}}})
    assert status == 200
    assert headers["content-type"].startswith("application/x-ndjson")
    records = ndjson(raw)
    errors = [r["r"].get("error") for r in records if "r" in r]
    assert "Unsupported command: nosuchcommand" in errors, records
    assert "end" in records[-1], records
    end = records[-1]["end"]
    assert end["exitcode"] == 1, end
    assert end["job"] == headers["x-xcat-job"]
    assert end["state"] == "failed", end
    mn_daemon.ok("nodels")


# ---- 8. a client that dies mid-request -----------------------------------------------------
SLOW = "robustness_slowtest"
SLOW_LINES = 6


@pytest.fixture
def slow_command():
    """SLOW, registered for this test only: answers "slow 0", waits until the test sets the
    event it yields, then answers "slow 1".."slow 5"."""
    release = threading.Event()

    def slow(req, ctx, nodes):
        yield Response(data="slow 0")
        release.wait(30)  # held here until the test has checked the job is still running
        for i in range(1, SLOW_LINES):
            threading.Event().wait(0.2)
            yield Response(data=f"slow {i}")

    register(CommandSpec(SLOW, slow, "none"))
    try:
        yield release
    finally:
        release.set()
        unregister(SLOW)


def test_a_killed_clients_job_is_cancelled_and_others_are_served(mn_daemon, slow_command):
    """A client that dies mid-request (not --async) cancels its job: the job stops at its
    next step, is recorded as cancelled, and holds nothing (locks, BMC slots) after."""
    release = slow_command
    port = mn_daemon.daemon.listening.port
    try:
        conn = http.client.HTTPSConnection(LOCALHOST, port, context=client_context(),
                                           timeout=30)
        conn.request("POST", "/v1/request",
                     json.dumps({"request": {"command": SLOW, "args": {}}}).encode(),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        jobid = resp.getheader("X-Xcat-Job")
        assert jobid
        assert json.loads(resp.readline()) == {"r": {"data": "slow 0"}}
        # die abruptly: RST, no TLS close_notify, no end of the request
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        resp.close()
        conn.close()

        # another client is served meanwhile
        mn_daemon.ok("nodels")
        release.set()
        deadline = time.monotonic() + 20  # a bound on the wait, not on the speed
        while True:
            show = mn_daemon.ok("job", "show", jobid).lines
            state = show[0].split()[1]
            if state not in ("queued", "running"):
                break
            assert time.monotonic() < deadline, f"job {jobid} never ended: {show}"
            time.sleep(0.1)
        assert state == "cancelled", show
        assert "slow 0" in show[1:] and f"slow {SLOW_LINES - 1}" not in show[1:], show
    finally:
        release.set()
    mn_daemon.ok("nodels")


def test_an_async_job_outlives_its_client(mn_daemon):
    jobid = mn_daemon.ok("nodels", "--async").out.strip()
    assert mn_daemon.ok("job", "wait", jobid).rc == 0
    assert mn_daemon.ok("job", "show", jobid).lines[0].split()[1] == "done"


# ---- 9. one daemon per root ---------------------------------------------------------------
def test_second_daemon_on_same_root_refuses(mn_daemon):
    env = {k: v for k, v in os.environ.items() if k not in ("XCATBYPASS", "XCATHOST")}
    env["XCATROOT"] = str(mn_daemon.root)
    p = subprocess.run([XCATD_EXE, "--listen", LOCALHOST, "--port", str(free_port())],
                       env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "already running" in p.stderr, p.stderr
    assert f"pid {os.getpid()}" in p.stderr, p.stderr  # names the daemon that holds the root
    assert "Traceback" not in p.stderr, p.stderr
    # the refused daemon left the running one's pid file and unix socket alone
    assert server.pid_path(mn_daemon.paths).read_text().strip() == str(os.getpid())
    assert mn_daemon.daemon.listening.unix.exists()
    mn_daemon.ok("nodels")


# ---- 10. SIGTERM while a job streams ------------------------------------------------------
STOP_BOUND = 60.0  # seconds from SIGTERM to exit: generous; the job alone would take 10 min


def _wait_for(predicate, what: str, proc: subprocess.Popen, log: Path,
              seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert proc.poll() is None, f"xcatd exited ({proc.returncode}): {log.read_text()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {log.read_text()}"
        time.sleep(0.05)


def test_sigterm_mid_job_records_it_interrupted_and_exits_cleanly(tmp_path, monkeypatch):
    """The real xcatd, in a subprocess, streaming an rpower whose second node's BMC never
    answers (ipmitimeout 60 s, 10 retries): on SIGTERM it exits 0 promptly, without a
    traceback, and the job's record says interrupted, not running."""
    need_root(DAEMON_IS_ROOTS)
    root = tmp_path / "root"
    root.mkdir()
    paths = Paths(root)
    initialize(paths)  # also issues root's client certificate into the per-test HOME
    bmc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes packets, never answers
    bmc.bind((LOCALHOST, 0))
    db = Database.open(paths)
    daemon = client = None
    try:
        with db.begin() as conn:
            db.set_rows(conn, "site", {
                ("ipmitimeout",): {"value": "60"}, ("ipmiretries",): {"value": "10"},
                ("httpbind",): {"value": "none"}, ("tftpserver",): {"value": "none"}})
        monkeypatch.setenv("XCATROOT", str(root))
        monkeypatch.setenv("XCATBYPASS", "1")
        monkeypatch.delenv("XCATHOST", raising=False)
        for argv in (("x1", "groups=all"),  # no BMC: its error line comes at once
                     ("n1", "groups=all", "nodehm.mgt=ipmi", f"ipmi.bmc={LOCALHOST}",
                      f"ipmi.bmcport={bmc.getsockname()[1]}", "ipmi.username=admin",
                      "ipmi.password=secret")):
            rc, _out, err = run_cmd("nodeadd", *argv)
            assert rc == 0, err
        env = {k: v for k, v in os.environ.items() if k not in ("XCATBYPASS", "XCATHOST")}
        port = free_port()
        log = tmp_path / "xcatd.log"
        with open(log, "wb") as fh:
            daemon = subprocess.Popen([XCATD_EXE, "--listen", LOCALHOST, "--port", str(port)],
                                      env=env, stdin=subprocess.DEVNULL, stdout=fh,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for(lambda: "ready on" in log.read_text(), "xcatd to listen", daemon, log)

        out = tmp_path / "rpower.out"
        with open(out, "wb") as fh:
            client = subprocess.Popen(
                [os.path.join(os.path.dirname(sys.executable), "rpower"), "x1,n1", "stat"],
                env={**env, "XCATHOST": f"{LOCALHOST}:{port}"}, stdin=subprocess.DEVNULL,
                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for(lambda: "x1: Error" in out.read_text(), "the job's first line", daemon, log)
        jobs = [j for j in list_jobs(db) if j["command"] == "rpower"]
        assert [j["state"] for j in jobs] == ["running"], jobs
        assert client.poll() is None  # still streaming: n1's BMC has not answered

        daemon.send_signal(signal.SIGTERM)
        try:
            rc = daemon.wait(STOP_BOUND)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"xcatd still running {STOP_BOUND}s after SIGTERM: "
                                 f"{log.read_text()}") from None
        text = log.read_text()
        assert rc == 0, text
        assert "Traceback" not in text and "Event loop is closed" not in text, text
        rows = [j for j in list_jobs(db) if j["command"] == "rpower"]
        assert [(j["jobid"], j["state"]) for j in rows] == [(jobs[0]["jobid"], "interrupted")]
        assert rows[0]["finished"]
        assert not server.pid_path(paths).exists()
    finally:
        for proc in (client, daemon):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        bmc.close()
        db.dispose()


def test_a_relay_outliving_its_event_loop_drops_what_comes_quietly():
    """A job's thread that emits after xcatd's loop has closed: no RuntimeError ("Event loop
    is closed") in the job's thread; its record, not the relay, keeps what it says."""
    loop = asyncio.new_event_loop()
    relay = https.Relay(loop)
    loop.close()
    relay.emit(Response(data="after the loop"))  # before the fix: RuntimeError here
    relay.emit(Response(data="and again"))
    relay.close(0)
    assert relay._orphaned and relay._items == []  # dropped, not held for nobody
