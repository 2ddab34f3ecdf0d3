"""The request pipeline: the one path every request takes, whatever front it came through.

    identify (the front) -> authorize (policy) -> audit -> job -> per-node locks -> handler

The fronts (the command protocol, XCATBYPASS, REST, the node API) and the toolkit's own calls
(fence_node) only say who is asking (an Identity) and hand over a Request; everything after
that is here, so nothing runs without a policy decision, an audit row and a job record.
Inside xcatd one Pipeline serves every front; a process without xcatd (XCATBYPASS, tools)
makes its own with ``Pipeline.local``, which writes its records when a request ends.
"""
from __future__ import annotations

import datetime
import logging
import os
import pwd
import syslog
import threading
from collections.abc import Callable, Iterator

from xcatd.base.locks import NodeLocks
from xcatd.base.paths import Paths
from xcatd.base.patterns import DEFAULT_BUDGET, end_budget, start_budget
from xcatd.base.request import ErrorKind, Request, Response, XcatError
from xcatd.base.site import SiteValueError, SiteValues
from xcatd.daemon.dispatch import bounded, dispatch, error
from xcatd.daemon.policy import DENIED, UNKNOWN_NODES, Decision, Identity, args_text, decide
from xcatd.db.cache import TableCache
from xcatd.db.database import Database, DBError, split_list
from xcatd.db.jobs import RESULT_BUDGET, Job, JobStore
from xcatd.handler import NODE_ORIGIN, CommandSpec, Context, registry
from xcatd.handler import spec as command_spec
from xcatd.security.snjoin import load_identity

log = logging.getLogger("xcatd.daemon.pipeline")

#: seconds between job purges of a pipeline that never purges (a service node's)
NEVER = 1e9
POLICY_TTL = 1.0  # seconds a read of the policy/site tables is reused (writes reset it)
#: Requests one user may have running at once in xcatd (site.maxuserrequests), so one
#: user's scripts cannot take every worker.
DEFAULT_USER_REQUESTS = 32

#: Fronts whose requests run in this process: root's are trusted (see Pipeline._decide)
ROOT_IN_PROCESS = ("bypass", "internal")
#: Locks of the requests run in this process without xcatd (XCATBYPASS, tools, tests): the
#: daemon has its own.
LOCAL_LOCKS = NodeLocks()


