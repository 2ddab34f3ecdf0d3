"""chtab, gettab, tabgrep."""
import pytest


def rows(mn, table):
    return mn.ok("tabdump", table).lines[1:]


# ---- chtab --------------------------------------------------------------------------------
def test_chtab_creates_row(mn):
    mn.ok("chtab", "node=n1", "nodehm.mgt=ipmi", "nodehm.power=ipmi")
    assert rows(mn, "nodehm") == ['"n1","ipmi","ipmi",,,,,,,,,,,,,']


def test_chtab_updates_existing_row_keeping_other_columns(mn):
    mn.ok("chtab", "node=n1", "nodehm.mgt=ipmi", "nodehm.power=ipmi")
    mn.ok("chtab", "node=n1", "nodehm.mgt=kvm")
    assert rows(mn, "nodehm") == ['"n1","ipmi","kvm",,,,,,,,,,,,,']


def test_chtab_several_tables_in_one_command(mn_sqlite):
    mn_sqlite.ok("chtab", "node=n1", "nodehm.mgt=ipmi", "hosts.ip=1.2.3.4")
    assert mn_sqlite.ok("tabgrep", "n1").lines == ["hosts", "nodehm"]


@pytest.mark.parametrize("start, add, expected", [
    ("a,b", "c", "a,b,c"),
    ("a,b", "b,c", "a,b,c"),
    ("a,b", "a", "a,b"),
    ("", "x,y", "x,y"),
])
def test_chtab_plus_equals_merges_comma_list(mn, start, add, expected):
    mn.ok("chtab", "node=n1", f"nodelist.groups={start}")
    mn.ok("chtab", "node=n1", f"nodelist.groups+={add}")
    assert mn.ok("gettab", "node=n1", "nodelist.groups").out == expected + "\n"


def test_chtab_plus_equals_on_new_row_sets_value(mn_sqlite):
    mn_sqlite.ok("chtab", "key=foo", "site.value+=a,b")
    assert mn_sqlite.ok("gettab", "key=foo", "site.value").out == "a,b\n"


def test_chtab_multi_column_key(mn):
    mn.ok("chtab", "key=ipmi,username=ADMIN", "passwd.password=x")
    mn.ok("chtab", "key=ipmi,username=USERID", "passwd.password=y")
    mn.ok("chtab", "key=ipmi,username=USERID", "passwd.cryptmethod=md5")
    assert sorted(rows(mn, "passwd")) == ['"ipmi","ADMIN","********",,,,',
                                  '"ipmi","USERID","********","md5",,,']


def test_chtab_delete_removes_matching_rows(mn):
    mn.ok("chtab", "node=n1", "nodehm.mgt=ipmi", "hosts.ip=1.1.1.1")
    mn.ok("chtab", "node=n2", "nodehm.mgt=ipmi")
    mn.ok("chtab", "-d", "node=n1", "nodehm", "hosts")
    assert rows(mn, "nodehm") == ['"n2",,"ipmi",,,,,,,,,,,,,']
    assert rows(mn, "hosts") == []


def test_chtab_delete_matches_all_given_keys(mn_sqlite):
    mn_sqlite.ok("chtab", "key=ipmi,username=A", "passwd.cryptmethod=x")
    mn_sqlite.ok("chtab", "key=ipmi,username=B", "passwd.cryptmethod=x")
    mn_sqlite.ok("chtab", "-d", "key=ipmi,username=A", "passwd")
    assert rows(mn_sqlite, "passwd") == ['"ipmi","B",,"x",,,']


def test_chtab_delete_by_non_key_column(mn_sqlite):
    mn_sqlite.ok("chtab", "node=n1", "nodehm.mgt=ipmi")
    mn_sqlite.ok("chtab", "node=n2", "nodehm.mgt=kvm")
    mn_sqlite.ok("chtab", "-d", "mgt=ipmi", "nodehm")
    assert rows(mn_sqlite, "nodehm") == ['"n2",,"kvm",,,,,,,,,,,,,']


