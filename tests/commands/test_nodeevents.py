"""nodeevents, and the last failing script in nodestat and lsdef, in process and through
xcatd: one line per event in xCAT's ``node: text`` style, a failed event's output below it,
``n1: no events``, -n, --json with typed events, xCAT's noderange error. The events are
posted as the node API posts them (xcatd.provision.nodeevents.record), then given fixed
times so the lines can be pinned.

The nodes are on 127.0.1.x (n1 127.0.1.11, ...), where nodestat's probes answer: n1 has a
listener that stands for sshd, the others answer ping only."""
from __future__ import annotations

import datetime
import json
import socket

import pytest
from support.cluster import nodes, site
from xcatd.plugins.nodeevents import show_events

from xcatd.base.request import Request, XcatError
from xcatd.db.cluster import Cluster
from xcatd.db.database import SA_TABLES
from xcatd.provision import nodeevents

pytestmark = pytest.mark.cluster(site(dhcpsetup="n"), nodes("n1-n3", ip="127.0.1"))

HELLO = {"phase": "postscripts", "script": "hello", "rc": 0, "duration": 0.012,
         "status": "ok", "tail": "hello from n1\n"}
HANG = {"phase": "postscripts", "script": "hang", "rc": None, "duration": 10,
        "status": "timeout", "tail": "sleeping\nstill sleeping\n"}
BOOTED = {"phase": "boot", "status": "booted"}


def post(mn, node: str, *events: dict) -> None:
    """Record ``events`` for ``node``, timed 10:00:01, 10:00:02... on 2026-12-06."""
    nodeevents.record(Cluster(mn.paths), node, list(events))
    t = SA_TABLES["nodeevents"]
    with mn.db.begin() as conn:
        recids = [r for (r,) in conn.execute(t.select().with_only_columns(t.c.recid)
                                             .where(t.c.node == node).order_by(t.c.recid))]
        for i, recid in enumerate(recids, 1):
            conn.execute(t.update().where(t.c.recid == recid).values(
                time=f"2026-12-06 10:00:{i:02d}"))


def fail(mn, node: str) -> None:
    mn.ok("nodech", node, "nodelist.status=failed")


@pytest.fixture
def sshd():
    """A listener on n1's address: its port, closed on every other address."""
    s = socket.socket()
    s.bind(("127.0.1.11", 0))
    s.listen(64)
    yield s.getsockname()[1]
    s.close()


# ---- nodeevents ---------------------------------------------------------------------------
def test_each_event_is_one_line_and_a_failure_shows_its_output(cluster):
    post(cluster, "n1", HELLO, HANG, BOOTED)
    r = cluster.ok("nodeevents", "n1")
    assert r.lines == [
        "n1: 2026-12-06 10:00:01 postscripts hello ok rc=0 0.012s",
        "n1: 2026-12-06 10:00:02 postscripts hang timeout 10.000s",
        "n1:     | sleeping",
        "n1:     | still sleeping",
        "n1: 2026-12-06 10:00:03 boot booted"]
    assert r.err == ""


def test_a_node_without_events_says_so(cluster):
    post(cluster, "n1", HELLO)
    r = cluster.ok("nodeevents", "n1-n3")
    assert r.lines == ["n1: 2026-12-06 10:00:01 postscripts hello ok rc=0 0.012s",
                       "n2: no events", "n3: no events"]


def test_n_shows_the_newest_n_and_10_by_default(cluster):
    post(cluster, "n2", *[dict(HELLO, script=f"s{i:02d}") for i in range(1, 13)])
    assert [line.split()[4] for line in cluster.ok("nodeevents", "n2").lines] == [
        f"s{i:02d}" for i in range(3, 13)]
    assert [line.split()[4] for line in cluster.ok("nodeevents", "n2", "-n", "2").lines] == [
        "s11", "s12"]


def test_json_gives_the_typed_events_of_each_node(cluster):
    post(cluster, "n1", HELLO, HANG)
    r = cluster.ok("nodeevents", "--json", "n1,n2")
    doc = json.loads(r.out)
    assert doc["rc"] == 0 and doc["errors"] == [] and doc["lines"] == []
    hello, hang = doc["nodes"]["n1"]["events"]
    assert {k: v for k, v in hello.items() if k != "recid"} == {
        "time": "2026-12-06 10:00:01", "phase": "postscripts", "script": "hello", "rc": 0,
        "duration": 0.012, "status": "ok", "tail": "hello from n1\n"}
    assert (hang["rc"], hang["duration"], hang["status"]) == (None, 10.0, "timeout")
    assert doc["nodes"]["n2"] == {"events": []}


def test_a_bad_noderange_is_xcats_error(cluster):
    r = cluster.run("nodeevents", "n1,n99")
    assert r.rc == 1
    assert r.err == "Error: Invalid nodes and/or groups in noderange: n99\n"
    assert r.out == ""


