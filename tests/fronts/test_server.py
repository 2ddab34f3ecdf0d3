"""xcatd: identity, policy, audit, jobs and per-node locks, through a live daemon."""
from __future__ import annotations

import threading
import time

import pytest
from support.cluster import nodes

from xcatd.base.request import Request, Response
from xcatd.fronts.client import submit
from xcatd.handler import CommandSpec, register, unregister
from xcatd.lab.daemon import DaemonThread
from xcatd.security.credentials import issue_client_cert

pytestmark = pytest.mark.cluster(nodes("n[1-4]", "nodehm.mgt=ipmi"))
GATES: dict[str, threading.Event] = {}
STARTED: dict[str, threading.Event] = {}


def gate(name: str, open_: bool = False) -> threading.Event:
    GATES[name] = threading.Event()
    STARTED[name] = threading.Event()
    if open_:
        GATES[name].set()
    return GATES[name]


def _testhold(req, ctx, nodes):
    """Changes nodes: holds their locks until the test opens its gate."""
    name = req.args["gate"]
    STARTED[name].set()
    GATES[name].wait(20)
    yield Response(data=f"{name} done")


def _testslow(req, ctx, nodes):
    name = req.args["gate"]
    STARTED[name].set()
    for i in range(int(req.args.get("count", 50))):
        yield Response(node=f"n{i}", data="tick")
        GATES[name].wait(0.05)


@pytest.fixture
def gated_commands():
    """testhold (changes nodes: holds their locks until its gate opens) and testslow (streams
    ticks), registered for this test only."""
    register(CommandSpec("testhold", _testhold, "required", writes=True))
    register(CommandSpec("testslow", _testslow, "none"))
    yield
    unregister("testhold")
    unregister("testslow")


def call(command_name: str, noderange: str | None = None, **args) -> list[Response]:
    return list(submit(Request(command_name, noderange, args)))


def in_thread(fn, *a, **kw):
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("r", fn(*a, **kw)), daemon=True)
    t.start()
    return t, out


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def audit_rows(mn):
    return mn.db.rows("auditlog")


def as_user(mn, monkeypatch, tmp_path, user: str) -> None:
    """Later commands in this test run as `user` (their client certificate in HOME)."""
    home = tmp_path / f"home-{user}"
    issue_client_cert(mn.paths, user, home / ".xcat")
    monkeypatch.setenv("HOME", str(home))


# ---- identity and policy ---------------------------------------------------------------------
def test_root_over_the_unix_socket(cluster_daemon, monkeypatch):
    monkeypatch.delenv("XCATHOST")
    cluster_daemon.ok("chtab", "-d", "key=auditskipcmds", "site")
    assert cluster_daemon.ok("nodels", "compute").lines == ["n1", "n2", "n3", "n4"]
    row = wait_for(lambda: [r for r in audit_rows(cluster_daemon) if r["command"] == "nodels"],
                   what="the audit row")[-1]
    assert (row["userid"], row["clienttype"], row["status"]) == ("root", "unix", "Allowed")


def test_a_user_without_policy_rights_is_denied_and_audited(cluster_daemon, monkeypatch, tmp_path):
    as_user(cluster_daemon, monkeypatch, tmp_path, "bob")
    r = cluster_daemon.run("nodels", "compute")
    assert r.rc == 1 and r.err == "Error: Permission denied for request\n" and r.out == ""
    row = wait_for(lambda: [a for a in audit_rows(cluster_daemon) if a["userid"] == "bob"],
                   what="bob's audit row")[0]
    assert (row["command"], row["noderange"], row["status"]) == ("nodels", "compute", "Denied")
    assert row["clientname"] == "127.0.0.1"


