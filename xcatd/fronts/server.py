"""xcatd: one persistent server for every command, the REST API and the service nodes.

HTTPS (TLS 1.2+, client certificates from the management node's CA) on site.xcatdport and a
unix socket for root on the management node. A request is JSON; its responses stream back as
newline-delimited JSON, one record per response as soon as it is known, then an end record
with the job id and exit code. Jobs run in a thread pool and go on when their client goes.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from xcatd.base.locks import NodeLocks
from xcatd.base.paths import Paths
from xcatd.base.request import ErrorKind, Request
from xcatd.daemon import relay, watchdog
from xcatd.daemon.dispatch import bounded, dispatch, error
from xcatd.daemon.pipeline import Pipeline
from xcatd.db import servicenodes
from xcatd.db.database import DBError, seal_clear_values, sealed_values_exist
from xcatd.db.sealed import ensure_master_key, key_path
from xcatd.fronts.agentapi import add_agent_routes
from xcatd.fronts.https import (
    IDENTITY,
    MAX_REQUEST,
    PARTS_KEY,
    PIPELINE_KEY,
    POOL_KEY,
    SN_KEY,
    Relay,
    authenticate,
    json_error,
    line,
    read_json,
    watch_client,
)
from xcatd.fronts.nodeapi import start_site
from xcatd.fronts.rest import add_routes
from xcatd.fronts.servicethread import close_listeners
from xcatd.fronts.snapi import add_snjoin_routes
from xcatd.fronts.tftp import start_tftp
from xcatd.handler import Context
from xcatd.provision.agenttasks import board_for
from xcatd.security.credentials import ca_files, server_files
from xcatd.security.snjoin import SnIdentity, load_identity

log = logging.getLogger("xcatd.fronts.server")

DEFAULT_PORT = 3001              # site.xcatdport
HANDSHAKE_TIMEOUT = 10.0         # a connection that never finishes TLS is closed
KEEPALIVE_TIMEOUT = 30.0
WORKERS = 64
SHUTDOWN_TIMEOUT = 2.0           # stop promptly: unfinished jobs are marked interrupted at start
LINGERING_TIME = 1.0             # after an error, unread body bytes are drained this long

class AlreadyRunning(RuntimeError):
    pass


def socket_path(paths: Paths) -> Path:
    return paths.under("/var/run/xcat/xcatd.sock")


def pid_path(paths: Paths) -> Path:
    return paths.daemon_pidfile


# ---- the command endpoint ------------------------------------------------------------------
async def handle_request(request: web.Request) -> web.StreamResponse:
    try:
        body = await read_json(request)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return json_error(400, "the request body is not valid JSON")
    if not isinstance(body, dict) or not isinstance(body.get("request"), dict):
        return json_error(400, 'expected {"request": {"command": ..., ...}}')
    try:
        req = Request.from_dict(body["request"])
        req.validate()
    except TypeError as exc:
        return json_error(400, f"malformed request: {exc}")
    who = request[IDENTITY]
    sn = request.app.get(SN_KEY)
    if sn is not None:
        return json_error(403, f"this xcatd is service node {sn.name}: it runs what its "
                               f"management node ({sn.master}) relays; send commands there")
    pipeline = request.app[PIPELINE_KEY]
    pool = request.app[POOL_KEY]
    job = pipeline.new_job(req, who)  # in memory; the writer thread records it
    headers = {"X-Xcat-Job": job.jobid}
    if body.get("async"):
        pool.submit(pipeline.run, job, req, who)
        return web.Response(body=line({"end": {"job": job.jobid, "state": "queued",
                                                "async": True}}),
                            content_type="application/x-ndjson", headers=headers)
    relay = Relay.start(request.app, job, req, who)
    # A client that goes away cancels its job (as xCAT's xcatd ends the plugin): its BMC
    # logins, locks and slots are freed at once. --async jobs are the ones that outlive
    # their client.
    watch = asyncio.ensure_future(watch_client(request, job))
    try:
        items, finished, code = await relay.take()
        first = [line({"r": item.to_dict()}) for item in items]
        if finished:  # a quick job: headers and all its records in one write
            first.append(_end(job, code))
            return web.Response(body=b"".join(first), content_type="application/x-ndjson",
                                headers=headers)
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", **headers})
        connected = True
        try:
            await resp.prepare(request)
            await resp.write(b"".join(first))
        except (ConnectionResetError, RuntimeError):
            connected = False
            job.cancel.set()
        while not finished:
            items, finished, code = await relay.take()
            chunk = [line({"r": item.to_dict()}) for item in items]
            if finished:
                chunk.append(_end(job, code))
            if connected and chunk:
                try:
                    await resp.write(b"".join(chunk))
                except (ConnectionResetError, RuntimeError):
                    connected = False
                    job.cancel.set()
        if connected:
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await resp.write_eof()
        return resp
    finally:
        watch.cancel()


def _end(job, code: int) -> bytes:
    return line({"end": {"job": job.jobid, "state": job.state, "exitcode": code}})


# ---- a service node: the parts its management node relays ----------------------------------
async def handle_relay(request: web.Request) -> web.StreamResponse:
    """One part of a request, relayed by the management node (its relay certificate; see
    xcatd.daemon.relay): run through dispatch for the nodes this service node still holds,
    streamed back as the command protocol streams, with a keep-alive record while nothing
    else comes, so the management node tells a busy service node from a dead one."""
    sn = request.app.get(SN_KEY)
    if sn is None:
        return json_error(403, "this xcatd is not a service node: it takes no relayed "
                               "requests")
    try:
        body = await read_json(request)
        req, leases, lent, keepalive = relay.check_body(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return json_error(400, "the request body is not valid JSON")
    except (TypeError, ValueError) as exc:
        return json_error(400, f"malformed relayed request: {exc}")
    count = len(leases) or len([n for n in (req.noderange or "").split(",") if n])
    log.info("relayed part: %s", json.dumps({"command": req.command, "nodes": count,
                                             "user": req.user}))
    pipeline, pool = request.app[PIPELINE_KEY], request.app[POOL_KEY]
    cancel = threading.Event()
    parts: dict = request.app[PARTS_KEY]
    parts[cancel] = leases
    pump = Relay(asyncio.get_running_loop())

    def work() -> None:
        code = 0
        try:
            ctx = Context(req, pipeline.paths, pipeline.db, pipeline.site(), daemon=True)
            for resp in relay.serve(sn.name, req, leases, lent, ctx, dispatch=dispatch,
                                    locks=pipeline.locks, cancel=cancel):
                if resp.failed:
                    code = 1
                pump.emit(bounded(resp))
        except Exception as exc:  # one line back, never a dead stream
            log.exception("relayed %s failed", req.command)
            pump.emit(error(f"{req.command} on {sn.name}: internal error: {exc}",
                            ErrorKind.INTERNAL))
            code = 1
        finally:
            pump.close(code)

    pool.submit(work)
    watch = asyncio.ensure_future(watch_client(request, _Cancel(cancel)))
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    try:
        await resp.prepare(request)
        while True:
            try:
                items, finished, code = await asyncio.wait_for(pump.take(), keepalive)
            except TimeoutError:
                await resp.write(line({"k": 1}))
                continue
            chunk = [line({"r": item.to_dict()}) for item in items]
            if finished:  # a part this node gave up (its leases moved, it was paused) has
                # no end: the management node reports its unanswered nodes lost
                why = getattr(cancel, "reason", None)
                chunk.append(line({"lost": why} if why else {"end": {"exitcode": code}}))
            if chunk:
                await resp.write(b"".join(chunk))
            if finished:
                break
        await resp.write_eof()
    except (ConnectionResetError, RuntimeError):
        cancel.set()
    finally:
        watch.cancel()
        parts.pop(cancel, None)
    return resp


@dataclass
class _Cancel:
    cancel: threading.Event


async def handle_ping(request: web.Request) -> web.Response:
    return web.json_response({"xcatd": "ok", "user": request[IDENTITY].user})


def make_app(pipeline: Pipeline, pool: ThreadPoolExecutor,
             servicenode: SnIdentity | None = None) -> web.Application:
    app = web.Application(middlewares=[authenticate], client_max_size=MAX_REQUEST)
    app[PIPELINE_KEY] = pipeline
    app[POOL_KEY] = pool
    app[PARTS_KEY] = {}
    if servicenode is not None:
        app[SN_KEY] = servicenode
    app.router.add_post("/v1/request", handle_request)
    app.router.add_post(relay.RELAY_PATH, handle_relay)
    app.router.add_get("/v1/ping", handle_ping)
    if servicenode is None:  # a service node answers its management node, not admins
        add_routes(app)
        add_snjoin_routes(app)
    add_agent_routes(app)
    return app


# ---- TLS -----------------------------------------------------------------------------------
def server_ssl_context(paths: Paths) -> ssl.SSLContext:
    files = server_files(paths)
    if not files.exists():
        raise FileNotFoundError(f"no server certificate at {files.cred}: run xcatconfig")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca_files(paths)[1]))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(files.cred))
    ctx.verify_mode = ssl.CERT_OPTIONAL  # no certificate: a clear 401, not a bare alert
    return ctx


# ---- running it ----------------------------------------------------------------------------
@dataclass
class Listening:
    host: str
    port: int
    unix: Path | None
    http_port: int | None = None  # the HTTP site nodes boot from (xcatd.fronts.nodeapi)
    tftp_port: int | None = None  # the embedded TFTP server, when it runs (xcatd.fronts.tftp)


class Daemon:
    """xcatd on one XCATROOT. ``start`` binds and returns; ``stop`` closes everything."""

    def __init__(self, paths: Paths, host: str = "0.0.0.0", port: int | None = None,
                 unix: bool = True, workers: int = WORKERS) -> None:
        self.paths, self.host, self.port, self.unix = paths, host, port, unix
        self.workers = workers
        self._pidfile: int | None = None
        self.pipeline: Pipeline | None = None
        self._runner: web.AppRunner | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self.listening: Listening | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.http = None  # xcatd.fronts.nodeapi.HttpSite
        self.tftp = None  # xcatd.fronts.tftp.TftpServer
        self.watchdog = None  # xcatd.daemon.watchdog.Watchdog
        self.servicenode: SnIdentity | None = None  # this xcatd serves as a service node
        self.heart: Heartbeat | None = None
        self.left_running = 0  # jobs still under way at stop, recorded interrupted

    def _lock_pidfile(self) -> None:
        path = pid_path(self.paths)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode().strip() or "?"
            os.close(fd)
            raise AlreadyRunning(f"another xcatd (pid {other}) is already running on "
                                 f"{self.paths.root}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._pidfile = fd

    async def start(self) -> Listening:
        self._lock_pidfile()
        try:
            self.servicenode = load_identity(self.paths)
            if self.servicenode is None:
                created = self._master_key()  # before the pipeline opens the database
                self.pipeline = Pipeline(self.paths, locks=NodeLocks(), daemon=True)
                self._seal_secrets(created)
                interrupted = self.pipeline.jobs.mark_interrupted()
                if interrupted:
                    log.warning("%d jobs of a previous xcatd were marked interrupted",
                                interrupted)
            else:  # no master key, no job history of its own: both are the MN's
                self.pipeline = Pipeline(self.paths, locks=NodeLocks(), daemon=True,
                                         purge=False)
            port = self.port if self.port is not None else \
                self.pipeline.site().port("xcatdport", DEFAULT_PORT)
            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="job")
            app = make_app(self.pipeline, self.pool, self.servicenode)
            self._app = app
            self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                         keepalive_timeout=KEEPALIVE_TIMEOUT,
                                         lingering_time=LINGERING_TIME,
                                         shutdown_timeout=SHUTDOWN_TIMEOUT)
            await self._runner.setup()
            loop = asyncio.get_running_loop()
            tcp = await loop.create_server(self._runner.server, self.host, port,
                                           ssl=server_ssl_context(self.paths),
                                           ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
                                           reuse_address=True)
            self._servers.append(tcp)
            board_for(self.paths.root).attach(loop)   # node agents' tasks (updatenode)
            bound = tcp.sockets[0].getsockname()[1]
            if self.servicenode is None:
                self.watchdog = watchdog.start(self.paths)  # nodes silent too long: failed
            else:
                self.heart = Heartbeat(self.pipeline.db, self.servicenode, bound,
                                       app[PARTS_KEY])
                self.heart.start()
            upath = None
            if self.unix:
                upath = socket_path(self.paths)
                with contextlib.suppress(FileNotFoundError):
                    upath.unlink()
                old = os.umask(0o177)
                try:
                    self._servers.append(await loop.create_unix_server(self._runner.server,
                                                                       str(upath)))
                finally:
                    os.umask(old)
                os.chmod(upath, 0o600)  # root on the management node only
            # port 0 (tests): free ports for the HTTP site and TFTP too
            self.http = await start_site(self.paths, self.pipeline, self.host,
                                         ephemeral=self.port == 0)
            self.tftp = await start_tftp(self.paths, self.pipeline, self.host,
                                         ephemeral=self.port == 0)
            self.listening = Listening(self.host, bound, upath,
                                       self.http.port if self.http else None,
                                       self.tftp.port if self.tftp else None)
            return self.listening
        except BaseException:
            await self.stop()
            raise

    def _master_key(self) -> bool:
        """xcatconfig's master key, made here too for an xcatd upgraded before xcatconfig
        ran again; one that cannot be made is logged (secrets then stay clear)."""
        try:
            return ensure_master_key(self.paths, lambda: sealed_values_exist(self.paths))
        except OSError as exc:
            log.error("cannot create the master key %s: %s", key_path(self.paths),
                      exc.strerror)
            return False
        except DBError as exc:  # lost: reads of secrets say so until it is restored
            log.error("%s", exc)
            return False

    def _seal_secrets(self, created: bool) -> None:
        """Seal the secrets an older pyxcat stored clear; a failure is logged, clear values
        keep working."""
        if created:
            log.warning("created the master key for secrets at rest: %s",
                        key_path(self.paths))
        if not self.pipeline.db.sealer.has_key:
            return
        try:
            sealed = seal_clear_values(self.pipeline.db)
        except (DBError, SQLAlchemyError) as exc:
            log.error("could not encrypt the secrets stored clear: %s",
                      (str(exc).splitlines() or [""])[0])
            return
        if sealed:
            log.info("encrypted %d secret values", sealed)

    async def stop(self) -> None:
        """Stop in order: the ports close (requests under way get SHUTDOWN_TIMEOUT to end,
        then their connections close), queued jobs never start, the jobs still under way are
        recorded interrupted, the job writer writes what it holds and stops, and those jobs
        are told to stop at their next response. Their threads are not waited for:
        ``left_running`` says how many there were (see serve_forever)."""
        if self.tftp is not None:
            await self.tftp.stop()
            self.tftp = None
        if self.http is not None:
            await self.http.stop()
            self.http = None
        board_for(self.paths.root).detach()
        if self.heart is not None:
            self.heart.stop()
            self.heart = None
        if self.watchdog is not None:
            self.watchdog.stop(timeout=5)
            self.watchdog = None
        await close_listeners(self._servers, self._runner)
        self._runner = None
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        if self.pipeline is not None:
            jobs = self._interrupt_jobs()
            self.pipeline.close()
            self.pipeline = None
            for job in jobs:  # after the writer has stopped: their records stay interrupted
                job.cancel.set()
        if self.listening and self.listening.unix:
            with contextlib.suppress(FileNotFoundError):
                self.listening.unix.unlink()
        if self._pidfile is not None:
            with contextlib.suppress(OSError):
                pid_path(self.paths).unlink()
            os.close(self._pidfile)
            self._pidfile = None

    def _interrupt_jobs(self) -> list:
        """The live jobs, recorded interrupted (a database that cannot be written is logged:
        the next start marks them)."""
        jobs = self.pipeline.jobs
        try:
            interrupted = jobs.interrupt_live()
        except Exception as exc:  # one line, no traceback: xcatd is stopping all the same
            interrupted = list(jobs.live.values())
            log.error("could not record %d jobs under way as interrupted (the next start "
                      "will): %s: %s", len(interrupted), exc.__class__.__name__,
                      (str(exc).splitlines() or [""])[0])
        else:
            if interrupted:
                log.warning("%d jobs under way were recorded as interrupted: %s%s",
                            len(interrupted), " ".join(j.jobid for j in interrupted[:10]),
                            " ..." if len(interrupted) > 10 else "")
        self.left_running += len(interrupted)
        return interrupted


class Heartbeat(threading.Thread):
    """A service node's heartbeat: its row in snstatus (its address and port, the time),
    three times per site.snheartbeattimeout. A beat that comes later than the timeout (the
    process was paused, or the database was out of reach) means the management node may
    have given this node's leases to another: every relayed part under way is cancelled.
    At each beat the parts under way are fenced again: one whose leases moved meanwhile
    (snmove, a failover) is cancelled, and the next part is fenced when it starts."""

    def __init__(self, db, sn: SnIdentity, port: int, parts: dict) -> None:
        super().__init__(name="sn-heartbeat", daemon=True)
        self.db, self.sn, self.port, self.parts = db, sn, port, parts
        self._halt = threading.Event()

    def run(self) -> None:
        last_ok: float | None = None
        while not self._halt.is_set():
            try:
                timeout = servicenodes.heartbeat_timeout(self.db)
            except (DBError, SQLAlchemyError):
                timeout = servicenodes.DEFAULT_HEARTBEAT_TIMEOUT
            now = time.monotonic()
            if last_ok is not None and now - last_ok > timeout:
                log.warning("service node %s: no heartbeat for %.0f s (over %g s): "
                            "cancelling %d relayed parts under way", self.sn.name,
                            now - last_ok, timeout, len(self.parts))
                for cancel in list(self.parts):
                    cancel.reason = (f"{self.sn.name} missed its heartbeats for "
                                     f"{now - last_ok:.0f} s")
                    cancel.set()
            try:
                servicenodes.heartbeat(self.db, self.sn.name, self.sn.address,
                                       self.sn.port or self.port)
                last_ok = time.monotonic()
                for cancel, leases in list(self.parts.items()):
                    if leases and servicenodes.fence(self.db, self.sn.name, leases):
                        log.warning("service node %s: the leases of a relayed part moved: "
                                    "cancelled", self.sn.name)
                        cancel.reason = f"the leases of {self.sn.name}'s part moved"
                        cancel.set()
            except (DBError, SQLAlchemyError) as exc:
                log.error("service node %s: heartbeat not recorded: %s", self.sn.name,
                          (str(exc).splitlines() or [""])[0])
            self._halt.wait(relay.keepalive_interval(timeout))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def serve_forever(paths: Paths, host: str, port: int | None, ready=None) -> None:
    """Run in the foreground until SIGTERM/SIGINT (systemd Type=simple), then stop in order
    (Daemon.stop) and exit. Jobs still under way were recorded interrupted, so the exit does
    not wait for their threads (a BMC that never answers holds one for minutes): the process
    ends with os._exit once the logs are flushed (BMC sessions are not logged out then: the
    BMCs time them out)."""
    left_running = 0

    async def main() -> None:
        nonlocal left_running
        daemon = Daemon(paths, host, port)
        listening = await daemon.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("xcatd listening on %s:%d and %s", listening.host, listening.port,
                 listening.unix)
        if ready:
            ready(listening)
        await stop.wait()
        log.info("xcatd stopping")
        await daemon.stop()
        left_running = daemon.left_running

    asyncio.run(main())
    log.info("xcatd stopped")
    if left_running:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)
