"""lsdef / mkdef / chdef / rmdef as xCAT answers them: missing objects, usage, the checks
mkdef and chdef make, dynamic groups, nodech's list operators, the postscripts warning and
the auditlog and eventlog pseudo-types. The wording is xCAT's (DBobjectdefs.pm,
DBobjUtils.pm)."""
import pytest

FAILED = ("One or more errors occured when attempting to create or modify xCAT object "
          "definitions; no definition was changed.")


@pytest.fixture
def defs(mn):
    mn.ok("mkdef", "-t", "node", "-o", "n1-n3", "groups=compute,all", "mgt=ipmi",
          "bmc=10.1.0.1", "arch=x86_64")
    mn.ok("mkdef", "n10", "groups=all", "mgt=kvm")
    return mn


@pytest.fixture
def defs_sqlite(mn_sqlite):
    mn_sqlite.ok("mkdef", "-t", "node", "-o", "n1-n3", "groups=compute,all", "mgt=ipmi",
                 "bmc=10.1.0.1", "arch=x86_64")
    mn_sqlite.ok("mkdef", "n10", "groups=all", "mgt=kvm")
    return mn_sqlite


def missing(name, typename="node"):
    return f"Error: Could not find an object named '{name}' of type '{typename}'."


# ---- missing objects ----------------------------------------------------------------------
@pytest.mark.parametrize("cmd", [["lsdef"], ["lsdef", "-t", "node"], ["rmdef"],
                                 ["rmdef", "-t", "node"], ["lsdef", "-l"]])
def test_a_missing_node_is_named_as_a_missing_object(defs, cmd):
    r = defs.run(*cmd, "n99")
    assert r.rc == 1
    assert r.err.splitlines() == [missing("n99")]
    assert "noderange" not in r.err


@pytest.mark.parametrize("cmd", [["lsdef", "-o"], ["rmdef", "-o"], ["lsdef", "-t", "node",
                                                                   "-o"]])
def test_a_missing_node_given_with_o_is_a_missing_object(defs_sqlite, cmd):
    r = defs_sqlite.run(*cmd, "n98,n99")
    assert r.rc == 1
    assert r.err.splitlines() == [missing("n98"), missing("n99")]


def test_lsdef_shows_the_nodes_it_finds_and_names_the_others(defs_sqlite):
    r = defs_sqlite.run("lsdef", "n1,n99", "-i", "mgt")
    assert r.rc == 1
    assert r.lines == ["Object name: n1", "    mgt=ipmi"]
    assert r.err.splitlines() == [missing("n99")]


def test_rmdef_with_a_missing_node_removes_nothing(defs_sqlite):
    r = defs_sqlite.run("rmdef", "n1,n99")
    assert r.rc == 1 and r.err.splitlines() == [missing("n99")]
    assert defs_sqlite.ok("nodels").lines == ["n1", "n2", "n3", "n10"]


@pytest.mark.parametrize("args, typename", [(["-t", "group", "nogroup"], "group"),
                                            (["-t", "osimage", "-o", "noimg"], "osimage"),
                                            (["-t", "network", "nonet"], "network")])
def test_missing_objects_of_other_types(defs_sqlite, args, typename):
    for cmd in ("lsdef", "rmdef"):
        r = defs_sqlite.run(cmd, *args)
        assert r.rc == 1
        assert r.err.splitlines() == [missing(args[-1], typename)]


def test_chdef_minus_on_a_missing_node_is_xcats_error(defs_sqlite):
    r = defs_sqlite.run("chdef", "-t", "node", "-o", "n99", "-m", "groups=all")
    assert r.rc == 1
    assert r.err.splitlines()[0] == ("Error: The '-m' option is not valid since the 'n99' "
                                     "definition does not exist.")
    assert "noderange" not in r.err
    assert defs_sqlite.run("nodels", "n99").rc == 1


def test_chdef_rename_of_a_missing_node(defs_sqlite):
    r = defs_sqlite.run("chdef", "-t", "node", "-o", "n99", "-n", "n100")
    assert r.rc == 1 and r.err == "Error: The n99 is not a valid object.\n"


# ---- usage ----------------------------------------------------------------------------------
@pytest.mark.parametrize("cmd", ["mkdef", "chdef", "rmdef"])
def test_nothing_given_prints_the_usage_and_exits_0(mn_sqlite, cmd):
    r = mn_sqlite.run(cmd)
    assert r.rc == 0
    assert r.out.startswith(f"Usage: {cmd} ")
    assert r.err == ""


@pytest.mark.parametrize("cmd", ["chdef", "rmdef"])
def test_a_type_without_names_is_an_error(mn_sqlite, cmd):
    r = mn_sqlite.run(cmd, "-t", "node")
    assert r.rc == 1 and r.err == "Error: No object names were provided.\n"


