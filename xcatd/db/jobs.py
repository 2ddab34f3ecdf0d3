"""Jobs: every request the daemon takes is a job that is written down, so its result can be
read after its client has gone, and a restart marks unfinished jobs interrupted, not lost.

Writes (job rows, per-node results, audit rows) go through one writer thread that commits
them in batches (group commit): a burst of requests costs a few transactions, not one each,
and a result is on disk within ``FLUSH_INTERVAL`` of being produced. A short-lived process
(a command run with XCATBYPASS) keeps them in memory instead and commits them when it calls
``flush`` (``background=False``): no thread to start or to wait for.

A job keeps at most ``site.jobresultsmax`` bytes of output lines (default 1 MiB; none for a
command run in process, whose output went to its terminal); errors and warnings are always
kept, and a last line says how many output lines were not. One stored response (its data,
error or warning text) keeps at most ``RESPONSE_MAX`` bytes (64 KiB), then
"… (N more bytes not recorded)".

Retention: xcatd's writer thread deletes finished jobs (done, failed, cancelled,
interrupted; never queued or running ones) with their results every ``PURGE_INTERVAL``
(5 minutes), oldest first:

``site.jobkeepdays``   finished jobs older than this many days go (default 30; 0: no limit)
``site.jobkeepcount``  only the newest this many finished jobs stay (default 10000; 0: no
                       limit)

It deletes in transactions of at most ``PURGE_JOBS`` jobs and about ``PURGE_ROWS`` result
rows, and writes what requests recorded between them, so the writer never stalls for long.
It needs no index: the jobs table stays small, and results are deleted through their
primary key (jobid, seq). ``tabprune jobs`` deletes by hand (``delete_oldest``).

When the database cannot be written (locked, down), nothing is dropped: the writer keeps
the records and tries again after ``RETRY_FIRST`` seconds, doubling up to ``RETRY_MAX``.
While it waits, the records it holds are bounded: above ``BACKLOG_MAX`` bytes, job results
are dropped first (oldest first), then job records, each with a log line; audit rows never.
A record that can never be written (a constraint error on that row alone) is dropped with a
log line, except an audit row: that is kept and tried again, with a critical log line each
time it fails.
"""
from __future__ import annotations

import dataclasses
import datetime
import itertools
import logging
import queue
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from xcatd.base.request import Response, storable
from xcatd.base.site import SiteValueError, SiteValues
from xcatd.db.database import SA_TABLES, Database

log = logging.getLogger("xcatd.db.jobs")

FLUSH_INTERVAL = 0.02
BATCH = 2000
RESULT_BUDGET = 1 << 20  # bytes of output lines a job keeps (site.jobresultsmax)
TERMINAL = ("done", "failed", "cancelled", "interrupted")
RESPONSE_MAX = 64 << 10  # bytes of one stored data, error or warning text

#: retention: site.jobkeepdays and site.jobkeepcount (0: no limit)
KEEP_DAYS = 30
KEEP_COUNT = 10_000
PURGE_INTERVAL = 300.0  # seconds between purges (the first one a minute after start)
PURGE_FIRST = 60.0
PURGE_JOBS = 500  # jobs deleted per purge transaction, at most
PURGE_ROWS = 5000  # result rows deleted per purge transaction, about

#: a failed write is tried again after RETRY_FIRST seconds, doubling up to RETRY_MAX
RETRY_FIRST = 0.5
RETRY_MAX = 30.0
#: bytes of job records (results, then jobs) held while the database cannot be written;
#: audit rows are held whatever their size
BACKLOG_MAX = 64 << 20


def now() -> str:
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@dataclass
class Job:
    """A live job: its record, its results so far, and a way to cancel it."""

    jobid: str
    user: str
    command: str
    noderange: str | None
    args: str
    client: str = ""
    clienttype: str = "cli"
    state: str = "queued"
    created: str = field(default_factory=now)
    exitcode: int | None = None
    results: list[Response] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    #: bytes of output lines it may still keep, how many it did not keep, and why
    budget: int = RESULT_BUDGET
    unrecorded: int = 0
    unrecorded_why: str = "over site.jobresultsmax bytes"

    def row(self) -> dict[str, Any]:
        return {"jobid": self.jobid, "user": self.user, "client": self.client,
                "clienttype": self.clienttype, "command": self.command,
                "noderange": self.noderange, "args": self.args, "state": self.state,
                "created": self.created}


