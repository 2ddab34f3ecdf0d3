"""The node API: the HTTP site nodes boot and install from. ``/install/`` and ``/tftpboot/``
over plain HTTP, each node's iPXE script served as the node fetches it, and the node's
authenticated reports.

xcatd starts it beside its HTTPS port (xcatd.fronts.server), on ``site.httpport`` (default
80) at the address xcatd listens on (``xcatd --listen``, default every address), unless
``site.httpbind`` says otherwise: ``ADDR``, ``ADDR:PORT`` or ``[V6ADDR]:PORT`` (a site that
lets nginx serve the trees binds xcatd to ``127.0.0.1:8080`` and proxies the dynamic paths to
it, see share/nginx/pyxcat.conf), or ``none`` to serve nothing.

What it serves, and what it refuses (the rules are xcatd.base.safepath's, shared with TFTP):

- ``/install/<path>`` from site.installdir and ``/tftpboot/<path>`` from site.tftpdir: regular
  files only, Range requests (aiohttp's FileResponse), never a directory listing, never a
  name starting with ``.`` (temporary and lock files), never a path that leaves the tree
  (``..``, or a symlink pointing out of it), never a file that is not world-readable,
  except a node's own files, below.
- A node's own files: ``/install/autoinst/<node>...`` (its install file: a crypted root
  password and its callback token) go only to the node's own address (hosts.ip), unless
  ``site.httpsourcecheck=no`` (for labs whose nodes get dynamic addresses), and only while
  the node is being installed (chain.currstate ``install ...``); its ``installed`` report
  removes them.
- ``GET /tftpboot/xcat/xnba/nodes/<node>`` and ``POST /xcat/callback/<node>`` (with
  ``Authorization: Bearer <token>`` and the body ``status=installed|booted|failed``) are
  requests of the node's, the ``bootscript`` and ``callback`` commands: they go through the
  request pipeline like any command (policy, audit, job, the node's lock), and
  xcatd.provision.nodereports does the work (install-loop stop, chain moves, token checks).
  A refused report is a 403 and a Denied audit row; the token is never logged.

Behind a reverse proxy the peer address is the proxy's. For a peer listed in
``site.httpproxies`` (and only for such a peer) the client is the one in ``X-Real-IP``;
``X-Forwarded-For`` is never believed (a proxy that only appends to it passes on whatever
the client put there). The proxy must set X-Real-IP itself, overwriting any the client
sent (share/nginx/pyxcat.conf does: ``proxy_set_header X-Real-IP $remote_addr``). Mind
that anyone who can reach the backend port directly can claim any address: a local user
on the management node can connect to ``127.0.0.1:8080`` and send X-Real-IP. So bind the
backend (site.httpbind) where only the proxy can reach it, and a management node with
untrusted local users should not use httpproxies at all (serve xcatd directly on port 80).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from xcatd.base.paths import Paths
from xcatd.base.request import ErrorKind, Request, Response
from xcatd.base.safepath import safe_file, safe_name, world_readable
from xcatd.base.site import SiteValueError, SiteValues
from xcatd.daemon.pipeline import Pipeline
from xcatd.daemon.policy import Identity
from xcatd.db.cluster import Cluster
from xcatd.db.database import split_list
from xcatd.fronts.servicethread import ServiceThread, close_listeners
from xcatd.provision import nodereports
from xcatd.provision.nodereports import STATUSES, plain_ip

log = logging.getLogger("xcatd.fronts.nodeapi")

CALLBACK_MAX = 4096     # bytes of a callback body
ENROL_MAX = 16384       # bytes of an enrolment's certificate request
WORKERS = 8
#: HTTP status of a node request that failed, by the kind of its error
STATUS = {ErrorKind.NOT_FOUND.value: 404, ErrorKind.DENIED.value: 403,
          ErrorKind.BUSY.value: 503, ErrorKind.BAD_REQUEST.value: 400}


def listen_address(site: SiteValues, host: str | None) -> tuple[str | None, int] | None:
    """(address, port) for the HTTP site from site.httpbind / site.httpport, ``host`` (the
    daemon's own listen address) when httpbind names none; None when httpbind=none.
    An address of None or 0.0.0.0 means every address."""
    return site.bind("httpbind", site.httpport(), host)


class HttpSite:
    """The HTTP site of one XCATROOT. ``start`` binds and returns the port; ``stop`` closes.
    Inside xcatd it runs node requests through the daemon's pipeline; on its own (tests,
    the lab, a bench) through a pipeline of its own, with the in-process locks, whose
    records are written before each answer goes out."""

    def __init__(self, paths: Paths, pipeline: Pipeline | None = None,
                 workers: int = WORKERS) -> None:
        self.paths = paths
        self._own_pipeline = pipeline is None
        self.pipeline = pipeline or Pipeline(paths, background=False)
        self.db = self.pipeline.db
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="http")
        self._runner: web.AppRunner | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self.port: int | None = None

    # ---- shared facts ------------------------------------------------------------------------
    def site(self) -> SiteValues:
        return self.pipeline.site()

    def invalidate(self) -> None:
        """Read the site table afresh on the next request."""
        self.pipeline.tables.invalidate()

    def cluster(self) -> Cluster:
        return Cluster(self.paths, self.db, self.site())

    # ---- the application ---------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=ENROL_MAX)
        app.router.add_get("/tftpboot/xcat/xnba/nodes/{node}", self.handle_boot_script,
                           allow_head=False)
        app.router.add_get("/install/{path:.*}", self.handle_install)
        app.router.add_get("/tftpboot/{path:.*}", self.handle_tftpboot)
        app.router.add_post("/xcat/callback/{node}", self.handle_callback)
        app.router.add_get("/xcat/statelite/{node}", self.handle_liteplan)
        app.router.add_post("/xcat/enrol/{node}", self.handle_enrol)
        return app

    async def start(self, host: str | None, port: int) -> int:
        self._runner = web.AppRunner(self.app(), handle_signals=False, access_log=None,
                                     keepalive_timeout=15, shutdown_timeout=1.0)
        await self._runner.setup()
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(self._runner.server, host, port, reuse_address=True)
        self._servers.append(srv)
        self.port = srv.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        await close_listeners(self._servers, self._runner)
        self._runner = None
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self._own_pipeline:
            self.pipeline.close()

    async def _blocking(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    # ---- who is asking -----------------------------------------------------------------------
    def client_ip(self, request: web.Request, site: SiteValues) -> str | None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        ip = plain_ip(peer[0] if peer else None)
        if ip and ip in {plain_ip(p) for p in split_list(site.get("httpproxies"))}:
            ip = plain_ip((request.headers.get("X-Real-IP") or "").strip()) or ip
        return ip

    # ---- static trees ------------------------------------------------------------------------
    async def handle_install(self, request: web.Request) -> web.StreamResponse:
        site = self.site()
        rel = request.match_info["path"]
        path = await self._blocking(safe_file, site.installdir(self.paths), rel)
        if path is None:
            raise web.HTTPNotFound()
        parts = rel.split("/")
        if parts[0] == "autoinst":
            ip = self.client_ip(request, site)
            if not await self._blocking(self._own_install_file, parts, ip):
                raise web.HTTPNotFound()
        elif not world_readable(path):
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": "no-store"}
                                if parts[0] == "autoinst" else None)

    def _own_install_file(self, parts: list[str], ip: str | None) -> bool:
        """An autoinst file goes to its node's address, while the node installs."""
        cluster = self.cluster()
        node = nodereports.autoinst_owner(cluster, parts[1] if len(parts) > 1 else "")
        if node is None or not nodereports.from_node(cluster, node, ip):
            log.warning("refused %s to %s: not the node's address", "/".join(parts), ip)
            raise web.HTTPForbidden()
        if not nodereports.installing(cluster, node):
            log.warning("refused %s to %s: %s is not being installed", "/".join(parts), ip,
                        node)
            return False
        return True

    async def handle_tftpboot(self, request: web.Request) -> web.StreamResponse:
        site = self.site()
        path = await self._blocking(safe_file, site.tftpdir(self.paths),
                                    request.match_info["path"])
        if path is None or not world_readable(path):
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    # ---- the node's own requests, through the pipeline ------------------------------------
    def run(self, command: str, node: str, ip: str | None, args: dict[str, Any]
            ) -> list[Response]:
        """Run one of the node's requests as a job of the node (in a worker thread)."""
        who = Identity(node[:64], ip or "?", "node")
        req = Request(command, args={"node": node, **args}, user=who.user, client=who.host)
        return list(self.pipeline.stream(req, who))

    async def handle_boot_script(self, request: web.Request) -> web.Response:
        node = request.match_info["node"]
        if not safe_name(node):
            raise web.HTTPNotFound()
        ip = self.client_ip(request, self.site())
        out = await self._blocking(self.run, "bootscript", node, ip, {})
        failed = [r for r in out if r.error]
        if failed:
            raise _http(failed[0])
        script = next((r.obj["script"] for r in out if r.obj and "script" in r.obj), None)
        if script is None:
            raise web.HTTPNotFound()
        return web.Response(text=script, content_type="text/plain",
                            headers={"Cache-Control": "no-store"})

    async def handle_callback(self, request: web.Request) -> web.Response:
        node = request.match_info["node"]
        ip = self.client_ip(request, self.site())
        try:
            body = await asyncio.wait_for(request.read(), 30)
        except (web.HTTPRequestEntityTooLarge, TimeoutError):
            raise web.HTTPBadRequest(text="bad request\n") from None
        if len(body) > CALLBACK_MAX:
            raise web.HTTPBadRequest(text="bad request\n")
        form = parse_qs(body.decode("utf-8", "replace"))
        status = (form.get("status") or [""])[0].strip()
        # why a boot failed, as the node says it (the diskless initrd's FAILED line)
        reason = "".join(c for c in (form.get("reason") or [""])[0] if c.isprintable())
        if status not in STATUSES:
            raise web.HTTPBadRequest(text=f"status must be one of {', '.join(STATUSES)}\n")
        if not safe_name(node):
            raise web.HTTPForbidden(text="forbidden\n")
        args = {"status": status, "token": _bearer(request)}
        if reason.strip():
            args["reason"] = reason.strip()[:MAX_REASON]
        out = await self._blocking(self.run, "callback", node, ip, args)
        failed = [r for r in out if r.error]
        if failed:
            log.warning("callback for %s from %s refused: %s", node, ip, failed[0].error)
            raise _http(failed[0], "forbidden\n" if failed[0].kind == "denied" else None)
        note = "; ".join(r.warning for r in out if r.warning and r.node == node)
        return web.Response(text=f"ok: {note}\n" if note else "ok\n")

    async def handle_liteplan(self, request: web.Request) -> web.Response:
        """GET /xcat/statelite/<node> with the boot's bearer token: the node's statelite
        plan (xcatd.provision.statelite.node_plan), never cached."""
        node = request.match_info["node"]
        if not safe_name(node):
            raise web.HTTPForbidden(text="forbidden\n")
        ip = self.client_ip(request, self.site())
        out = await self._blocking(self.run, "liteplan", node, ip, {"token": _bearer(request)})
        failed = [r for r in out if r.error]
        if failed:
            log.warning("statelite plan for %s from %s refused: %s", node, ip, failed[0].error)
            raise _http(failed[0], "forbidden\n" if failed[0].kind == "denied" else None)
        plan = next((r.obj["plan"] for r in out if r.obj and "plan" in r.obj), None)
        if plan is None:
            raise web.HTTPNotFound()
        return web.Response(text=plan, content_type="text/plain",
                            headers={"Cache-Control": "no-store"})

    async def handle_enrol(self, request: web.Request) -> web.Response:
        """POST /xcat/enrol/<node> with the boot's bearer token and a PEM certificate
        request: the node's certificate, the CA and where xcatd listens (JSON), once per
        token (xcatd.provision.nodeidentity)."""
        node = request.match_info["node"]
        if not safe_name(node):
            raise web.HTTPForbidden(text="forbidden\n")
        ip = self.client_ip(request, self.site())
        try:
            body = await asyncio.wait_for(request.read(), 30)
        except (web.HTTPRequestEntityTooLarge, TimeoutError):
            raise web.HTTPBadRequest(text="bad request\n") from None
        out = await self._blocking(self.run, "enrol", node, ip, {
            "token": _bearer(request), "csr": body.decode("ascii", "replace")})
        failed = [r for r in out if r.error]
        if failed:
            log.warning("enrolment of %s from %s refused: %s", node, ip, failed[0].error)
            raise _http(failed[0], "forbidden\n" if failed[0].kind == "denied" else
                        f"{failed[0].error}\n")
        got = next((r.obj for r in out if r.obj and "cert" in r.obj), None)
        if got is None:
            raise web.HTTPInternalServerError(text="internal error\n")
        return web.json_response(got, headers={"Cache-Control": "no-store"})


