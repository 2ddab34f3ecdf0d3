"""lsdef / mkdef / chdef / rmdef for node, group (static and dynamic), osimage, network,
site and policy objects."""
import pytest

HDR = "# <xCAT data object stanza file>"


@pytest.fixture
def defs(mn):
    mn.ok("mkdef", "-t", "node", "-o", "n1-n3", "groups=compute,all", "mgt=ipmi",
          "bmc=10.1.0.1", "os=rhels9")
    mn.ok("mkdef", "n10", "groups=all", "mgt=kvm")
    return mn


@pytest.fixture
def defs_sqlite(mn_sqlite):
    mn_sqlite.ok("mkdef", "-t", "node", "-o", "n1-n3", "groups=compute,all", "mgt=ipmi",
                 "bmc=10.1.0.1", "os=rhels9")
    mn_sqlite.ok("mkdef", "n10", "groups=all", "mgt=kvm")
    return mn_sqlite


# ---- lsdef --------------------------------------------------------------------------------
def test_lsdef_without_args_lists_nodes(defs):
    lines = defs.ok("lsdef").lines
    assert sorted(lines) == ["n1  (node)", "n10  (node)", "n2  (node)", "n3  (node)"]


def test_lsdef_empty_says_nothing_to_display(mn_sqlite):
    assert "Could not find any objects" in mn_sqlite.ok("lsdef").out


def test_lsdef_noderange_prints_sorted_attributes_without_key(defs):
    assert defs.ok("lsdef", "n1").lines == [
        "Object name: n1", "    bmc=10.1.0.1", "    groups=compute,all", "    mgt=ipmi",
        "    os=rhels9"]


def test_lsdef_several_nodes_one_block_each(defs_sqlite):
    lines = defs_sqlite.ok("lsdef", "n1,n10").lines
    assert [line for line in lines if line.startswith("Object name")] == [
        "Object name: n1", "Object name: n10"]


@pytest.mark.parametrize("args, expected", [
    (["n1", "-i", "bmc,os"], ["Object name: n1", "    bmc=10.1.0.1", "    os=rhels9"]),
    (["n1", "-i", "arch,mgt"], ["Object name: n1", "    arch=", "    mgt=ipmi"]),
    (["n1", "-i", "bmc,arch", "-c"], ["n1: bmc=10.1.0.1", "n1: arch="]),
    (["n1,n10", "-i", "mgt", "-c"], ["n1: mgt=ipmi", "n10: mgt=kvm"]),
    (["n1", "-s"], ["n1  (node)"]),
    (["-w", "mgt==kvm"], ["n10  (node)"]),
    (["-w", "mgt==ipmi", "-w", "os=~^rhel", "-s"], ["n1  (node)", "n2  (node)", "n3  (node)"]),
    (["-w", "mgt!=ipmi", "-i", "mgt"], ["Object name: n10", "    mgt=kvm"]),
    (["-w", "mgt==none"], []),
])
def test_lsdef_output_options(defs_sqlite, args, expected):
    assert defs_sqlite.ok("lsdef", *args).lines == expected


def test_lsdef_stanza_format(defs_sqlite):
    assert defs_sqlite.ok("lsdef", "-z", "n10").lines == [
        HDR, "", "n10:", "    objtype=node", "    groups=all", "    mgt=kvm"]


def test_lsdef_c_without_i_or_l_is_error(defs_sqlite):
    assert defs_sqlite.run("lsdef", "-c", "n1").rc == 1


def test_lsdef_unknown_attribute_in_i_is_error(defs_sqlite):
    r = defs_sqlite.run("lsdef", "n1", "-i", "bogus")
    assert r.rc == 1
    assert "bogus" in r.err


@pytest.mark.parametrize("args", [["n99"], ["-t", "group", "nogroup"],
                                  ["-t", "osimage", "-o", "noimg"], ["-t", "bogustype"]])
def test_lsdef_unknown_object_or_type_is_error(defs, args):
    r = defs.run("lsdef", *args)
    assert r.rc == 1
    assert r.err.startswith("Error:")