def test_policy_rows_decide_by_priority_and_noderange(cluster_daemon, monkeypatch, tmp_path):
    cluster_daemon.ok("chtab", "priority=5", "policy.name=bob", "policy.commands=nodels,nodech",
                      "policy.noderange=n[1-2]", "policy.rule=allow")
    cluster_daemon.ok("chtab", "priority=4", "policy.name=bob", "policy.commands=nodech",
                      "policy.rule=deny")
    as_user(cluster_daemon, monkeypatch, tmp_path, "bob")
    wait_for(lambda: cluster_daemon.run("nodels", "n1").rc == 0, what="the policy to take effect")
    assert cluster_daemon.run("nodels", "n[1-2]").lines == ["n1", "n2"]
    assert "Permission denied" in cluster_daemon.run("nodels", "n3").err   # outside the noderange
    assert "Permission denied" in cluster_daemon.run("nodech", "n1", "nodetype.os=x").err  # prio 4
    assert "Permission denied" in cluster_daemon.run("noderm", "n1").err  # no row matches


def test_a_certificate_from_another_ca_is_refused(cluster_daemon, monkeypatch, tmp_path):
    from xcatd.base.paths import Paths
    from xcatd.daemon.initialize import initialize
    other = Paths(tmp_path / "other")
    (tmp_path / "other").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "otherhome"))
    initialize(other)  # issues root's certificate from a different CA into this HOME
    r = cluster_daemon.run("nodels")
    assert r.rc == 1 and "TLS" in r.err and "Traceback" not in r.err


def test_no_daemon_is_a_clear_error(mn_sqlite, monkeypatch):
    monkeypatch.delenv("XCATBYPASS")
    monkeypatch.setenv("XCATHOST", "127.0.0.1:1")
    r = mn_sqlite.run("nodels")
    assert r.rc == 1 and "Cannot connect to xcatd at 127.0.0.1:1" in r.err


def test_bypass_is_for_root_only(mn_sqlite, monkeypatch):
    import xcatd.fronts.client
    monkeypatch.setattr(xcatd.fronts.client.os, "geteuid", lambda: 1000)
    r = mn_sqlite.run("nodels")
    assert r.rc == 1 and "XCATBYPASS is for root" in r.err


# ---- audit ---------------------------------------------------------------------------------
def test_audit_masks_secrets_in_arguments_and_jobs(cluster_daemon):
    cluster_daemon.ok("chtab", "-d", "key=auditskipcmds", "site")
    cluster_daemon.ok("chdef", "n1", "bmc=10.1.0.1", "bmcpassword=s3cret")
    cluster_daemon.ok("chtab", "key=ipmi", "passwd.password=t0psecret")
    rows = wait_for(lambda: [r for r in audit_rows(cluster_daemon) if r["command"] == "chdef"]
                    and [r for r in audit_rows(cluster_daemon) if "t0psecret" in (r["args"] or "")
                         or "passwd.password" in (r["args"] or "")], what="audit rows")
    rows = audit_rows(cluster_daemon)
    text = repr(audit_rows(cluster_daemon)) + repr(cluster_daemon.db.rows("jobs"))
    assert "s3cret" not in text and "t0psecret" not in text
    assert any("bmcpassword=********" in (r["args"] or "") for r in rows)


def test_auditskipcmds_skips_only_the_listed_commands(cluster_daemon):
    cluster_daemon.ok("chtab", "key=auditskipcmds", "site.value=nodels")
    cluster_daemon.ok("nodels")  # (a write through the daemon refreshes its cached site settings)
    cluster_daemon.ok("nodech", "n1", "nodetype.os=rocky9")
    rows = wait_for(lambda: [r for r in audit_rows(cluster_daemon) if r["command"] == "nodech"],
                    what="nodech audited")
    assert rows and not [r for r in audit_rows(cluster_daemon) if r["command"] == "nodels"]


