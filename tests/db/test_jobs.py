"""The job store (xcatd.db.jobs): retention of finished jobs, the size cap of one stored
response, and no audit row lost while the database cannot be written."""
from __future__ import annotations

import datetime
import logging
import sqlite3
import time

import pytest
import sqlalchemy as sa

from xcatd.base.request import Response
from xcatd.base.site import SiteValues
from xcatd.db import jobs as jobsmod
from xcatd.db.database import Database
from xcatd.db.jobs import JobStore, job_rows


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request):
    """(the ``mn`` fixture on each database; no xcatd needed here)"""
    return request.param


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def stamp(days_ago: float) -> str:
    when = datetime.datetime.now() - datetime.timedelta(days=days_ago)
    return when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def make_job(store: JobStore, command: str, *, results: int = 3, ended: float | None = 0,
             state: str = "done") -> str:
    """A job with ``results`` output lines that ended ``ended`` days ago (None: it still
    runs)."""
    job = store.new("root", command, "n1", "", "localhost", "cli")
    store.start(job)
    for i in range(results):
        store.result(job, Response(node=f"n{i}", data=f"line {i}"))
    if ended is not None:
        store.finish(job, state, 0 if state == "done" else 1)
    store.flush()
    if ended is not None:
        t = sa.table("jobs", sa.column("jobid"), sa.column("finished"), sa.column("created"))
        with store.db.begin() as conn:
            conn.execute(t.update().where(t.c.jobid == job.jobid)
                         .values(finished=stamp(ended), created=stamp(ended + 0.001)))
    return job.jobid


def left(db: Database) -> dict[str, int]:
    """command -> its number of stored results, for every job in the database."""
    with db.connect() as conn:
        return dict(conn.execute(sa.text(
            "SELECT j.command, (SELECT count(*) FROM jobresults r WHERE r.jobid = j.jobid) "
            "FROM jobs j")).all())


def all_results(db: Database) -> int:
    with db.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM jobresults")).scalar()


# ---- retention ---------------------------------------------------------------------------
def test_retention_by_age_purges_old_finished_jobs_with_their_results(mn):
    store = JobStore(mn.db, background=False)
    for i, state in enumerate(("done", "failed", "cancelled", "interrupted")):
        make_job(store, f"old{i}", ended=40 + i, state=state)
    make_job(store, "recent", ended=2)
    make_job(store, "running", ended=None)  # started long ago, still running
    make_job(store, "queued", ended=None, results=0)
    with mn.db.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET created = :c WHERE command IN "
                             "('running', 'queued')"), {"c": stamp(90)})
        conn.execute(sa.text("UPDATE jobs SET state = 'queued' WHERE command = 'queued'"))
    gone = store.purge(SiteValues({"jobkeepdays": "30", "jobkeepcount": "0"}))
    assert gone == 4
    assert left(mn.db) == {"recent": 3, "running": 3, "queued": 0}
    assert all_results(mn.db) == 6  # no result of a purged job stays behind


def test_retention_by_count_keeps_the_newest_finished_jobs_and_running_ones(mn):
    store = JobStore(mn.db, background=False)
    for i in range(6):
        make_job(store, f"j{i}", ended=6 - i)  # j5 ended last
    make_job(store, "running", ended=None)
    store.purge(SiteValues({"jobkeepcount": "2", "jobkeepdays": "0"}))
    assert left(mn.db) == {"j4": 3, "j5": 3, "running": 3}


def test_retention_defaults_keep_recent_jobs(mn):
    store = JobStore(mn.db, background=False)
    make_job(store, "old", ended=31)
    make_job(store, "new", ended=29)
    store.purge(SiteValues())  # 30 days, 10000 jobs
    assert left(mn.db) == {"new": 3}


def test_a_bad_retention_value_falls_back_to_the_default(mn, caplog):
    store = JobStore(mn.db, background=False)
    make_job(store, "old", ended=31)
    make_job(store, "new", ended=1)
    with caplog.at_level(logging.WARNING, logger="xcatd.db.jobs"):
        store.purge(SiteValues({"jobkeepdays": "a month"}))
    assert left(mn.db) == {"new": 3}
    assert "site.jobkeepdays 'a month'" in caplog.text


