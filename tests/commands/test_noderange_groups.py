"""Ranges of group names (grp1-grp3, grp[1-3]) through the commands: the union of the
groups, as xCAT's noderange man page describes, and policy sees the same nodes."""
import pytest

from xcatd.security.credentials import issue_client_cert


@pytest.fixture
def racks(mn):
    mn.ok("nodeadd", "n[1-6]", "groups=all")
    mn.ok("chdef", "n1,n2", "-p", "groups=rack1")
    mn.ok("chdef", "n3", "-p", "groups=rack2")
    mn.ok("chdef", "n5,n6", "-p", "groups=rack3")
    mn.ok("mkdef", "-t", "group", "-o", "rack4")   # defined, no members
    return mn


@pytest.mark.parametrize("noderange, expected", [
    ("rack1-rack3", ["n1", "n2", "n3", "n5", "n6"]),
    ("rack[1-2]", ["n1", "n2", "n3"]),
    ("rack1:rack2", ["n1", "n2", "n3"]),
    ("rack2+1", ["n3", "n5", "n6"]),
    ("rack3-rack4", ["n5", "n6"]),
    ("all,-rack1-rack2", ["n4", "n5", "n6"]),
    ("n1-n4,rack3", ["n1", "n2", "n3", "n4", "n5", "n6"]),
])
def test_nodels_of_a_range_of_groups(racks, noderange, expected):
    assert racks.ok("nodels", noderange).lines == expected


def test_a_range_takes_dynamic_groups_too(racks):
    racks.ok("chdef", "n5,n6", "mgt=ipmi")
    racks.ok("mkdef", "-t", "group", "-o", "sel1", "-d", "-w", "mgt==ipmi")
    racks.ok("chdef", "n1", "-p", "groups=sel2")
    assert racks.ok("nodels", "sel1-sel2").lines == ["n1", "n5", "n6"]


def test_a_range_with_a_name_that_is_no_group_names_it(racks):
    r = racks.run("nodels", "rack3-rack5")
    assert r.rc == 1
    assert r.err == "Error: Invalid nodes and/or groups in noderange: rack5\n"
    assert r.out == ""


def test_a_range_of_groups_changes_their_nodes(racks):
    racks.ok("nodech", "rack1-rack2", "nodetype.os=rhels9")
    assert racks.ok("nodels", "nodetype.os==rhels9").lines == ["n1", "n2", "n3"]


def test_a_deny_rule_on_groups_holds_for_a_range_of_them(mn_daemon, monkeypatch, tmp_path):
    """Policy judges the nodes a request names; a range of groups names their members."""
    mn = mn_daemon
    mn.ok("nodeadd", "n[1-4]", "groups=all")
    mn.ok("chdef", "n1,n2", "-p", "groups=sec1")
    mn.ok("chdef", "n3", "-p", "groups=sec2")
    mn.ok("chtab", "priority=4", "policy.name=bob", "policy.commands=nodels",
          "policy.noderange=sec1,sec2", "policy.rule=deny")
    mn.ok("chtab", "priority=5", "policy.name=bob", "policy.commands=nodels",
          "policy.rule=allow")
    home = tmp_path / "home-bob"
    issue_client_cert(mn.paths, "bob", home / ".xcat")
    monkeypatch.setenv("HOME", str(home))
    assert mn.ok("nodels", "n4").lines == ["n4"]
    for noderange in ("sec1-sec2", "sec[1-2]", "sec2"):
        r = mn.run("nodels", noderange)
        assert (r.rc, r.err, r.out) == (1, "Error: Permission denied for request\n", ""), \
            noderange
