"""nodeadd, nodech, noderm: creating, changing and removing nodes through the tables."""
import pytest


def rows(mn, table):
    return mn.ok("tabdump", table).lines[1:]


# ---- nodeadd ------------------------------------------------------------------------------
def test_nodeadd_creates_nodes_with_groups_and_table_values(mn):
    mn.ok("nodeadd", "n[1-3]", "groups=compute,all", "nodehm.mgt=ipmi", "hosts.comments=x")
    assert mn.ok("nodels").lines == ["n1", "n2", "n3"]
    assert mn.ok("nodels", "n2", "groups", "mgt", "hosts.comments").lines == [
        "n2: groups: compute,all", "n2: mgt: ipmi", "n2: hosts.comments: x"]


@pytest.mark.parametrize("args", [["n1"], ["n1", "nodehm.mgt=ipmi"]])
def test_nodeadd_without_groups_is_usage_error_and_adds_nothing(mn_sqlite, args):
    r = mn_sqlite.run("nodeadd", *args)
    assert r.rc == 1
    assert "groups=" in r.err
    assert mn_sqlite.ok("nodels").out == ""


def test_nodeadd_without_noderange_is_error(mn_sqlite):
    assert mn_sqlite.run("nodeadd").rc == 1


def test_nodeadd_existing_node_updates_it(mn_sqlite):
    mn_sqlite.ok("nodeadd", "n1", "groups=a")
    mn_sqlite.ok("nodeadd", "n1", "groups=b", "nodehm.mgt=ipmi")
    assert mn_sqlite.ok("nodels", "n1", "groups", "mgt").lines == ["n1: groups: b",
                                                                  "n1: mgt: ipmi"]
    assert rows(mn_sqlite, "nodelist") == ['"n1","b",,,,,,,,,,,']


@pytest.mark.parametrize("bad", ["nodehm.nosuch=1", "nosuchtable.x=1", "nosuchattr=1"])
def test_nodeadd_unknown_column_is_error_and_adds_nothing(mn, bad):
    r = mn.run("nodeadd", "n1", "groups=all", bad)
    assert r.rc == 1
    assert bad.split("=")[0] in r.err
    assert mn.ok("nodels").out == ""


def test_nodeadd_invalid_node_name_is_error(mn_sqlite):
    r = mn_sqlite.run("nodeadd", "bad/name", "groups=all")
    assert r.rc == 1
    assert mn_sqlite.ok("nodels").out == ""


def test_nodeadd_into_dynamic_group_is_refused(mn_sqlite):
    mn_sqlite.ok("nodeadd", "n1", "groups=all", "nodehm.mgt=ipmi")
    mn_sqlite.ok("mkdef", "-t", "group", "-d", "-w", "mgt==ipmi", "-o", "dyn")
    r = mn_sqlite.run("nodeadd", "n2", "groups=dyn")
    assert r.rc == 1
    assert "dynamic" in r.err
    assert mn_sqlite.ok("nodels").lines == ["n1"]


# ---- nodech -------------------------------------------------------------------------------
@pytest.mark.parametrize("assignment, expected", [
    ("groups=rack1", "rack1"),
    ("groups,=rack1", "rack1,compute,all"),       # prepended
    ("groups,=compute", "compute,all"),           # already there: unchanged
    ("groups,=all,rack1", "rack1,compute,all"),   # only the absent ones
    ("groups^=compute", "all"),
    ("groups^=nosuch", "compute,all"),
    ("nodelist.groups^=compute,all", ""),
])
def test_nodech_list_operators_on_groups(mn, assignment, expected):
    mn.ok("nodeadd", "n1", "groups=compute,all")
    mn.ok("nodech", "n1", assignment)
    assert mn.ok("nodels", "n1", "groups").lines == [f"n1: {expected}"]


def test_nodech_list_append_on_empty_column_sets_value(mn_sqlite):
    mn_sqlite.ok("nodeadd", "n1", "groups=all")
    mn_sqlite.ok("nodech", "n1", "postscripts.postscripts,=a,b")
    assert mn_sqlite.ok("nodels", "n1", "postscripts.postscripts").lines == ["n1: a,b"]


def test_nodech_applies_to_every_node_in_range(mn):
    mn.ok("nodeadd", "n1-n4", "groups=all")
    mn.ok("nodech", "n2-n3", "nodehm.mgt=ipmi", "nodehm.power=ipmi")
    assert mn.ok("nodels", "all", "mgt").lines == ["n1: ", "n2: ipmi", "n3: ipmi", "n4: "]
    assert mn.ok("nodels", "n3", "nodehm.power").lines == ["n3: ipmi"]