class JobStore:
    """Live jobs in memory, every job and result in the database."""

    def __init__(self, db: Database, *, background: bool = True,
                 purge_interval: float = PURGE_INTERVAL) -> None:
        self.db = db
        self.live: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._q: queue.Queue = queue.Queue()
        self._pending: list[tuple] | None = None if background else []
        self._stop = False
        self._inline_lock = threading.Lock()  # one flush at a time (in process)
        # the writer's state: records taken from the queue and not written yet (and the
        # bytes of job records among them), audit rows that failed on their own, the
        # backoff after a failed write, the retention purge under way
        self._backlog: deque[tuple] = deque()
        self._held = 0
        self._lost_jobs: set[str] = set()
        self._stuck: list[tuple] = []
        self._stuck_wait = 0.0
        self._stuck_at = 0.0
        self._backoff = 0.0
        self._retry_at = 0.0
        self.purge_interval = purge_interval
        self._next_purge = time.monotonic() + min(PURGE_FIRST, purge_interval)
        self._purge_left = 0
        self._writer: threading.Thread | None = None
        if background:
            self._writer = threading.Thread(target=self._run, name="job-writer", daemon=True)
            self._writer.start()

    @property
    def inline(self) -> bool:
        """Records are kept in memory until ``flush`` (no writer thread)."""
        return self._pending is not None

    # ---- lifecycle -----------------------------------------------------------------------
    def mark_interrupted(self) -> int:
        """At start-up: jobs a previous daemon left queued or running did not finish."""
        t = SA_TABLES["jobs"]
        with self.db.begin() as conn:
            res = conn.execute(t.update().where(t.c.state.in_(("queued", "running")))
                               .values(state="interrupted", finished=now()))
            return res.rowcount or 0

    def interrupt_live(self) -> list[Job]:
        """At shutdown, once no new job can start: record this store's jobs still queued or
        running as interrupted, after what was recorded before them, and return them. Their
        threads are not waited for. A job that ends meanwhile keeps the end it records
        (the update skips rows no longer queued or running)."""
        with self._lock:
            jobs = list(self.live.values())
        if not jobs:
            return []
        self.flush()
        t = SA_TABLES["jobs"]
        ids, stamp = [j.jobid for j in jobs], now()
        with self.db.begin() as conn:
            for start in range(0, len(ids), 500):  # bound the IN list
                conn.execute(t.update().where(t.c.jobid.in_(ids[start:start + 500]),
                                              t.c.state.in_(("queued", "running")))
                             .values(state="interrupted", finished=stamp))
        return jobs

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._stop = True
            self._q.put(None)
            self._writer.join(timeout=10)

    # ---- recording -----------------------------------------------------------------------
    def new(self, user: str, command: str, noderange: str | None, args: str, client: str,
            clienttype: str, budget: int = RESULT_BUDGET,
            why: str = "over site.jobresultsmax bytes") -> Job:
        job = Job(str(uuid.uuid4()), user, command, noderange, args, client, clienttype,
                  budget=budget, unrecorded_why=why)
        with self._lock:
            self.live[job.jobid] = job
        self._put(("insert", "jobs", job.row()))
        return job

    def start(self, job: Job) -> None:
        job.state = "running"
        self._put(("update", "jobs", job.jobid, {"state": "running", "started": now()}))

    def result(self, job: Job, resp: Response) -> None:
        if resp.progress is not None:  # a terminal's status line, not output
            return
        resp = capped(resp)
        if resp.error is None and resp.warning is None:
            size = len(resp.data or "") + len(resp.node or "")
            if job.unrecorded or size > job.budget:
                job.unrecorded += 1
                return
            job.budget -= size
        self._record(job, resp)

    def _record(self, job: Job, resp: Response) -> None:
        seq = len(job.results)
        job.results.append(resp)
        self._put(("insert", "jobresults", {
            "jobid": job.jobid, "seq": seq, "node": resp.node, "data": resp.data,
            "error": resp.error, "warning": resp.warning, "errorcode": resp.errorcode}))

    def finish(self, job: Job, state: str, exitcode: int) -> None:
        if job.unrecorded:
            self._record(job, Response(warning=f"{job.unrecorded} output lines were not "
                                               f"recorded ({job.unrecorded_why})"))
        job.state, job.exitcode = state, exitcode
        self._put(("update", "jobs", job.jobid,
                   {"state": state, "finished": now(), "exitcode": str(exitcode)}))
        job.finished.set()
        with self._lock:
            self.live.pop(job.jobid, None)

    def audit(self, row: dict[str, Any]) -> None:
        self._put(("insert", "auditlog", row))

    def cancel(self, jobid: str) -> bool:
        with self._lock:
            job = self.live.get(jobid)
        if job is None:
            return False
        job.cancel.set()
        return True

    def flush(self, timeout: float = 30) -> None:
        """Wait until everything recorded so far is committed (or ``timeout`` passed: the
        database cannot be written now). In process, commit it now; what the database
        refuses now stays for the next flush."""
        if self._pending is not None:
            with self._inline_lock:
                with self._lock:
                    batch, self._pending = self._pending, []
                batch[:0], self._stuck = self._stuck, []
                done = 0
                while done < len(batch):
                    chunk = batch[done:done + BATCH]
                    settled = self._commit(chunk)
                    done += settled
                    if settled < len(chunk):
                        break
                if done < len(batch):
                    with self._lock:
                        self._pending[:0] = batch[done:]
            return
        done_event = threading.Event()
        self._q.put(("barrier", done_event))
        done_event.wait(timeout)

    # ---- retention -------------------------------------------------------------------------
    def purge_plan(self, site: SiteValues | None = None) -> int:
        """How many of the oldest finished jobs the retention removes now
        (site.jobkeepdays, site.jobkeepcount)."""
        if site is None:
            site = self.db.site()
        days = _setting(site.number, "jobkeepdays", KEEP_DAYS, high=100_000)
        count = _setting(site.integer, "jobkeepcount", KEEP_COUNT)
        return retention_count(self.db, days, count)

    def purge(self, site: SiteValues | None = None) -> int:
        """Apply the retention now, in bounded transactions; returns how many jobs went.
        (xcatd's writer does this every ``purge_interval`` seconds, a step at a time.)"""
        return delete_oldest(self.db, self.purge_plan(site))[0]

    # ---- the writer ------------------------------------------------------------------------
    def _put(self, item: tuple) -> None:
        if isinstance(item[-1], dict):  # a lone surrogate in a row would fail it forever
            item = (*item[:-1], {k: storable(v) if isinstance(v, str) else v
                                 for k, v in item[-1].items()})
        if self._pending is not None:
            with self._lock:
                self._pending.append(item)
            return
        self._q.put(item)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                stopping = self._gather(self._idle_wait())
                if self._backlog and (stopping or time.monotonic() >= self._retry_at):
                    self._write()
                if not self._backlog and not stopping:
                    self._housekeeping()
            except Exception:  # the writer outlives any surprise; its records stay
                log.exception("job writer")
                time.sleep(RETRY_FIRST)
        self._last_try()

    def _idle_wait(self) -> float:
        """How long the writer may wait for new records before it has work of its own."""
        now_ = time.monotonic()
        if self._backlog:
            return self._retry_at - now_
        if self._purge_left:
            return 0.0
        due = min(self._next_purge, self._stuck_at) if self._stuck else self._next_purge
        return due - now_

    def _gather(self, wait: float) -> bool:
        """Move what is queued to the backlog, waiting up to ``wait`` seconds for the first
        record; True when the writer is told to stop."""
        try:
            item = self._q.get(timeout=wait) if wait > 0 else self._q.get_nowait()
        except queue.Empty:
            return False
        if item is not None and item[0] != "barrier" and not self._backlog \
                and self._q.qsize() < BATCH:
            time.sleep(FLUSH_INTERVAL)  # let a burst gather into one transaction
        stopping = False
        while True:
            if item is None:
                stopping = True
                break
            self._add(item)
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                break
        if self._held > BACKLOG_MAX:
            self._trim()
        return stopping

    def _add(self, item: tuple) -> None:
        if self._lost_jobs and item[0] != "barrier" and item[1] in ("jobs", "jobresults") \
                and _jobid(item) in self._lost_jobs:
            return  # its job record was dropped (see _trim)
        self._backlog.append(item)
        self._held += _size(item)

    def _trim(self) -> None:
        """Bound the records held while the database cannot keep up: drop job results,
        oldest first, then job records; never audit rows."""
        target = BACKLOG_MAX * 3 // 4
        for table in ("jobresults", "jobs"):
            if self._held <= target:
                return
            kept: deque[tuple] = deque()
            dropped = 0
            for item in self._backlog:
                if self._held > target and item[0] != "barrier" and item[1] == table:
                    self._held -= _size(item)
                    dropped += 1
                    if table == "jobs":  # and whatever comes later for that job
                        self._lost_jobs.add(_jobid(item))
                    continue
                kept.append(item)
            self._backlog = kept
            if dropped:
                log.error("the database cannot keep up or cannot be written: %d %s records "
                          "dropped to bound memory (%d records waiting; audit rows are all "
                          "kept)", dropped, "job result" if table == "jobresults" else "job",
                          len(kept))
        if self._lost_jobs:  # what was left of the dropped jobs' records
            self._backlog = deque(i for i in self._backlog if i[0] == "barrier"
                                  or i[1] not in ("jobs", "jobresults")
                                  or _jobid(i) not in self._lost_jobs)
            self._held = sum(_size(i) for i in self._backlog)

    def _write(self) -> int:
        """Write the oldest batch of the backlog; returns how many records were settled."""
        batch = list(itertools.islice(self._backlog, BATCH))
        settled = self._commit(batch)
        for _ in range(settled):
            item = self._backlog.popleft()
            self._held -= _size(item)
            if item[0] == "barrier":
                item[1].set()
        if not self._backlog:
            self._lost_jobs.clear()
        return settled

    def _last_try(self) -> None:
        """Stopping: write what is left; say what could not be."""
        while self._backlog and self._write():
            pass
        audits = [i for i in itertools.chain(self._stuck, self._backlog) if _is_audit(i)]
        for item in self._backlog:
            if item[0] == "barrier":
                item[1].set()
        others = sum(1 for i in self._backlog if i[0] != "barrier" and not _is_audit(i))
        if others:
            log.error("stopping with %d job records not written to the database", others)
        for item in audits:  # the log keeps them, if the database could not
            log.critical("stopping with an audit row not written to the database: %s",
                         _audit_text(item[2]))

    def _housekeeping(self) -> None:
        """With every record written: audit rows that failed on their own, the purge."""
        now_ = time.monotonic()
        if self._stuck and now_ >= self._stuck_at:
            self._retry_stuck()
        if not self._purge_left and now_ >= self._next_purge:
            self._next_purge = now_ + self.purge_interval
            try:
                self._purge_left = self.purge_plan()
            except Exception as exc:
                log.warning("job retention: cannot count the finished jobs (%s); trying "
                            "again in %d s", _reason(exc), self.purge_interval)
        if self._purge_left:
            try:
                with self.db.begin() as conn:
                    step = _delete_step(conn, self._purge_left)
            except Exception as exc:
                log.warning("job retention: purge interrupted (%s); trying again in %d s",
                            _reason(exc), self.purge_interval)
                self._purge_left = 0
                return
            self._purge_left = 0 if step.done else max(0, self._purge_left - step.jobs)

    def _retry_stuck(self) -> None:
        items, self._stuck = self._stuck, []
        for item in items:
            try:
                self._transaction([item])
            except Exception as exc:
                self._stuck.append(item)
                _log_stuck(item, exc)
        if self._stuck:
            self._stuck_wait = min(self._stuck_wait * 2, RETRY_MAX) or RETRY_FIRST
            self._stuck_at = time.monotonic() + self._stuck_wait
        else:
            self._stuck_wait = 0.0

    def _commit(self, batch: list[tuple]) -> int:
        """Write records in one transaction. Returns how many of them, from the first, are
        settled: written, or, if unwritable, dropped (an audit row: set aside and tried
        again). Fewer than all: the database cannot be written now; the rest waits."""
        try:
            self._transaction(batch)
        except Exception as exc:
            if _transient(exc):
                self._failed(exc)
                return 0
            rows = [item for item in batch if item[0] != "barrier"]
            if len(rows) == 1:
                self._unwritable(rows[0], exc)
            else:  # one bad row must not take the others (an audit trail) down
                for i, item in enumerate(batch):
                    if item[0] == "barrier":
                        continue
                    try:
                        self._transaction([item])
                    except Exception as exc1:
                        if _transient(exc1):
                            self._failed(exc1)
                            return i
                        self._unwritable(item, exc1)
        self._recovered()
        return len(batch)

    def _transaction(self, batch: list[tuple]) -> None:
        inserts: dict[str, list[dict]] = defaultdict(list)
        updates: dict[str, dict] = {}
        new_jobs: dict[str, dict] = {}
        for item in batch:
            kind = item[0]
            if kind == "insert":
                row = item[2]
                if item[1] == "jobs":
                    row = new_jobs[row["jobid"]] = dict(row)
                inserts[item[1]].append(row)
            elif kind == "update":
                row = new_jobs.get(item[2])
                if row is not None:  # inserted in this batch: one INSERT says it all
                    row.update(item[3])
                else:
                    updates.setdefault(item[2], {}).update(item[3])
        if not inserts and not updates:
            return
        with self.db.begin() as conn:
            for table in ("jobs", "jobresults", "auditlog"):
                rows = inserts.get(table)
                if rows:
                    cols = tuple(sorted({c for r in rows for c in r}))
                    conn.execute(_insert(table, cols),
                                 [{c: r.get(c) for c in cols} for r in rows])
            t = SA_TABLES["jobs"]
            by_cols: dict[tuple, list] = defaultdict(list)
            for jobid, values in updates.items():
                by_cols[tuple(sorted(values))].append((jobid, values))
            for cols, items in by_cols.items():
                stmt = t.update().where(t.c.jobid == sa.bindparam("k_jobid")).values(
                    {c: sa.bindparam(f"v_{c}") for c in cols})
                conn.execute(stmt, [{"k_jobid": j, **{f"v_{c}": v[c] for c in cols}}
                                    for j, v in items])

    def _failed(self, exc: BaseException) -> None:
        self._backoff = min(self._backoff * 2, RETRY_MAX) or RETRY_FIRST
        self._retry_at = time.monotonic() + self._backoff
        waiting = len(self._backlog) + len(self._pending or ())
        log.warning("cannot write to the database (%s): %d records kept, %s", _reason(exc),
                    waiting, f"next try in {self._backoff:g} s" if self._pending is None
                    else "to be written with the next ones")

    def _recovered(self) -> None:
        if self._backoff:
            log.warning("the database can be written again: writing the %d records kept",
                        len(self._backlog) + len(self._pending or ()))
            self._backoff = self._retry_at = 0.0

    def _unwritable(self, item: tuple, exc: BaseException) -> None:
        if _is_audit(item):
            _log_stuck(item, exc)
            self._stuck.append(item)
            if not self._stuck_wait:
                self._stuck_wait = RETRY_FIRST
                self._stuck_at = time.monotonic() + RETRY_FIRST
            return
        log.error("could not record a %s of %s (dropped): %s", item[0], item[1],
                  _reason(exc))


