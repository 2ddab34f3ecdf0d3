"""tabdump (CSV, -d, -w) and tabrestore (replace, append, all-or-nothing on bad input)."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

NODELIST_HDR = ("#node,groups,status,statustime,appstatus,appstatustime,primarysn,hidden,"
                "updatestatus,updatestatustime,zonename,comments,disable")


def rows(mn, table):
    return mn.ok("tabdump", table).lines[1:]


# ---- tabdump ------------------------------------------------------------------------------
def test_tabdump_header_and_quoted_values(mn_sqlite):
    mn_sqlite.ok("nodeadd", "n1", "groups=compute,all")
    assert mn_sqlite.ok("tabdump", "nodelist").lines == [NODELIST_HDR,
                                                        '"n1","compute,all",,,,,,,,,,,']


def test_tabdump_doubles_embedded_quotes(mn_sqlite):
    mn_sqlite.ok("chtab", "node=n1", 'hosts.comments=say "hi", ok')
    assert rows(mn_sqlite, "hosts") == ['"n1",,,,"say ""hi"", ok",']


def test_tabdump_empty_table_prints_only_header(mn_sqlite):
    assert mn_sqlite.ok("tabdump", "hosts").lines == [
        "#node,ip,hostnames,otherinterfaces,comments,disable"]


def test_tabdump_includes_disabled_rows(mn_sqlite):
    mn_sqlite.ok("chtab", "node=n1", "hosts.ip=1.1.1.1", "hosts.disable=1")
    assert rows(mn_sqlite, "hosts") == ['"n1","1.1.1.1",,,,"1"']


def test_tabdump_without_table_lists_table_names_sorted(mn_sqlite):
    lines = mn_sqlite.ok("tabdump").lines
    assert lines == sorted(lines)
    for t in ("nodelist", "site", "passwd", "auditlog", "networks", "policy"):
        assert t in lines


def test_tabdump_d_describes_table_columns(mn_sqlite):
    """xCAT's layout: every column in schema order, ``name:`` then two tabs (names under 7
    characters) or one, the description; a blank line between columns."""
    from xcatd.db.database import TABLES
    hosts = TABLES["hosts"]
    out = mn_sqlite.ok("tabdump", "-d", "hosts").out
    tabs = {True: "\t\t", False: "\t"}
    expected = [c + ":" + tabs[len(c) < 7] + hosts.column_doc(c) for c in hosts.columns]
    assert out == "\n\n".join(expected) + "\n"
    assert out.startswith("node:\t\tThe node name or group name the row applies to.\n\nip:\t\t")
    assert "\n\notherinterfaces:\tOther interfaces" in out


def test_tabdump_d_without_table_describes_every_table_in_order(mn_sqlite):
    entries = mn_sqlite.ok("tabdump", "-d").out.rstrip("\n").split("\n\n")
    assert entries == sorted(entries)
    assert len(entries) == len(mn_sqlite.ok("tabdump").lines)
    assert "nodelist:\tThe list of nodes, the groups each belongs to, and node status." \
        in entries
    assert "site:\t\tCluster-wide settings as key/value pairs." in entries


@pytest.mark.parametrize("args, message", [   # xCAT's words
    (["nosuch"], "Error: No such table: nosuch\n"),
    (["-d", "nosuch"], "Error: table nosuch does not exist.\n"),
    (["-w", "bogus==1", "nodelist"], 'Error: No column "bogus" in table "nodelist"\n'),
    (["-w", "node==n1", "-w", "nope=~x%", "nodelist"],
     'Error: No column "nope" in table "nodelist"\n'),
    (["-n", "2", "-d", "auditlog"], "Error: You  cannot use the -n and -d flag together. \n"),
    (["-n", "2", "-w", "recid==1", "auditlog"],
     "Error: You  cannot use the -n and -w flag together. \n"),
    (["-n", "2", "-f", "x.csv", "auditlog"],
     "Error: You  cannot use the -n and -f flag together. \n"),
    (["-f", "x.csv"], "Error: table name missing from the command input. \n"),
    (["-n", "2", "nodelist"], "Error: nodelist table is not supported in tabdump -n. You may "
                              "only use this option on the auditlog or the eventlog.\n"),
])
def test_tabdump_errors_name_the_bad_part(mn_sqlite, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    r = mn_sqlite.run("tabdump", *args)
    assert (r.rc, r.err, r.out) == (1, message, "")
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("where, expected", [
    (["node==n2"], ["n2"]),
    (["node!=n2"], ["n1", "n3", "n10"]),
    (["groups=~comp%"], ["n1", "n2", "n3"]),
    (["groups=~/comp%/"], ["n1", "n2", "n3"]),
    (["groups!~comp%"], ["n10"]),
    (["node<n2"], ["n1", "n10"]),          # string comparison, as in SQL
    (["node>n2"], ["n3"]),
    (["groups=~comp%", "node!=n1"], ["n2", "n3"]),  # several -w must all match
    (["node==n1' OR '1'='1"], []),
    (["groups==compute' --"], []),
])
def test_tabdump_w_selects_rows(mn, where, expected):
    mn.ok("nodeadd", "n1-n3", "groups=compute")
    mn.ok("nodeadd", "n10", "groups=other")
    args = [x for w in where for x in ("-w", w)]
    lines = mn.ok("tabdump", *args, "nodelist").lines
    assert lines[0] == NODELIST_HDR
    assert sorted(line.split(",")[0].strip('"') for line in lines[1:]) == sorted(expected)


def test_tabdump_w_injection_leaves_table_intact(mn):
    mn.ok("nodeadd", "n1", "groups=all")
    mn.ok("tabdump", "-w", "node==x'; DROP TABLE nodelist; --", "nodelist")
    mn.ok("tabdump", "-w", 'node==x"; DELETE FROM nodelist; --', "nodelist")
    assert rows(mn, "nodelist") == ['"n1","all",,,,,,,,,,,']


def test_tabdump_w_matches_value_with_quote_literally(mn_sqlite):
    mn_sqlite.ok("chtab", "node=n1", "hosts.comments=it's")
    assert rows(mn_sqlite, "hosts") == mn_sqlite.ok(
        "tabdump", "-w", "comments==it's", "hosts").lines[1:]


def test_tabdump_w_unknown_column_names_it(mn_sqlite):
    r = mn_sqlite.run("tabdump", "-w", "bogus==1", "nodelist")
    assert r.rc == 1
    assert "bogus" in r.err


def test_tabdump_w_malformed_expression_is_error(mn_sqlite):
    r = mn_sqlite.run("tabdump", "-w", "node", "nodelist")
    assert r.rc == 1


def test_tabdump_n_only_for_log_tables(mn_sqlite):
    r = mn_sqlite.run("tabdump", "-n", "2", "nodelist")
    assert r.rc == 1
    assert "auditlog" in r.err


def test_tabdump_n_shows_last_records(mn_sqlite):
    with mn_sqlite.db.begin() as conn:
        for i in range(1, 6):
            mn_sqlite.db.insert_row(conn, "auditlog", {"audittime": f"2024-01-0{i} 00:00:00",
                                                       "command": f"c{i}"})
    lines = mn_sqlite.ok("tabdump", "-n", "2", "auditlog").lines
    assert [line.split(",")[0] for line in lines[1:]] == ['"4"', '"5"']


def test_tabdump_n_of_an_empty_log_says_nothing_to_display(mn_sqlite):
    r = mn_sqlite.ok("tabdump", "-n", "3", "eventlog")
    assert r.out == "Nothing to display from eventlog.\n"


def test_tabdump_f_writes_file(mn_sqlite, tmp_path):
    mn_sqlite.ok("nodeadd", "n1", "groups=all")
    f = tmp_path / "out.csv"
    r = mn_sqlite.ok("tabdump", "-f", str(f), "nodelist")
    assert r.out == ""
    assert f.read_text().splitlines() == [NODELIST_HDR, '"n1","all",,,,,,,,,,,']
    assert stat.S_IMODE(f.stat().st_mode) == 0o644


def test_tabdump_f_with_w_writes_the_selected_rows(mn, tmp_path):
    mn.ok("nodeadd", "n1-n3", "groups=compute")
    f = tmp_path / "out.csv"
    mn.ok("tabdump", "-w", "node!=n2", "-f", str(f), "nodelist")
    assert f.read_text().splitlines() == [NODELIST_HDR, '"n1","compute",,,,,,,,,,,',
                                          '"n3","compute",,,,,,,,,,,']


def test_tabdump_f_relative_path_is_the_callers(mn_sqlite, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mn_sqlite.ok("tabdump", "-f", "site.csv", "site")
    assert (tmp_path / "site.csv").read_text() == mn_sqlite.ok("tabdump", "site").out


def test_tabdump_f_round_trips_through_tabrestore(mn_sqlite, tmp_path):
    mn_sqlite.ok("chtab", "node=n1", 'hosts.comments=a "q", b', "hosts.ip=1.2.3.4")
    f = tmp_path / "hosts.csv"
    mn_sqlite.ok("tabdump", "-f", str(f), "hosts")
    mn_sqlite.ok("chtab", "-d", "node=n1", "hosts")
    mn_sqlite.ok("tabrestore", str(f))
    assert rows(mn_sqlite, "hosts") == ['"n1","1.2.3.4",,,"a ""q"", b",']


def test_tabdump_f_with_secrets_is_private(mn_sqlite, tmp_path):
    mn_sqlite.ok("chtab", "key=system", "passwd.username=root", "passwd.password=s3cret")
    f = tmp_path / "passwd.csv"
    mn_sqlite.ok("tabdump", "--show-secrets", "-f", str(f), "passwd")
    assert '"s3cret"' in f.read_text()
    assert stat.S_IMODE(f.stat().st_mode) == 0o600


@pytest.mark.parametrize("args", [["nosuch"], ["-w", "bogus==1", "nodelist"]])
def test_tabdump_f_error_leaves_the_old_file(mn_sqlite, tmp_path, args):
    out = tmp_path / "out"
    out.mkdir()
    f = out / "x.csv"
    f.write_text("old\n")
    r = mn_sqlite.run("tabdump", "-f", str(f), *args)
    assert r.rc == 1 and r.err.startswith("Error: ")
    assert f.read_text() == "old\n"
    assert [p.name for p in out.iterdir()] == ["x.csv"]   # no temporary file left


@pytest.mark.parametrize("where", ["nodir/x.csv", "adir"])
def test_tabdump_f_to_a_path_that_cannot_be_written(mn_sqlite, tmp_path, where):
    (tmp_path / "adir").mkdir()
    target = tmp_path / where
    r = mn_sqlite.run("tabdump", "-f", str(target), "site")
    assert (r.rc, r.out) == (1, "")
    assert r.err == (f"Error: Error on tabdump of site to {target}. Unable to open the file "
                     "for write. \n")


# ---- tabrestore ---------------------------------------------------------------------------
def _write(tmp_path, name, text):
    d = tmp_path / "csv"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_text(text)
    return str(p)


def test_tabrestore_replaces_table(mn, tmp_path):
    mn.ok("nodeadd", "old1,old2", "groups=old")
    f = _write(tmp_path, "nodelist.csv", '#node,groups\n"n1","compute"\n"n2",\n')
    r = mn.ok("tabrestore", f)
    assert r.out == ""
    assert rows(mn, "nodelist") == ['"n1","compute",,,,,,,,,,,', '"n2",,,,,,,,,,,,']


def test_tabrestore_round_trips_tabdump_output(mn, tmp_path):
    mn.ok("chtab", "node=n1", 'hosts.comments=a "quoted", value', "hosts.ip=1.2.3.4")
    mn.ok("chtab", "node=n2", "hosts.comments=line1\nline2")
    dump = mn.ok("tabdump", "hosts").out
    f = _write(tmp_path, "hosts.csv", dump)
    mn.ok("chtab", "-d", "node=n1", "hosts")
    mn.ok("tabrestore", f)
    assert mn.ok("tabdump", "hosts").out == dump


def test_tabrestore_table_name_is_basename_before_first_dot(mn_sqlite, tmp_path):
    f = _write(tmp_path, "nodelist.backup.csv", '#node,groups\n"n1","x"\n')
    mn_sqlite.ok("tabrestore", f)
    assert rows(mn_sqlite, "nodelist") == ['"n1","x",,,,,,,,,,,']


def test_tabrestore_append_adds_rows(mn, tmp_path):
    mn.ok("nodeadd", "n1", "groups=a")
    f = _write(tmp_path, "nodelist.csv", '#node,groups\n"n2","b"\n')
    mn.ok("tabrestore", "-a", f)
    assert rows(mn, "nodelist") == ['"n1","a",,,,,,,,,,,', '"n2","b",,,,,,,,,,,']


def test_tabrestore_append_duplicate_key_is_error_and_unchanged(mn, tmp_path):
    mn.ok("nodeadd", "n1", "groups=a")
    f = _write(tmp_path, "nodelist.csv", '#node,groups\n"n2","b"\n"n1","c"\n')
    r = mn.run("tabrestore", "-a", f)
    assert r.rc != 0
    assert rows(mn, "nodelist") == ['"n1","a",,,,,,,,,,,']


def test_tabrestore_header_columns_in_any_order(mn_sqlite, tmp_path):
    f = _write(tmp_path, "hosts.csv", '#ip,node\n"1.1.1.1","n1"\n')
    mn_sqlite.ok("tabrestore", f)
    assert rows(mn_sqlite, "hosts") == ['"n1","1.1.1.1",,,,']


def test_tabrestore_header_only_empties_table(mn_sqlite, tmp_path):
    mn_sqlite.ok("nodeadd", "n1", "groups=a")
    f = _write(tmp_path, "nodelist.csv", NODELIST_HDR + "\n")
    mn_sqlite.ok("tabrestore", f)
    assert rows(mn_sqlite, "nodelist") == []


BAD_CSV = {
    "missing_header": ('node,groups\n"n9","x"\n', "header"),
    "unknown_column": ('#node,bogus\n"n9","x"\n', "bogus"),
    "too_many_fields": ('#node,groups\n"n9","x","y"\n', "Too many fields"),
    "bad_quoting": ('#node,groups\n"n9,"x\n', "line 2"),
    "empty_key": ('#node,groups\n,"x"\n', "node"),
    "bad_row_after_good_rows": ('#node,groups\n"n8","a"\n"n9","b"\n"n10","c","d"\n', "line 4"),
    "duplicate_key": ('#node,groups\n"n9","a"\n"n9","b"\n', "Duplicate key node=n9"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_tabrestore_malformed_csv_is_error_and_table_unchanged(mn, tmp_path, case):
    text, needle = BAD_CSV[case]
    mn.ok("nodeadd", "n1,n2", "groups=orig")
    before = mn.ok("tabdump", "nodelist").out
    r = mn.run("tabrestore", _write(tmp_path, "nodelist.csv", text))
    assert r.rc != 0
    assert needle in r.err
    assert mn.ok("tabdump", "nodelist").out == before


def test_tabrestore_unknown_table_is_error(mn_sqlite, tmp_path):
    r = mn_sqlite.run("tabrestore", _write(tmp_path, "nosuch.csv", "#a\n"))
    assert r.rc == 1
    assert "nosuch" in r.err


def test_tabrestore_missing_file_is_error(mn_sqlite, tmp_path):
    r = mn_sqlite.run("tabrestore", str(tmp_path / "nodelist.csv"))
    assert r.rc != 0
    assert "Unable to open" in r.err


def test_tabrestore_autoincrement_column_is_renumbered(mn_sqlite, tmp_path):
    f = _write(tmp_path, "auditlog.csv", '#recid,command\n"77","a"\n"78","b"\n')
    mn_sqlite.ok("tabrestore", f)
    assert [line.split(",")[5] for line in rows(mn_sqlite, "auditlog")] == ['"a"', '"b"']


def test_tabdump_bad_selection_prints_no_header(mn_sqlite):
    r = mn_sqlite.run("tabdump", "-w", "bogus==1", "nodelist")
    assert r.rc == 1 and "bogus" in r.err and r.out == ""


def test_tabrestore_of_a_file_that_is_not_utf8_names_the_line(mn_sqlite, tmp_path):
    f = tmp_path / "site.csv"
    f.write_bytes(b'#key,value,comments,disable\n"domain","caf\xe9.example",,\n')
    before = mn_sqlite.db.rows("site")
    r = mn_sqlite.sh("tabrestore", str(f))
    assert r.rc == 1 and "Traceback" not in r.err
    assert r.err.strip() == (f"Error: {f}: line 2 is not UTF-8 text (byte 0xe9 at column 14)")
    assert mn_sqlite.db.rows("site") == before  # nothing restored


def test_mkdef_z_of_a_stanza_that_is_not_utf8_names_the_line(mn_sqlite):
    p = subprocess.run([str(Path(sys.executable).parent / "mkdef"), "-z"],
                       input=b"n1:\n  objtype=node\n  groups=caf\xe9\n", capture_output=True,
                       env={**os.environ, "XCATROOT": str(mn_sqlite.root)}, timeout=60)
    assert p.returncode == 1 and b"Traceback" not in p.stderr, p.stderr
    assert b"standard input: line 3 is not UTF-8 text" in p.stderr