@pytest.mark.parametrize("args, needle", [
    (["node=n1", "nosuch.col=1"], "nosuch"),
    (["node=n1", "nodehm.bogus=1"], "bogus"),
    (["node=n1", "nodehm"], "nodehm"),
    (["node=n1"], "Missing"),
    (["-d", "node=n1"], "Missing"),
    (["-d", "node=n1", "nosuch"], "nosuch"),
    (["bogus=n1", "nodehm.mgt=x"], "bogus"),
    (["nokey", "nodehm.mgt=x"], "nokey"),
])
def test_chtab_bad_arguments_are_errors(mn_sqlite, args, needle):
    r = mn_sqlite.run("chtab", *args)
    assert r.rc == 1
    assert needle in r.err
    assert rows(mn_sqlite, "nodehm") == []


@pytest.mark.parametrize("cmd", ["chtab", "tabch"])
@pytest.mark.parametrize("args, message", [   # xCAT's words (tabutils.pm's tabch)
    (["node=n1", "nosuch.col=1"], "Error: Table nosuch does not exist.\n"),
    (["-d", "node=n1", "nosuch"], "Error: Table nosuch does not exist.\n"),
    (["node=n1", "nodehm.bogus=1"], "Error: nodehm.bogus not a valid table.column description\n"),
    (["bogus=n1", "nodehm.mgt=x"], 'Error: No column "bogus" in table "nodehm"\n'),
    (["node=n1,bogus=2", "nodehm.mgt=x"], 'Error: No column "bogus" in table "nodehm"\n'),
    (["-d", "bogus=n1", "nodehm"], 'Error: No column "bogus" in table "nodehm"\n'),
    (["key=x", "site.value=1", "nodehm.mgt=x"], 'Error: No column "key" in table "nodehm"\n'),
    (["-d", "node=n1"], "Error: Missing table name.\n"),
    (["nokey", "nodehm.mgt=x"], 'Error: Incorrect argument "nokey".\n'),
])
def test_chtab_and_tabch_errors_in_xcats_words(mn_sqlite, cmd, args, message):
    mn_sqlite.ok("chtab", "node=n1", "nodehm.mgt=ipmi")
    r = mn_sqlite.run(cmd, *args)
    assert (r.rc, r.err, r.out) == (1, message, "")
    assert rows(mn_sqlite, "nodehm") == ['"n1",,"ipmi",,,,,,,,,,,,,']
    assert mn_sqlite.ok("gettab", "key=x", "site.value").out == ""


# ---- tabch: xCAT's other name for chtab ---------------------------------------------------
def test_tabch_adds_changes_and_appends(mn):
    mn.ok("tabch", "node=node1", "nodelist.groups=all")
    mn.ok("tabch", "key=tftpdir", "site.value=/tftpboot")
    mn.ok("tabch", "node=node1", "nodetype.os=rhel5")
    mn.ok("tabch", "node=node1", "nodetype.os=sles")
    mn.ok("tabch", "node=node1", "postscripts.postbootscripts=a")
    mn.ok("tabch", "node=node1", "postscripts.postbootscripts+=otherpkgs,a")
    assert mn.ok("gettab", "node=node1", "nodelist.groups", "nodetype.os",
                 "postscripts.postbootscripts").lines == [
        "nodelist.groups: all", "nodetype.os: sles", "postscripts.postbootscripts: a,otherpkgs"]
    assert mn.ok("gettab", "key=tftpdir", "site.value").out == "/tftpboot\n"


@pytest.mark.parametrize("args", [["-d", "node=node1", "nodetype"],
                                  ["node=node1", "nodetype", "-d"],        # the man page's order
                                  ["--delete", "node=node1", "nodetype"]])
def test_tabch_d_deletes_rows(mn_sqlite, args):
    mn_sqlite.ok("tabch", "node=node1", "nodetype.os=rhel5", "nodelist.groups=all")
    mn_sqlite.ok("tabch", "node=node2", "nodetype.os=rhel5")
    mn_sqlite.ok("tabch", *args)
    assert rows(mn_sqlite, "nodetype") == ['"node2","rhel5",,,,,,,']
    assert rows(mn_sqlite, "nodelist") == ['"node1","all",,,,,,,,,,,']


def test_tabch_is_judged_and_audited_as_tabch(mn_daemon):
    """Policy and the audit log see tabch, so a policy row can name it."""
    mn_daemon.ok("chtab", "-d", "key=auditskipcmds", "site")
    mn_daemon.ok("tabch", "node=n1", "nodehm.mgt=ipmi")
    mn_daemon.daemon.daemon.pipeline.jobs.flush()
    assert [r["command"] for r in mn_daemon.db.rows("auditlog")][-1:] == ["tabch"]