def test_lsdef_inherited_value_is_shown(defs_sqlite):
    defs_sqlite.ok("chdef", "-t", "group", "-o", "compute", "arch=x86_64")
    assert defs_sqlite.ok("lsdef", "n2", "-i", "arch").lines == ["Object name: n2",
                                                                 "    arch=x86_64"]


def test_lsdef_hides_hidden_nodes_unless_S(defs_sqlite):
    defs_sqlite.ok("chdef", "n2", "hidden=1")
    assert "n2  (node)" not in defs_sqlite.ok("lsdef").lines
    assert "n2  (node)" in defs_sqlite.ok("lsdef", "-S").lines


def test_lsdef_group_lists_groups_and_static_members(defs):
    assert defs.ok("lsdef", "-t", "group").lines == ["all  (group)", "compute  (group)"]
    assert defs.ok("lsdef", "-t", "group", "-o", "all").lines == [
        "Object name: all", "    members=n1,n2,n3,n10"]
    assert defs.ok("lsdef", "-t", "group", "compute", "-i", "members").lines == [
        "Object name: compute", "    members=n1,n2,n3"]


def test_lsdef_site_shows_clustersite_with_all_keys(mn):
    mn.ok("chtab", "key=mykey", "site.value=myval")
    assert mn.ok("lsdef", "-t", "site").lines == ["clustersite  (site)"]
    lines = mn.ok("lsdef", "-t", "site", "-l").lines
    assert lines[0] == "Object name: clustersite"
    for expected in ("    xcatdport=3001", "    installdir=/install", "    mykey=myval"):
        assert expected in lines
    assert mn.ok("lsdef", "-t", "site", "-o", "clustersite").lines == lines


def test_lsdef_site_i_selects_site_keys(mn_sqlite):
    assert mn_sqlite.ok("lsdef", "-t", "site", "-i", "xcatdport").lines == [
        "Object name: clustersite", "    xcatdport=3001"]


def test_lsdef_site_wrong_name_is_error(mn_sqlite):
    assert mn_sqlite.run("lsdef", "-t", "site", "-o", "mysite").rc == 1


# ---- mkdef --------------------------------------------------------------------------------
def test_mkdef_reports_count_and_writes_tables(mn):
    r = mn.ok("mkdef", "-t", "node", "-o", "n1-n2", "groups=all", "mgt=ipmi", "bmc=b1",
              "ip=10.0.0.1")
    assert r.lines == ["2 object definitions have been created or modified."]
    assert mn.ok("nodels", "n2", "nodehm.mgt", "ipmi.bmc", "hosts.ip").lines == [
        "n2: nodehm.mgt: ipmi", "n2: ipmi.bmc: b1", "n2: hosts.ip: 10.0.0.1"]


def test_mkdef_existing_object_without_force_is_error_and_unchanged(defs):
    r = defs.run("mkdef", "n1", "groups=other", "mgt=kvm")
    assert r.rc == 1
    assert "already exists" in r.err
    assert defs.ok("lsdef", "n1", "-i", "groups,mgt").lines == [
        "Object name: n1", "    groups=compute,all", "    mgt=ipmi"]


def test_mkdef_existing_among_new_creates_nothing(defs_sqlite):
    r = defs_sqlite.run("mkdef", "n3-n5", "groups=all")
    assert r.rc == 1
    assert "n3" in r.err
    assert defs_sqlite.run("nodels", "n4").rc == 1


def test_mkdef_force_replaces_definition(defs):
    defs.ok("mkdef", "-f", "n1", "groups=other")
    assert defs.ok("lsdef", "n1").lines == ["Object name: n1", "    groups=other"]
    assert defs.ok("tabgrep", "n1").lines == ["nodelist"]


@pytest.mark.parametrize("args", [
    ["n5", "mgt=ipmi"],
    ["-o", "n5-n6", "os=rhels9"],
])
def test_mkdef_node_without_groups_is_error_nothing_written(mn, args):
    r = mn.run("mkdef", *args)
    assert r.rc == 1
    assert "groups" in r.err
    assert mn.ok("nodels").out == ""
    assert mn.ok("tabgrep", "n5").out == ""