def test_syslog_gets_masked_audit_unless_auditnosyslog(cluster_daemon, monkeypatch):
    import xcatd.daemon.pipeline
    seen: list[str] = []
    monkeypatch.setattr(xcatd.daemon.pipeline.syslog, "syslog", lambda prio, msg: seen.append(msg))
    cluster_daemon.daemon.daemon.pipeline._syslog = True  # as on a machine with /dev/log
    cluster_daemon.ok("chtab", "-d", "key=auditskipcmds", "site")
    cluster_daemon.ok("chdef", "n2", "bmcpassword=s3cret")
    wait_for(lambda: any("chdef" in m for m in seen), what="a syslog line")
    assert not any("s3cret" in m for m in seen)
    cluster_daemon.ok("chtab", "key=auditnosyslog", "site.value=1")
    seen.clear()
    cluster_daemon.ok("nodech", "n2", "nodetype.os=x")
    assert not any("nodech" in m for m in seen)


# ---- jobs ----------------------------------------------------------------------------------
def test_async_prints_the_job_id_and_the_result_is_readable_later(cluster_daemon):
    jobid = cluster_daemon.ok("nodels", "--async", "n[1-2]", "groups").out.strip()
    assert len(jobid) == 36
    waited = cluster_daemon.ok("job", "wait", jobid)
    assert waited.lines == ["n1: compute", "n2: compute"]
    shown = cluster_daemon.ok("job", "show", jobid[:8])
    assert shown.lines[0].startswith(jobid) and "done" in shown.lines[0]
    assert shown.lines[1:] == ["n1: compute", "n2: compute"]


def test_a_failed_async_job_replays_its_error_and_exit_code(cluster_daemon):
    jobid = cluster_daemon.ok("nodels", "--async", "n99").out.strip()
    r = cluster_daemon.run("job", "wait", jobid)
    assert r.rc == 1 and "Invalid nodes and/or groups in noderange: n99" in r.err


def test_a_job_can_be_cancelled(cluster_daemon, gated_commands):
    gate("slow")
    jobid = cluster_daemon.ok("job", "--async", "list").out.strip()  # any job id, to get going
    assert jobid
    t, out = in_thread(call, "testslow", gate="slow", count=1000)
    STARTED["slow"].wait(10)
    running = wait_for(lambda: [line.split()[0] for line in cluster_daemon.ok("job", "list").lines
                                if "testslow" in line and "running" in line],
                       what="the running job")
    assert "cancel requested" in cluster_daemon.ok("job", "cancel", running[0]).out
    t.join(20)
    assert out["r"][-1].error == "cancelled"
    r = cluster_daemon.run("job", "wait", running[0])
    assert r.rc == 1
    assert "cancelled" in cluster_daemon.ok("job", "show", running[0]).lines[0]


def test_restart_marks_running_jobs_interrupted(cluster_daemon, gated_commands):
    gate("hold")
    jobid = cluster_daemon.ok("nodels", "--async", "n1").out.strip()
    cluster_daemon.ok("job", "wait", jobid)
    t, _ = in_thread(call, "testhold", "n3", gate="hold")
    STARTED["hold"].wait(10)
    held = wait_for(lambda: [line.split()[0] for line in cluster_daemon.ok("job", "list").lines
                             if "testhold" in line and "running" in line],
                    what="the running job")[0]
    cluster_daemon.daemon.stop()
    fresh = DaemonThread(cluster_daemon.paths)
    port = fresh.start().port
    cluster_daemon.daemon = fresh
    import os
    os.environ["XCATHOST"] = f"127.0.0.1:{port}"
    try:
        assert "interrupted" in cluster_daemon.ok("job", "show", held).lines[0]
        assert "done" in cluster_daemon.ok("job", "show", jobid).lines[0]
    finally:
        GATES["hold"].set()
        t.join(20)


