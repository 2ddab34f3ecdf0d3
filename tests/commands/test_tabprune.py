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


ONLY_ONE = "Error: Only one option -p or -i or -n or -a maybe used at a time.\n"


@pytest.mark.parametrize("args, message", [   # xCAT's words
    (["nodelist"], "Error: Table nodelist not supported, see tabprune -h for supported "
                   "tables.\n"),
    (["site", "-n", "1"], "Error: Table site not supported, see tabprune -h for supported "
                          "tables.\n"),
    (["nodelist", "-d", "2", "-a"], "Error: Table nodelist not supported for the -d option.\n"),
    (["nosuch", "-a"], "Error: Table nosuch does not exist.\n"),
    (["auditlog"], "Error: One option -p or -i or -n or -a or -d must be supplied.\n"),
    (["auditlog", "-a", "-n", "2"], ONLY_ONE),
    (["auditlog", "-i", "3", "-p", "10"], ONLY_ONE),
    (["auditlog", "-d", "3", "-n", "1"], ONLY_ONE),
    (["nodelist", "-a", "-n", "2"], ONLY_ONE),
    (["-a"], "Error: Table name required.\n"),
])
def test_tabprune_option_errors(mn_sqlite, args, message):
    fill(mn_sqlite, "auditlog", 3)
    mn_sqlite.ok("nodeadd", "n1", "groups=all")
    r = mn_sqlite.run("tabprune", *args)
    assert (r.rc, r.err, r.out) == (1, message, "")
    assert len(remaining(mn_sqlite, "auditlog")) == 3
    assert rows(mn_sqlite, "nodelist") == ['"n1","all",,,,,,,,,,,']


def rows(mn, table):
    return mn.ok("tabdump", table).lines[1:]


# ---- -a on any table, as xCAT's man page has it ----------------------------------------------
def test_tabprune_a_empties_any_table(mn):
    mn.ok("nodeadd", "n1,n2", "groups=all")
    assert mn.ok("tabprune", "nodelist", "-a").lines == ["tabprune of nodelist complete."]
    assert rows(mn, "nodelist") == []


def test_tabprune_a_V_of_any_table_prints_its_rows_masking_secrets(mn_sqlite):
    mn_sqlite.ok("chtab", "key=system", "passwd.username=root", "passwd.password=s3cret")
    r = mn_sqlite.ok("tabprune", "passwd", "-V", "-a")
    assert r.lines == ["#key,username,password,cryptmethod,authdomain,comments,disable",
                       '"system","root","********",,,,']
    assert "s3cret" not in r.out
    assert rows(mn_sqlite, "passwd") == []


# ---- -f: the removed records saved in a file --------------------------------------------------
def test_tabprune_f_saves_the_removed_records(mn_sqlite, tmp_path):
    fill(mn_sqlite, "auditlog", 3)
    f = tmp_path / "pruned.csv"
    r = mn_sqlite.ok("tabprune", "auditlog", "-n", "2", "-f", str(f))
    assert r.lines == ["tabprune of auditlog complete."]
    assert f.read_text().splitlines() == [HDR,
                                          '"1","2020-01-01 00:00:00",,,,"c1",,,,,',
                                          '"2","2020-01-02 00:00:00",,,,"c2",,,,,']
    assert remaining(mn_sqlite, "auditlog") == ["c3"]


def test_tabprune_f_file_restores_the_records(mn, tmp_path):
    fill(mn, "eventlog", 2)
    f = tmp_path / "eventlog.csv"
    assert mn.ok("tabprune", "eventlog", "-a", "-f", str(f)).lines == [
        "tabprune of eventlog complete."]
    assert remaining(mn, "eventlog") == []
    mn.ok("tabrestore", "-a", str(f))
    assert remaining(mn, "eventlog") == ["c1", "c2"]


def test_tabprune_V_f_prints_and_saves(mn_sqlite, tmp_path):
    fill(mn_sqlite, "auditlog", 2)
    f = tmp_path / "pruned.csv"
    r = mn_sqlite.ok("tabprune", "auditlog", "-V", "-a", "-f", str(f))
    assert r.out == f.read_text()
    assert r.lines[0] == HDR and len(r.lines) == 3