def test_purge_deletes_in_bounded_steps(mn, monkeypatch):
    """A job with more results than one transaction deletes loses them over several."""
    monkeypatch.setattr(jobsmod, "PURGE_ROWS", 4)
    monkeypatch.setattr(jobsmod, "PURGE_JOBS", 2)
    store = JobStore(mn.db, background=False)
    make_job(store, "big", results=10, ended=50)
    for i in range(3):
        make_job(store, f"small{i}", results=1, ended=40 - i)
    make_job(store, "running", results=2, ended=None)
    with mn.db.begin() as conn:  # one step: part of the big job's results, nothing else
        step = jobsmod._delete_step(conn, 4)
    assert (step.jobs, step.results, step.done) == (0, 4, False)
    assert left(mn.db)["big"] == 6
    assert jobsmod.delete_oldest(mn.db, 4)[0] == 4
    assert left(mn.db) == {"running": 2}


def test_the_writer_purges_by_the_site_keys(mn):
    """xcatd's job writer applies site.jobkeepcount / jobkeepdays on its own."""
    seed = JobStore(mn.db, background=False)
    for i in range(4):
        make_job(seed, f"j{i}", ended=4 - i)
    make_job(seed, "running", ended=None)
    with mn.db.begin() as conn:
        mn.db.set_rows(conn, "site", {("jobkeepcount",): {"value": "1"}})
    store = JobStore(mn.db, purge_interval=0.05)
    try:
        wait_for(lambda: "j0" not in left(mn.db) and "j2" not in left(mn.db),
                 what="the periodic purge")
        assert left(mn.db) == {"j3": 3, "running": 3}
    finally:
        store.close()


# ---- one stored response -----------------------------------------------------------------
def test_a_huge_response_is_stored_cut_with_a_note(mn_sqlite):
    store = JobStore(mn_sqlite.db, background=False)
    job = store.new("root", "rpower", "n1", "", "localhost", "cli")
    store.result(job, Response(node="n1", error="E" * 300_000))
    store.result(job, Response(node="n2", data="é" * 40_000))  # 80,000 bytes in UTF-8
    store.result(job, Response(node="n3", warning="short"))
    store.finish(job, "failed", 1)
    store.flush()
    _, rows = job_rows(mn_sqlite.db, job.jobid)
    big, accents, short = rows
    limit = jobsmod.RESPONSE_MAX
    assert big["error"] == "E" * limit + f"… ({300_000 - limit} more bytes not recorded)"
    kept, note = accents["data"].split("… (")
    assert set(kept) == {"é"} and len(kept.encode()) <= limit
    assert note == f"{80_000 - len(kept.encode())} more bytes not recorded)"
    assert short["warning"] == "short"
    assert len(job.results[0].error) < limit + 100  # the live job does not hold it either


# ---- a database that cannot be written ---------------------------------------------------
def quick_db(mn) -> Database:
    """Its own engine on the test SQLite database, giving up on a lock after 50 ms (not
    30 s), so a lock makes writes fail at once."""
    db = Database(mn.url)

    def short_wait(dbapi_conn, _record):
        dbapi_conn.execute("PRAGMA busy_timeout=50")

    sa.event.listen(db.engine, "connect", short_wait)
    return db


@pytest.fixture
def quick_retries(monkeypatch):
    monkeypatch.setattr(jobsmod, "RETRY_FIRST", 0.05, raising=False)
    monkeypatch.setattr(jobsmod, "RETRY_MAX", 0.2, raising=False)


def audit_row(i: int) -> dict:
    return {"audittime": "2024-01-01 00:00:00", "userid": "root", "clientname": "localhost",
            "clienttype": "cli", "command": f"cmd{i}", "status": "Allowed"}


def audited(db: Database) -> list[str]:
    with db.connect() as conn:
        return sorted(r[0] for r in conn.execute(sa.text("SELECT command FROM auditlog")))


@pytest.fixture
def locked(mn_sqlite):
    """Hold the SQLite database's write lock from another connection until released."""
    path = sa.engine.make_url(mn_sqlite.url).database
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")

    class Lock:
        @staticmethod
        def release():
            if holder.in_transaction:
                holder.execute("ROLLBACK")

    yield Lock
    Lock.release()
    holder.close()


def failed_writes(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "xcatd.db.jobs"
            and r.levelno >= logging.WARNING]


