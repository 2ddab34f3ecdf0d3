"""Admin locks: ``chdef n1 locked=yes``. Every command that would change a locked node refuses
it with one line, the rest of the noderange goes on, queries still work, and the REST API
obeys the same lock (the dispatcher keeps it, once for every command and front)."""
from __future__ import annotations

import http.client
import json
import os
import ssl
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.cluster import command, nodes, site

from xcatd.base.locks import NodeLocks
from xcatd.base.noderange import NodeRange
from xcatd.base.request import ErrorKind, Request, Response
from xcatd.daemon.dispatch import dispatch
from xcatd.db.database import Database
from xcatd.handler import NODE_ORIGIN, CommandSpec, Context
from xcatd.hardware import registry
from xcatd.hardware.fake import FakeDriver

#: n1-n3 behind the fake driver (BMCs in memory, one each); n1 locked; DHCP left alone by nodeset
pytestmark = pytest.mark.cluster(
    site(dhcpsetup="n"),
    nodes("n1-n3", "nodehm.mgt=fake", r"ipmi.bmc=|\D+(\d+)|10.0.0.($1+0)|",
          groups="compute,all"),
    command("chdef", "n1", "locked=yes"))


def why(cmd: str, node: str = "n1") -> str:
    return f"{cmd} refused: the node is locked (chdef {node} locked=no unlocks it)"


def refused(cmd: str, node: str = "n1") -> str:
    return f"{node}: Error: {why(cmd, node)}"


@pytest.fixture(autouse=True)
def fake():
    registry.register("fake", FakeDriver)
    yield registry.driver("fake")
    registry.unregister("fake")


def test_locked_is_an_attribute_of_nodes_shown_by_lsdef_and_nodels(cluster):
    assert cluster.ok("lsdef", "n1", "-i", "locked").lines[1:] == ["    locked=yes"]
    assert cluster.ok("nodels", "n1,n2", "nodelock.locked").lines == ["n1: yes", "n2: "]


def test_rpower_refuses_the_locked_node_and_powers_the_rest(cluster, fake):
    r = cluster.run("rpower", "n1,n2", "on")
    assert r.rc == 1
    assert r.err.splitlines() == [refused("rpower")]
    assert r.lines == ["n2: on"]
    assert cluster.ok("rpower", "n1-n3", "stat").lines == ["n1: off", "n2: on", "n3: off"]


def test_queries_on_a_locked_node_still_work(cluster):
    assert cluster.ok("rpower", "n1", "stat").lines == ["n1: off"]
    assert cluster.ok("nodeset", "n1", "stat").lines == ["n1: offline"]
    assert cluster.ok("lsdef", "n1", "-i", "mgt").lines[1:] == ["    mgt=fake"]
    assert cluster.ok("nodels", "n1", "groups").lines == ["n1: compute,all"]


@pytest.mark.parametrize("argv, check", [
    (["nodech", "n1,n2", "nodehm.mgt=kvm"],
     lambda mn: mn.ok("nodels", "n1,n2", "nodehm.mgt").lines == ["n1: fake", "n2: kvm"]),
    (["chdef", "n1,n2", "nodetype=osi"],
     lambda mn: mn.ok("nodels", "n1,n2", "nodetype.nodetype").lines == ["n1: ", "n2: osi"]),
    (["chdef", "-t", "node", "-o", "n1,n2", "nodetype=osi"],
     lambda mn: mn.ok("nodels", "n1,n2", "nodetype.nodetype").lines == ["n1: ", "n2: osi"]),
    (["noderm", "n1,n2"], lambda mn: mn.ok("nodels").lines == ["n1", "n3"]),
    (["rmdef", "n1,n2"], lambda mn: mn.ok("nodels").lines == ["n1", "n3"]),
    (["nodeadd", "n1,n2", "groups=other"],
     lambda mn: mn.ok("nodels", "n1,n2", "groups").lines == ["n1: compute,all",
                                                             "n2: other"]),
    (["nodeset", "n1,n2", "offline"],
     lambda mn: mn.ok("nodels", "n1,n2", "chain.currstate").lines == ["n1: ", "n2: offline"]),
    (["rsetboot", "n1,n2", "net"], None),
])
def test_a_change_refuses_the_locked_node_with_one_line_and_does_the_rest(cluster, argv, check):
    r = cluster.run(*argv)
    assert r.rc == 1
    assert refused(argv[0]) in r.err.splitlines()
    assert "n2: Error" not in r.err
    if check is not None:
        assert check(cluster)


def test_makedhcp_delete_refuses_the_locked_node(cluster):
    """n2 goes on to the DHCP server (none runs here: its error says so); n1 alone never
    gets that far."""
    r = cluster.run("makedhcp", "-d", "n1,n2")
    assert r.rc == 1
    assert r.err.splitlines()[0] == refused("makedhcp")
    assert "Cannot reach dhcpd's OMAPI" in r.err.splitlines()[1]
    r = cluster.run("makedhcp", "-d", "n1")
    assert (r.rc, r.err.splitlines()) == (1, [refused("makedhcp")])
    assert "OMAPI" in cluster.run("makedhcp", "-q", "n1").err  # queries go on


def test_nothing_runs_when_every_node_is_locked(cluster, fake):
    r = cluster.run("rpower", "n1", "on")
    assert (r.rc, r.out, r.err.splitlines()) == (1, "", [refused("rpower")])
    assert cluster.ok("rpower", "n1", "stat").lines == ["n1: off"]


