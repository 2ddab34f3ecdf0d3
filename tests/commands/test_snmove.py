"""snmove through the CLI, in process and through xcatd: xCAT's messages and exit codes,
nodes moved by noderange or by source service node (exact names: -s sn1 never takes sn10's
nodes), each to the destination or its backup, locked nodes refused, and the move shown by
nodels and tabdump."""
from __future__ import annotations

import csv

import pytest
from support.cluster import command, nodes

MOVING = "Moving nodes to their backup service nodes."
SETTING = "Setting new values in the xCAT database."

#: sn1-sn3 and sn10 are service nodes (a servicenode row each); rack1 (n1-n3) is served by
#: the pool sn1,sn2, rack10 (n10) by sn10,sn1; n20 has no pool (the management node's)
pytestmark = pytest.mark.cluster(
    nodes("sn1-sn3,sn10", groups="service"),
    *(command("chtab", f"node={sn}", "servicenode.tftpserver=1")
      for sn in ("sn1", "sn2", "sn3", "sn10")),
    nodes("n1-n3", groups="rack1,compute,all"),
    command("chtab", "node=rack1", "noderes.servicenode=sn1,sn2"),
    nodes("n10", groups="rack10,compute,all"),
    command("chtab", "node=rack10", "noderes.servicenode=sn10,sn1"),
    nodes("n20", groups="compute,all"))


def pools(mn, noderange: str = "n1-n3,n10,n20") -> list[str]:
    return mn.ok("nodels", noderange, "noderes.servicenode").lines


def owners(mn) -> dict[str, tuple[str, str]]:
    """tabdump nodeowner: node -> (service node, epoch)."""
    lines = mn.ok("tabdump", "nodeowner").lines
    assert lines[0] == "#node,servicenode,epoch,since,comments,disable"
    return {r[0]: (r[1], r[2]) for r in csv.reader(lines[1:])}


# ---- on every backend (in process, PostgreSQL, through xcatd) ------------------------------
def test_a_noderange_moves_to_the_destination_with_xcats_messages(cluster):
    r = cluster.run("snmove", "rack1", "-d", "sn3", "-i")
    assert (r.rc, r.lines, r.err) == (0, [MOVING, SETTING], "")
    assert pools(cluster, "rack1") == ["n1: sn3,sn1,sn2", "n2: sn3,sn1,sn2", "n3: sn3,sn1,sn2"]
    assert owners(cluster) == {"n1": ("sn3", "1"), "n2": ("sn3", "1"), "n3": ("sn3", "1")}
    assert cluster.ok("nodels", "n1,n10", "nodeowner.servicenode").lines == [
        "n1: sn3", "n10: "]


def test_source_moves_only_the_nodes_that_service_node_serves_by_exact_name(cluster):
    r = cluster.run("snmove", "-s", "sn1", "-V", "-i")
    assert (r.rc, r.err) == (0, "")
    assert r.lines == [MOVING, SETTING,
                       "n1: moved from sn1 to sn2 (lease epoch 1)",
                       "n2: moved from sn1 to sn2 (lease epoch 1)",
                       "n3: moved from sn1 to sn2 (lease epoch 1)"]
    assert pools(cluster) == ["n1: sn2,sn1", "n2: sn2,sn1", "n3: sn2,sn1", "n10: sn10,sn1",
                              "n20: "]
    assert set(owners(cluster)) == {"n1", "n2", "n3"}


def test_a_locked_node_is_refused_and_the_others_move(cluster):
    cluster.ok("chdef", "n2", "locked=yes")
    r = cluster.run("snmove", "rack1", "-d", "sn3", "-V", "-i")
    assert r.rc == 1
    assert r.err.splitlines() == [
        "n2: Error: snmove refused: the node is locked (chdef n2 locked=no unlocks it)"]
    assert r.lines == [MOVING, SETTING, "n1: moved from sn1 to sn3 (lease epoch 1)",
                       "n3: moved from sn1 to sn3 (lease epoch 1)"]
    assert pools(cluster, "rack1") == ["n1: sn3,sn1,sn2", "n2: sn1,sn2", "n3: sn3,sn1,sn2"]


# ---- on SQLite, in process -----------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    ([], "A node range or the source service node must be specified."),
    (["-d", "sn2", "-i"], "A node range or the source service node must be specified."),
    (["n1", "-P", "all", "-i"], "-P and -i flags cannot be specified at the same time."),
    (["n1", "-l"], "The '-l' option is not supported for Linux nodes."),
    (["-s", "sn1", "-l", "-V"], "The '-l' option is not supported for Linux nodes."),
])
def test_xcats_usage_errors(cluster_sqlite, argv, message):
    r = cluster_sqlite.run("snmove", *argv)
    assert (r.rc, r.out, r.err.splitlines()) == (1, "", [f"Error: {message}"])
    assert owners(cluster_sqlite) == {}
    assert pools(cluster_sqlite, "n1")[0] == "n1: sn1,sn2"