def _bearer(request: web.Request) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or ""."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


#: How much of a node's reason for a failed boot is kept
MAX_REASON = 300


def _http(failed: Response, text: str | None = None) -> web.HTTPException:
    status = STATUS.get(failed.kind or "", 500)
    if status == 503:     # curl --retry tries a 503 again
        return web.HTTPServiceUnavailable(text="busy\n")
    cls, word = {404: (web.HTTPNotFound, "not found"), 403: (web.HTTPForbidden, "forbidden"),
                  400: (web.HTTPBadRequest, "bad request")}.get(
        status, (web.HTTPInternalServerError, "internal error"))
    return cls(text=text or f"{word}\n")


# ---- running it ---------------------------------------------------------------------------------
async def start_site(paths: Paths, pipeline: Pipeline, host: str | None, *,
                     ephemeral: bool = False) -> HttpSite | None:
    """xcatd's hook: start the HTTP site where the site table says (``ephemeral``: on a free
    port at ``host``, for a daemon that was itself asked for a free port). A port that
    cannot be bound, or a bad site.httpbind/httpport, is logged, not fatal: the command
    daemon still works without it."""
    try:
        where = (host, 0) if ephemeral else listen_address(pipeline.site(), host)
    except SiteValueError as exc:
        log.error("HTTP site not served: %s", exc)
        return None
    if where is None:
        log.info("HTTP site disabled (site.httpbind=none)")
        return None
    http = HttpSite(paths, pipeline)
    try:
        port = await http.start(*where)
    except OSError as exc:
        log.error("cannot serve HTTP on %s:%s: %s; nodes cannot boot or install from this "
                  "server until it can (see site.httpbind)", where[0] or "*", where[1], exc)
        await http.stop()
        return None
    log.info("HTTP site on %s:%d", where[0] or "*", port)
    return http


class HttpSiteThread(ServiceThread):
    """The HTTP site on its own event loop in a thread (tests, benchmarks)."""

    def __init__(self, paths: Paths, host: str = "127.0.0.1", port: int = 0) -> None:
        self.site = HttpSite(paths)
        super().__init__(self.site, host, port, name="http")