def test_nodech_empty_value_clears_column(mn_sqlite):
    mn_sqlite.ok("nodeadd", "n1", "groups=all", "nodehm.mgt=ipmi")
    mn_sqlite.ok("nodech", "n1", "nodehm.mgt=")
    assert mn_sqlite.ok("nodels", "n1", "mgt").lines == ["n1: "]


def test_nodech_with_selection_changes_only_matching_nodes(mn_sqlite):
    mn_sqlite.ok("nodeadd", "n1-n3", "groups=all")
    mn_sqlite.ok("nodech", "n2", "nodehm.mgt=ipmi")
    mn_sqlite.ok("nodech", "all", "mgt==ipmi", "nodehm.power=ipmi")
    assert mn_sqlite.ok("nodels", "all", "nodehm.power").lines == ["n1: ", "n2: ipmi", "n3: "]


def test_nodech_unknown_node_is_error(mn_sqlite):
    mn_sqlite.ok("nodeadd", "n1", "groups=all")
    r = mn_sqlite.run("nodech", "n9", "nodehm.mgt=ipmi")
    assert r.rc == 1
    assert "n9" in r.err
    assert mn_sqlite.ok("tabgrep", "n9").out == ""


def test_nodech_without_assignment_is_usage_error(mn_sqlite):
    mn_sqlite.ok("nodeadd", "n1", "groups=all")
    r = mn_sqlite.run("nodech", "n1")
    assert r.rc == 1
    assert "Usage" in r.err


def test_nodech_bad_column_changes_nothing(mn):
    mn.ok("nodeadd", "n1", "groups=all")
    r = mn.run("nodech", "n1", "nodehm.mgt=ipmi", "nodehm.bogus=1")
    assert r.rc == 1
    assert mn.ok("nodels", "n1", "mgt").lines == ["n1: "]


def test_nodech_delete_removes_only_named_tables_rows(mn):
    mn.ok("nodeadd", "n1-n2", "groups=all", "nodehm.mgt=ipmi", "hosts.ip=1.2.3.4")
    mn.ok("nodech", "-d", "n1", "nodehm")
    assert rows(mn, "nodehm") == ['"n2",,"ipmi",,,,,,,,,,,,,']
    assert mn.ok("nodels", "n1", "hosts.ip").lines == ["n1: 1.2.3.4"]
    assert mn.ok("nodels").lines == ["n1", "n2"]


@pytest.mark.parametrize("args", [["-d", "n1"], ["-d", "n1", "nodehm.mgt"],
                                  ["-d", "n1", "nosuchtable"], ["-d", "n1", "site"]])
def test_nodech_delete_bad_arguments_are_errors(mn_sqlite, args):
    mn_sqlite.ok("nodeadd", "n1", "groups=all", "nodehm.mgt=ipmi")
    assert mn_sqlite.run("nodech", *args).rc == 1
    assert mn_sqlite.ok("nodels", "n1", "mgt").lines == ["n1: ipmi"]


# ---- noderm -------------------------------------------------------------------------------
def test_noderm_removes_node_from_every_table(mn):
    mn.ok("nodeadd", "n1-n2", "groups=all", "nodehm.mgt=ipmi", "hosts.ip=1.2.3.4",
          "ipmi.bmc=10.1.1.1", "nodetype.os=rhels9", "mac.mac=aa:bb")
    assert mn.ok("tabgrep", "n1").lines == ["hosts", "ipmi", "mac", "nodehm", "nodelist",
                                            "nodetype"]
    mn.ok("noderm", "n1")
    assert mn.ok("tabgrep", "n1").out == ""
    assert mn.ok("nodels").lines == ["n2"]
    assert mn.ok("tabgrep", "n2").lines == ["hosts", "ipmi", "mac", "nodehm", "nodelist",
                                            "nodetype"]


def test_noderm_group_noderange_removes_members_but_not_group_rows(mn_sqlite):
    mn_sqlite.ok("nodeadd", "n1-n2", "groups=compute")
    mn_sqlite.ok("nodeadd", "n3", "groups=other")
    mn_sqlite.ok("chtab", "node=compute", "nodetype.os=rhels9")
    mn_sqlite.ok("noderm", "compute")
    assert mn_sqlite.ok("nodels").lines == ["n3"]
    assert rows(mn_sqlite, "nodetype") == ['"compute","rhels9",,,,,,,']


def test_noderm_unknown_node_is_error_and_removes_nothing(mn_sqlite):
    mn_sqlite.ok("nodeadd", "n1", "groups=all")
    r = mn_sqlite.run("noderm", "n1,n9")
    assert r.rc == 1
    assert "n9" in r.err
    assert mn_sqlite.ok("nodels").lines == ["n1"]


def test_noderm_requires_noderange(mn_sqlite):
    assert mn_sqlite.run("noderm").rc == 1