def current_user() -> str:
    """The real user of this process (not $LOGNAME: a root shell after plain ``su`` keeps
    the old one)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _recordable(request: Request, resp: Response) -> Response:
    """What the job record keeps: output a user asked to see with secrets in clear is
    shown to them, never stored."""
    if request.args.get("show_secrets") and resp.data:
        return Response(node=resp.node, data="(output with secrets shown: not recorded)",
                        errorcode=resp.errorcode)
    return resp


class Pipeline:
    def __init__(self, paths: Paths, *, locks: NodeLocks | None = None,
                 background: bool = True, daemon: bool = False,
                 record_output: bool = True, purge: bool = True) -> None:
        self.paths = paths
        self.db = Database.open(paths)
        self.db.check_ready()
        self.tables = TableCache(self.db, POLICY_TTL)
        sn = load_identity(paths)
        #: the service node this pipeline runs on (None: the management node): every
        #: request's context knows it (what it serves, its own address for its nodes)
        self.servicenode = sn.name if sn else None
        # a service node's xcatd never purges: the job history is the management node's
        self.jobs = JobStore(self.db, background=background,
                             **({} if purge else {"purge_interval": NEVER}))
        self.locks = locks or LOCAL_LOCKS
        #: True for xcatd's pipeline: its job store sees every live job
        self.daemon = daemon
        #: keep the output lines in the job record (a command run in process prints them to
        #: its terminal and records its errors and warnings only)
        self.record_output = record_output
        self._syslog = os.path.exists("/dev/log")  # no syslog daemon: no per-request retries
        self._running: dict[str, int] = {}          # user -> requests running (xcatd only)
        self._running_lock = threading.Lock()
        if daemon:
            registry()  # every plugin, once, before the first request

    @classmethod
    def local(cls, paths: Paths | None = None) -> Pipeline:
        """A pipeline for this process alone (XCATBYPASS, tools): the in-process locks,
        records written at the end of each request, the output lines left to the terminal
        (errors and warnings are recorded)."""
        return cls(paths or Paths(), background=False, record_output=False)

    def close(self) -> None:
        self.jobs.close()

    def site(self) -> SiteValues:
        return self.tables.site()

    # ---- one request ---------------------------------------------------------------------
    def new_job(self, request: Request, who: Identity) -> Job:
        request.user, request.client = who.user, who.host
        if not self.record_output:
            budget, why = 0, "run in process: the output went to its terminal"
        else:
            why = "over site.jobresultsmax bytes"
            try:
                budget = self.site().integer("jobresultsmax", RESULT_BUDGET, low=0)
            except SiteValueError:
                budget = RESULT_BUDGET
        return self.jobs.new(who.user, request.command, request.noderange,
                             args_text(request.args, request.stdin), who.host, who.clienttype,
                             budget, why)

    def stream(self, request: Request, who: Identity) -> Iterator[Response]:
        """Run a request as a job of ``who`` in this thread, yielding its responses."""
        yield from self.execute(self.new_job(request, who), request, who)

    def run(self, job: Job, request: Request, who: Identity,
            emit: Callable[[Response], None] = lambda r: None) -> int:
        """Run a job to its end in this thread; ``emit`` sees each response as it comes.
        Returns the exit code."""
        for resp in self.execute(job, request, who):
            emit(resp)
        return job.exitcode or 0

    def execute(self, job: Job, request: Request, who: Identity) -> Iterator[Response]:
        """The job's steps; it is recorded as ended however the caller stops iterating."""
        self.jobs.start(job)
        code, denied, audit_after = 0, [], False
        spec = command_spec(request.command)
        site = SiteValues()
        matching = None  # every regex of the request shares one time budget (patterns)
        counted = False  # the request counts against its user's site.maxuserrequests
        try:
            policy, site = self.tables.policy(), self.site()
            matching = start_budget(site.number("regextimeout", DEFAULT_BUDGET, low=0.01))
            decision = self._decide(policy, who, request, job)
            busy = self._enter(who, site) if decision.allowed else None
            counted = self.daemon and decision.allowed and not busy
            if busy:
                decision = Decision(False, "busy", None)
            audit_after = decision.allowed and spec is not None and spec.authenticates
            if not audit_after:
                self._audit(site, who, request, job,
                            "Allowed" if decision.allowed else "Denied", busy or "")
                if self.jobs.inline:
                    self.jobs.flush()  # the audit row stays, whatever happens next
            if busy:
                code = 1
                yield self._record(job, request, error(busy, ErrorKind.BUSY))
                return
            if not decision.allowed:
                code = 1
                yield self._record(job, request, error(DENIED, ErrorKind.DENIED))
                return
            ctx = Context(request, self.paths, self.db, site, jobs=self.jobs,
                          daemon=self.daemon,
                          may_see_secrets=lambda: self._secrets_allowed(policy, who, request))
            ctx.servicenode = self.servicenode
            for resp in dispatch(spec, request, ctx, locks=self.locks,
                                 owner=f"job {job.jobid} ({request.command} by {who.user})",
                                 cancel=job.cancel, origin=who.clienttype):
                if resp.failed:
                    code = code or (resp.errorcode or 1)
                    if resp.kind == ErrorKind.DENIED:
                        denied.append(resp.error or "")
                yield self._record(job, request, resp)
            if spec is not None and _changed(spec, request):
                self.tables.invalidate()
        except GeneratorExit:
            code = code or 1
            raise
        except Exception as exc:  # never leave a job without an end
            log.exception("job %s failed", job.jobid)
            code = 1
            yield self._record(job, request, error(f"internal error: {exc}",
                                                   ErrorKind.INTERNAL))
        finally:
            if matching is not None:
                end_budget(matching)
            if counted:
                self._leave(who)
            if audit_after:  # the handler checked the caller's proof: say how that went
                self._audit(site, who, request, job, "Denied" if denied else "Allowed",
                            "; ".join(denied) or self._notes(job))
            state = "cancelled" if job.cancel.is_set() else ("failed" if code else "done")
            self.jobs.finish(job, state, code)
            if self.jobs.inline:
                self.jobs.flush()

    def _decide(self, policy: list[dict], who: Identity, request: Request, job: Job
                ) -> Decision:
        """The policy table's decision; root's own requests in process (XCATBYPASS, the
        toolkit's calls) are trusted: root holds the database file anyway, and a broken
        policy table must stay repairable without xcatd."""
        if who.user == "root" and who.clienttype in ROOT_IN_PROCESS:
            return Decision(True, "trusted", None)
        return decide(policy, who, request.command, self._policy_nodes(policy, request),
                      job.args, self._expander(request))

    def _enter(self, who: Identity, site: SiteValues) -> str | None:
        """Count a request of ``who`` as running in xcatd; why not, when the user has
        site.maxuserrequests running already. Requests run in process are not counted
        (each process runs its own)."""
        if not self.daemon:
            return None
        try:
            cap = site.integer("maxuserrequests", DEFAULT_USER_REQUESTS, low=1)
        except SiteValueError:
            cap = DEFAULT_USER_REQUESTS
        with self._running_lock:
            now = self._running.get(who.user, 0)
            if now >= cap:
                return (f"{who.user} has {now} requests running, as many as "
                        "site.maxuserrequests allows: wait for one to end")
            self._running[who.user] = now + 1
        return None

    def _leave(self, who: Identity) -> None:
        with self._running_lock:
            left = self._running.get(who.user, 1) - 1
            if left > 0:
                self._running[who.user] = left
            else:
                self._running.pop(who.user, None)

    def _secrets_allowed(self, policy: list[dict], who: Identity, request: Request) -> bool:
        """Whether policy lets ``who`` run this request with show_secrets: the one right that
        both shows secrets and allows comparisons on them (selectors, -w, filters)."""
        if who.user == "root" and who.clienttype in ROOT_IN_PROCESS:
            return True
        shown = {**request.args, "show_secrets": True}
        return decide(policy, who, request.command, self._policy_nodes(policy, request),
                      args_text(shown, request.stdin), self._expander(request)).allowed

    def _record(self, job: Job, request: Request, resp: Response) -> Response:
        if resp.progress is not None:  # for a terminal, now; never part of the record
            return resp
        resp = bounded(resp)
        self.jobs.result(job, _recordable(request, resp))
        return resp

    @staticmethod
    def _notes(job: Job) -> str:
        return "; ".join(r.warning or r.error or "" for r in job.results
                         if r.warning or r.error)

    def _policy_nodes(self, policy: list[dict], request: Request) -> set[str] | None:
        """The nodes a request addresses, from its noderange or from its own arguments
        (chdef -o, the REST object path): policy noderanges judge those."""
        if not any(r.get("noderange") for r in policy):
            return None
        spec = command_spec(request.command)
        try:
            ctx = Context(request, self.paths, self.db, self.site())
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
            ctx = Context(request, self.paths, self.db, self.site())
            return set(ctx.expand(text, verify=False).names)
        return expand

    def _audit(self, site: SiteValues, who: Identity, request: Request, job: Job,
               status: str, note: str = "") -> None:
        skip = set(split_list(site.get("auditskipcmds")))
        if status == "Allowed" and ("ALL" in skip or request.command in skip
                                    or f"clienttype:{who.clienttype}" in skip):
            return
        comments = f"job {job.jobid}" + (f": {note}" if note else "")
        # a node's own request names the node in its arguments (one name, never a range)
        noderange = request.noderange or (request.args.get("node")
                                          if who.clienttype == NODE_ORIGIN else None)
        row = {"audittime": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
               "userid": who.user[:128], "clientname": who.host, "clienttype": who.clienttype,
               "command": request.command, "noderange": noderange,
               "args": job.args, "status": status, "comments": comments[:1024]}
        self.jobs.audit(row)
        try:
            to_syslog = self._syslog and not site.flag("auditnosyslog", False)
        except SiteValueError:
            to_syslog = self._syslog
        if to_syslog:
            syslog.syslog(syslog.LOG_INFO | syslog.LOG_AUTH,
                          f"xcatd: {status} {who.user}@{who.host} {request.command} "
                          f"{request.noderange or ''} {job.args}")


def _changed(spec: CommandSpec, request: Request) -> bool:
    """Whether the request may have changed the tables (one whose words do not say is
    refused by dispatch before it runs: then nothing changed)."""
    try:
        return spec.changes_nodes(request)
    except XcatError:
        return False


def run_local(request: Request, paths: Paths | None = None, user: str | None = None,
              clienttype: str = "bypass") -> Iterator[Response]:
    """Run one request in this process through its own pipeline (XCATBYPASS, tools), as
    ``user`` (default: this process's real user)."""
    try:
        pipeline = Pipeline.local(paths)
    except (DBError, XcatError) as exc:
        yield error(str(exc), getattr(exc, "kind", ErrorKind.CONFLICT))
        return
    try:
        yield from pipeline.stream(request, Identity(user or current_user(), "localhost",
                                                     clienttype))
    finally:
        pipeline.close()