def test_chtab_error_in_second_table_changes_nothing(mn):
    r = mn.run("chtab", "node=n1", "nodehm.mgt=ipmi", "hosts.bogus=1")
    assert r.rc == 1
    assert rows(mn, "nodehm") == []


# ---- gettab -------------------------------------------------------------------------------
def test_gettab_prints_bare_value(mn):
    mn.ok("chtab", "node=n1", "nodehm.mgt=ipmi")
    assert mn.ok("gettab", "node=n1", "nodehm.mgt").out == "ipmi\n"


@pytest.mark.parametrize("args, expected", [
    (["-H", "node=n1", "nodehm.mgt"], ["nodehm.mgt: ipmi"]),
    (["node=n1", "nodehm.mgt", "nodehm.power"], ["nodehm.mgt: ipmi", "nodehm.power: "]),
    (["node=n1", "nodehm.mgt", "hosts.ip"], ["nodehm.mgt: ipmi", "hosts.ip: 1.1.1.1"]),
])
def test_gettab_labels_with_H_or_several_columns(mn_sqlite, args, expected):
    mn_sqlite.ok("chtab", "node=n1", "nodehm.mgt=ipmi", "hosts.ip=1.1.1.1")
    assert mn_sqlite.ok("gettab", *args).lines == expected


def test_gettab_no_matching_row_prints_nothing(mn_sqlite):
    assert mn_sqlite.ok("gettab", "node=n9", "nodehm.mgt").out == ""


def test_gettab_several_keys_and_rows(mn_sqlite):
    mn_sqlite.ok("chtab", "node=n1", "nodehm.mgt=ipmi", "nodehm.power=p1")
    mn_sqlite.ok("chtab", "node=n2", "nodehm.mgt=ipmi", "nodehm.power=p2")
    assert sorted(mn_sqlite.ok("gettab", "mgt=ipmi", "nodehm.power").lines) == ["p1", "p2"]
    assert mn_sqlite.ok("gettab", "mgt=ipmi,node=n2", "nodehm.power").lines == ["p2"]


def test_gettab_ignores_disabled_rows(mn_sqlite):
    mn_sqlite.ok("chtab", "node=n1", "nodehm.mgt=ipmi", "nodehm.disable=yes")
    assert mn_sqlite.ok("gettab", "node=n1", "nodehm.mgt").out == ""


def test_gettab_site_value(mn):
    assert mn.ok("gettab", "key=xcatdport", "site.value").out == "3001\n"


@pytest.mark.parametrize("args", [["node=n1"], ["node=n1", "nodehm"], ["node=n1", "x.y"],
                                  ["node=n1", "nodehm.bogus"], ["bogus=1", "nodehm.mgt"]])
def test_gettab_bad_arguments_are_errors(mn_sqlite, args):
    assert mn_sqlite.run("gettab", *args).rc == 1


# ---- tabgrep ------------------------------------------------------------------------------
def test_tabgrep_lists_tables_with_a_row_for_node(mn):
    mn.ok("nodeadd", "n1", "groups=all", "nodehm.mgt=ipmi", "hosts.ip=1.1.1.1")
    mn.ok("nodeadd", "n2", "groups=all")
    assert mn.ok("tabgrep", "n1").lines == ["hosts", "nodehm", "nodelist"]
    assert mn.ok("tabgrep", "n2").lines == ["nodelist"]


def test_tabgrep_finds_group_rows(mn_sqlite):
    mn_sqlite.ok("chtab", "node=compute", "nodetype.os=rhels9")
    assert mn_sqlite.ok("tabgrep", "compute").lines == ["nodetype"]


def test_tabgrep_unknown_node_prints_nothing(mn_sqlite):
    assert mn_sqlite.ok("tabgrep", "nobody").out == ""


@pytest.mark.parametrize("op,value,expected", [
    (",=", "extra", "extra,all,c"),     # xCAT's ,= puts the new item first
    (",=", "c", "all,c"),               # already there: unchanged
    ("^=", "c", "all"),
    ("^=", "nothere", "all,c"),
])
def test_chtab_list_operators(mn_sqlite, op, value, expected):
    mn_sqlite.ok("chtab", "node=c1", "nodelist.groups=all,c")
    mn_sqlite.ok("chtab", "node=c1", f"nodelist.groups{op}{value}")
    assert mn_sqlite.ok("gettab", "node=c1", "nodelist.groups").out == expected + "\n"
