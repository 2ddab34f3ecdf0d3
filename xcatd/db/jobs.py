"""Jobs: every request the daemon takes is a job that is written down, so its result can be
read after its client has gone, and a restart marks unfinished jobs interrupted, not lost.

Writes (job rows, per-node results, audit rows) go through one writer thread that commits
them in batches (group commit): a burst of requests costs a few transactions, not one each,
and a result is on disk within ``FLUSH_INTERVAL`` of being produced. A short-lived process
(a command run with XCATBYPASS) keeps them in memory instead and commits them when it calls
``flush`` (``background=False``): no thread to start or to wait for.

A job keeps at most ``site.jobresultsmax`` bytes of output lines (default 1 MiB; none for a
command run in process, whose output went to its terminal); errors and warnings are always
kept, and a last line says how many output lines were not.
"""
from __future__ import annotations

import datetime
import logging
import queue
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from xcatd.base.request import Response
from xcatd.db.database import SA_TABLES, Database

log = logging.getLogger("xcatd.db.jobs")

FLUSH_INTERVAL = 0.02
BATCH = 2000
RESULT_BUDGET = 1 << 20  # bytes of output lines a job keeps (site.jobresultsmax)
TERMINAL = ("done", "failed", "cancelled", "interrupted")


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

    def __init__(self, db: Database, *, background: bool = True) -> None:
        self.db = db
        self.live: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._q: queue.Queue = queue.Queue()
        self._pending: list[tuple] | None = None if background else []
        self._stop = False
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
        """Wait until everything recorded so far is committed."""
        if self._pending is not None:
            with self._lock:
                batch, self._pending = self._pending, []
            for start in range(0, len(batch), BATCH):
                self._commit(batch[start:start + BATCH])
            return
        done = threading.Event()
        self._q.put(("barrier", done))
        done.wait(timeout)

    # ---- the writer ------------------------------------------------------------------------
    def _put(self, item: tuple) -> None:
        if self._pending is not None:
            with self._lock:
                self._pending.append(item)
            return
        self._q.put(item)

    def _run(self) -> None:
        while not self._stop:
            item = self._q.get()
            if item is None:
                break
            batch = [item]
            if item[0] != "barrier" and self._q.qsize() < BATCH:
                time.sleep(FLUSH_INTERVAL)  # let a burst gather into one transaction
            while len(batch) < BATCH:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._stop = True
                    break
                batch.append(nxt)
            self._commit(batch)

    def _commit(self, batch: list[tuple]) -> None:
        inserts: dict[str, list[dict]] = defaultdict(list)
        updates: dict[str, dict] = {}
        barriers = []
        new_jobs: dict[str, dict] = {}
        for item in batch:
            kind = item[0]
            if kind == "insert":
                inserts[item[1]].append(item[2])
                if item[1] == "jobs":
                    new_jobs[item[2]["jobid"]] = item[2]
            elif kind == "update":
                row = new_jobs.get(item[2])
                if row is not None:  # inserted in this batch: one INSERT says it all
                    row.update(item[3])
                else:
                    updates.setdefault(item[2], {}).update(item[3])
            else:
                barriers.append(item[1])
        try:
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
        except Exception:
            if len(batch) > 1:  # one bad row must not take the others (an audit trail) down
                for item in batch:
                    if item[0] != "barrier":
                        self._commit([item])
            else:
                log.error("could not record a %s write to %s", batch[0][0], batch[0][1])
        for b in barriers:
            b.set()


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