# ---- per-node locks ------------------------------------------------------------------------
def test_changes_to_disjoint_nodes_run_at_the_same_time(cluster_daemon, gated_commands):
    gate("a")
    gate("b", open_=True)
    ta, out_a = in_thread(call, "testhold", "n1", gate="a")
    assert STARTED["a"].wait(10)
    # n2 is free: this completes while the first request still holds n1
    assert [r.data for r in call("testhold", "n2", gate="b")] == ["b done"]
    # read-only requests never wait, even on a locked node
    assert [r.data for r in call("nodels", "n1", attributes=["groups"])] == ["compute"]
    assert ta.is_alive()
    GATES["a"].set()
    ta.join(20)
    assert [r.data for r in out_a["r"]] == ["a done"]


def test_changes_to_the_same_nodes_wait_for_each_other(cluster_daemon, gated_commands):
    gate("first")
    gate("second", open_=True)
    t1, _ = in_thread(call, "testhold", "n[1-2]", gate="first")
    assert STARTED["first"].wait(10)
    t2, out2 = in_thread(call, "testhold", "n2,n3", gate="second")
    time.sleep(0.3)
    assert not STARTED["second"].is_set()   # n2 is held by the first request
    GATES["first"].set()
    t1.join(20)
    t2.join(20)
    assert STARTED["second"].is_set() and [r.data for r in out2["r"]] == ["second done"]


def test_lock_waits_are_bounded_and_name_the_holder(cluster_daemon, gated_commands):
    cluster_daemon.ok("chtab", "key=nodelocktimeout", "site.value=0.3")
    gate("holder")
    t, _ = in_thread(call, "testhold", "n4", gate="holder")
    assert STARTED["holder"].wait(10)
    try:
        r = cluster_daemon.run("nodech", "n4", "nodetype.os=x")
        assert r.rc == 1 and "Timed out" in r.err and "n4" in r.err and "testhold" in r.err
    finally:
        GATES["holder"].set()
        t.join(20)


# ---- what a user may make the daemon read or write ------------------------------------------
def test_a_noderange_file_is_read_by_the_client_not_by_the_daemon(cluster_daemon, monkeypatch,
                                                                   tmp_path):
    secret = tmp_path / "private"
    secret.write_text("secretline-abc123\n")
    secret.chmod(0o600)
    cluster_daemon.ok("chtab", "priority=5", "policy.name=bob", "policy.commands=nodels",
                      "policy.rule=allow")
    as_user(cluster_daemon, monkeypatch, tmp_path, "bob")
    # a request that names a file reaches the daemon only if someone bypasses the command
    got = call("nodels", f"^{secret}")
    assert got and got[0].error and "secretline" not in repr(got)
    assert "read by the command" in got[0].error
    # the command inlines a file the user can read, with the user's rights
    mine = tmp_path / "mine"
    mine.write_text("n1\n# a comment\nn3: the third\n")
    assert cluster_daemon.run("nodels", f"^{mine}").lines == ["n1", "n3"]


def test_dumps_and_restores_are_for_root_only(cluster_daemon, monkeypatch, tmp_path):
    cluster_daemon.ok("chtab", "priority=5", "policy.name=bob",
                      "policy.commands=dumpxCATdb,restorexCATdb", "policy.rule=allow")
    as_user(cluster_daemon, monkeypatch, tmp_path, "bob")
    r = cluster_daemon.run("dumpxCATdb", "-p", str(tmp_path))
    assert r.rc == 1 and "only root" in r.err and not list(tmp_path.glob("*.csv"))
    assert "only root" in cluster_daemon.run("restorexCATdb", "-p", str(tmp_path)).err


# ---- review findings: secrets and malformed requests ------------------------------------------
def test_a_database_error_never_shows_the_statement_values(cluster_daemon):
    cluster_daemon.ok("chtab", "key=ipmi", "passwd.password=first")
    r = cluster_daemon.run("chtab", "key=ipmi,comments=x", "passwd.password=TOPSECRET-PW")
    assert r.rc == 1 and "TOPSECRET" not in r.err + r.out
    wait_for(lambda: cluster_daemon.db.rows("jobresults"), what="job results")
    cluster_daemon.daemon.daemon.pipeline.jobs.flush()
    assert "TOPSECRET" not in repr(cluster_daemon.db.rows("jobresults"))