def test_without_destination_each_node_moves_to_its_backup(cluster_sqlite):
    mn = cluster_sqlite
    r = mn.run("snmove", "n1,n10", "-V", "-i")
    assert (r.rc, r.err) == (0, "")
    assert r.lines == [MOVING, SETTING, "n1: moved from sn1 to sn2 (lease epoch 1)",
                       "n10: moved from sn10 to sn1 (lease epoch 1)"]
    assert pools(mn, "n1,n10") == ["n1: sn2,sn1", "n10: sn1,sn10"]
    # and back: the backup is the next after the one acting now; every move raises the epoch
    assert mn.ok("snmove", "n1", "-V", "-i").lines[2:] == [
        "n1: moved from sn2 to sn1 (lease epoch 2)"]
    assert owners(mn) == {"n1": ("sn1", "2"), "n10": ("sn1", "1")}


def test_source_with_a_destination_and_a_noderange_moves_the_sources_nodes_among_them(
        cluster_sqlite):
    mn = cluster_sqlite
    r = mn.ok("snmove", "n1,n10,n20", "-s", "sn1", "-d", "sn3", "-V", "-i")
    assert r.lines == [MOVING, SETTING, "n1: moved from sn1 to sn3 (lease epoch 1)"]
    assert pools(mn) == ["n1: sn3,sn1,sn2", "n2: sn1,sn2", "n3: sn1,sn2", "n10: sn10,sn1",
                         "n20: "]
    # sn10's nodes are sn10's alone
    r = mn.ok("snmove", "-s", "sn10", "-d", "sn2", "-V", "-i")
    assert r.lines == [MOVING, SETTING, "n10: moved from sn10 to sn2 (lease epoch 1)"]
    assert pools(mn, "n1-n3") == ["n1: sn3,sn1,sn2", "n2: sn1,sn2", "n3: sn1,sn2"]


def test_a_source_that_serves_nothing_moves_nothing(cluster_sqlite):
    r = cluster_sqlite.run("snmove", "-s", "sn", "-d", "sn2", "-i")
    assert (r.rc, r.lines, r.err) == (0, [MOVING, "No nodes to move."], "")
    assert owners(cluster_sqlite) == {}


def test_an_unknown_destination_is_refused_naming_it(cluster_sqlite):
    mn = cluster_sqlite
    r = mn.run("snmove", "rack1", "-d", "sn9", "-i")
    assert (r.rc, r.out) == (1, "")
    assert r.err.startswith("Error: sn9 is not a service node: ")
    assert len(r.err.splitlines()) == 1
    assert owners(mn) == {}
    assert pools(mn, "rack1") == ["n1: sn1,sn2", "n2: sn1,sn2", "n3: sn1,sn2"]


def test_a_destination_that_reported_itself_alive_is_a_service_node(cluster_sqlite):
    mn = cluster_sqlite
    mn.ok("chtab", "node=sn9", "snstatus.address=127.0.0.1", "snstatus.port=3001")
    assert mn.ok("snmove", "n1", "-d", "sn9", "-i").lines == [MOVING, SETTING]
    assert pools(mn, "n1") == ["n1: sn9,sn1,sn2"]


def test_a_node_without_a_backup_fails_the_whole_move(cluster_sqlite):
    mn = cluster_sqlite
    r = mn.run("snmove", "n1,n20", "-i")
    assert r.rc == 1
    assert r.err.splitlines() == [
        "Error: Could not determine a backup service node for node n20."]
    assert owners(mn) == {}
    assert pools(mn, "n1,n20") == ["n1: sn1,sn2", "n20: "]


def test_a_failed_backup_lookup_does_not_say_it_is_setting_values(cluster_sqlite):
    r = cluster_sqlite.run("snmove", "n1,n20", "-i")
    assert (r.rc, r.lines) == (1, [MOVING])


def test_a_node_already_on_the_destination_is_left_alone(cluster_sqlite):
    mn = cluster_sqlite
    mn.ok("snmove", "n1", "-d", "sn2", "-i")
    r = mn.ok("snmove", "n1,n2", "-d", "sn2", "-V", "-i")
    assert r.lines == [MOVING, SETTING, "n2: moved from sn1 to sn2 (lease epoch 1)"]
    assert owners(mn) == {"n1": ("sn2", "1"), "n2": ("sn2", "1")}