def test_chdef_of_the_lock_alone_is_allowed_and_unlocks(cluster, fake):
    cluster.ok("chdef", "n1", "locked=yes")  # locking again changes nothing else
    cluster.ok("chdef", "n1", "locked=no")
    assert cluster.ok("rpower", "n1", "on").lines == ["n1: on"]


def test_chdef_of_the_lock_with_anything_else_is_refused(cluster):
    r = cluster.run("chdef", "n1", "locked=no", "nodetype=osi")
    assert (r.rc, r.err.splitlines()) == (1, [refused("chdef")])
    assert cluster.ok("nodels", "n1", "nodelock.locked").lines == ["n1: yes"]


def test_a_group_lock_locks_every_member_and_a_node_may_be_unlocked_alone(cluster, fake):
    cluster.ok("chdef", "-t", "group", "compute", "locked=yes")
    cluster.ok("chdef", "n3", "locked=no")
    r = cluster.run("rpower", "n1-n3", "on")
    assert r.err.splitlines() == [
        refused("rpower"),
        "n2: Error: rpower refused: the node is locked by its group compute "
        "(chdef -t group compute locked=no unlocks it)"]
    assert r.lines == ["n3: on"]


def test_a_lock_value_other_than_yes_or_no_is_refused_naming_it(cluster):
    r = cluster.run("chdef", "n2", "locked=maybe")
    assert (r.rc, r.err.strip()) == (1, "Error: locked takes yes or no, not 'maybe'")
    assert cluster.ok("nodels", "n2", "nodelock.locked").lines == ["n2: "]


def test_rmdef_of_everything_is_refused_while_a_node_is_locked(cluster):
    r = cluster.run("rmdef", "-a", "-f")
    assert r.rc == 1
    assert r.err.splitlines() == [refused("rmdef"),
                                  "Error: rmdef -a refused: 1 locked node(s)"]
    assert cluster.ok("nodels").lines == ["n1", "n2", "n3"]


def test_a_node_reporting_about_itself_is_never_refused(cluster_sqlite):
    """Locks are the administrator's: a locked node still fetches its boot script and
    reports its install (the node API's requests)."""
    seen = []

    def report(req, ctx, nodes):
        seen.append(req.args["node"])
        yield Response(data="ok")

    spec = CommandSpec("reporttest", report, "none", writes=True, origin=NODE_ORIGIN,
                       lock_nodes=lambda r, c: NodeRange([r.args["node"]]))
    req = Request("reporttest", args={"node": "n1"})
    ctx = Context(req, cluster_sqlite.paths)
    out = list(dispatch(spec, req, ctx, locks=NodeLocks(), origin=NODE_ORIGIN))
    assert ([r.data for r in out], seen) == (["ok"], ["n1"])
    out = list(dispatch(spec, req, ctx, locks=NodeLocks(), origin="cli"))
    assert [r.kind for r in out] == [ErrorKind.DENIED]  # (node requests come from nodes)


def test_a_database_made_before_the_lock_existed_gets_its_table(cluster_sqlite):
    db = cluster_sqlite.db
    with db.begin() as conn:
        conn.execute(sa.text("DROP TABLE nodelock"))
    db.dispose()
    assert "nodelock" not in sa.inspect(Database.open(cluster_sqlite.paths).engine
                                        ).get_table_names()
    assert cluster_sqlite.ok("lsdef", "n1", "-i", "locked,mgt").lines[1:] == [
        "    locked=", "    mgt=fake"]
    cluster_sqlite.ok("chdef", "n1", "locked=yes")
    assert cluster_sqlite.run("rpower", "n1", "on").err.splitlines() == [refused("rpower")]


# ---- the REST API --------------------------------------------------------------------------
def rest(mn, method: str, path: str, body=None) -> tuple[int, dict]:
    """HTTPS to the test's xcatd with root's client certificate (xcatconfig put it in
    HOME)."""
    xcat = Path(os.environ["HOME"]) / ".xcat"
    ctx = ssl.create_default_context(cafile=str(xcat / "ca.pem"))
    ctx.load_cert_chain(str(xcat / "client-cred.pem"))
    conn = http.client.HTTPSConnection("127.0.0.1", mn.daemon.listening.port, context=ctx,
                                       timeout=60)
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None,
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_rest_obeys_the_lock(cluster_daemon, fake):
    mn = cluster_daemon
    status, body = rest(mn, "PUT", "/xcatws/nodes/n1/power", {"action": "on"})
    assert (status, body) == (409, {"errors": [f"n1: {why('rpower')}"]})
    status, body = rest(mn, "PUT", "/xcatws/nodes/n1,n2/power", {"action": "on"})
    assert (status, body) == (200, {"n2": {"power": "on"}, "errors": [f"n1: {why('rpower')}"]})
    status, body = rest(mn, "PUT", "/xcatws/nodes/n1", {"nodetype": "osi"})
    assert (status, body) == (409, {"errors": [why("chdef")]})
    assert rest(mn, "GET", "/xcatws/nodes/n1/power")[1] == {"n1": {"power": "off"}}
    status, _ = rest(mn, "PUT", "/xcatws/nodes/n1", {"locked": "no"})
    assert status == 200
    assert rest(mn, "PUT", "/xcatws/nodes/n1/power", {"action": "on"}) == (
        200, {"n1": {"power": "on"}})


def test_makedns_delete_refuses_the_locked_node_and_deletes_the_rest(cluster):
    r = cluster.run("makedns", "-d", "n1")
    assert (r.rc, r.err.splitlines()) == (1, [refused("makedns")])
    r = cluster.run("makedns", "-d", "n1,n2")
    assert r.rc == 1 and r.err.splitlines()[0] == refused("makedns")
    assert "n2: Error: makedns refused" not in r.err
