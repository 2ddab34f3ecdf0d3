"""One pipeline for every front: bypass runs, the toolkit's own calls and node requests get
the same policy decision, audit row, job record and node locks as the daemon's requests."""
from __future__ import annotations

import time

import pytest
from support.cluster import AUDITED, nodech, nodes

from xcatd.base.request import ErrorKind, Request, Response
from xcatd.daemon.fence import fence_node
from xcatd.daemon.pipeline import Pipeline, run_local
from xcatd.daemon.policy import Identity
from xcatd.handler import CommandSpec, register, unregister
from xcatd.hardware import registry
from xcatd.hardware.fake import FakeDriver
from xcatd.hardware.interfaces import Target

#: every request audited; n1 and n2 managed by the fake driver, n2's BMC dead
pytestmark = pytest.mark.cluster(
    AUDITED, nodes("n[1-2]", "nodehm.mgt=fake", "ipmi.bmc=10.0.0.1"),
    nodech("n2", "ipmi.bmc=dead-bmc"))


@pytest.fixture
def audited(cluster_sqlite):
    return cluster_sqlite


@pytest.fixture
def fake():
    registry.register("fake", FakeDriver)
    yield registry.driver("fake")
    registry.unregister("fake")


def rows(mn, table, **match):
    return [r for r in mn.db.rows(table) if all(r.get(k) == v for k, v in match.items())]


def test_a_bypass_run_is_audited_and_recorded_as_a_job(audited):
    audited.ok("nodels", "compute")
    audit = rows(audited, "auditlog", command="nodels")
    assert [(r["userid"], r["clienttype"], r["noderange"], r["status"]) for r in audit] == [
        ("root", "bypass", "compute", "Allowed")]
    jobs = rows(audited, "jobs", command="nodels")
    assert [(j["user"], j["clienttype"], j["state"], j["exitcode"]) for j in jobs] == [
        ("root", "bypass", "done", "0")]
    assert f"job {jobs[0]['jobid']}" == audit[0]["comments"]
    # the output went to the terminal: the record says so instead of keeping it
    assert [r["warning"] for r in rows(audited, "jobresults", jobid=jobs[0]["jobid"])] == [
        "2 output lines were not recorded (run in process: the output went to its terminal)"]


def test_a_failed_bypass_run_is_recorded_with_its_exit_code_and_error(audited):
    assert audited.run("nodels", "nosuchnode").rc == 1
    job = rows(audited, "jobs", command="nodels")[0]
    assert (job["state"], job["exitcode"]) == ("failed", "1")
    errors = [r["error"] for r in rows(audited, "jobresults", jobid=job["jobid"])]
    assert errors == ["Invalid nodes and/or groups in noderange: nosuchnode"]


def test_a_word_that_is_no_utf8_is_refused_and_still_audited(audited):
    """A byte that is no UTF-8 in argv arrives as a lone surrogate: the request is refused
    naming it, and its audit row and job record are stored with the byte escaped."""
    got = audited.run("nodels", "n\udcff")
    assert got.rc == 1
    assert "noderange: not Unicode text (a lone surrogate, '\\udcff')" in got.err
    audit = rows(audited, "auditlog", command="nodels")
    assert [r["noderange"] for r in audit] == ["n\\udcff"]
    assert [j["noderange"] for j in rows(audited, "jobs", command="nodels")] == ["n\\udcff"]


def test_root_in_process_keeps_working_whatever_the_policy_table_says(audited):
    """XCATBYPASS is root's rescue: an emptied policy table must stay repairable."""
    with audited.db.begin() as conn:
        audited.db.delete_match(conn, "policy", {})
    assert audited.ok("nodels", "n1").lines == ["n1"]
    assert rows(audited, "auditlog", command="nodels")[0]["status"] == "Allowed"


def test_another_user_in_process_is_judged_by_policy(audited):
    out = list(run_local(Request("nodels", "n1"), audited.paths, user="mallory"))
    assert out[0].kind == ErrorKind.DENIED and out[0].error.startswith("Permission denied")
    assert rows(audited, "auditlog", userid="mallory")[0]["status"] == "Denied"


def test_node_requests_are_refused_from_any_other_front(audited):
    out = list(run_local(Request("callback", args={"node": "n1", "status": "installed"}),
                         audited.paths))
    assert [r.kind for r in out] == [ErrorKind.DENIED]
    assert "for nodes reporting about themselves" in out[0].error


