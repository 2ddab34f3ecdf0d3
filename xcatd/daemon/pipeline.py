"""The daemon's core, independent of its transports: authorize (policy), audit, record the job,
dispatch with per-node locks, record every result. server.py and rest.py call ``run``."""
from __future__ import annotations

import datetime
import logging
import os
import syslog
import threading
import time
from collections.abc import Callable

from xcatd.base.paths import Paths
from xcatd.db.database import Database, split_list
from xcatd.daemon.dispatch import Context, dispatch, load_plugins
from xcatd.db.jobs import Job, JobStore
from xcatd.base.locks import NodeLocks
from xcatd.daemon.policy import DENIED, UNKNOWN_NODES, Identity, args_text, decide
from xcatd.base.request import Request, Response

log = logging.getLogger("xcatd.daemon.pipeline")

POLICY_TTL = 1.0  # seconds a read of the policy/site tables is reused (writes reset it)


def _recordable(request: Request, resp: Response) -> Response:
    """What the job record keeps: output a user asked to see with secrets in clear is
    shown to them, never stored."""
    if request.args.get("show_secrets") and resp.data:
        return Response(node=resp.node, data="(output with secrets shown: not recorded)",
                        errorcode=resp.errorcode)
    return resp


class Service:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.db = Database.open(paths)
        self.db.check_ready()
        self.jobs = JobStore(self.db)
        self.locks = NodeLocks()
        self._cache_lock = threading.Lock()
        self._cached_at = 0.0
        self._policy: list[dict] = []
        self._site: dict[str, str] = {}
        self._syslog = os.path.exists("/dev/log")  # no syslog daemon: no per-request retries
        load_plugins()

    def close(self) -> None:
        self.jobs.close()

    # ---- cached tables -------------------------------------------------------------------
    def _tables(self) -> tuple[list[dict], dict[str, str]]:
        with self._cache_lock:
            if time.monotonic() - self._cached_at > POLICY_TTL:
                self._policy = self.db.rows("policy")
                self._site = self.db.site()
                self._cached_at = time.monotonic()
            return self._policy, self._site

    def invalidate(self) -> None:
        with self._cache_lock:
            self._cached_at = 0.0

    # ---- one request ---------------------------------------------------------------------
    def new_job(self, request: Request, who: Identity) -> Job:
        request.user, request.client = who.user, who.host
        return self.jobs.new(who.user, request.command, request.noderange,
                             args_text(request.args, request.stdin), who.host, who.clienttype)

    def run(self, job: Job, request: Request, who: Identity,
            emit: Callable[[Response], None] = lambda r: None) -> int:
        """Run a job to its end in this thread; ``emit`` sees each response as it comes."""
        self.jobs.start(job)
        code = 0
        try:
            policy, site = self._tables()
            decision = decide(policy, who, request.command, self._policy_nodes(policy, request),
                              job.args, self._expander(request))
            self._audit(site, who, request, job, "Allowed" if decision.allowed else "Denied")
            if not decision.allowed:
                resp = Response(error=DENIED, errorcode=1)
                self.jobs.result(job, resp)
                emit(resp)
                self.jobs.finish(job, "failed", 1)
                return 1
            spec = load_plugins().get(request.command)
            for resp in dispatch(request, self.paths, locks=self.locks,
                                 owner=f"job {job.jobid} ({request.command} by {who.user})",
                                 cancel=job.cancel, service=self, site=dict(site),
                                 db=self.db):
                if resp.failed:
                    code = code or (resp.errorcode or 1)
                self.jobs.result(job, _recordable(request, resp))
                emit(resp)
            if spec is not None and (spec.writes(request) if callable(spec.writes)
                                     else spec.writes):
                self.invalidate()
        except Exception as exc:  # never leave a job without an end
            log.exception("job %s failed", job.jobid)
            resp = Response(error=f"internal error: {exc}", errorcode=1)
            self.jobs.result(job, resp)
            emit(resp)
            code = 1
        state = "cancelled" if job.cancel.is_set() else ("failed" if code else "done")
        self.jobs.finish(job, state, code)
        return code

    def _policy_nodes(self, policy: list[dict], request: Request) -> set[str] | None:
        """The nodes a request addresses, from its noderange or from its own arguments
        (chdef -o, the REST object path): policy noderanges judge those."""
        if not any(r.get("noderange") for r in policy):
            return None
        spec = load_plugins().get(request.command)
        try:
            ctx = Context(request, self.paths, self.db)
            if request.noderange:
                return set(ctx.expand(request.noderange, verify=False).names)
            if spec is not None and spec.lock_nodes is not None:
                nodes = spec.lock_nodes(request, ctx)
                return set(nodes.names) if nodes is not None else None
        except Exception:
            return UNKNOWN_NODES
        return None

    def _expander(self, request: Request):
        def expand(text: str) -> set[str]:
            return set(Context(request, self.paths, self.db).expand(text, verify=False).names)
        return expand

    def _audit(self, site: dict[str, str], who: Identity, request: Request, job: Job,
               status: str) -> None:
        skip = set(split_list(site.get("auditskipcmds")))
        if status == "Allowed" and ("ALL" in skip or request.command in skip
                                    or f"clienttype:{who.clienttype}" in skip):
            return
        row = {"audittime": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
               "userid": who.user, "clientname": who.host, "clienttype": who.clienttype,
               "command": request.command, "noderange": request.noderange,
               "args": job.args, "status": status, "comments": f"job {job.jobid}"}
        self.jobs.audit(row)
        if self._syslog and (site.get("auditnosyslog") or "0") not in ("1", "yes"):
            syslog.syslog(syslog.LOG_INFO | syslog.LOG_AUTH,
                          f"xcatd: {status} {who.user}@{who.host} {request.command} "
                          f"{request.noderange or ''} {job.args}")
