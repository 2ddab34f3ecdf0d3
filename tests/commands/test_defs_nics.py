"""Attributes keyed by a sub-name, as in xCAT's object definitions: nicips.<nic> and the
other nic attributes (stored as '<nic>!<value>,...' in the nics table), on nodes and groups
(with a regex value per interface), and passwd.<user> of FSP and BPA nodes."""
import pytest


@pytest.fixture
def nodes(mn):
    mn.ok("mkdef", "-t", "node", "-o", "n1-n3", "groups=compute,all", "mgt=ipmi")
    return mn


@pytest.fixture
def nodes_sqlite(mn_sqlite):
    mn_sqlite.ok("mkdef", "-t", "node", "-o", "n1-n3", "groups=compute,all", "mgt=ipmi")
    return mn_sqlite


def test_mkdef_nic_attributes_are_stored_per_interface(mn):
    mn.ok("mkdef", "-t", "node", "cn1", "groups=all", "nicips.eth0=1.1.1.1|1.2.1.1",
          "nicnetworks.eth0=net1|net2", "nictypes.eth0=Ethernet", "nicips.ib0=10.1.0.1")
    assert mn.ok("gettab", "node=cn1", "nics.nicips").out == "eth0!1.1.1.1|1.2.1.1,ib0!10.1.0.1\n"
    assert mn.ok("gettab", "node=cn1", "nics.nicnetworks").out == "eth0!net1|net2\n"
    assert mn.ok("lsdef", "cn1").lines == [
        "Object name: cn1", "    groups=all", "    nicips.eth0=1.1.1.1|1.2.1.1",
        "    nicips.ib0=10.1.0.1", "    nicnetworks.eth0=net1|net2",
        "    nictypes.eth0=Ethernet"]


def test_chdef_changes_one_interface_and_keeps_the_others(nodes):
    nodes.ok("chdef", "n1", "nicips.eth1=10.2.0.1", "nicips.ib0=10.1.0.1")
    nodes.ok("chdef", "n1", "nicips.ib0=10.1.0.9")
    assert nodes.ok("gettab", "node=n1", "nics.nicips").out == "eth1!10.2.0.1,ib0!10.1.0.9\n"
    nodes.ok("chdef", "n1", "nicips.eth1=")
    assert nodes.ok("gettab", "node=n1", "nics.nicips").out == "ib0!10.1.0.9\n"
    nodes.ok("chdef", "n1", "nicips.ib0=")
    assert nodes.ok("lsdef", "n1", "-i", "nicips").lines == ["Object name: n1"]


@pytest.mark.parametrize("args, expected", [
    (["-i", "nicips.eth0"], ["Object name: n1", "    nicips.eth0=10.0.0.1"]),
    (["-i", "nicips"], ["Object name: n1", "    nicips.eth0=10.0.0.1",
                        "    nicips.ib0=10.1.0.1"]),
    (["-i", "nicips.ib0,nichostnamesuffixes", "-c"],
     ["n1: nicips.ib0=10.1.0.1", "n1: nichostnamesuffixes.ib0=-infiniband"]),
    (["--nics"], ["Object name: n1", "    nicips.eth0=10.0.0.1", "    nicips.ib0=10.1.0.1",
                  "    nichostnamesuffixes.ib0=-infiniband"]),
])
def test_lsdef_i_picks_interfaces(nodes_sqlite, args, expected):
    nodes_sqlite.ok("chdef", "n1", "nicips.eth0=10.0.0.1", "nicips.ib0=10.1.0.1",
                    "nichostnamesuffixes.ib0=-infiniband")
    assert nodes_sqlite.ok("lsdef", "n1", *args).lines == expected


def test_stanza_round_trip_keeps_the_interfaces(nodes_sqlite):
    nodes_sqlite.ok("chdef", "n1", "nicips.eth0=10.0.0.1", "nicips.ib0=10.1.0.1")
    stanza = nodes_sqlite.ok("lsdef", "-z", "n1").out
    assert "    nicips.eth0=10.0.0.1\n    nicips.ib0=10.1.0.1" in stanza
    nodes_sqlite.ok("rmdef", "n1")
    nodes_sqlite.ok("mkdef", "-z", input=stanza)
    assert nodes_sqlite.ok("gettab", "node=n1", "nics.nicips").out == \
        "eth0!10.0.0.1,ib0!10.1.0.1\n"


def test_a_group_regex_per_interface_computes_for_each_member(nodes):
    nodes.ok("chdef", "-t", "group", "-o", "compute", r"nicips.ib0=|\D+(\d+)|10.1.0.($1+0)|",
             "nicips.eth1=10.9.9.9")
    assert nodes.ok("lsdef", "-t", "group", "compute", "-i", "nicips").lines == [
        "Object name: compute", r"    nicips.ib0=|\D+(\d+)|10.1.0.($1+0)|",
        "    nicips.eth1=10.9.9.9"]
    assert nodes.ok("lsdef", "n1-n3", "-i", "nicips.ib0", "-c").lines == [
        "n1: nicips.ib0=10.1.0.1", "n2: nicips.ib0=10.1.0.2", "n3: nicips.ib0=10.1.0.3"]


