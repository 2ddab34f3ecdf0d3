"""tabprune: deleting old auditlog / eventlog records."""
import time

import pytest

HDR = "#recid,audittime,userid,clientname,clienttype,command,noderange,args,status,comments,disable"


def fill(mn, table, n, *, start_day="2020-01-01", recids=None):
    """Insert n rows; audittime/eventtime a day apart, oldest first; command/message cN."""
    timecol = "audittime" if table == "auditlog" else "eventtime"
    textcol = "command" if table == "auditlog" else "message"
    with mn.db.begin() as conn:
        for i in range(n):
            row = {timecol: f"2020-01-{i + 1:02d} 00:00:00", textcol: f"c{i + 1}"}
            if recids:
                row["recid"] = recids[i]
            mn.db.insert_row(conn, table, row)


def remaining(mn, table):
    lines = mn.ok("tabdump", table).lines[1:]
    textidx = 5 if table == "auditlog" else 10
    return sorted((line.split(",")[textidx].strip('"') for line in lines),
                  key=lambda s: int(s[1:]))


def names(n):
    return [f"c{i}" for i in n]


@pytest.mark.parametrize("table", ["auditlog", "eventlog"])
@pytest.mark.parametrize("opt, left", [
    (["-a"], []),
    (["-n", "3"], names(range(4, 11))),
    (["-n", "99"], []),
    (["-i", "4"], names(range(4, 11))),   # recids below 4 go
    (["-p", "50"], names(range(6, 11))),
    (["-p", "100"], []),
])
def test_tabprune_options_remove_oldest_records(mn, table, opt, left):
    fill(mn, table, 10)
    r = mn.ok("tabprune", table, *opt)
    assert r.lines == [f"tabprune of {table} complete."]
    assert remaining(mn, table) == left


def test_tabprune_days_removes_older_records(mn):
    fill(mn, "auditlog", 3)
    recent = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - 3600))
    with mn.db.begin() as conn:
        mn.db.insert_row(conn, "auditlog", {"audittime": recent, "command": "c4"})
    mn.ok("tabprune", "auditlog", "-d", "1")
    assert remaining(mn, "auditlog") == ["c4"]


def test_tabprune_V_prints_deleted_rows_as_csv(mn_sqlite):
    fill(mn_sqlite, "auditlog", 3)
    r = mn_sqlite.ok("tabprune", "auditlog", "-V", "-n", "2")
    assert r.lines == [HDR,
                       '"1","2020-01-01 00:00:00",,,,"c1",,,,,',
                       '"2","2020-01-02 00:00:00",,,,"c2",,,,,']
    assert remaining(mn_sqlite, "auditlog") == ["c3"]


def test_tabprune_V_eventlog_header(mn_sqlite):
    fill(mn_sqlite, "eventlog", 1)
    r = mn_sqlite.ok("tabprune", "eventlog", "-V", "-a")
    assert r.lines[0].startswith("#recid,eventtime,")
    assert len(r.lines) == 2


def test_tabprune_n_removes_n_records_even_with_recid_gaps(mn):
    fill(mn, "auditlog", 5, recids=[1, 2, 3, 10, 11])
    mn.ok("tabprune", "auditlog", "-n", "4")
    assert remaining(mn, "auditlog") == ["c5"]


def test_tabprune_p_counts_records_not_recid_span(mn_sqlite):
    fill(mn_sqlite, "auditlog", 4, recids=[1, 50, 51, 52])
    mn_sqlite.ok("tabprune", "auditlog", "-p", "50")
    assert remaining(mn_sqlite, "auditlog") == ["c3", "c4"]


@pytest.mark.parametrize("opt", [["-n", "0"], ["-p", "0"]])
def test_tabprune_zero_count_prunes_nothing(mn_sqlite, opt):
    fill(mn_sqlite, "auditlog", 3)
    r = mn_sqlite.run("tabprune", "auditlog", *opt)
    assert r.rc == 0, r.err
    assert len(remaining(mn_sqlite, "auditlog")) == 3


@pytest.mark.parametrize("args, needle", [
    (["nodelist", "-a"], "not supported"),
    (["site", "-n", "1"], "not supported"),
    (["auditlog"], "must be supplied"),
    (["auditlog", "-a", "-n", "2"], "Only one option"),
    (["auditlog", "-i", "3", "-p", "10"], "Only one option"),
    (["-a"], "Table name required"),
])
def test_tabprune_option_errors(mn_sqlite, args, needle):
    fill(mn_sqlite, "auditlog", 3)
    r = mn_sqlite.run("tabprune", *args)
    assert r.rc == 1
    assert needle in r.err
    assert len(remaining(mn_sqlite, "auditlog")) == 3


@pytest.mark.parametrize("args", [["-p", "101"], ["-n", "-1"]])
def test_tabprune_out_of_range_values_are_usage_errors(mn_sqlite, args):
    fill(mn_sqlite, "auditlog", 3)
    assert mn_sqlite.run("tabprune", "auditlog", *args).rc == 1
    assert len(remaining(mn_sqlite, "auditlog")) == 3


@pytest.mark.parametrize("table", ["auditlog", "eventlog"])
def test_tabprune_empty_table_says_nothing_to_prune(mn, table):
    r = mn.run("tabprune", table, "-a")
    assert r.rc == 1
    assert f"Nothing to prune from {table}" in r.err
