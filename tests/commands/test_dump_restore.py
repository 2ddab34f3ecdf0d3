"""dumpxCATdb / restorexCATdb: private files, log tables, all-or-nothing restore."""
import os
import stat

import pytest

from xcatd.db.database import TABLES


@pytest.fixture
def populated(mn):
    mn.ok("mkdef", "-t", "node", "-o", "n1-n2", "groups=compute,all", "mgt=ipmi",
          "bmc=10.1.0.1", "bmcpassword=s3cret")
    mn.ok("chtab", "key=system", "passwd.username=root", "passwd.password=rootpw")
    mn.ok("chtab", "node=n1", 'hosts.comments=a "q", b')
    with mn.db.begin() as conn:
        mn.db.insert_row(conn, "auditlog", {"audittime": "2024-01-01 00:00:00",
                                            "command": "nodels"})
    return mn


@pytest.fixture
def dumpdir(tmp_path):
    d = tmp_path / "dump"
    d.mkdir()
    return d


def snapshot(mn, tables=("nodelist", "nodehm", "ipmi", "passwd", "hosts", "site", "policy")):
    return {t: mn.ok("tabdump", "--show-secrets", t).out for t in tables}


def test_dump_writes_one_private_file_per_table(populated, dumpdir):
    r = populated.ok("dumpxCATdb", "-p", str(dumpdir))
    assert r.lines == ["Backup Complete."]
    files = {p.name for p in dumpdir.iterdir()}
    skipped = ("auditlog", "eventlog", "jobs", "jobresults")  # logs and job history: -a only
    assert files == {f"{t}.csv" for t in TABLES if t not in skipped}
    for p in dumpdir.iterdir():
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p.name


def test_dump_files_hold_clear_passwords_and_tabdump_format(populated, dumpdir):
    populated.ok("dumpxCATdb", "-p", str(dumpdir))
    assert (dumpdir / "passwd.csv").read_text().splitlines() == [
        "#key,username,password,cryptmethod,authdomain,comments,disable",
        '"system","root","rootpw",,,,']
    assert (dumpdir / "hosts.csv").read_text() == \
        populated.ok("tabdump", "hosts").out


def test_dump_a_includes_log_tables(populated, dumpdir):
    populated.ok("dumpxCATdb", "-a", "-p", str(dumpdir))
    assert (dumpdir / "auditlog.csv").exists()
    assert (dumpdir / "eventlog.csv").exists()
    assert '"nodels"' in (dumpdir / "auditlog.csv").read_text()


def test_dump_V_says_what_is_skipped(populated, dumpdir):
    lines = populated.ok("dumpxCATdb", "-V", "-p", str(dumpdir)).lines
    assert "Skipping auditlog" in lines and "Dumping nodelist" in lines
    assert lines[-1] == "Backup Complete."


def test_dump_overwrites_existing_file_keeping_mode(populated, dumpdir):
    f = dumpdir / "nodelist.csv"
    f.write_text("junk")
    os.chmod(f, 0o644)
    populated.ok("dumpxCATdb", "-p", str(dumpdir))
    assert f.read_text().startswith("#node,groups")
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600


def test_dump_without_path_is_xcats_error(mn_sqlite):
    r = mn_sqlite.run("dumpxCATdb")
    assert (r.rc, r.err) == (1, "Error:  Requires -p with path to directory to hold db files.\n")