def test_mkdef_all_or_nothing_across_stanzas(mn):
    text = "n1:\n  objtype=node\n  groups=all\nn2:\n  objtype=node\n  mgt=ipmi\n"
    r = mn.run("mkdef", "-z", input=text)
    assert r.rc == 1
    assert mn.ok("nodels").out == ""


@pytest.mark.parametrize("args", [["n5", "groups=all", "bmc=1.1.1.1"],
                                  ["n5", "groups=all", "mgt=kvm", "bmc=1.1.1.1"]])
def test_mkdef_bmc_without_mgt_ipmi_is_error(mn_sqlite, args):
    r = mn_sqlite.run("mkdef", *args)
    assert r.rc == 1
    assert "mgt" in r.err
    assert mn_sqlite.ok("nodels").out == ""


def test_mkdef_unknown_attribute_is_error(mn_sqlite):
    r = mn_sqlite.run("mkdef", "n1", "groups=all", "bogus=1")
    assert r.rc == 1
    assert "bogus" in r.err
    assert mn_sqlite.ok("nodels").out == ""


def test_mkdef_without_names_is_error(mn_sqlite):
    assert mn_sqlite.run("mkdef", "-t", "osimage", "imagetype=linux").rc == 1


def test_mkdef_invalid_type_is_error(mn_sqlite):
    r = mn_sqlite.run("mkdef", "-t", "bogus", "-o", "x", "a=b")
    assert r.rc == 1
    assert "bogus" in r.err


def test_lsdef_stanza_round_trips_into_fresh_mn(defs, tmp_path, monkeypatch):
    from tests.conftest import make_mn
    defs.ok("mkdef", "-t", "osimage", "-o", "img1", "imagetype=linux", "provmethod=install",
            "template=/x/compute.tmpl", "osname=Linux")
    defs.ok("mkdef", "-t", "network", "-o", "net1", "net=10.0.0.0", "mask=255.255.255.0",
            "gateway=10.0.0.1")
    stanza = defs.ok("lsdef", "-z", "all").out + \
        defs.ok("lsdef", "-z", "-t", "osimage,network").out
    listing = defs.ok("lsdef", "-l", "all").out
    images = defs.ok("lsdef", "-t", "osimage,network", "-l").out
    (tmp_path / "other").mkdir()
    other = make_mn(tmp_path / "other", None)
    import os
    old = os.environ["XCATROOT"]
    os.environ["XCATROOT"] = str(other.root)
    monkeypatch.setenv("XCATBYPASS", "1")  # the other MN has no daemon
    monkeypatch.delenv("XCATHOST", raising=False)
    try:
        r = other.ok("mkdef", "-z", input=stanza)
        assert r.lines == ["6 object definitions have been created or modified."]
        assert other.ok("lsdef", "-l", "all").out == listing
        assert other.ok("lsdef", "-t", "osimage,network", "-l").out == images
    finally:
        os.environ["XCATROOT"] = old
        other.db.dispose()


def test_mkdef_z_rejects_stanza_without_objtype(mn_sqlite):
    r = mn_sqlite.run("mkdef", "-z", input="n1:\n  groups=all\n")
    assert r.rc == 1
    assert "objtype" in r.err


# ---- groups -------------------------------------------------------------------------------
def test_mkdef_dynamic_group_computes_members_and_is_a_noderange(defs):
    defs.ok("mkdef", "-t", "group", "-d", "-w", "mgt==ipmi", "-o", "ipmigrp")
    assert defs.ok("lsdef", "-t", "group", "ipmigrp").lines == [
        "Object name: ipmigrp", "    grouptype=dynamic", "    members=n1,n2,n3",
        "    wherevals=mgt==ipmi"]
    assert defs.ok("nodels", "ipmigrp").lines == ["n1", "n2", "n3"]
    defs.ok("chdef", "n10", "mgt=ipmi")
    assert defs.ok("nodels", "ipmigrp").lines == ["n1", "n2", "n3", "n10"]
    assert defs.ok("nodels", "n1", "groups").lines == ["n1: compute,all"]