# ---- checks ---------------------------------------------------------------------------------
def test_network_needs_net_and_mask(mn_sqlite):
    r = mn_sqlite.run("mkdef", "-t", "network", "-o", "net2", "gateway=10.0.0.1")
    assert r.rc == 1
    assert r.err.splitlines() == ["Error: Net or mask value should not be empty for xCAT "
                                  "network object 'net2'.", FAILED]


def test_the_same_net_and_mask_under_another_name_is_refused(mn):
    mn.ok("mkdef", "-t", "network", "-o", "net1", "net=10.0.0.0", "mask=255.0.0.0")
    for cmd in ("mkdef", "chdef"):
        r = mn.run(cmd, "-t", "network", "-o", "net2", "net=10.0.0.0", "mask=255.0.0.0")
        assert r.rc == 1
        assert r.err.splitlines()[0] == (
            "Error: A network definition called 'net1' already exists that contains the same "
            "net and mask values. Cannot create a definition for 'net2'.")
    assert mn.ok("lsdef", "-t", "network").lines == ["net1  (network)"]


def test_changing_a_network_keeps_its_own_net_and_mask(mn_sqlite):
    mn_sqlite.ok("mkdef", "-t", "network", "-o", "net1", "net=10.0.0.0", "mask=255.0.0.0")
    mn_sqlite.ok("chdef", "-t", "network", "-o", "net1", "gateway=10.0.0.254")
    r = mn_sqlite.run("chdef", "-t", "network", "-o", "net1", "mask=")
    assert r.rc == 1 and r.err.splitlines()[0] == (
        "Error: Attribute 'mask' is not specified for network entry 'net1', skipping.")


@pytest.mark.parametrize("args, message", [
    (["-t", "osimage", "-o", "img1"], "no attributes were specified."),
    (["-t", "policy", "-o", "7"], "no attributes were specified."),
    (["n5"], "no attributes were specified. The 'groups' attribute is required when "
             "creating node definitions."),
])
def test_mkdef_without_attributes_is_refused(mn_sqlite, args, message):
    r = mn_sqlite.run("mkdef", *args)
    assert r.rc == 1
    assert r.err == f"Error: No object definitions have been created or modified: {message}\n"
    assert mn_sqlite.ok("tabdump", "osimage").lines[1:] == []
    assert mn_sqlite.ok("nodels").out == ""


def test_mkdef_of_a_group_without_attributes_makes_an_empty_group(mn_sqlite):
    mn_sqlite.ok("mkdef", "-t", "group", "-o", "empty")
    assert mn_sqlite.ok("lsdef", "-t", "group").lines == ["empty  (group)"]


def test_bmc_needs_mgt_and_says_so_in_xcats_words(mn_sqlite):
    r = mn_sqlite.run("mkdef", "n5", "groups=all", "bmc=10.0.0.5")
    assert r.rc == 1
    assert r.err.splitlines() == ["Error: Cannot set the attr='bmc' attribute unless mgt value "
                                  "is ipmi or openbmc.", FAILED]
    assert mn_sqlite.ok("nodels").out == ""


@pytest.mark.parametrize("cmd", ["mkdef", "chdef"])
def test_bmc_accepts_mgt_inherited_from_a_group(mn, cmd):
    mn.ok("mkdef", "-t", "group", "-o", "ipmigrp", "mgt=ipmi")
    mn.ok(cmd, "n5", "groups=ipmigrp", "bmc=10.0.0.5")
    assert mn.ok("nodels", "n5", "ipmi.bmc", "nodehm.mgt").lines == [
        "n5: ipmi.bmc: 10.0.0.5", "n5: nodehm.mgt: ipmi"]
    assert mn.ok("lsdef", "n5", "-i", "bmc").lines == ["Object name: n5", "    bmc=10.0.0.5"]


def test_an_existing_node_changes_bmc_with_its_groups_mgt(mn_sqlite):
    mn_sqlite.ok("mkdef", "-t", "group", "-o", "ipmigrp", "mgt=ipmi")
    mn_sqlite.ok("mkdef", "n5", "groups=ipmigrp")
    mn_sqlite.ok("chdef", "n5", "bmc=10.0.0.9")
    assert mn_sqlite.ok("gettab", "node=n5", "ipmi.bmc").out == "10.0.0.9\n"