def test_fence_node_is_an_audited_rpower_off_through_the_pipeline(audited, fake):
    fake.machine(_target("n1")).power = "on"
    result = fence_node("n1", audited.paths)
    assert (result.fenced, result.message) == (True, "off")
    assert fake.machine(_target("n1")).history == [("power", "off")]
    audit = rows(audited, "auditlog", command="rpower")
    assert [(r["clienttype"], r["noderange"], r["status"]) for r in audit] == [
        ("internal", "n1", "Allowed")]
    assert rows(audited, "jobs", command="rpower")[0]["state"] == "done"
    assert rows(audited, "nodelist", node="n1")[0]["status"] == "powering-off"


def test_fence_node_reports_a_dead_bmc_and_more_than_one_node(audited, fake):
    dead = fence_node("n2", audited.paths)
    assert not dead.fenced and "timeout" in dead.message
    assert fence_node("compute", audited.paths).message == "compute is not one node"


def test_a_change_waits_for_the_nodes_another_request_holds(audited):
    pipeline = Pipeline.local(audited.paths)
    try:
        with pipeline.locks.hold({"n1"}, "a test holding n1", timeout=1):
            audited.ok("chtab", "key=nodelocktimeout", "site.value=0.2")
            r = audited.run("nodech", "n1", "nodetype.os=x")
        assert r.rc == 1 and "a test holding n1" in r.err
        assert rows(audited, "jobs", command="nodech", noderange="n1")[0]["state"] == "failed"
    finally:
        pipeline.close()


def test_errors_carry_their_kind(audited):
    def kind(request):
        return [r.kind for r in run_local(request, audited.paths) if r.error]
    assert kind(Request("nodels", "nosuch")) == [ErrorKind.NOT_FOUND]
    assert kind(Request("frobnicate")) == [ErrorKind.BAD_REQUEST]
    assert kind(Request("tabdump", args={"table": "nosuch"})) == [ErrorKind.NOT_FOUND]
    assert kind(Request("chtab", args={"keys": {"key": "x"},
                                       "assignments": [["site", "value", "?", "1"]]})) == [
        ErrorKind.BAD_REQUEST]


def test_identity_names_the_front(audited):
    pipeline = Pipeline.local(audited.paths)
    try:
        list(pipeline.stream(Request("nodels", "n1"), Identity("root", "10.0.0.9", "rest")))
    finally:
        pipeline.close()
    row = rows(audited, "auditlog", command="nodels")[0]
    assert (row["clientname"], row["clienttype"]) == ("10.0.0.9", "rest")


def _target(node):
    return Target(node, "10.0.0.1", 623, "", "")


@pytest.fixture
def ticking():
    """A command that only reads and answers a line every 0.1 s, five times."""
    def tick(req, ctx, nodes):
        for i in range(5):
            time.sleep(0.1)
            yield Response(data=f"tick {i}")
    register(CommandSpec("ticktest", tick, "none"))
    yield "ticktest"
    unregister("ticktest")


def test_a_request_that_only_reads_stops_at_site_requesttimeout(audited, ticking):
    audited.ok("chtab", "key=requesttimeout", "site.value=0.05")
    out = list(run_local(Request(ticking), audited.paths))
    assert [r.data for r in out if r.data] == ["tick 0"]
    assert out[-1].kind == ErrorKind.BUSY and "site.requesttimeout (0.05 s)" in out[-1].error


@pytest.mark.parametrize("rule,allowed", [
    ("allow", True), ("Accept", True), ("trusted", True), ("deny", False), ("bogus", False),
    ("", False), ("alow", False),
])
def test_a_matching_rows_rule_is_allow_or_else_deny_as_in_xcat(rule, allowed):
    """xCAT: a rule other than allow/trusted denies; a later allow row never rescues it."""
    from xcatd.daemon.policy import decide
    rows = [{"priority": "2", "name": "alice", "commands": "rpower", "rule": rule},
            {"priority": "3", "name": "alice", "rule": "allow"}]
    who = Identity("alice", "10.0.0.9", "cli")
    assert decide(rows, who, "rpower", None, "").allowed is allowed
    assert decide(rows, who, "nodels", None, "").allowed  # the row names rpower only