def test_dynamic_group_with_several_conditions(defs_sqlite):
    defs_sqlite.ok("chdef", "n2", "os=sles15")
    defs_sqlite.ok("mkdef", "-t", "group", "-d", "-w", "mgt==ipmi", "-w", "os=~rhel",
                   "-o", "dg")
    assert defs_sqlite.ok("nodels", "dg").lines == ["n1", "n3"]


@pytest.mark.parametrize("args", [
    ["-t", "group", "-d", "-o", "dg"],                   # no -w
    ["-t", "node", "-d", "-w", "mgt==ipmi", "-o", "n9"],  # -d only for groups
])
def test_dynamic_group_option_errors(defs_sqlite, args):
    assert defs_sqlite.run("mkdef", *args).rc == 1
    assert "dg" not in defs_sqlite.ok("lsdef", "-t", "group").out


def test_mkdef_static_group_members_sets_nodelist_groups(defs):
    defs.ok("mkdef", "-t", "group", "-o", "rack1", "members=n1,n10")
    assert defs.ok("nodels", "rack1").lines == ["n1", "n10"]
    assert defs.ok("nodels", "n1", "groups").lines == ["n1: compute,all,rack1"]


def test_mkdef_group_with_unknown_member_is_error(defs_sqlite):
    r = defs_sqlite.run("mkdef", "-t", "group", "-o", "rack1", "members=n1,n99")
    assert r.rc == 1
    assert "n99" in r.err
    assert defs_sqlite.ok("nodels", "n1", "groups").lines == ["n1: compute,all"]


def test_group_attribute_is_inherited_by_members(defs):
    defs.ok("chdef", "-t", "group", "-o", "compute", "arch=ppc64le")
    assert defs.ok("nodels", "-b", "n1", "arch").lines == [
        "n1: ppc64le (inherited from group compute)"]


def test_rmdef_group_removes_it_from_members(defs):
    r = defs.ok("rmdef", "-t", "group", "compute")
    assert r.lines == ["1 object definitions have been removed."]
    assert defs.ok("nodels", "n1-n3", "groups").lines == ["n1: all", "n2: all", "n3: all"]
    assert defs.ok("lsdef", "-t", "group").lines == ["all  (group)"]
    assert defs.run("nodels", "compute").rc == 1


def test_rmdef_dynamic_group(defs_sqlite):
    defs_sqlite.ok("mkdef", "-t", "group", "-d", "-w", "mgt==ipmi", "-o", "dg")
    defs_sqlite.ok("rmdef", "-t", "group", "-o", "dg")
    assert defs_sqlite.run("nodels", "dg").rc == 1
    assert defs_sqlite.ok("nodels").lines == ["n1", "n2", "n3", "n10"]


# ---- chdef --------------------------------------------------------------------------------
@pytest.mark.parametrize("args, expected", [
    (["groups=rack1", "-p"], "compute,all,rack1"),
    (["groups=all", "-p"], "compute,all"),
    (["groups=compute", "-m"], "all"),
    (["groups=rack1"], "rack1"),
])
def test_chdef_plus_minus_and_set(defs, args, expected):
    defs.ok("chdef", "n1", *args)
    assert defs.ok("nodels", "n1", "groups").lines == [f"n1: {expected}"]


def test_chdef_p_and_m_together_is_error(defs_sqlite):
    assert defs_sqlite.run("chdef", "n1", "groups=x", "-p", "-m").rc == 1


def test_chdef_changes_several_attributes(defs_sqlite):
    r = defs_sqlite.ok("chdef", "-t", "node", "-o", "n1,n2", "os=sles15", "arch=x86_64")
    assert r.lines == ["2 object definitions have been created or modified."]
    assert defs_sqlite.ok("nodels", "n1-n3", "os").lines == ["n1: sles15", "n2: sles15",
                                                              "n3: rhels9"]