@pytest.mark.parametrize("argv, message", [
    ((), "Usage:\n  nodeevents <noderange> [-n N] [--json]"),
    (("n1", "-n", "0"), "Error: Invalid value for '-n': 0 is not in the range x>=1."),
    (("n1", "-n", "many"), "Error: Invalid value for '-n': 'many' is not a valid integer range."),
])
def test_usage_errors_exit_1(cluster, argv, message):
    r = cluster.run("nodeevents", *argv)
    assert r.rc == 1
    assert message in r.out + r.err


@pytest.mark.parametrize("count", [0, -1, 2.5, 10**6])
def test_the_handler_refuses_a_count_the_cli_would_not_send(count):
    with pytest.raises(XcatError, match="nodeevents: -n takes a whole number from 1 to 100000"):
        next(show_events(Request("nodeevents", "n1", {"count": count}), None, None))


def test_the_watchdogs_verdict_shows_in_nodeevents_and_nodestat(cluster):
    cluster.ok("nodech", "n2", "nodelist.status=configuring",
               "nodelist.statustime=12-06-2026 08:00:00")
    assert nodeevents.watchdog(Cluster(cluster.paths),
                               datetime.datetime(2026, 12, 6, 10, 0, 0)) == [
        ("n2", "configuring")]
    verdict = ("timeout in configuring: no word from the node for 7200 s "
               "(site.nodestatustimeout is 3600)")
    assert cluster.ok("nodeevents", "n2").lines == [
        "n2: 2026-12-06 10:00:00 postscripts watchdog", f"n2:     | {verdict}"]
    assert cluster.ok("nodestat", "n2", "--ports", "sshd=9").lines == [f"n2: failed: {verdict}"]


# ---- nodestat and lsdef ---------------------------------------------------------------------
def test_nodestat_names_the_last_failing_script_of_a_failed_node(cluster, sshd):
    post(cluster, "n1", HELLO, HANG, BOOTED)
    post(cluster, "n2", HELLO, dict(HANG, tail="still sleeping\n"), BOOTED)
    fail(cluster, "n1")
    fail(cluster, "n2")
    cluster.ok("nodech", "n3", "nodelist.status=configuring")
    r = cluster.ok("nodestat", "n1-n3", "--ports", f"sshd={sshd}")
    assert r.lines == [
        "n1: sshd (failed: postscript 'hang' timeout after 10 s: still sleeping)",
        "n2: failed: postscript 'hang' timeout after 10 s: still sleeping",
        "n3: configuring"]


def test_nodestat_of_a_failed_node_without_events_says_failed(cluster, sshd):
    fail(cluster, "n1")
    fail(cluster, "n2")
    r = cluster.ok("nodestat", "n1,n2", "--ports", f"sshd={sshd}")
    assert r.lines == ["n1: sshd (failed)", "n2: failed"]


def test_nodestat_json_carries_the_failure_event(cluster, sshd):
    post(cluster, "n2", HANG)
    fail(cluster, "n2")
    doc = json.loads(cluster.ok("nodestat", "--json", "n1,n2", "--ports", f"sshd={sshd}").out)
    assert doc["nodes"]["n1"] == {"status": "ping", "appstatus": "sshd=up"}
    n2 = doc["nodes"]["n2"]
    assert n2["status"] == "failed"
    assert (n2["lastfailure"]["script"], n2["lastfailure"]["status"]) == ("hang", "timeout")


def test_nodestat_u_keeps_a_quiet_failed_node_failed(cluster):
    post(cluster, "n2", HANG)
    cluster.ok("nodech", "n2", "nodelist.status=failed",
               "nodelist.statustime=12-06-2026 09:00:00")
    cluster.ok("nodestat", "-u", "n2", "--ports", "sshd=9")
    assert cluster.ok("nodels", "n2", "nodelist.status", "nodelist.statustime").lines == [
        "n2: nodelist.status: failed", "n2: nodelist.statustime: 12-06-2026 09:00:00"]


def test_lsdef_status_stays_xcats_and_json_carries_the_failure(cluster):
    post(cluster, "n2", HELLO, HANG)
    fail(cluster, "n2")
    assert cluster.ok("lsdef", "-i", "status", "n2").out == (
        "Object name: n2\n    status=failed\n")
    doc = json.loads(cluster.ok("lsdef", "--json", "-i", "status", "n1,n2").out)
    by_name = {d["name"]: d for d in doc["data"]}
    assert by_name["n2"]["attributes"] == {"status": "failed"}
    assert by_name["n2"]["lastfailure"]["script"] == "hang"
    assert "lastfailure" not in by_name["n1"]
    doc = json.loads(cluster.ok("lsdef", "--json", "-i", "groups", "n2").out)
    assert "lastfailure" not in doc["data"][0]           # status not asked for