@pytest.mark.parametrize("args, message", [
    (["-d"], "The 'where' attributes and values were not provided for dynamic group 'dg'."),
    (["members=n10", "-w", "mgt==kvm"],
     "Cannot use a list of members together with the '-w' option."),
    (["-d", "-w", "mgt==kvm", "arch=x86_64"],
     "Can not assign attributes to dynamic node group 'dg'."),
])
def test_mkdef_force_with_a_bad_group_keeps_the_old_one(defs, args, message):
    defs.ok("mkdef", "-t", "group", "-o", "dg", "-d", "-w", "mgt==ipmi")
    before = defs.ok("lsdef", "-t", "group", "-o", "dg").out
    r = defs.run("mkdef", "-f", "-t", "group", "-o", "dg", *args)
    assert r.rc == 1 and r.err == f"Error: {message}\n"
    assert defs.ok("lsdef", "-t", "group", "-o", "dg").out == before
    assert defs.ok("nodels", "dg").lines == ["n1", "n2", "n3"]


def test_mkdef_force_with_a_bad_node_keeps_the_old_one(defs_sqlite):
    r = defs_sqlite.run("mkdef", "-f", "n1", "groups=all", "bmc=10.9.9.9")
    assert r.rc == 1
    assert defs_sqlite.ok("lsdef", "n1", "-i", "bmc,groups,mgt").lines == [
        "Object name: n1", "    bmc=10.1.0.1", "    groups=compute,all", "    mgt=ipmi"]


def test_several_types_with_attributes_is_refused(mn_sqlite):
    r = mn_sqlite.run("mkdef", "-t", "node,group", "-o", "x", "arch=x86_64")
    assert r.rc == 1 and r.err == ("Error: Cannot combine multiple types with 'att=val' pairs "
                                   "on the command line.\n")


# ---- dynamic groups -------------------------------------------------------------------------
def test_lsdef_shows_the_conditions_joined_by_double_colons(defs):
    defs.ok("mkdef", "-t", "group", "-o", "dg", "-d", "-w", "mgt==ipmi", "-w", "arch==x86_64")
    assert defs.ok("lsdef", "-t", "group", "dg").lines == [
        "Object name: dg", "    grouptype=dynamic", "    members=n1,n2,n3",
        "    wherevals=mgt==ipmi::arch==x86_64"]


def test_chdef_d_w_replaces_the_conditions(defs):
    defs.ok("mkdef", "-t", "group", "-o", "dg", "-d", "-w", "mgt==ipmi")
    defs.ok("chdef", "-t", "group", "-o", "dg", "-d", "-w", "mgt==kvm")
    assert defs.ok("lsdef", "-t", "group", "dg", "-i", "wherevals").lines == [
        "Object name: dg", "    wherevals=mgt==kvm"]
    assert defs.ok("nodels", "dg").lines == ["n10"]
    assert defs.ok("lsdef", "-s", "dg").lines == ["n10  (node)"]


def test_chdef_p_w_adds_and_m_w_removes_conditions(defs):
    defs.ok("mkdef", "-t", "group", "-o", "dg", "-d", "-w", "groups=~all")
    assert defs.ok("nodels", "dg").lines == ["n1", "n2", "n3", "n10"]
    defs.ok("chdef", "-t", "group", "-o", "dg", "-p", "-w", "mgt==ipmi")
    assert defs.ok("lsdef", "-t", "group", "dg", "-i", "wherevals").lines == [
        "Object name: dg", "    wherevals=groups=~all::mgt==ipmi"]
    assert defs.ok("nodels", "dg").lines == ["n1", "n2", "n3"]
    defs.ok("chdef", "n2", "mgt=kvm")
    assert defs.ok("lsdef", "-s", "dg").lines == ["n1  (node)", "n3  (node)"]
    defs.ok("chdef", "-t", "group", "-o", "dg", "-m", "-w", "groups=~all")
    assert defs.ok("lsdef", "-t", "group", "dg", "-i", "wherevals").lines == [
        "Object name: dg", "    wherevals=mgt==ipmi"]
    assert defs.ok("nodels", "dg").lines == ["n1", "n3"]


def test_chdef_m_w_of_an_absent_condition_is_an_error(defs_sqlite):
    defs_sqlite.ok("mkdef", "-t", "group", "-o", "dg", "-d", "-w", "mgt==ipmi")
    r = defs_sqlite.run("chdef", "-t", "group", "-o", "dg", "-m", "-w", "os==x")
    assert r.rc == 1
    assert r.err.splitlines() == ["Error: os==x is not in the attribute of 'wherevals' for the "
                                  "'dg' definition.", FAILED]
    assert defs_sqlite.ok("lsdef", "-t", "group", "dg", "-i", "wherevals").lines[1] == \
        "    wherevals=mgt==ipmi"


def test_a_static_group_with_w_takes_the_matching_nodes(defs_sqlite):
    defs_sqlite.ok("mkdef", "-t", "group", "-o", "kvms", "-w", "mgt==kvm")
    assert defs_sqlite.ok("nodels", "n10", "groups").lines == ["n10: all,kvms"]
    defs_sqlite.ok("chdef", "n1", "mgt=kvm")
    assert defs_sqlite.ok("nodels", "kvms").lines == ["n10"]  # static: chosen once