def test_a_locked_database_loses_no_record_once_released(mn_sqlite, locked, caplog,
                                                         quick_retries):
    caplog.set_level(logging.WARNING, logger="xcatd.db.jobs")
    store = JobStore(quick_db(mn_sqlite))
    try:
        for i in range(10):
            store.audit(audit_row(i))
        job = store.new("root", "nodels", "n1", "", "localhost", "cli")
        store.start(job)
        store.result(job, Response(node="n1", data="groups: all"))
        wait_for(lambda: failed_writes(caplog), what="a failed write")
        for i in range(10, 20):  # more records while the database stays locked
            store.audit(audit_row(i))
        store.finish(job, "done", 0)
        wait_for(lambda: len(failed_writes(caplog)) >= 3, what="writes tried again")
        locked.release()
        store.flush()
        assert audited(mn_sqlite.db) == sorted(f"cmd{i}" for i in range(20))
        record, results = job_rows(mn_sqlite.db, job.jobid)
        assert record["state"] == "done"
        assert [r["data"] for r in results] == ["groups: all"]
    finally:
        store.close()


def test_while_locked_job_results_are_dropped_to_bound_memory_audit_rows_never(
        mn_sqlite, locked, caplog, quick_retries, monkeypatch):
    monkeypatch.setattr(jobsmod, "BACKLOG_MAX", 20_000, raising=False)
    caplog.set_level(logging.WARNING, logger="xcatd.db.jobs")
    store = JobStore(quick_db(mn_sqlite))
    try:
        job = store.new("root", "nodels", "all", "", "localhost", "cli")
        store.start(job)
        for i in range(200):
            store.audit(audit_row(i))
            store.result(job, Response(node=f"n{i}", data="x" * 500))  # 100 kB in all
        store.finish(job, "done", 0)
        wait_for(lambda: "job result records dropped" in caplog.text, what="a drop")
        locked.release()
        store.flush()
        assert audited(mn_sqlite.db) == sorted(f"cmd{i}" for i in range(200))
        record, results = job_rows(mn_sqlite.db, job.jobid)
        assert record["state"] == "done"
        assert 0 < len(results) < 200
        assert [r["node"] for r in results] == [f"n{i}" for i in range(200 - len(results),
                                                                        200)]  # oldest go
    finally:
        store.close()


def test_an_unwritable_result_is_dropped_an_unwritable_audit_row_kept(mn_sqlite, caplog,
                                                                      quick_retries):
    """A row refused on its own (a constraint) does not take the others down; an audit row
    refused is logged each time and written once the database takes it."""
    caplog.set_level(logging.WARNING, logger="xcatd.db.jobs")
    db = mn_sqlite.db
    with db.begin() as conn:
        db.insert_row(conn, "auditlog", {"recid": 7, "command": "squatter"})
    store = JobStore(db)
    try:
        job = store.new("root", "nodels", "n1", "", "localhost", "cli")
        store._put(("insert", "jobresults", {"jobid": job.jobid, "seq": 0, "data": "a"}))
        store._put(("insert", "jobresults", {"jobid": job.jobid, "seq": 0, "data": "twin"}))
        store.audit({**audit_row(1), "recid": 7})  # refused while recid 7 is taken
        store.audit(audit_row(2))
        store.flush()
        assert audited(db) == ["cmd2", "squatter"]
        assert [r["data"] for r in job_rows(db, job.jobid)[1]] == ["a"]
        assert "could not record a insert of jobresults (dropped)" in caplog.text
        wait_for(lambda: len([r for r in caplog.records if r.levelno == logging.CRITICAL
                              and "cmd1" in r.getMessage()]) >= 2,
                 what="the audit row tried again")
        with db.begin() as conn:
            conn.execute(sa.text("DELETE FROM auditlog WHERE recid = 7"))
        wait_for(lambda: "cmd1" in audited(db), what="the audit row written")
        assert audited(db) == ["cmd1", "cmd2"]
    finally:
        store.close()


def test_in_process_records_stay_for_the_next_flush_while_locked(mn_sqlite, locked):
    store = JobStore(quick_db(mn_sqlite), background=False)
    store.audit(audit_row(1))
    store.flush()  # locked: kept
    locked.release()
    store.audit(audit_row(2))
    store.flush()
    assert audited(mn_sqlite.db) == ["cmd1", "cmd2"]