def test_chdef_empty_value_clears_attribute(defs_sqlite):
    defs_sqlite.ok("chdef", "n1", "os=")
    assert defs_sqlite.ok("lsdef", "n1", "-i", "os").lines == ["Object name: n1", "    os="]


def test_chdef_creates_missing_node_in_group_all(defs):
    r = defs.ok("chdef", "n20", "os=rhels8")
    assert "New object definitions 'n20' have been created." in r.lines
    assert defs.ok("lsdef", "n20").lines == ["Object name: n20", "    groups=all",
                                             "    os=rhels8"]


def test_chdef_rename_keeps_attributes_in_every_table(defs):
    defs.ok("chdef", "n1", "ip=10.0.0.1", "mac=aa:bb:cc:dd:ee:ff")
    before = defs.ok("lsdef", "n1").lines[1:]
    tables = defs.ok("tabgrep", "n1").lines
    defs.ok("chdef", "-t", "node", "-o", "n1", "-n", "node01")
    assert defs.ok("lsdef", "node01").lines[1:] == before
    assert defs.ok("tabgrep", "node01").lines == tables
    assert defs.ok("tabgrep", "n1").out == ""
    assert defs.ok("nodels", "compute").lines == ["n2", "n3", "node01"]


def test_chdef_rename_to_existing_name_is_error(defs_sqlite):
    r = defs_sqlite.run("chdef", "-t", "node", "-o", "n1", "-n", "n2")
    assert r.rc == 1
    assert "already exists" in r.err
    assert defs_sqlite.ok("tabgrep", "n1").lines == ["ipmi", "nodehm", "nodelist", "nodetype"]


def test_chdef_rename_group_updates_members(defs_sqlite):
    defs_sqlite.ok("chdef", "-t", "group", "-o", "compute", "arch=x86_64")
    defs_sqlite.ok("chdef", "-t", "group", "-o", "compute", "-n", "cmp")
    assert defs_sqlite.ok("nodels", "n1", "groups").lines == ["n1: cmp,all"]
    assert defs_sqlite.ok("nodels", "-b", "n1", "arch").lines == [
        "n1: x86_64 (inherited from group cmp)"]


def test_chdef_m_on_missing_object_is_error(defs_sqlite):
    assert defs_sqlite.run("chdef", "n30", "groups=all", "-m").rc == 1
    assert defs_sqlite.run("nodels", "n30").rc == 1


def test_chdef_bad_attribute_changes_nothing(defs):
    r = defs.run("chdef", "n1,n2", "os=x", "bogus=1")
    assert r.rc == 1
    assert defs.ok("nodels", "n1,n2", "os").lines == ["n1: rhels9", "n2: rhels9"]


# ---- rmdef --------------------------------------------------------------------------------
def test_rmdef_nodes_reports_count_and_removes_rows(defs):
    assert defs.ok("rmdef", "n1-n2").lines == ["2 object definitions have been removed."]
    assert defs.ok("nodels").lines == ["n3", "n10"]
    assert defs.ok("tabgrep", "n1").out == ""


def test_rmdef_a_without_f_is_error(defs_sqlite):
    r = defs_sqlite.run("rmdef", "-a")
    assert r.rc == 1
    assert "-f" in r.err
    assert len(defs_sqlite.ok("nodels").lines) == 4


def test_rmdef_a_f_removes_everything_but_site(defs_sqlite):
    defs_sqlite.ok("rmdef", "-a", "-f")
    assert defs_sqlite.ok("nodels").out == ""
    assert defs_sqlite.ok("gettab", "key=xcatdport", "site.value").out == "3001\n"


def test_rmdef_unknown_object_is_error(defs_sqlite):
    assert defs_sqlite.run("rmdef", "n99").rc == 1
    assert defs_sqlite.run("rmdef", "-t", "osimage", "-o", "noimg").rc == 1
    assert len(defs_sqlite.ok("nodels").lines) == 4


