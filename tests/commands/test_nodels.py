"""nodels: listing nodes, attributes, labels, filters, blame, hidden nodes."""
import pytest


def test_no_args_lists_all_nodes_in_natural_order(cluster):
    assert cluster.ok("nodels").lines == ["n1", "n2", "n3", "n10", "n20"]


def test_noderange_group_lists_its_members_sorted(cluster):
    assert cluster.ok("nodels", "compute").lines == ["n1", "n2", "n3", "n10"]


def test_empty_cluster_prints_nothing(mn_sqlite):
    r = mn_sqlite.ok("nodels")
    assert r.out == ""


def test_single_attribute_is_unlabelled(cluster):
    assert cluster.ok("nodels", "n1", "groups").lines == ["n1: compute,all"]


@pytest.mark.parametrize("args, expected", [
    (["n1", "groups", "mgt"], ["n1: groups: compute,all", "n1: mgt: "]),
    (["-H", "n1", "groups"], ["n1: groups: compute,all"]),
    (["-H", "n20", "nodehm.mgt"], ["n20: nodehm.mgt: kvm"]),
    (["n20", "nodelist.groups", "mgt"], ["n20: nodelist.groups: other", "n20: mgt: kvm"]),
])
def test_several_attributes_or_H_label_with_what_was_typed(cluster_sqlite, args, expected):
    assert cluster_sqlite.ok("nodels", *args).lines == expected


def test_empty_value_prints_node_colon_space(cluster_sqlite):
    assert cluster_sqlite.ok("nodels", "n1", "mgt").out == "n1: \n"


def test_attribute_for_many_nodes_one_line_each_in_order(cluster_sqlite):
    cluster_sqlite.ok("nodech", "n2", "nodehm.mgt=ipmi")
    assert cluster_sqlite.ok("nodels", "n1-n3", "mgt").lines == ["n1: ", "n2: ipmi", "n3: "]


def test_bare_table_name_prints_every_column_labelled(cluster_sqlite):
    lines = cluster_sqlite.ok("nodels", "n20", "nodehm").lines
    assert "n20: nodehm.mgt: kvm" in lines
    assert "n20: nodehm.power: " in lines
    assert all(line.startswith("n20: nodehm.") for line in lines)
    assert not any(line.startswith("n20: nodehm.node:") for line in lines)
    assert len(lines) == 15  # every nodehm column except the key


def test_regex_value_on_group_row_is_computed_per_node(cluster):
    cluster.ok("chtab", "node=compute", r"hosts.ip=|\D+(\d+)|10.0.0.($1+100)|")
    cluster.ok("nodeadd", "n7", "groups=compute")
    assert cluster.ok("nodels", "n7", "hosts.ip").lines == ["n7: 10.0.0.107"]
    assert cluster.ok("nodels", "n1,n10", "hosts.ip").lines == ["n1: 10.0.0.101",
                                                               "n10: 10.0.0.110"]
    assert r'"compute","|\D+(\d+)|10.0.0.($1+100)|"' in cluster.ok("tabdump", "hosts").out


def test_blame_appends_inherited_group(cluster_sqlite):
    mn = cluster_sqlite
    mn.ok("chtab", "node=compute", "nodetype.os=rhels9")
    mn.ok("chtab", "node=n2", "nodetype.os=sles15")
    assert mn.ok("nodels", "-b", "n1-n2", "os").lines == [
        "n1: rhels9 (inherited from group compute)", "n2: sles15"]


def test_blame_reports_first_group_in_inheritance_order(cluster_sqlite):
    mn = cluster_sqlite
    mn.ok("chtab", "node=all", "nodetype.arch=x86_64")
    mn.ok("chtab", "node=compute", "nodetype.arch=ppc64le")
    assert mn.ok("nodels", "-b", "n1", "arch").lines == [
        "n1: ppc64le (inherited from group compute)"]


def test_blame_leaves_empty_values_empty(cluster_sqlite):
    assert cluster_sqlite.ok("nodels", "-b", "n1", "os").lines == ["n1: "]


@pytest.mark.parametrize("filt, expected", [
    ("mgt==ipmi", ["n2"]),
    ("mgt!=ipmi", ["n1", "n3", "n10"]),
    ("groups=~^comp", ["n1", "n2", "n3", "n10"]),
    ("groups!~^comp", []),
    ("nodehm.mgt=~/ip.i/", ["n2"]),
    ("groups==compute,all", ["n1", "n2", "n3", "n10"]),
    ("groups==compute", []),  # whole-value comparison
])
def test_filters_select_nodes(cluster_sqlite, filt, expected):
    cluster_sqlite.ok("nodech", "n2", "nodehm.mgt=ipmi")
    assert cluster_sqlite.ok("nodels", "compute", filt).lines == expected