def test_a_node_change_keeps_the_interfaces_it_inherits(nodes_sqlite):
    nodes_sqlite.ok("chdef", "-t", "group", "-o", "compute",
                    r"nicips.ib0=|\D+(\d+)|10.1.0.($1+0)|")
    nodes_sqlite.ok("chdef", "n2", "nicips.eth1=10.2.0.2")
    assert nodes_sqlite.ok("lsdef", "n2", "-i", "nicips").lines == [
        "Object name: n2", "    nicips.ib0=10.1.0.2", "    nicips.eth1=10.2.0.2"]
    assert nodes_sqlite.ok("lsdef", "n3", "-i", "nicips").lines == [
        "Object name: n3", "    nicips.ib0=10.1.0.3"]


@pytest.mark.parametrize("flag", ["-p", "-m"])
def test_nic_attributes_refuse_p_and_m(nodes_sqlite, flag):
    r = nodes_sqlite.run("chdef", "n1", flag, "nicips.eth0=10.0.0.1")
    assert r.rc == 1
    assert r.err.splitlines()[0] == ("Error: chdef does not support to change the nic related "
                                     "attributes with -m or -p flag.")


@pytest.mark.parametrize("attr", ["nicips.=1.1.1.1", "nicbogus.eth0=x", "nicips.a!b=x"])
def test_bad_nic_attribute_names_are_errors(nodes_sqlite, attr):
    r = nodes_sqlite.run("chdef", "n1", attr)
    assert r.rc == 1 and r.err.startswith("Error: ")
    assert nodes_sqlite.ok("tabdump", "nics").lines[1:] == []


def test_lsdef_i_of_an_unknown_nic_attribute_is_an_error(nodes_sqlite):
    r = nodes_sqlite.run("lsdef", "n1", "-i", "nicbogus.eth0")
    assert r.rc == 1
    assert r.err == ("Error: 'nicbogus.eth0' is not a valid attribute name for an object type "
                     "of 'node'.\n")


# ---- passwd.<user> --------------------------------------------------------------------------
def test_fsp_passwords_per_user(mn):
    mn.ok("mkdef", "fsp1", "groups=fsp", "mgt=fsp", "passwd.HMC=abc", "passwd.admin=def")
    assert mn.ok("lsdef", "fsp1").lines == [
        "Object name: fsp1", "    groups=fsp", "    mgt=fsp", "    passwd.HMC=********",
        "    passwd.admin=********"]
    assert mn.ok("lsdef", "fsp1", "-i", "passwd.admin", "--show-secrets").lines == [
        "Object name: fsp1", "    passwd.admin=def"]
    rows = mn.ok("tabdump", "ppcdirect").lines[1:]
    assert len(rows) == 2 and all(r.startswith('"fsp1",') for r in rows)
    mn.ok("chdef", "fsp1", "passwd.admin=ghi")
    assert mn.ok("lsdef", "fsp1", "-i", "passwd.admin", "--show-secrets").lines[1] == \
        "    passwd.admin=ghi"


def test_passwd_needs_an_fsp_or_bpa_node(mn_sqlite):
    r = mn_sqlite.run("mkdef", "n1", "groups=all", "mgt=ipmi", "passwd.HMC=abc")
    assert r.rc == 1
    assert r.err.splitlines()[0] == ("Error: Cannot set the attr='passwd.HMC' attribute unless "
                                     "mgt value is bpa or fsp.")


def test_rmdef_and_rename_carry_the_passwords(mn_sqlite):
    mn_sqlite.ok("mkdef", "bpa1", "groups=all", "mgt=bpa", "passwd.celogin=x")
    mn_sqlite.ok("chdef", "-t", "node", "-o", "bpa1", "-n", "bpa2")
    assert mn_sqlite.ok("tabdump", "ppcdirect").lines[1].startswith('"bpa2","celogin",')
    mn_sqlite.ok("rmdef", "bpa2")
    assert mn_sqlite.ok("tabdump", "ppcdirect").lines[1:] == []


def test_hmc_username_and_password(mn_sqlite):
    mn_sqlite.ok("mkdef", "hmc1", "groups=hmc", "mgt=hmc", "nodetype=hmc", "username=hscroot",
                 "password=abc123")
    assert mn_sqlite.ok("lsdef", "hmc1").lines == [
        "Object name: hmc1", "    groups=hmc", "    mgt=hmc", "    nodetype=hmc",
        "    password=********", "    username=hscroot"]


def test_a_node_change_on_a_whole_value_regex_keeps_its_computed_interfaces(nodes_sqlite):
    nodes_sqlite.ok("chtab", "node=compute", r"nics.nicips=|\D+(\d+)|ib0!10.1.0.($1+10)|")
    nodes_sqlite.ok("chdef", "n2", "nicips.eth1=10.2.0.2")
    assert nodes_sqlite.ok("gettab", "node=n2", "nics.nicips").out == \
        "ib0!10.1.0.12,eth1!10.2.0.2\n"
    r = nodes_sqlite.run("chdef", "-t", "group", "-o", "compute", "nicips.eth1=10.9.9.9")
    assert r.rc == 1
    assert r.err.splitlines()[0] == ("Error: nicips of 'compute' is one regular expression for "
                                     "every interface: set nicips, not nicips.<nic>.")
    assert nodes_sqlite.ok("lsdef", "-t", "group", "compute", "-i", "nicips").lines == [
        "Object name: compute", r"    nicips=|\D+(\d+)|ib0!10.1.0.($1+10)|"]