def capped(resp: Response) -> Response:
    """The response as a job keeps it: each text at most ``RESPONSE_MAX`` bytes."""
    short = RESPONSE_MAX // 4  # no longer in UTF-8 than RESPONSE_MAX, whatever it holds
    if all(text is None or len(text) <= short for text in (resp.data, resp.error,
                                                            resp.warning)):
        return resp
    return dataclasses.replace(resp, data=cap(resp.data), error=cap(resp.error),
                               warning=cap(resp.warning))


def cap(text: str | None, limit: int = RESPONSE_MAX) -> str | None:
    """``text`` cut to its first ``limit`` bytes (UTF-8), with a note of what was cut.

    >>> cap("x" * 10, 4)
    'xxxx… (6 more bytes not recorded)'
    """
    if text is None or len(text) <= limit // 4:
        return text
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    kept = raw[:limit].decode("utf-8", "ignore")  # never half a character
    return f"{kept}… ({len(raw) - len(kept.encode('utf-8'))} more bytes not recorded)"


def _setting(read, key: str, default, **bounds):
    try:
        return read(key, default, low=0, **bounds)
    except SiteValueError as exc:
        log.warning("%s; using %s", exc, default)
        return default


def _transient(exc: BaseException) -> bool:
    """A failure of the database, not of the records (locked, unreachable, out of
    connections or space): the records are tried again later."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError,
                            sa.exc.DisconnectionError, sa.exc.TimeoutError))


def _reason(exc: BaseException) -> str:
    """The database's own words, without the statement (parameters are hidden anyway)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]