def test_filter_with_shown_attribute_prints_only_matching(cluster_sqlite):
    cluster_sqlite.ok("nodech", "n2", "nodehm.mgt=ipmi")
    assert cluster_sqlite.ok("nodels", "compute", "mgt==ipmi", "groups").lines == [
        "n2: compute,all"]


def test_filters_without_noderange_apply_to_all_nodes(cluster_sqlite):
    assert cluster_sqlite.ok("nodels", "all", "mgt==kvm").lines == []
    assert cluster_sqlite.ok("nodels", "n1-n3,n10,n20", "mgt==kvm").lines == ["n20"]


def test_filter_on_computed_regex_value(cluster_sqlite):
    mn = cluster_sqlite
    mn.ok("chtab", "node=compute", r"hosts.ip=|\D+(\d+)|10.0.0.($1+100)|")
    assert mn.ok("nodels", "compute", "hosts.ip==10.0.0.103").lines == ["n3"]


def test_unknown_node_is_an_error(cluster):
    r = cluster.run("nodels", "n99")
    assert r.rc == 1
    assert "Error: Invalid nodes and/or groups in noderange: n99" in r.err
    assert r.out == ""


def test_unknown_node_among_valid_ones_is_an_error(cluster_sqlite):
    r = cluster_sqlite.run("nodels", "n1,n99")
    assert r.rc == 1
    assert "n99" in r.err


def test_unknown_attribute_is_an_error(cluster_sqlite):
    r = cluster_sqlite.run("nodels", "n1", "nosuchattr")
    assert r.rc == 1
    assert "nosuchattr" in r.err


def test_invalid_regex_filter_is_an_error(cluster_sqlite):
    r = cluster_sqlite.run("nodels", "n1", "groups=~(")
    assert r.rc == 1
    assert "regular expression" in r.err


def test_hidden_node_left_out_of_plain_nodels(cluster):
    cluster.ok("nodech", "n2", "nodelist.hidden=1")
    assert cluster.ok("nodels").lines == ["n1", "n3", "n10", "n20"]
    assert cluster.ok("nodels", "-S").lines == ["n1", "n2", "n3", "n10", "n20"]


def test_hidden_node_listed_when_named(cluster_sqlite):
    cluster_sqlite.ok("nodech", "n2", "nodelist.hidden=1")
    assert cluster_sqlite.ok("nodels", "n2").lines == ["n2"]


def test_disabled_row_is_ignored(cluster_sqlite):
    mn = cluster_sqlite
    mn.ok("chtab", "node=n1", "nodehm.mgt=ipmi", "nodehm.disable=1")
    assert mn.ok("nodels", "n1", "mgt").lines == ["n1: "]


@pytest.mark.parametrize("cmd,args", [
    ("nodels", ()), ("nodech", ("nodetype.os=x",)), ("noderm", ()), ("lsdef", ()),
])
def test_an_empty_group_is_a_clear_error(mn_sqlite, cmd, args):
    mn_sqlite.ok("mkdef", "-t", "group", "-o", "emptygrp")
    before = mn_sqlite.ok("tabdump", "nodetype").out
    r = mn_sqlite.run(cmd, "emptygrp", *args)
    assert r.rc == 1
    assert "emptygrp" in r.err and ("no nodes" in r.err or "No node" in r.err)
    assert mn_sqlite.ok("tabdump", "nodetype").out == before


def test_an_empty_intersection_is_a_clear_error(mn_sqlite):
    mn_sqlite.ok("nodeadd", "n1", "groups=a")
    mn_sqlite.ok("nodeadd", "n2", "groups=b")
    r = mn_sqlite.run("nodels", "a@b")
    assert r.rc == 1 and "contains no nodes" in r.err


def test_site_excludenodes_hides_nodes_from_every_noderange(mn):
    mn.ok("nodeadd", "n[1-6]", "groups=compute,all")
    mn.ok("chtab", "key=excludenodes", "site.value=n[2-3],n5")
    assert mn.ok("nodels", "compute").lines == ["n1", "n4", "n6"]
    assert mn.ok("nodels", "n[1-4]").lines == ["n1", "n4"]


@pytest.mark.parametrize("expr,expected", [
    ("groups=~rack", ["n1", "n2"]),
    ("groups!~rack", ["n3"]),
    ("mgt==ipmi", ["n1", "n3"]),
    ("mgt!=ipmi", ["n2"]),
    ("nodehm.mgt==ipmi@groups=~rack1", ["n1"]),
    ("compute,-mgt==kvm", ["n1", "n3"]),
])
def test_attribute_selectors_in_noderanges(mn, expr, expected):
    mn.ok("nodeadd", "n1", "groups=rack1,compute", "nodehm.mgt=ipmi")
    mn.ok("nodeadd", "n2", "groups=rack2,compute", "nodehm.mgt=kvm")
    mn.ok("nodeadd", "n3", "groups=compute")
    mn.ok("chtab", "node=compute", "nodehm.mgt=ipmi")
    assert mn.ok("nodels", expr).lines == expected