# ---- list operators -------------------------------------------------------------------------
@pytest.mark.parametrize("words, expected", [
    (["groups,=rack1"], "rack1,compute,all"),
    (["groups,=all"], "compute,all"),
    (["groups^=compute"], "all"),
    (["groups^=compute", "groups,=rack2"], "rack2,all"),
    (["groups@=rack3"], "rack3"),
])
def test_chdef_takes_nodechs_list_operators(defs, words, expected):
    defs.ok("chdef", "n1", *words)
    assert defs.ok("nodels", "n1", "groups").lines == [f"n1: {expected}"]


def test_at_assigns_a_value_that_starts_with_an_operator(defs_sqlite):
    defs_sqlite.ok("chdef", "n1", "usercomment@==odd")
    assert defs_sqlite.ok("lsdef", "n1", "-i", "usercomment").lines[1] == "    usercomment==odd"


def test_mkdef_list_operator_on_a_new_object(mn_sqlite):
    mn_sqlite.ok("mkdef", "n1", "groups=all", "postscripts,=a,b")
    assert mn_sqlite.ok("nodels", "n1", "postscripts.postscripts").lines == ["n1: a,b"]


def test_list_operators_are_one_transaction(defs_sqlite):
    r = defs_sqlite.run("chdef", "n1,n2", "groups,=rack1", "bogus^=x")
    assert r.rc == 1
    assert defs_sqlite.ok("nodels", "n1,n2", "groups").lines == ["n1: compute,all",
                                                                "n2: compute,all"]


# ---- postscripts ----------------------------------------------------------------------------
def test_a_postscript_xcatdefaults_runs_is_dropped_with_xcats_warning(defs):
    defaults = defs.ok("gettab", "node=xcatdefaults", "postscripts.postscripts").out.strip()
    first = defaults.split(",")[0]
    r = defs.ok("chdef", "n1", f"postscripts={first},mine")
    assert r.err == (f"Warning: n1: postscripts '{first}' is already included in the "
                     "'xcatdefaults'.\n")
    assert defs.ok("nodels", "n1", "postscripts.postscripts").lines == ["n1: mine"]


def test_adding_a_postscript_a_group_gives_already_warns(defs_sqlite):
    defs_sqlite.ok("chdef", "-t", "group", "-o", "compute", "postscripts=a,b")
    r = defs_sqlite.ok("chdef", "n1", "-p", "postscripts=b,c")
    assert r.err == "Warning: n1: postscripts 'b' is already included in the 'compute'.\n"
    assert defs_sqlite.ok("nodels", "n1", "postscripts.postscripts").lines == ["n1: a,b,c"]


# ---- auditlog and eventlog ------------------------------------------------------------------
def _log_rows(mn, table, *rows):
    """Records as xcatd writes them (the tests' management node audits nothing)."""
    with mn.db.begin() as conn:
        for row in rows:
            mn.db.insert_row(conn, table, row)


def test_lsdef_lists_auditlog_records(mn):
    _log_rows(mn, "auditlog", {"command": "rpower", "userid": "root", "noderange": "n1"},
              {"command": "nodeset", "userid": "bob", "args": "osimage=img1"})
    listing = mn.ok("lsdef", "-t", "auditlog").lines
    assert len(listing) == 2 and all(x.endswith("  (auditlog)") for x in listing)
    found = mn.ok("lsdef", "-t", "auditlog", "-w", "userid==bob", "-i", "command,userid")
    assert found.lines[1:] == ["    command=nodeset", "    userid=bob"]
    recid = found.lines[0].removeprefix("Object name: ")
    assert f"{recid}  (auditlog)" in listing
    assert mn.ok("lsdef", "-t", "auditlog", "-l", recid).lines == [
        f"Object name: {recid}", "    args=osimage=img1", "    command=nodeset",
        "    userid=bob"]
    r = mn.run("lsdef", "-t", "auditlog", "-l", "999999")
    assert r.rc == 1 and r.err.splitlines() == [missing("999999", "auditlog")]


def test_lsdef_lists_eventlog_records(mn):
    _log_rows(mn, "eventlog", {"node": "n1", "message": "fan failed"})
    [line] = mn.ok("lsdef", "-t", "eventlog").lines
    recid = line.removesuffix("  (eventlog)")
    assert mn.ok("lsdef", "-t", "eventlog", "-l", recid).lines == [
        f"Object name: {recid}", "    message=fan failed", "    node=n1"]


def test_lsdef_all_leaves_the_logs_out(mn_sqlite):
    _log_rows(mn_sqlite, "eventlog", {"node": "n1", "message": "x"})
    assert "(eventlog)" not in mn_sqlite.ok("lsdef", "-a").out
