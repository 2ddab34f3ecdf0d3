"""REST's parallel shell and file copies (POST /xcatws/nodes/{noderange}/shell and /files):
xdsh and xdcp through the pipeline, answered as NDJSON lines while the nodes go, a last
``done`` line with the command line's exit code, 400s naming the bad field, policy, and a
client that goes away stopping the run.

No sshd here (the lead's end-to-end test has real nodes): the nodes are 127.0.0.1 on a port
nobody listens on (connection refused), or on a port where a listener accepts and never
speaks (the run waits until the client goes away). Network only to 127.0.0.1.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support.cluster import nodes
from support.waiting import poll

from xcatd.base.request import Response
from xcatd.fronts.openapi import spec as openapi_spec
from xcatd.fronts.rest import shell_records
from xcatd.security.credentials import issue_client_cert

#: n1, n2 (and a group of them) at 127.0.0.1; each test picks the port through "options"
pytestmark = pytest.mark.cluster(nodes("n1,n2", "hosts.ip=127.0.0.1", groups="compute"))

NDJSON = "application/x-ndjson"
SHELL = "/xcatws/nodes/{name}/shell"
FILES = "/xcatws/nodes/{name}/files"


# ---- helpers -------------------------------------------------------------------------------
def connect(mn, cred: Path | None = None, ca: Path | None = None
            ) -> http.client.HTTPSConnection:
    xcat = Path(os.environ["HOME"]) / ".xcat"
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca or xcat / "ca.pem"))
    ctx.load_cert_chain(str(cred or xcat / "client-cred.pem"))
    return http.client.HTTPSConnection("127.0.0.1", mn.daemon.listening.port, context=ctx,
                                       timeout=60)


def post(mn, path: str, body: Any, **who) -> tuple[int, str, bytes]:
    """(status, content type, raw body) of a POST with a JSON body (a str/bytes as is)."""
    conn = connect(mn, **who)
    try:
        raw = body if isinstance(body, str | bytes) else json.dumps(body)
        conn.request("POST", path, raw, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


def ndjson(raw: bytes) -> list[dict]:
    """Every line of the answer, each parsed: a line that is not JSON fails the test."""
    assert raw.endswith(b"\n"), raw[-200:]
    return [json.loads(line) for line in raw.decode().splitlines()]


def line_schema() -> dict:
    op = openapi_spec()["paths"][SHELL]["post"]
    return op["responses"]["200"]["content"][NDJSON]["schema"]


def check_lines(records: list[dict]) -> None:
    """Each record is one of the documented line shapes."""
    validator = jsonschema.Draft7Validator(line_schema())
    for rec in records:
        errors = list(validator.iter_errors(rec))
        assert not errors, f"{rec} is no documented line: {errors[0].message}"


def free_port() -> int:
    """A port of 127.0.0.1 nobody listens on (bound and let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def refused() -> list[str]:
    """ssh options sending the nodes to a port that refuses connections."""
    return [f"Port={free_port()}"]


class SilentListener:
    """Accepts TCP connections on 127.0.0.1: hangs up on the first at once and never
    answers the others (an ssh client waits there for the server's banner). Records what
    it accepted, to see them closed."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if not self.accepted:
                conn.close()
            self.accepted.append(conn)

    def closed_by_peer(self, conn: socket.socket, timeout: float = 20.0) -> bool:
        """Whether the client closed ``conn`` (EOF or reset) within ``timeout``."""
        conn.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if conn.recv(65536) == b"":
                    return True
            except TimeoutError:
                continue
            except OSError:
                return True
        return False

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()
        self.thread.join(5)


@pytest.fixture
def silent():
    listener = SilentListener()
    try:
        yield listener
    finally:
        listener.close()


# ---- the NDJSON lines ----------------------------------------------------------------------
@pytest.mark.parametrize("resp,records", [
    (Response(node="n1", data="up 3 days", obj={"stdout": ["up 3 days"]}),
     [{"node": "n1", "stdout": "up 3 days"}]),
    (Response(node="n1", data="oops", obj={"stderr": ["oops"]}, stream="err"),
     [{"node": "n1", "stderr": "oops"}]),
    (Response(node="n2", data="Remote_command_rc = 3", obj={"rc": 3}),
     [{"node": "n2", "rc": 3}]),
    (Response(node="n2", error="cannot connect to 127.0.0.1:1: connection refused",
              errorcode=1),
     [{"node": "n2", "error": "cannot connect to 127.0.0.1:1: connection refused"}]),
    (Response(error="n2 remote Command had return code: 3", errorcode=1),
     [{"error": "n2 remote Command had return code: 3"}]),
    (Response(warning="waited 2.0s"), [{"warning": "waited 2.0s"}]),
    (Response(data="TRACE: xdsh: 2 nodes"), [{"message": "TRACE: xdsh: 2 nodes"}]),
    (Response(errorcode=1), []),   # an exit status alone (xdsh -Q): counted, not a line
])
def test_each_response_becomes_documented_lines(resp, records):
    assert shell_records(resp) == records
    check_lines(records)


def test_the_done_line_is_documented_and_other_shapes_are_not():
    check_lines([{"done": True, "rc": 1, "job": "abc"}])
    validator = jsonschema.Draft7Validator(line_schema())
    for bad in ({"node": "n1"}, {"node": "n1", "stdout": "x", "rc": 0}, {"done": False, "rc": 0},
                {"node": "n1", "rc": "0"}, {"stdout": "no node"}):
        assert list(validator.iter_errors(bad)), f"{bad} passed as a documented line"


# ---- runs that reach no node ---------------------------------------------------------------
def test_unreachable_nodes_each_get_an_error_line_and_the_run_exits_1(cluster_daemon,
                                                                      refused):
    status, ctype, raw = post(cluster_daemon, "/xcatws/nodes/compute/shell",
                              {"command": "hostname", "options": refused, "timeout": 30})
    assert status == 200, raw
    assert ctype.startswith(NDJSON)
    records = ndjson(raw)
    check_lines(records)
    errors = {r["node"]: r["error"] for r in records if "error" in r}
    assert sorted(errors) == ["n1", "n2"], records
    for text in errors.values():
        assert "connection refused" in text
    assert not [r for r in records if "stdout" in r or ("node" in r and "rc" in r)]
    assert records[-1]["done"] is True and records[-1]["rc"] == 1, records[-1]
    assert [r for r in records if "done" in r] == [records[-1]]


def test_the_run_is_a_job_with_the_nodes_errors(cluster_daemon, refused):
    conn = connect(cluster_daemon)
    try:
        conn.request("POST", "/xcatws/nodes/n1/shell",
                     json.dumps({"command": "hostname", "options": refused}),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        jobid = resp.getheader("X-Xcat-Job")
        records = ndjson(resp.read())
    finally:
        conn.close()
    assert jobid and records[-1] == {"done": True, "rc": 1, "job": jobid}
    conn = connect(cluster_daemon)
    try:
        conn.request("GET", f"/xcatws/jobs/{jobid}")
        body = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert body["job"]["command"] == "xdsh" and body["job"]["user"] == "root"
    assert body["job"]["exitcode"] in (1, "1")
    assert any(r.get("node") == "n1" and "connection refused" in r.get("error", "")
               for r in body["results"])


def test_files_to_unreachable_nodes_each_get_an_error_line(cluster_daemon, refused, tmp_path):
    src = tmp_path / "motd"
    src.write_text("hello\n")
    status, ctype, raw = post(cluster_daemon, "/xcatws/nodes/n1,n2/files",
                              {"src": str(src), "target": "/etc/motd", "options": refused})
    assert status == 200, raw
    assert ctype.startswith(NDJSON)
    records = ndjson(raw)
    check_lines(records)
    assert sorted(r["node"] for r in records if "connection refused" in r.get("error", "")) \
        == ["n1", "n2"], records
    assert records[-1]["done"] is True and records[-1]["rc"] == 1


def test_output_is_sent_while_the_run_goes_on_and_a_client_that_leaves_stops_it(
        cluster_daemon, silent):
    """Both nodes go to the listener: it hangs up on the first at once (an error line) and
    keeps the other waiting for a banner that never comes (for 600 s). The first node's line
    arrives while the other still runs, and closing the connection cancels the job and
    closes the waiting node's ssh connection."""
    mn = cluster_daemon
    conn = connect(mn)
    body = {"command": "hostname", "options": ["ConnectTimeout=600", f"Port={silent.port}"]}
    try:
        conn.request("POST", "/xcatws/nodes/n1,n2/shell", json.dumps(body),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Type").startswith(NDJSON)
        jobid = resp.getheader("X-Xcat-Job")
        first = json.loads(resp.readline())
        assert first.get("node") in ("n1", "n2") and first.get("error"), first
        assert poll(lambda: len(silent.accepted) == 2), "the second ssh connection never came"
    finally:
        conn.close()

    def state() -> str | None:
        c = connect(mn)
        try:
            c.request("GET", f"/xcatws/jobs/{jobid}")
            return json.loads(c.getresponse().read())["job"]["state"]
        finally:
            c.close()

    assert poll(lambda: state() == "cancelled"), f"the job is {state()}, not cancelled"
    assert silent.closed_by_peer(silent.accepted[1]), "the waiting ssh connection stayed open"


# ---- refused requests ----------------------------------------------------------------------
@pytest.mark.parametrize("path,body,field", [
    (SHELL, {"command": "uptime", "comand": "x"}, "comand"),
    (SHELL, {"command": 5}, "command"),
    (SHELL, {"command": ["uptime"]}, "command"),
    (SHELL, {}, "command"),
    (SHELL, {"command": "   "}, "command"),
    (SHELL, {"command": "uptime", "fanout": "8"}, "fanout"),
    (SHELL, {"command": "uptime", "fanout": 0}, "fanout"),
    (SHELL, {"command": "uptime", "fanout": 2.5}, "fanout"),
    (SHELL, {"command": "uptime", "timeout": -1}, "timeout"),
    (SHELL, {"command": "uptime", "timeout": True}, "timeout"),
    (SHELL, {"command": "uptime", "options": "Port=22"}, "options"),
    (SHELL, {"command": "uptime", "options": ["ForwardAgent=yes"]}, "ForwardAgent"),
    (SHELL, {"command": "uptime", "env": {"A B": "1"}}, "env"),
    (SHELL, {"command": "uptime", "env": {"A;reboot;B": "1"}}, "env"),
    (SHELL, {"command": "uptime", "env": {"A": 1}}, "env"),
    (SHELL, {"command": "uptime", "stream": "yes"}, "stream"),
    (SHELL, {"command": "uptime", "exitcode": 1}, "exitcode"),
    (SHELL, {"command": "uptime", "user": "root; rm"}, "root; rm"),
    (SHELL, [{"command": "uptime"}], "JSON object"),
    (SHELL, "{not json", "JSON object"),
    (FILES, {"target": "/tmp/"}, "src"),
    (FILES, {"src": [], "target": "/tmp/"}, "src"),
    (FILES, {"src": ["/etc/hosts"]}, "target"),
    (FILES, {"src": [1], "target": "/tmp/"}, "src"),
    (FILES, {"src": "etc/hosts", "target": "/tmp/"}, "src"),
    (FILES, {"src": "/etc/hosts", "target": "tmp/"}, "target"),
    (FILES, {"src": "/etc/hosts", "target": "/tmp/", "recurse": True}, "recurse"),
    (FILES, {"src": "{tmp}/no-such-file", "target": "/tmp/"}, "no-such-file"),
    (FILES, {"src": "/etc/hosts", "target": "{tmp}/no-such-dir", "pull": True},
     "no-such-dir"),
])
def test_a_bad_body_is_400_naming_the_field(cluster_daemon, tmp_path, path, body, field):
    if isinstance(body, dict):
        body = {k: v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v
                for k, v in body.items()}
        if "options" not in body:   # never the host's own sshd
            body["options"] = [f"Port={free_port()}"]
    status, ctype, raw = post(cluster_daemon, path.format(name="n1,n2"), body)
    assert status == 400, raw
    assert ctype.startswith("application/json")
    answer = json.loads(raw)
    schema = openapi_spec()["paths"][path]["post"]["responses"]["400"]["content"][
        "application/json"]["schema"]
    jsonschema.validate(answer, schema)
    assert any(field in e for e in answer["errors"]), answer


def test_unknown_nodes_are_404_as_on_other_node_routes(cluster_daemon, refused):
    status, _, raw = post(cluster_daemon, "/xcatws/nodes/n1,n99/shell",
                              {"command": "uptime", "options": refused})
    assert status == 404, raw
    assert any("n99" in e for e in json.loads(raw)["errors"])


@pytest.fixture
def bob(cluster_daemon, tmp_path) -> dict:
    files = issue_client_cert(cluster_daemon.paths, "bob", tmp_path / "bob")
    return {"cred": files.cred, "ca": files.ca}


def test_a_user_without_a_policy_row_is_403(cluster_daemon, bob, refused, tmp_path):
    for path, body in (("/xcatws/nodes/n1/shell", {"command": "uptime", "options": refused}),
                       ("/xcatws/nodes/n1/files", {"src": "/etc/hosts", "target": "/tmp/"})):
        status, ctype, raw = post(cluster_daemon, path, body, **bob)
        assert status == 403, raw
        assert ctype.startswith("application/json")
        assert any("Permission denied" in e for e in json.loads(raw)["errors"]), raw
    denied = poll(lambda: [r for r in cluster_daemon.db.rows("auditlog")
                           if r.get("userid") == "bob" and r.get("command") == "xdsh"
                           and r.get("status") == "Denied"])
    assert denied, "the denied REST xdsh is not in the auditlog"


def test_files_stay_root_only_whatever_policy_allows(cluster_daemon, bob, refused):
    mn = cluster_daemon
    mn.ok("chtab", "priority=5", "policy.name=bob", "policy.commands=xdcp,xdsh",
          "policy.rule=allow")
    answers: list[tuple[int, str, bytes]] = []

    def shell_allowed() -> bool:
        answers.append(post(mn, "/xcatws/nodes/n1/shell",
                            {"command": "uptime", "options": refused}, **bob))
        return answers[-1][0] == 200

    assert poll(shell_allowed), f"the policy row for bob never took effect: {answers[-1]}"
    assert ndjson(answers[-1][2])[-1]["rc"] == 1
    status, _, raw = post(mn, "/xcatws/nodes/n1/files",
                          {"src": "/etc/hosts", "target": "/tmp/", "options": refused}, **bob)
    assert status == 403, raw
    assert any("only root" in e for e in json.loads(raw)["errors"]), raw
