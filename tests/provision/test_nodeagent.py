"""The node agent against a live xcatd: enrolment with the boot token, mutual TLS with the
node certificate, the plan run in xCAT's order with timeouts, events and status, and
updatenode through the agent's long poll. The agent is the real postscripts/xcatagent, run
as a process on 127.0.0.0/8 (the node's address is the one it sends from)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from xcatd.provision.nextboot import now_text, token_hash

AGENT = Path(__file__).resolve().parents[2] / "postscripts" / "xcatagent"
N1, N2 = "127.0.0.11", "127.0.0.12"


def build(mn, *, scripts: dict[str, str], postscripts: str = "",
          postbootscripts: str = "") -> None:
    mn.ok("nodeadd", "n1,n2", "groups=compute")
    mn.ok("chtab", "node=n1", f"hosts.ip={N1}")
    mn.ok("chtab", "node=n2", f"hosts.ip={N2}")
    mn.ok("chtab", "key=master", "site.value=127.0.0.1")
    mn.ok("chtab", "key=xcatdport", f"site.value={mn.daemon.listening.port}")
    mn.ok("chtab", "node=xcatdefaults", "postscripts.postscripts=",
          "postscripts.postbootscripts=")
    mn.ok("chtab", "node=n1", f"postscripts.postscripts={postscripts}",
          f"postscripts.postbootscripts={postbootscripts}")
    d = mn.paths.under("/install/postscripts")
    d.mkdir(parents=True, exist_ok=True)
    for name, text in scripts.items():
        (d / name).write_text(text)
        (d / name).chmod(0o755)


def arm(mn, node: str, token: str) -> None:
    """What nodeset does for the token: its hash and its time."""
    with mn.db.begin() as conn:
        mn.db.set_rows(conn, "bootstate", {(node,): {"tokenhash": token_hash(token),
                                                     "tokentime": now_text()}})


class Node:
    """One node's agent files in a scratch directory, and the agent run from it."""

    def __init__(self, mn, tmp: Path, name: str, ip: str) -> None:
        self.mn, self.name, self.ip = mn, name, ip
        self.dir = tmp / name
        self.dir.mkdir()
        self.env = {**os.environ, "XCATAGENT_DIR": str(self.dir / "agent"),
                    "XCATAGENT_POSTDIR": str(self.dir / "xcatpost"),
                    "XCATAGENT_BOOTENV": str(self.dir / "boot.env"),
                    "XCATAGENT_DONE": str(self.dir / "done"),
                    "XCATAGENT_LOG": str(self.dir / "xcat.log"),
                    "XCATAGENT_SOURCE": ip, "XCATAGENT_NO_SERVE": "1"}
        self.procs: list[subprocess.Popen] = []

    def boot_env(self, token: str) -> None:
        http = self.mn.daemon.listening.http_port
        (self.dir / "boot.env").write_text(
            f"XCAT_NODE='{self.name}'\n"
            f"XCAT_CALLBACK='http://127.0.0.1:{http}/xcat/callback/{self.name}'\n"
            f"XCAT_TOKEN='{token}'\n")

    def agent(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(AGENT), *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def serve(self) -> subprocess.Popen:
        """The agent waiting for tasks; returns once its poll has reached xcatd."""
        p = subprocess.Popen([sys.executable, str(AGENT), "serve"], env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
        self.procs.append(p)
        wait_connected(self.mn, self.name)
        return p

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def tls(self) -> ssl.SSLContext:
        """A client context with this node's certificate (as the agent makes it)."""
        agent = self.dir / "agent"
        ctx = ssl.create_default_context(cafile=str(agent / "ca.pem"))
        ctx.check_hostname = False
        ctx.load_cert_chain(str(agent / "node.pem"), str(agent / "node.key"))
        return ctx

    def tls_get(self, path: str, source: str | None = None) -> tuple[int, bytes]:
        """GET an agent path with this node's certificate, from ``source``."""
        ctx = self.tls()
        import http.client
        conn = http.client.HTTPSConnection("127.0.0.1", self.mn.daemon.listening.port,
                                           context=ctx, timeout=30,
                                           source_address=(source or self.ip, 0))
        try:
            conn.request("GET", "/xcat/agent/" + path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


def wait_connected(mn, node: str, timeout: float = 30) -> None:
    from xcatd.provision.agenttasks import board_for
    deadline = time.monotonic() + timeout
    while not board_for(mn.root).connected(node):
        assert time.monotonic() < deadline, f"the agent of {node} never polled xcatd"
        time.sleep(0.1)


@pytest.fixture
def nodes(mn_daemon, tmp_path):
    made: list[Node] = []

    def make(name: str = "n1", ip: str = N1) -> Node:
        n = Node(mn_daemon, tmp_path, name, ip)
        made.append(n)
        return n
    yield make
    for n in made:
        n.stop()


def events(mn, node: str) -> list[dict]:
    return [r for r in mn.db.rows("nodeevents") if r["node"] == node]


def status(mn, node: str) -> str | None:
    return mn.db.rows("nodelist", keys=[node])[0].get("status")


HELLO = '#!/bin/sh\necho "hello from $NODE, master $MASTER, updatenode=$UPDATENODE $*"\n'
BAD = "#!/bin/sh\necho about to fail\nexit 3\n"
# a script that hangs, with a child in its process group that would outlive it
HANG = "#!/bin/sh\nsleep 3000 &\necho hanging\nexec sleep 3001\n"


def _sleepers(marker: str) -> list[str]:
    got = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    return got.stdout.split()


def test_a_booting_node_enrols_runs_its_plan_in_order_and_reports_failed_naming_scripts(
        mn_daemon, nodes):
    build(mn_daemon, scripts={"hello": HELLO, "bad": BAD, "hang": HANG},
          postscripts="hello a1,bad,hang@2", postbootscripts="hello b1")
    n1 = nodes()
    arm(mn_daemon, "n1", "tok-1")
    n1.boot_env("tok-1")
    got = n1.agent("boot")
    assert got.returncode == 0, got.stdout + got.stderr
    out = got.stdout
    # xCAT's order: postscripts then postbootscripts, each with its start and end line
    order = [line for line in out.splitlines() if "start..:" in line]
    assert order == ["postscript start..: hello a1", "postscript start..: bad",
                     "postscript start..: hang", "postbootscript start..: hello b1"]
    assert "hello from n1, master 127.0.0.1, updatenode=0 a1" in out
    assert "postscript end....: bad exited with code 3" in out
    assert "postscript end....: hang timed out after 2 s" in out
    assert "reported failed (failed: bad, hang)" in out
    assert not _sleepers("300[01]"), "the hanging script's process group was not killed"
    assert status(mn_daemon, "n1") == "failed"
    evs = events(mn_daemon, "n1")
    assert [(e["script"], e["status"], e["rc"]) for e in evs] == [
        ("hello a1", "ok", "0"), ("bad", "failed", "3"), ("hang", "timeout", ""),
        ("hello b1", "ok", "0")] or [(e["script"], e["status"]) for e in evs] == [
        ("hello a1", "ok"), ("bad", "failed"), ("hang", "timeout"), ("hello b1", "ok")]
    assert "about to fail" in evs[1]["tail"]
    # the certificate: CN n1, signed by the management node's CA, key made on the node
    cert = (n1.dir / "agent/node.pem").read_text()
    assert "BEGIN CERTIFICATE" in cert
    assert oct((n1.dir / "agent/node.key").stat().st_mode & 0o777) == "0o600"


def test_a_node_with_good_scripts_ends_booted(mn_daemon, nodes):
    build(mn_daemon, scripts={"hello": HELLO}, postscripts="hello")
    n1 = nodes()
    arm(mn_daemon, "n1", "tok-ok")
    n1.boot_env("tok-ok")
    got = n1.agent("boot")
    assert got.returncode == 0 and "reported booted" in got.stdout, got.stdout + got.stderr
    assert status(mn_daemon, "n1") == "booted"


def test_identity_faults_are_refused_with_403_and_an_audit_row(mn_daemon, nodes):
    build(mn_daemon, scripts={"hello": HELLO}, postscripts="hello")
    mn_daemon.ok("chtab", "key=auditskipcmds", "site.value=")
    n1, n2 = nodes("n1", N1), nodes("n2", N2)
    arm(mn_daemon, "n1", "tok-a")
    n1.boot_env("tok-a")
    assert n1.agent("enrol").returncode == 0
    assert n1.tls_get("plan")[0] == 200
    # the token is spent: a replay cannot enrol (another key pair, same token)
    again = n1.agent("enrol")
    assert again.returncode == 1 and "HTTP 403" in again.stderr
    # the same certificate from another address
    assert n1.tls_get("plan", source=N2)[0] == 403
    # another node's token from n2's address: refused (not n1's address)
    n2.boot_env("tok-a")
    (n2.dir / "boot.env").write_text((n2.dir / "boot.env").read_text().replace(
        "XCAT_NODE='n2'", "XCAT_NODE='n1'").replace("/callback/n2", "/callback/n1"))
    assert n2.agent("enrol").returncode == 1
    # a certificate replaced by a newer enrolment is refused
    old = (n1.dir / "agent").rename(n1.dir / "agent-old")
    arm(mn_daemon, "n1", "tok-b")
    n1.boot_env("tok-b")
    assert n1.agent("enrol").returncode == 0
    (n1.dir / "agent").rename(n1.dir / "agent-new")
    old.rename(n1.dir / "agent")
    code, body = n1.tls_get("plan")
    assert code == 403 and b"not the current certificate of n1" in body
    # an expired token
    (n1.dir / "agent").rename(n1.dir / "agent-old2")
    with mn_daemon.db.begin() as conn:
        mn_daemon.db.set_rows(conn, "bootstate", {("n1",): {
            "tokenhash": token_hash("tok-c"), "tokentime": "01-01-2020 00:00:00",
            "lastfetch": None}})
    n1.boot_env("tok-c")
    late = n1.agent("enrol")
    assert late.returncode == 1 and "HTTP 403" in late.stderr
    denied = [r for r in mn_daemon.db.rows("auditlog") if r["command"] in
              ("enrol", "getpostscript") and "enied" in (r["status"] or "")]
    assert len(denied) >= 4, denied


def test_a_user_certificate_cannot_use_the_agent_paths_nor_a_node_certificate_commands(
        mn_daemon, nodes):
    build(mn_daemon, scripts={"hello": HELLO}, postscripts="hello")
    n1 = nodes()
    arm(mn_daemon, "n1", "tok-u")
    n1.boot_env("tok-u")
    assert n1.agent("enrol").returncode == 0
    ctx = n1.tls()
    body = json.dumps({"request": {"command": "nodels", "noderange": "all"}}).encode()
    req = urllib.request.Request(f"https://127.0.0.1:{mn_daemon.daemon.listening.port}"
                                 "/v1/request", data=body, method="POST")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, context=ctx, timeout=30)
    assert exc.value.code == 403


def test_updatenode_runs_scripts_through_the_agent_and_reports_nodes_without_one(
        mn_daemon, nodes):
    build(mn_daemon, scripts={"hello": HELLO, "bad": BAD}, postscripts="hello")
    n1 = nodes()
    arm(mn_daemon, "n1", "tok-u1")
    n1.boot_env("tok-u1")
    assert n1.agent("enrol").returncode == 0
    n1.serve()
    r = mn_daemon.run("updatenode", "n1,n2", "-P", "hello")
    assert r.rc == 1   # n2 has no agent
    assert "n1: postscript start..: hello" in r.lines
    assert "n1: hello from n1, master 127.0.0.1, updatenode=1 " in r.lines
    assert "n1: postscript end....: hello exited with code 0" in r.lines
    assert "Running of postscripts has completed." in r.lines
    assert "n2: Error: no node agent is connected (nothing polled xcatd within 5 s): is " \
           "xcatagent running on the node, and enrolled?" in r.err.splitlines(), r.err
    rows = {r["node"]: r for r in mn_daemon.db.rows("nodelist", keys=["n1", "n2"])}
    assert rows["n1"]["updatestatus"] == "synced" and rows["n2"]["updatestatus"] == "failed"
    assert rows["n1"]["updatestatustime"]
    bad = mn_daemon.run("updatenode", "n1", "-P", "bad")
    assert bad.rc == 1 and "n1: postscript end....: bad exited with code 3" in bad.lines
    assert mn_daemon.db.rows("nodelist", keys=["n1"])[0]["updatestatus"] == "failed"
    # the whole plan, with UPDATENODE=1
    allp = mn_daemon.run("updatenode", "n1", "-P")
    assert allp.rc == 0 and "n1: hello from n1, master 127.0.0.1, updatenode=1 " in allp.lines


@pytest.mark.parametrize("argv,message", [
    (("-k", "-P"), "If you use the -k flag, you cannot specify the -S,-P,-f or -F flags."),
    (("-f", "-F"), "You can not specify both the -f and -F flags."),
    (("-f", "-S"), "If you specify the -f flag you must not specify either the -S or -k or "
                   "-P or -F flags"),
])
def test_updatenode_refuses_xcats_illegal_combinations(mn_daemon, argv, message):
    mn_daemon.ok("nodeadd", "n1", "groups=compute")
    r = mn_daemon.run("updatenode", "n1", *argv)
    assert r.rc == 1 and message in r.err


def test_policy_rows_can_name_nodes(mn_daemon, nodes):
    """As xCAT's policy does for node-originated commands: a row naming n1 decides for n1's
    requests only."""
    build(mn_daemon, scripts={"hello": HELLO}, postscripts="hello")
    n1, n2 = nodes("n1", N1), nodes("n2", N2)
    for n, tok in ((n1, "tok-p1"), (n2, "tok-p2")):
        arm(mn_daemon, n.name, tok)
        n.boot_env(tok)
        assert n.agent("enrol").returncode == 0
    mn_daemon.ok("chtab", "priority=4.39", "policy.name=n1", "policy.commands=getpostscript",
                 "policy.rule=deny")
    assert n1.tls_get("plan")[0] == 403
    assert n2.tls_get("plan")[0] == 200


def test_xcatagent_setup_installs_the_agent_and_enrols_as_an_installers_post_step(
        mn_daemon, nodes, tmp_path):
    """What the install templates' post step runs in the new system (XCAT_ROOT stands in
    for it): the agent's files from /install/postscripts over HTTP, the unit enabled, the
    node enrolled with the install's token, the token not left behind."""
    build(mn_daemon, scripts={})
    n1 = nodes()
    arm(mn_daemon, "n1", "tok-inst")
    http = f"http://127.0.0.1:{mn_daemon.daemon.listening.http_port}"
    target = tmp_path / "target"
    got = subprocess.run(["sh", str(AGENT.with_name("xcatagent-setup")), http,
                          f"{http}/xcat/callback/n1"],
                         env={**n1.env, "XCAT_TOKEN": "tok-inst", "XCAT_ROOT": str(target)},
                         capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stdout + got.stderr
    assert "n1 enrolled" in got.stdout
    assert (target / "usr/lib/xcat/xcatagent").read_bytes() == AGENT.read_bytes()
    assert os.readlink(target / "etc/systemd/system/multi-user.target.wants/"
                       "xcatagent.service") == "/etc/systemd/system/xcatagent.service"
    assert (target / "etc/xcat/agent/node.pem").is_file()
    assert not (target / "etc/xcat/agent/enrol.env").exists()   # the token is not kept
    # the same token again: spent
    again = subprocess.run(["sh", str(AGENT.with_name("xcatagent-setup")), http,
                            f"{http}/xcat/callback/n1"],
                           env={**n1.env, "XCAT_TOKEN": "tok-inst",
                                "XCAT_ROOT": str(tmp_path / "t2")},
                           capture_output=True, text=True, timeout=120)
    assert "not enrolled now" in again.stdout


def test_updatenode_F_syncs_the_synclist_through_the_agent_and_runs_execute(
        mn_daemon, nodes, tmp_path):
    build(mn_daemon, scripts={})
    sync = mn_daemon.root / "install/custom/sync"
    sync.mkdir(parents=True)
    (sync / "motd").write_text("synced by xcat\n")
    (sync / "post.sh").write_text("#!/bin/sh\necho EXECUTED-$(cat \"$XCAT_ROOT/etc/motd\")\n")
    (sync / "post.sh").chmod(0o755)
    s = "/install/custom/sync"   # paths on the management node are under its XCATROOT
    (sync / "n.synclist").write_text(f"{s}/motd -> /etc/motd\n{s}/post.sh -> /root/post.sh\n"
                                     f"EXECUTE:\n{s}/post.sh\n")
    mn_daemon.ok("mkdef", "-t", "osimage", "-o", "img", "imagetype=linux",
                 "provmethod=netboot", "osvers=debian12", "osarch=x86_64", "profile=compute",
                 "synclists=/install/custom/sync/n.synclist")
    mn_daemon.ok("chtab", "node=n1", "nodetype.provmethod=img")
    n1 = nodes()
    arm(mn_daemon, "n1", "tok-f")
    n1.boot_env("tok-f")
    assert n1.agent("enrol").returncode == 0
    target = tmp_path / "target"
    target.mkdir()
    n1.env["XCAT_ROOT"] = str(target)
    n1.serve()
    r = mn_daemon.run("updatenode", "n1", "-F")
    assert r.rc == 0, r.out + r.err
    assert (target / "etc/motd").read_text() == "synced by xcat\n"
    assert "n1: /root/post.sh: EXECUTED-synced by xcat" in r.lines, r.lines
    assert 'File synchronization has completed for nodes: "n1"' in r.lines
    again = mn_daemon.run("updatenode", "n1", "-F")   # nothing changed: post.sh not run
    assert again.rc == 0, again.err
    assert "n1: /root/post.sh: EXECUTED-synced by xcat" not in again.lines, again.lines


def test_updatenode_S_warns_a_diskless_node_and_k_redelivers_keys_through_the_agent(
        mn_daemon, nodes):
    """-S runs otherpkgs, -k remoteshell (stand-ins here: the real ones would change this
    machine's apt sources and root's keys), each through the agent."""
    build(mn_daemon, scripts={"otherpkgs": "#!/bin/sh\necho otherpkgs UPDATENODE=$UPDATENODE\n",
                              "remoteshell": "#!/bin/sh\necho keys delivered\n"})
    mn_daemon.ok("mkdef", "-t", "osimage", "-o", "img", "imagetype=linux",
                 "provmethod=netboot", "osvers=debian12", "osarch=x86_64", "profile=compute")
    mn_daemon.ok("chtab", "node=n1", "nodetype.provmethod=img")
    n1 = nodes()
    arm(mn_daemon, "n1", "tok-s")
    n1.boot_env("tok-s")
    assert n1.agent("enrol").returncode == 0
    n1.serve()
    sw = mn_daemon.run("updatenode", "n1", "-S")
    assert sw.rc == 0, sw.err
    assert "n1: otherpkgs UPDATENODE=1" in sw.lines
    assert "Running of Software maintenance has completed." in sw.lines
    assert "n1: Warning: this node is diskless: software installed by updatenode -S lasts " \
           "until it reboots." in sw.err, sw.err
    assert "genimage img; packimage img" in sw.err
    before = mn_daemon.db.rows("nodecert", keys=["n1"])[0]["fingerprint"]
    old_cert = (n1.dir / "agent/node.pem").read_text()
    shutil.copytree(n1.dir / "agent", n1.dir / "agent-before")
    keys = mn_daemon.run("updatenode", "n1", "-k")
    assert keys.rc == 0 and "n1: keys delivered" in keys.lines, keys.out + keys.err
    assert "n1: certificate renewed" in keys.lines
    assert "Redeliver security files has completed." in keys.lines
    # a new certificate (for a new key): the node's, and the old one no longer counts
    assert mn_daemon.db.rows("nodecert", keys=["n1"])[0]["fingerprint"] != before
    assert (n1.dir / "agent/node.pem").read_text() != old_cert
    assert n1.tls_get("plan")[0] == 200
    (n1.dir / "agent").rename(n1.dir / "agent-after")
    (n1.dir / "agent-before").rename(n1.dir / "agent")
    assert n1.tls_get("plan")[0] == 403
    (n1.dir / "agent").rename(n1.dir / "agent-before")
    (n1.dir / "agent-after").rename(n1.dir / "agent")
    again = mn_daemon.run("updatenode", "n1", "-P", "otherpkgs")   # the agent goes on
    assert again.rc == 0, again.err


def test_a_poll_whose_connection_closed_never_takes_a_task(mn_daemon, nodes):
    """An agent that went away mid-poll (rebooted, killed): updatenode says the node has no
    agent, instead of handing its task to the dead poll and waiting for its timeout."""
    import http.client
    build(mn_daemon, scripts={"hello": HELLO}, postscripts="hello")
    n1 = nodes()
    arm(mn_daemon, "n1", "tok-d")
    n1.boot_env("tok-d")
    assert n1.agent("enrol").returncode == 0
    ctx = n1.tls()
    conn = http.client.HTTPSConnection("127.0.0.1", mn_daemon.daemon.listening.port,
                                       context=ctx, timeout=30, source_address=(N1, 0))
    conn.request("GET", "/xcat/agent/task?wait=50")
    wait_connected(mn_daemon, "n1")
    conn.sock.close()   # the agent is gone, its poll still "open" on the server
    conn.close()
    r = mn_daemon.run("updatenode", "n1", "-P", "hello", "-t", "120")
    assert r.rc == 1
    assert "n1: Error: no node agent is connected" in r.err, r.err


def test_a_refused_enrolment_ends_the_boot_with_the_code_the_unit_does_not_restart(
        mn_daemon, nodes):
    """A spent token (a replay, or a second agent with the same boot): the agent stops with
    exit code 3, which xcatagent.service's RestartPreventExitStatus names, instead of
    knocking on the management node every 30 s for ever."""
    build(mn_daemon, scripts={"hello": HELLO}, postscripts="hello")
    n1 = nodes()
    arm(mn_daemon, "n1", "tok-r")
    n1.boot_env("tok-r")
    assert n1.agent("enrol").returncode == 0
    shutil.rmtree(n1.dir / "agent")
    got = n1.agent("boot")
    assert got.returncode == 3, got.stdout + got.stderr
    assert "cannot enrol: enrolment refused" in got.stdout
    unit = AGENT.with_name("xcatagent.service").read_text()
    assert "RestartPreventExitStatus=3" in unit


def test_a_diskless_boot_that_keeps_nodesets_token_enrols_again_after_its_netbooting_report(
        mn_daemon, nodes):
    """pxelinux or GRUB serve nodeset's token on every boot (only xcatd's iPXE script makes
    a new one): the initrd's netbooting report, once per boot, lets that boot enrol."""
    build(mn_daemon, scripts={})
    n1 = nodes()
    arm(mn_daemon, "n1", "tok-same")
    n1.boot_env("tok-same")
    assert n1.agent("enrol").returncode == 0
    assert n1.agent("enrol").returncode == 1          # the same boot: spent
    import http.client as hc
    conn = hc.HTTPConnection("127.0.0.1", mn_daemon.daemon.listening.http_port, timeout=30,
                             source_address=(N1, 0))
    conn.request("POST", "/xcat/callback/n1", body="status=netbooting",
                 headers={"Authorization": "Bearer tok-same",
                          "Content-Type": "application/x-www-form-urlencoded"})
    assert conn.getresponse().status == 200
    conn.close()
    assert n1.agent("enrol").returncode == 0          # the next boot


def test_a_large_batch_of_events_arrives_whole(mn_daemon, nodes):
    """50 events with full 2,000-character tails (~110 kB: many TCP segments) in one post."""
    import http.client
    build(mn_daemon, scripts={})
    n1 = nodes()
    arm(mn_daemon, "n1", "tok-big")
    n1.boot_env("tok-big")
    assert n1.agent("enrol").returncode == 0
    ctx = n1.tls()
    batch = [{"phase": "postscripts", "script": f"s{i}", "status": "ok", "rc": 0,
              "duration": 0.1, "tail": f"{i:04d}" + "x" * 1996} for i in range(50)]
    conn = http.client.HTTPSConnection("127.0.0.1", mn_daemon.daemon.listening.port,
                                       context=ctx, timeout=30, source_address=(N1, 0))
    conn.request("POST", "/xcat/agent/events", body=json.dumps({"events": batch}),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    conn.close()
    got = events(mn_daemon, "n1")
    assert len(got) == 50 and got[-1]["tail"].startswith("0049")


def test_what_a_node_sends_back_is_checked_for_shape():
    """A task's result comes from the node: a non-number rc counts as a failure, lines that
    are not a list show nothing, and a flood of lines is cut with a warning."""
    from xcatd.plugins.updatenode import MAX_LINES, _rc, _result_lines
    assert (_rc({"rc": 0}), _rc({}), _rc({"rc": 3}), _rc({"rc": "0"}), _rc({"rc": True})) \
        == (0, 0, 3, 1, 1)
    assert [r.error for r in _result_lines("n1", {"rc": "x", "lines": "abc"})] == [
        "updatenode failed on the node"]
    many = list(_result_lines("n1", {"rc": 0, "lines": ["x"] * (MAX_LINES + 3)}))
    assert len(many) == MAX_LINES + 1 and "3 more lines not shown" in many[-1].warning