def test_dump_to_a_file_is_an_error(mn_sqlite, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    r = mn_sqlite.run("dumpxCATdb", "-p", str(f))
    assert (r.rc, r.err) == (1, f"Error:  Input path is not a directory: {f}\n")
    assert f.read_text() == "x"


def test_dump_creates_a_missing_directory_for_root_alone(populated, tmp_path):
    target = tmp_path / "new" / "backup"
    r = populated.ok("dumpxCATdb", "-p", str(target))
    assert r.lines == [f" Creating {target} for database dump", "Backup Complete."]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o700
    assert (target / "nodelist.csv").read_text().startswith("#node,groups")


@pytest.mark.parametrize("opts", [["--path"], ["-a", "-V", "-p"], ["--all", "--verbose", "--path"]])
def test_dump_and_restore_take_xcats_long_options(populated, dumpdir, opts):
    r = populated.ok("dumpxCATdb", *opts, str(dumpdir))
    assert r.lines[-1] == "Backup Complete."
    assert (dumpdir / "auditlog.csv").exists() == ("-a" in opts or "--all" in opts)
    r = populated.ok("restorexCATdb", *opts, str(dumpdir))
    assert r.lines[-1] == "Restore of Database Complete."
    assert ("Restoring nodelist." in r.lines) == ("-V" in opts or "--verbose" in opts)


def test_dump_a_adds_exactly_the_logs_and_job_history(populated, tmp_path):
    plain, full = tmp_path / "plain", tmp_path / "full"
    populated.ok("dumpxCATdb", "-p", str(plain))
    populated.ok("dumpxCATdb", "-a", "-p", str(full))
    added = {p.name for p in full.iterdir()} - {p.name for p in plain.iterdir()}
    assert added == {"auditlog.csv", "eventlog.csv", "jobs.csv", "jobresults.csv"}


def test_dump_leaves_out_site_skiptables(populated, dumpdir):
    populated.ok("chtab", "key=skiptables", "site.value=hosts,passwd")
    lines = populated.ok("dumpxCATdb", "-V", "-p", str(dumpdir)).lines
    assert "Skipping hosts" in lines and "Skipping passwd" in lines
    names = {p.name for p in dumpdir.iterdir()}
    assert "hosts.csv" not in names and "passwd.csv" not in names and "nodelist.csv" in names


def test_dump_XCAT_SKIPTABLES_overrides_site_skiptables(populated, dumpdir, monkeypatch):
    populated.ok("chtab", "key=skiptables", "site.value=hosts")
    monkeypatch.setenv("XCAT_SKIPTABLES", "zone,passwd")
    populated.ok("dumpxCATdb", "-p", str(dumpdir))
    names = {p.name for p in dumpdir.iterdir()}
    assert "hosts.csv" in names
    assert "zone.csv" not in names and "passwd.csv" not in names


def test_restore_leaves_out_site_skiptables_and_says_so(populated, dumpdir):
    populated.ok("dumpxCATdb", "-p", str(dumpdir))
    populated.ok("chtab", "-d", "node=n1", "hosts")
    populated.ok("chtab", "key=skiptables", "site.value=hosts")
    (dumpdir / "site.csv").unlink()   # keep today's site table (and its skiptables)
    r = populated.ok("restorexCATdb", "-V", "-p", str(dumpdir))
    assert "Skipping hosts" in r.lines and "Restoring nodelist." in r.lines
    assert populated.ok("tabdump", "hosts").lines[1:] == []


def test_round_trip_restores_everything_including_passwords(populated, dumpdir):
    before = snapshot(populated)
    populated.ok("dumpxCATdb", "-p", str(dumpdir))
    populated.ok("rmdef", "n1-n2")
    populated.ok("chtab", "-d", "key=system", "passwd")
    populated.ok("chtab", "key=domain", "site.value=changed")
    populated.ok("mkdef", "n9", "groups=x")
    r = populated.ok("restorexCATdb", "-p", str(dumpdir))
    assert r.lines[-1] == "Restore of Database Complete."
    assert snapshot(populated) == before
    assert populated.ok("nodels", "--show-secrets", "n1", "ipmi.password").lines == [
        "n1: s3cret"]


def test_restore_keeps_log_tables_unless_a(populated, dumpdir):
    populated.ok("dumpxCATdb", "-a", "-p", str(dumpdir))
    populated.ok("tabprune", "auditlog", "-a")
    populated.ok("restorexCATdb", "-p", str(dumpdir))
    assert populated.ok("tabdump", "auditlog").lines[1:] == []
    populated.ok("restorexCATdb", "-a", "-p", str(dumpdir))
    assert len(populated.ok("tabdump", "auditlog").lines[1:]) == 1


@pytest.mark.parametrize("corrupt", [
    ("zone.csv", "no header\n"),
    ("nodelist.csv", '#node,groups\n"n1","a","extra"\n'),
    ("site.csv", "#key,bogus\n"),
    ("nosuchtable.csv", "#a\n"),
    ("policy.csv", '#priority,name\n"1","a"\n"1","b"\n'),
])
def test_restore_with_corrupt_file_restores_nothing(populated, dumpdir, corrupt):
    populated.ok("dumpxCATdb", "-p", str(dumpdir))
    populated.ok("rmdef", "n1")
    populated.ok("chtab", "key=domain", "site.value=changed")
    before = snapshot(populated)
    name, text = corrupt
    (dumpdir / name).write_text(text)
    r = populated.run("restorexCATdb", "-p", str(dumpdir))
    assert r.rc != 0
    assert name.split(".")[0] in r.err
    assert snapshot(populated) == before


@pytest.mark.parametrize("setup", ["missing", "empty"])
def test_restore_path_errors(mn_sqlite, dumpdir, setup):
    path = dumpdir / "nope" if setup == "missing" else dumpdir
    r = mn_sqlite.run("restorexCATdb", "-p", str(path))
    assert r.rc == 1
    assert r.err.startswith("Error:")


def test_restore_without_path_is_error(mn_sqlite):
    assert mn_sqlite.run("restorexCATdb").rc == 1


def test_a_row_with_an_empty_key_part_survives_dump_and_restore(mn_sqlite, tmp_path):
    mn_sqlite.ok("chtab", "key=ipmi", "passwd.password=x")     # username: an empty key part
    mn_sqlite.ok("dumpxCATdb", "-p", str(tmp_path))
    mn_sqlite.ok("chtab", "-d", "key=ipmi", "passwd")
    mn_sqlite.ok("restorexCATdb", "-p", str(tmp_path))
    r = mn_sqlite.ok("gettab", "--show-secrets", "key=ipmi", "passwd.password")
    assert r.out == "x\n"


def test_job_history_is_left_alone_unless_asked(mn_daemon, tmp_path):
    mn_daemon.ok("nodeadd", "n1", "groups=all")
    mn_daemon.ok("dumpxCATdb", "-p", str(tmp_path))
    assert not (tmp_path / "jobs.csv").exists()
    mn_daemon.daemon.daemon.pipeline.jobs.flush()
    before = len(mn_daemon.db.rows("jobs"))
    mn_daemon.ok("restorexCATdb", "-p", str(tmp_path))
    mn_daemon.daemon.daemon.pipeline.jobs.flush()
    assert len(mn_daemon.db.rows("jobs")) > before   # nothing wiped, the restore itself added


@pytest.mark.parametrize("command", ["dumpxCATdb", "restorexCATdb"])
def test_a_relative_path_in_a_request_is_refused(mn_sqlite, tmp_path, monkeypatch, command):
    """The command line sends the path made absolute; a request that carries a relative one
    (REST, a script) would land in the daemon's working directory: refused, nothing written."""
    from xcatd.base.request import Request
    from xcatd.daemon.pipeline import run_local
    monkeypatch.chdir(tmp_path)
    out = list(run_local(Request(command, args={"path": "relative/dir"}), mn_sqlite.paths))
    errors = [r.error for r in out if r.error]
    assert errors and "relative/dir: give a full path" in errors[0], out
    assert not (tmp_path / "relative").exists()
