"""job: list, show, wait for and cancel jobs (every request the daemon ran is one)."""
from __future__ import annotations

import time
from collections.abc import Iterator

from xcatd.base.request import Request, Response, XcatError, denied, not_found
from xcatd.db.jobs import TERMINAL, find_job_ids, job_rows, list_jobs
from xcatd.handler import FLAG, NUMBER, TEXT, Context, command

WAIT_POLL = 0.05


def _find(ctx: Context, jobid: str) -> str:
    """A full job id from a full one or a unique prefix (as `git` takes commits)."""
    if not jobid:
        raise XcatError("A job id is required.")
    ids = find_job_ids(ctx.db, jobid)
    if ctx.jobs is not None and not ids:
        live = [j for j in list(ctx.jobs.live) if j.startswith(jobid)]
        ids = live[:2]
    if not ids:
        raise not_found(f"No job {jobid}")
    if len(ids) > 1:
        raise XcatError(f"Job id {jobid} is ambiguous: give more of it")
    return ids[0]


def _visible(req: Request, job: dict) -> None:
    if req.user != "root" and job.get("user") != req.user:
        raise denied(f"Job {job['jobid']} belongs to {job.get('user')}")


def _summary(job: dict) -> str:
    nr = f" {job['noderange']}" if job.get("noderange") else ""
    code = job.get("exitcode") if job.get("exitcode") is not None else "-"
    return (f"{job['jobid']}  {job.get('state'):<11} {code:>3}  {job.get('created') or ''}  "
            f"{job.get('user')}  {job.get('command')}{nr}")


def _replay(results: list[dict], as_report: bool = False) -> Iterator[Response]:
    """The job's responses again; as a report (job show), errors are text, not failures."""
    for r in results:
        result = {k: r.get(k) for k in ("node", "data", "error", "warning", "errorcode")
                  if r.get(k) not in (None, "")}
        if as_report and (r.get("error") or r.get("warning")):
            word = "Error" if r.get("error") else "Warning"
            yield Response(node=r.get("node"), obj={"result": result},
                           data=f"{word}: {r.get('error') or r.get('warning')}")
            continue
        yield Response(node=r.get("node"), data=r.get("data"), error=r.get("error"),
                       warning=r.get("warning"), errorcode=r.get("errorcode") or 0,
                       obj={"result": result})


def _flush(ctx: Context) -> None:
    if ctx.jobs is not None:
        ctx.jobs.flush()


@command("job", args={"action": TEXT, "jobid": TEXT, "all": FLAG, "state": TEXT,
                     "limit": NUMBER, "timeout": NUMBER})
def job(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    action = req.args.get("action") or "list"
    if action == "list":
        yield from _list(req, ctx)
        return
    _flush(ctx)
    jobid = _find(ctx, req.args.get("jobid") or "")
    if action == "cancel":
        record, _ = job_rows(ctx.db, jobid)
        if record is not None:
            _visible(req, record)
        if not ctx.daemon:
            raise XcatError("Cancelling a job needs the daemon (XCATBYPASS runs in process).")
        if not ctx.jobs.cancel(jobid):
            state = record.get("state") if record else "unknown"
            raise XcatError(f"Job {jobid} is not running (state: {state})")
        yield Response(data=f"Job {jobid}: cancel requested")
        return
    if action == "wait":
        timeout = float(req.args.get("timeout") or 0) or None
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            live = ctx.jobs.live.get(jobid) if ctx.jobs is not None else None
            if live is not None:
                live.finished.wait(WAIT_POLL * 10)
            _flush(ctx)
            record, _ = job_rows(ctx.db, jobid)
            if record and record.get("state") in TERMINAL:
                break
            if deadline and time.monotonic() > deadline:
                raise XcatError(f"Timed out waiting for job {jobid} "
                                f"(state: {record.get('state') if record else 'unknown'})")
            time.sleep(WAIT_POLL)
    record, results = job_rows(ctx.db, jobid)
    if record is None:
        raise not_found(f"No job {jobid}")
    _visible(req, record)
    if action == "show" or action == "wait":
        if action == "show":
            yield Response(data=_summary(record), obj={"job": record})
        yield from _replay(results, as_report=action == "show")
        if action == "wait" and record.get("exitcode") not in (None, "0"):
            yield Response(errorcode=int(record["exitcode"]),
                           data=f"job {jobid} ended {record['state']} "
                                f"(exit code {record['exitcode']})")
        return
    raise XcatError(f"Unknown job action {action!r}: use list, show, wait or cancel")


def _list(req: Request, ctx: Context) -> Iterator[Response]:
    _flush(ctx)
    rows = list_jobs(ctx.db, user=None if req.user == "root" else req.user,
                     state=req.args.get("state"),
                     limit=None if req.args.get("all") else int(req.args.get("limit") or 20))
    for row in reversed(rows):
        yield Response(data=_summary(row), obj={"job": row})