def test_shown_secrets_are_not_kept_in_the_job_record(cluster_daemon):
    cluster_daemon.ok("chdef", "n1", "bmc=10.1.0.1", "bmcpassword=s3cret")
    assert "s3cret" in cluster_daemon.ok("lsdef", "--show-secrets", "n1").out
    cluster_daemon.daemon.daemon.pipeline.jobs.flush()
    assert "s3cret" not in repr(cluster_daemon.db.rows("jobresults"))


def test_a_malformed_request_is_refused_and_the_audit_trail_survives(cluster_daemon, monkeypatch,
                                                                    tmp_path):
    import json

    from xcatd.fronts.client import connection
    as_user(cluster_daemon, monkeypatch, tmp_path, "bob")
    conn, _ = connection()
    conn.request("POST", "/v1/request", json.dumps(
        {"request": {"command": "noderm", "noderange": ["n1"]}}))
    resp = conn.getresponse()
    assert resp.status == 400 and b"noderange must be a string" in resp.read()
    assert "Permission denied" in cluster_daemon.run("noderm", "n1").err
    rows = wait_for(lambda: [a for a in audit_rows(cluster_daemon) if a["userid"] == "bob"],
                    what="bob's denial in the audit log")
    assert rows[0]["status"] == "Denied"


def test_the_sqlite_database_is_private(tmp_path):
    import os
    import stat

    from xcatd.base.paths import Paths
    from xcatd.daemon.initialize import initialize
    root = tmp_path / "r"
    (root / "var/lib/xcat").mkdir(parents=True, mode=0o755)
    os.chmod(root / "var/lib/xcat", 0o755)
    initialize(Paths(root))
    assert stat.S_IMODE(os.stat(root / "var/lib/xcat").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(root / "var/lib/xcat/xcat.sqlite").st_mode) == 0o600


def test_a_deny_rule_on_nodes_holds_whichever_way_the_nodes_are_named(cluster_daemon, monkeypatch,
                                                                       tmp_path):
    cluster_daemon.ok("chtab", "priority=2", "policy.name=bob", "policy.commands=chdef",
                      "policy.noderange=n1", "policy.rule=deny")
    cluster_daemon.ok("chtab", "priority=3", "policy.name=bob", "policy.commands=chdef",
                      "policy.rule=allow")
    as_user(cluster_daemon, monkeypatch, tmp_path, "bob")
    for args in (["n1"], ["-o", "n1"], ["n1,n2"], ["-o", "n[1-2]"]):
        r = cluster_daemon.run("chdef", *args, "usercomment=sneaky")
        assert "Permission denied" in r.err, args
    assert cluster_daemon.run("chdef", "n2", "usercomment=fine").rc == 0
    import http.client  # REST goes the same way
    import json
    import ssl
    home = tmp_path / "home-bob" / ".xcat"
    ctx = ssl.create_default_context(cafile=str(home / "ca.pem"))
    ctx.load_cert_chain(str(home / "client-cred.pem"))
    conn = http.client.HTTPSConnection("127.0.0.1", cluster_daemon.daemon.listening.port,
                                       context=ctx)
    conn.request("PUT", "/xcatws/nodes/n1", json.dumps({"usercomment": "viaREST"}))
    assert conn.getresponse().status == 403
    comments = {r["node"]: r["comments"] for r in cluster_daemon.db.rows("nodelist")}
    assert comments["n1"] is None and comments["n2"] == "fine"


def test_bypass_takes_the_user_from_the_real_uid_not_the_environment(mn_sqlite, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("LOGNAME", "alice")
    monkeypatch.setenv("USER", "alice")
    r = mn_sqlite.run("dumpxCATdb", "-p", str(tmp_path))   # root-only
    assert r.rc == 0, r.err