def test_tabprune_f_of_jobs(mn_sqlite, tmp_path):
    fill_jobs(mn_sqlite, 3)
    f = tmp_path / "jobs.csv"
    mn_sqlite.ok("tabprune", "jobs", "-n", "1", "-f", str(f))
    lines = f.read_text().splitlines()
    assert lines[0] == JOBS_HDR and len(lines) == 2 and lines[1].startswith('"job-001"')


def test_tabprune_f_to_a_path_that_cannot_be_written_prunes_nothing(mn_sqlite, tmp_path):
    fill(mn_sqlite, "auditlog", 3)
    bad = tmp_path / "no" / "such" / "dir" / "x.csv"
    r = mn_sqlite.run("tabprune", "auditlog", "-a", "-f", str(bad))
    assert (r.rc, r.err) == (1, f"Error: Unable to open {bad} for write; nothing was "
                                "pruned.\n")
    assert len(remaining(mn_sqlite, "auditlog")) == 3


def test_tabprune_f_with_an_error_writes_no_file(mn_sqlite, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    f = out / "x.csv"
    f.write_text("kept\n")
    r = mn_sqlite.run("tabprune", "nodelist", "-n", "1", "-f", str(f))
    assert r.rc == 1 and "not supported" in r.err
    assert f.read_text() == "kept\n"
    assert [p.name for p in out.iterdir()] == ["x.csv"]   # no temporary file left


@pytest.mark.parametrize("args", [["-p", "101"], ["-n", "-1"]])
def test_tabprune_out_of_range_values_are_usage_errors(mn_sqlite, args):
    fill(mn_sqlite, "auditlog", 3)
    assert mn_sqlite.run("tabprune", "auditlog", *args).rc == 1
    assert len(remaining(mn_sqlite, "auditlog")) == 3


@pytest.mark.parametrize("table", ["auditlog", "eventlog"])
@pytest.mark.parametrize("opt, lines", [   # as xCAT: -n and -p say there was nothing
    (["-n", "5"], ["Nothing to prune from {t}.", "tabprune of {t} complete."]),
    (["-p", "50"], ["Nothing to prune from {t}.", "tabprune of {t} complete."]),
    (["-V", "-n", "5"], ["Nothing to prune from {t}."]),
    (["-a"], ["tabprune of {t} complete."]),
    (["-i", "9"], ["tabprune of {t} complete."]),
    (["-d", "1"], ["tabprune of {t} complete."]),
])
def test_tabprune_of_an_empty_table_succeeds_and_says_so(mn, table, opt, lines):
    r = mn.run("tabprune", table, *opt)
    assert (r.rc, r.err) == (0, "")
    assert r.lines == [line.format(t=table) for line in lines]


@pytest.mark.parametrize("table", ["auditlog", "eventlog"])
def test_tabprune_V_a_of_an_empty_table_prints_the_header(mn_sqlite, table):
    r = mn_sqlite.ok("tabprune", table, "-V", "-a")
    assert len(r.lines) == 1 and r.lines[0].startswith("#recid,")


# ---- jobs: finished jobs go with their results; queued and running ones stay ---------------
JOBS_HDR = ("#jobid,user,client,clienttype,command,noderange,args,state,created,started,"
            "finished,exitcode,comments,disable")


def fill_jobs(mn, n, results=2):
    """n finished jobs c1..cN (job-001..), ended a day apart in 2020, oldest first, each with
    ``results`` results; and a job 'r' running since 2019, with results too."""
    with mn.db.begin() as conn:
        for i in range(1, n + 1):
            mn.db.insert_row(conn, "jobs", {
                "jobid": f"job-{i:03d}", "command": f"c{i}", "state": "done",
                "created": f"2020-01-{i:02d} 00:00:00.000",
                "finished": f"2020-01-{i:02d} 00:00:01.000"})
        mn.db.insert_row(conn, "jobs", {"jobid": "job-run", "command": "r", "state": "running",
                                        "created": "2019-01-01 00:00:00.000"})
        for jobid in [f"job-{i:03d}" for i in range(1, n + 1)] + ["job-run"]:
            for seq in range(results):
                mn.db.insert_row(conn, "jobresults", {"jobid": jobid, "seq": seq,
                                                      "data": f"line {seq}"})


def jobs_left(mn):
    """Commands of the jobs fill_jobs made that are still there, each with its number of
    results."""
    counts: dict[str, int] = {}
    for r in mn.db.rows("jobresults"):
        counts[r["jobid"]] = counts.get(r["jobid"], 0) + 1
    mine = [j for j in mn.db.rows("jobs") if j["jobid"].startswith("job-")]
    return {j["command"]: counts.get(j["jobid"], 0) for j in mine}


def kept(*commands):
    return {c: 2 for c in commands}


@pytest.mark.parametrize("opt, left", [
    (["-a"], kept("r")),
    (["-n", "3"], kept(*names(range(4, 11)), "r")),
    (["-n", "99"], kept("r")),
    (["-n", "0"], kept(*names(range(1, 11)), "r")),
])
def test_tabprune_jobs_removes_oldest_finished_jobs_with_their_results(mn, opt, left):
    fill_jobs(mn, 10)
    r = mn.ok("tabprune", "jobs", *opt)
    assert r.lines == ["tabprune of jobs complete."]
    assert jobs_left(mn) == left
    orphans = {x["jobid"] for x in mn.db.rows("jobresults")} - \
        {j["jobid"] for j in mn.db.rows("jobs")}
    assert not orphans


def test_tabprune_jobs_p_counts_finished_jobs(mn_sqlite):
    fill_jobs(mn_sqlite, 10)
    mn_sqlite.ok("tabprune", "jobs", "-p", "50")
    assert jobs_left(mn_sqlite) == kept(*names(range(6, 11)), "r")


def test_tabprune_jobs_d_removes_jobs_that_ended_earlier(mn):
    fill_jobs(mn, 3)
    recent = time.strftime("%Y-%m-%d %H:%M:%S.000", time.localtime(time.time() - 3600))
    with mn.db.begin() as conn:
        mn.db.insert_row(conn, "jobs", {"jobid": "job-new", "command": "c4", "state": "failed",
                                        "created": recent, "finished": recent})
        mn.db.insert_row(conn, "jobresults", {"jobid": "job-new", "seq": 0, "error": "x"})
    mn.ok("tabprune", "jobs", "-d", "1")
    assert jobs_left(mn) == {"c4": 1, "r": 2}


def test_tabprune_jobs_V_prints_the_removed_jobs(mn_sqlite):
    fill_jobs(mn_sqlite, 3)
    r = mn_sqlite.ok("tabprune", "jobs", "-V", "-n", "2")
    assert r.lines == [
        JOBS_HDR,
        '"job-001",,,,"c1",,,"done","2020-01-01 00:00:00.000",,"2020-01-01 00:00:01.000",,,',
        '"job-002",,,,"c2",,,"done","2020-01-02 00:00:00.000",,"2020-01-02 00:00:01.000",,,']
    assert jobs_left(mn_sqlite) == kept("c3", "r")


@pytest.mark.parametrize("args, needle", [
    (["jobs", "-i", "3"], "jobs have none"),
    (["jobresults", "-a"], "prune the jobs table instead"),
    (["jobresults", "-n", "1"], "prune the jobs table instead"),
])
def test_tabprune_jobs_refusals(mn_sqlite, args, needle):
    fill_jobs(mn_sqlite, 3)
    r = mn_sqlite.run("tabprune", *args)
    assert r.rc == 1
    assert needle in r.err
    assert jobs_left(mn_sqlite) == kept("c1", "c2", "c3", "r")


@pytest.mark.parametrize("opt, lines", [
    (["-a"], ["tabprune of jobs complete."]),
    (["-n", "3"], ["Nothing to prune from jobs.", "tabprune of jobs complete."]),
])
def test_tabprune_jobs_without_finished_jobs_succeeds(mn_sqlite, opt, lines):
    with mn_sqlite.db.begin() as conn:   # a running job is never pruned
        mn_sqlite.db.insert_row(conn, "jobs", {"jobid": "job-run", "command": "r",
                                               "state": "running"})
    r = mn_sqlite.run("tabprune", "jobs", *opt)
    assert (r.rc, r.err, r.lines) == (0, "", lines)
    assert jobs_left(mn_sqlite) == {"r": 0}