def _is_audit(item: tuple) -> bool:
    return item[0] == "insert" and item[1] == "auditlog"


def _jobid(item: tuple) -> str:
    return item[2]["jobid"] if item[0] == "insert" else item[2]


def _size(item: tuple) -> int:
    """Memory a job record holds, about; audit rows and barriers count none (never dropped)."""
    if item[0] == "insert" and item[1] != "auditlog":
        return 100 + sum(len(v) for v in item[2].values() if isinstance(v, str))
    if item[0] == "update":
        return 100 + sum(len(v) for v in item[3].values() if isinstance(v, str))
    return 0


def _audit_text(row: dict) -> str:
    return " ".join(f"{k}={row[k]!r}" for k in ("audittime", "userid", "clientname",
                                                "clienttype", "command", "noderange",
                                                "status", "comments") if row.get(k))


def _log_stuck(item: tuple, exc: BaseException) -> None:
    log.critical("cannot record an audit row (%s); kept, trying again: %s", _reason(exc),
                 _audit_text(item[2]))


# ---- deleting old jobs -------------------------------------------------------------------
def _stamp(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _finished_at(t: sa.Table):
    """When a job ended (a finished job without its time: when it was created)."""
    return sa.func.coalesce(t.c.finished, t.c.created, "")


def count_finished(db: Database, before: str | None = None) -> tuple[int, int]:
    """(finished jobs, those of them that ended before the time ``before``)."""
    t = SA_TABLES["jobs"]
    older = (sa.func.sum(sa.case((_finished_at(t) < before, 1), else_=0))
             if before is not None else sa.literal(0))
    with db.connect() as conn:
        total, old = conn.execute(sa.select(sa.func.count(), older)
                                  .where(t.c.state.in_(TERMINAL))).one()
    return total or 0, old or 0


def retention_count(db: Database, keep_days: float, keep_count: int,
                    at: datetime.datetime | None = None) -> int:
    """How many of the oldest finished jobs go: those that ended more than ``keep_days``
    ago, and those beyond the newest ``keep_count`` (0: no limit)."""
    before = None
    if keep_days > 0:
        before = _stamp((at or datetime.datetime.now()) - datetime.timedelta(days=keep_days))
    total, older = count_finished(db, before)
    count = older if before is not None else 0
    if keep_count > 0:
        count = max(count, total - keep_count)
    return count


def delete_oldest(db: Database, count: int, *, rows: bool = False
                  ) -> tuple[int, list[dict]]:
    """Delete the ``count`` oldest finished jobs and their results, a bounded transaction
    at a time (so other writers never wait long); returns how many went and, with
    ``rows``, their job records."""
    deleted, out = 0, []
    while deleted < count:
        with db.begin() as conn:
            step = _delete_step(conn, count - deleted, want_rows=rows)
        deleted += step.jobs
        out.extend(step.rows)
        if step.done:
            break
    return deleted, out


@dataclass
class _Step:
    jobs: int = 0
    results: int = 0
    rows: list[dict] = field(default_factory=list)
    #: nothing more to delete (the count reached, or no finished job left)
    done: bool = False


def _delete_step(conn: sa.Connection, count: int, *, want_rows: bool = False) -> _Step:
    """One transaction of deleting the oldest ``count`` finished jobs: at most PURGE_JOBS
    jobs and about PURGE_ROWS result rows (a job with more loses them over several)."""
    jobs, results = SA_TABLES["jobs"], SA_TABLES["jobresults"]
    step = _Step()
    limit = min(count, PURGE_JOBS)
    if limit <= 0:
        step.done = True
        return step
    found = conn.execute(sa.select(*([jobs] if want_rows else [jobs.c.jobid]))
                         .where(jobs.c.state.in_(TERMINAL))
                         .order_by(_finished_at(jobs), jobs.c.jobid)
                         .limit(limit)).mappings().all()
    ids = [r["jobid"] for r in found]
    sizes = {} if not ids else {
        jobid: (n, low) for jobid, n, low in conn.execute(
            sa.select(results.c.jobid, sa.func.count(), sa.func.min(results.c.seq))
            .where(results.c.jobid.in_(ids)).group_by(results.c.jobid))}
    room, whole = PURGE_ROWS, []
    for jobid in ids:
        n, low = sizes.get(jobid, (0, 0))
        if n > room:
            if not whole:  # seq counts from 0 up: at most ``room`` rows
                step.results = conn.execute(results.delete().where(
                    results.c.jobid == jobid, results.c.seq < low + room)).rowcount or 0
            break
        whole.append(jobid)
        room -= n
    if whole:
        step.results += conn.execute(
            results.delete().where(results.c.jobid.in_(whole))).rowcount or 0
        step.jobs = conn.execute(jobs.delete().where(jobs.c.jobid.in_(whole))).rowcount or 0
        if want_rows:
            gone = set(whole)
            step.rows = [dict(r) for r in found if r["jobid"] in gone]
    step.done = len(whole) == len(ids) and (len(ids) < limit or len(ids) >= count)
    return step


_INSERTS: dict[tuple, sa.Insert] = {}


def _insert(table: str, cols: tuple[str, ...]) -> sa.Insert:
    """INSERT statements built once per column set."""
    key = (table, cols)
    stmt = _INSERTS.get(key)
    if stmt is None:
        t = SA_TABLES[table]
        stmt = _INSERTS[key] = t.insert().values({c: sa.bindparam(c) for c in cols})
    return stmt


def find_job_ids(db: Database, prefix: str, limit: int = 2) -> list[str]:
    """Job ids that start with ``prefix`` (LIKE wildcards in it are literal)."""
    t = SA_TABLES["jobs"]
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with db.connect() as conn:
        return [r[0] for r in conn.execute(sa.select(t.c.jobid).where(
            t.c.jobid.like(pattern, escape="\\")).limit(limit))]


def list_jobs(db: Database, *, user: str | None = None, state: str | None = None,
              limit: int | None = 20) -> list[dict]:
    """The most recent jobs first."""
    t = SA_TABLES["jobs"]
    stmt = sa.select(t).order_by(t.c.created.desc())
    if user is not None:
        stmt = stmt.where(t.c.user == user)
    if state:
        stmt = stmt.where(t.c.state == state)
    if limit:
        stmt = stmt.limit(limit)
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


def job_rows(db: Database, jobid: str) -> tuple[dict | None, list[dict]]:
    """A job's record and its results from the database."""
    jobs, results = SA_TABLES["jobs"], SA_TABLES["jobresults"]
    with db.connect() as conn:
        job = conn.execute(sa.select(jobs).where(jobs.c.jobid == jobid)).mappings().first()
        if job is None:
            return None, []
        res = conn.execute(sa.select(results).where(results.c.jobid == jobid)
                           .order_by(results.c.seq)).mappings().all()
        return dict(job), [dict(r) for r in res]