# ---- osimage, network, policy -------------------------------------------------------------
def test_osimage_template_lives_in_linuximage(mn):
    mn.ok("mkdef", "-t", "osimage", "-o", "img1", "imagetype=linux", "provmethod=install",
          "template=/x/compute.tmpl", "osname=Linux")
    assert mn.ok("lsdef", "-t", "osimage", "-l", "img1").lines == [
        "Object name: img1", "    imagetype=linux", "    osname=Linux",
        "    provmethod=install", "    template=/x/compute.tmpl"]
    assert mn.ok("gettab", "imagename=img1", "linuximage.template").out == \
        "/x/compute.tmpl\n"
    assert mn.ok("lsdef", "-t", "osimage").lines == ["img1  (osimage)"]


def test_osimage_template_without_imagetype_linux_is_error(mn_sqlite):
    r = mn_sqlite.run("mkdef", "-t", "osimage", "-o", "img2", "template=/x/t.tmpl")
    assert r.rc == 1
    assert "imagetype" in r.err
    assert mn_sqlite.ok("tabdump", "osimage").lines[1:] == []


def test_rmdef_osimage_removes_linuximage_row(mn_sqlite):
    mn_sqlite.ok("mkdef", "-t", "osimage", "-o", "img1", "imagetype=linux", "template=/t")
    mn_sqlite.ok("rmdef", "-t", "osimage", "-o", "img1")
    assert mn_sqlite.ok("tabdump", "linuximage").lines[1:] == []
    assert mn_sqlite.ok("tabdump", "osimage").lines[1:] == []


def test_network_definition(mn):
    r = mn.ok("mkdef", "-t", "network", "-o", "net1", "net=10.0.0.0", "mask=255.255.255.0",
              "gateway=10.0.0.1")
    assert r.lines == ["1 object definitions have been created or modified."]
    assert mn.ok("lsdef", "-t", "network", "-l", "net1").lines == [
        "Object name: net1", "    gateway=10.0.0.1", "    mask=255.255.255.0",
        "    net=10.0.0.0"]
    mn.ok("chdef", "-t", "network", "-o", "net1", "gateway=10.0.0.254")
    assert mn.ok("gettab", "netname=net1", "networks.gateway").out == "10.0.0.254\n"


@pytest.mark.parametrize("attrs", [["gateway=10.0.0.1"], ["net=10.0.0.0"],
                                   ["mask=255.0.0.0"]])
def test_network_without_net_and_mask_is_clear_error(mn_sqlite, attrs):
    r = mn_sqlite.run("mkdef", "-t", "network", "-o", "net2", *attrs)
    assert r.rc == 1
    assert r.err.startswith("Error: Net or mask value should not be empty for xCAT network "
                            "object 'net2'.\n")
    assert mn_sqlite.ok("tabdump", "networks").lines[1:] == []


def test_policy_definition(mn):
    mn.ok("mkdef", "-t", "policy", "-o", "6", "name=bob", "rule=allow")
    assert mn.ok("lsdef", "-t", "policy", "-l", "6").lines == [
        "Object name: 6", "    name=bob", "    rule=allow"]
    assert '"6","bob",,,,,,"allow",,' in mn.ok("tabdump", "policy").lines
    mn.ok("rmdef", "-t", "policy", "-o", "6")
    assert mn.run("lsdef", "-t", "policy", "-o", "6").rc == 1


def test_site_chdef_sets_key(mn_sqlite):
    mn_sqlite.ok("chdef", "-t", "site", "domain=example.com", "newkey=v")
    assert mn_sqlite.ok("gettab", "key=domain", "site.value").out == "example.com\n"
    assert mn_sqlite.ok("gettab", "key=newkey", "site.value").out == "v\n"


def test_site_cannot_be_removed(mn_sqlite):
    assert mn_sqlite.run("rmdef", "-t", "site", "-o", "clustersite").rc == 1
    assert mn_sqlite.ok("gettab", "key=xcatdport", "site.value").out == "3001\n"