def test_the_server_attributes_follow_the_move_with_destn_and_sourcen(cluster_sqlite):
    mn = cluster_sqlite
    mn.ok("chdef", "n1", "xcatmaster=sn1-ib", "tftpserver=sn1", "nfsserver=10.9.9.9")
    mn.ok("snmove", "n1", "-d", "sn2", "-D", "sn2-ib", "-S", "sn1-ib", "-i")
    assert mn.ok("lsdef", "n1", "-i", "servicenode,xcatmaster,tftpserver,nfsserver"
                 ).lines[1:] == ["    servicenode=sn2,sn1", "    xcatmaster=sn2-ib",
                                 "    tftpserver=sn2-ib", "    nfsserver=10.9.9.9"]


def test_without_ignorenodes_the_new_service_node_is_asked_for_dhcp_and_boot_files(
        cluster_sqlite):
    """The move is made; then makedhcp (and nodeset, for a node with a boot state) go to
    the nodes' new service node, whose xcatd is not running here: each node says so, and
    the command fails. With -i the tables alone change (the tests above)."""
    mn = cluster_sqlite
    mn.ok("chtab", "node=n1", "chain.currstate=boot")
    r = mn.run("snmove", "n1,n2", "-d", "sn3")
    assert r.lines[:2] == [MOVING, SETTING]
    assert r.rc == 1
    unable = "Unable to dispatch hierarchical sub-command to sn3:3001: sn3 has never reported"
    errors = r.err.splitlines()
    # makedhcp for n1 and n2, nodeset boot for n1
    assert sorted(e.split(":")[0] for e in errors) == ["n1", "n1", "n2"], r.err
    assert all(unable in e for e in errors), r.err
    assert pools(mn, "n1,n2") == ["n1: sn3,sn1,sn2", "n2: sn3,sn1,sn2"]
    r = mn.run("snmove", "n1", "-d", "sn3")  # nothing moved: nothing to ask
    assert (r.rc, r.err) == (0, "")


def test_a_service_node_without_dhcp_is_not_asked_for_dhcp(cluster_sqlite):
    """servicenode.dhcpserver=0 (xCAT's switch): the move asks sn3 for boot files only."""
    mn = cluster_sqlite
    mn.ok("chtab", "node=sn3", "servicenode.dhcpserver=0")
    mn.ok("chtab", "node=n1", "chain.currstate=boot")
    r = mn.run("snmove", "n1,n2", "-d", "sn3")
    assert r.rc == 1 and [e.split(":")[0] for e in r.err.splitlines()] == ["n1"], r.err
    assert "Unable to dispatch hierarchical sub-command to sn3:3001" in r.err


def test_an_unknown_node_is_refused_naming_it(cluster_sqlite):
    r = cluster_sqlite.run("snmove", "n1,n99", "-d", "sn2", "-i")
    assert r.rc == 1 and "n99" in r.err
    assert owners(cluster_sqlite) == {}


def test_source_refuses_a_locked_node(cluster_sqlite):
    mn = cluster_sqlite
    mn.ok("chdef", "n2", "locked=yes")
    r = mn.run("snmove", "-s", "sn1", "-d", "sn3", "-i")
    assert r.rc == 1
    assert r.err.splitlines() == [
        "n2: Error: snmove refused: the node is locked (chdef n2 locked=no unlocks it)"]
    assert pools(mn, "rack1") == ["n1: sn3,sn1,sn2", "n2: sn1,sn2", "n3: sn3,sn1,sn2"]


def test_a_destination_whose_servicenode_row_is_its_groups_is_a_service_node(cluster_sqlite):
    mn = cluster_sqlite
    mn.ok("nodeadd", "sn4", "groups=service")
    mn.ok("chtab", "node=service", "servicenode.dhcpserver=1")
    r = mn.run("snmove", "n1", "-d", "sn4", "-i")
    assert (r.rc, r.err) == (0, "")
    assert pools(mn, "n1") == ["n1: sn4,sn1,sn2"]


def test_nodels_shows_the_lease_epoch(cluster_sqlite):
    mn = cluster_sqlite
    mn.ok("snmove", "n1", "-d", "sn3", "-i")
    r = mn.run("nodels", "n1,n10", "nodeowner.servicenode", "nodeowner.epoch")
    assert (r.rc, r.err) == (0, "")
    assert r.lines == ["n1: nodeowner.servicenode: sn3", "n1: nodeowner.epoch: 1",
                       "n10: nodeowner.servicenode: ", "n10: nodeowner.epoch: "]
