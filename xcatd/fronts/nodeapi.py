"""The HTTP site nodes boot and install from: ``/install/`` and ``/tftpboot/`` over plain HTTP,
each node's iPXE script served dynamically, and the authenticated install callback.

xcatd starts it beside its HTTPS port (xcatd.fronts.server), on ``site.httpport`` (default 80) at
the address xcatd listens on (``xcatd --listen``, default every address), unless
``site.httpbind`` says otherwise: ``ADDR``, ``ADDR:PORT`` or ``[V6ADDR]:PORT`` (a site that
lets nginx serve the trees binds xcatd to ``127.0.0.1:8080`` and proxies the dynamic paths to
it, see share/nginx/pyxcat.conf), or ``none`` to serve nothing.

What it serves, and what it refuses:

- ``/install/<path>`` from site.installdir and ``/tftpboot/<path>`` from site.tftpdir: regular
  files only, Range requests (aiohttp's FileResponse), never a directory listing, never a
  name starting with ``.`` (temporary and lock files), never a path that leaves the tree
  (``..``, or a symlink pointing out of it), never a file that is not world-readable,
  except a node's own files, below.
- A node's own files: ``/install/autoinst/<node>...`` (its install file: a crypted root
  password and its callback token) and ``/tftpboot/xcat/xnba/nodes/<node>`` (its boot script)
  go only to the node's own address (hosts.ip), unless ``site.httpsourcecheck=no`` (for labs
  whose nodes get dynamic addresses). The install files go out only while the node is
  being installed (chain.currstate ``install ...``), and its ``installed`` report removes
  them: once the node is up, a local user on it cannot fetch the root password's hash.
- ``/tftpboot/xcat/xnba/nodes/<node>`` is answered by the daemon, so it sees every network
  boot: a fetch while chain.currstate is ``install ...`` counts one install boot (bootstate)
  and sets nodelist.status ``installing``; in state ``boot`` the status becomes ``booting``.
  More install boots than ``site.maxinstallboots`` (default 3) without a report from the
  node: status ``failed``, chain set to ``boot``, and the node gets the local-boot script
  (no endless install loop).
- ``POST /xcat/callback/<node>`` with ``Authorization: Bearer <token>`` and the body
  ``status=installed|booted|failed``: the token nodeset put on the node's kernel command
  line (only its SHA-256 is stored) and, unless site.httpsourcecheck=no, the node's own
  address. ``installed`` moves the chain along (to ``boot``: the next boot is from disk) and
  retires the token; ``failed`` sets the chain to ``boot`` and retires it; ``booted`` only
  sets the status. Any mismatch is a 403 and a Denied line in the audit log; the token is
  never logged. Every report is audited, whatever happens after the check.
- A genuine report is always answered 200, even when its chain cannot move along (the
  next state names an osimage that is gone, an unknown state word set with chtab, a bare
  ``osimage`` with no provmethod, a write or database failure): the installer's
  ``curl -f`` in %post (--erroronfail) would otherwise abort an install that succeeded. The
  node is then set to ``boot`` instead, its status recorded and its token retired, and the
  body says what happened (``ok: ...``); the error is logged and in the audit row.

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
import datetime
import hmac
import ipaddress
import logging
import os
import shutil
import stat as stat_mod
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from xcatd.base.paths import Paths
from xcatd.db.database import Database, split_list
from xcatd.base.locks import LockTimeout, NodeLocks
from xcatd.fronts.servicethread import ServiceThread, close_listeners

log = logging.getLogger("xcatd.http")

DEFAULT_PORT = 80
DEFAULT_MAX_INSTALL_BOOTS = 3
SITE_TTL = 2.0          # seconds a read of the site table is reused
LOCK_TIMEOUT = 30.0     # a boot fetch or callback waits this long for a nodeset on its node
CALLBACK_MAX = 4096     # bytes of a callback body
STATUSES = ("installed", "booted", "failed")
WORKERS = 8


def _yes(value: str | None, default: bool = True) -> bool:
    if value is None or not value.strip():
        return default
    return value.strip().lower() not in ("0", "n", "no", "off", "false")


def listen_address(site: dict[str, str], host: str | None) -> tuple[str | None, int] | None:
    """(address, port) for the HTTP site from site.httpbind / site.httpport, ``host`` (the
    daemon's own listen address) when httpbind names none; None when httpbind=none.
    An address of None or 0.0.0.0 means every address."""
    port = int(site.get("httpport") or DEFAULT_PORT)
    bind = (site.get("httpbind") or "").strip()
    if bind.lower() in ("none", "off", "no"):
        return None
    if not bind:
        return (None if host in (None, "", "0.0.0.0") else host), port
    if bind.startswith("["):
        addr, _, rest = bind[1:].partition("]")
        return addr, int(rest[1:]) if rest.startswith(":") else port
    if bind.count(":") == 1:
        addr, _, p = bind.partition(":")
        return (addr or None), int(p)
    return bind, port


def _plain_ip(addr: str | None) -> str | None:
    """10.0.0.1 for ::ffff:10.0.0.1 (a dual-stack socket's view of an IPv4 peer)."""
    if not addr:
        return None
    try:
        ip = ipaddress.ip_address(addr.split("%")[0])
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


class HttpSite:
    """The HTTP site of one XCATROOT. ``start`` binds and returns the port; ``stop`` closes.
    Inside xcatd it shares the daemon's node locks and audit writer (``service``); on its
    own (tests, a bench) it uses the in-process locks of XCATBYPASS commands."""

    def __init__(self, paths: Paths, service: Any = None, locks: NodeLocks | None = None,
                 workers: int = WORKERS) -> None:
        self.paths = paths
        self.service = service
        self.db = service.db if service is not None else Database.open(paths)
        if locks is None:
            from xcatd.daemon.dispatch import _LOCAL_LOCKS
            locks = service.locks if service is not None else _LOCAL_LOCKS
        self.locks = locks
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="http")
        self._site: dict[str, str] = {}
        self._site_at = 0.0
        self._site_lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self.port: int | None = None

    # ---- cached facts ------------------------------------------------------------------------
    def site(self) -> dict[str, str]:
        with self._site_lock:
            if time.monotonic() - self._site_at > SITE_TTL:
                self._site = self.db.site()
                self._site_at = time.monotonic()
            return self._site

    def invalidate(self) -> None:
        """Read the site table afresh on the next request."""
        with self._site_lock:
            self._site_at = 0.0

    def installdir(self, site: dict[str, str]) -> Path:
        return self.paths.under(site.get("installdir") or "/install")

    def tftpdir(self, site: dict[str, str]) -> Path:
        return self.paths.under(site.get("tftpdir") or "/tftpboot")

    # ---- the application ---------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=CALLBACK_MAX)
        app.router.add_get("/tftpboot/xcat/xnba/nodes/{node}", self.handle_boot_script,
                           allow_head=False)
        app.router.add_get("/install/{path:.*}", self.handle_install)
        app.router.add_get("/tftpboot/{path:.*}", self.handle_tftpboot)
        app.router.add_post("/xcat/callback/{node}", self.handle_callback)
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

    async def _blocking(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    # ---- who is asking -----------------------------------------------------------------------
    def client_ip(self, request: web.Request, site: dict[str, str]) -> str | None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        ip = _plain_ip(peer[0] if peer else None)
        if ip and ip in {_plain_ip(p) for p in split_list(site.get("httpproxies"))}:
            ip = _plain_ip((request.headers.get("X-Real-IP") or "").strip()) or ip
        return ip

    def node_ip(self, node: str) -> tuple[bool, str | None]:
        """(is a node, its hosts.ip)."""
        groups = self.db.node_groups([node])
        if node not in groups:
            return False, None
        values = self.db.resolve([node], {"hosts": ["ip"]}, groups=groups)
        return True, values[node].get(("hosts", "ip"))

    def owner_allowed(self, node: str, ip: str | None, site: dict[str, str]) -> bool:
        if not _yes(site.get("httpsourcecheck")):
            return True
        exists, want = self.node_ip(node)
        return exists and want is not None and _plain_ip(want) == ip

    # ---- static trees ------------------------------------------------------------------------
    async def handle_install(self, request: web.Request) -> web.StreamResponse:
        site = self.site()
        rel = request.match_info["path"]
        root = self.installdir(site)
        path = await self._blocking(safe_file, root, rel)
        if path is None:
            raise web.HTTPNotFound()
        parts = rel.split("/")
        if parts[0] == "autoinst":
            node = await self._blocking(self._autoinst_owner, parts[1] if len(parts) > 1
                                        else "")
            ip = self.client_ip(request, site)
            if node is None or not await self._blocking(self.owner_allowed, node, ip, site):
                log.warning("refused %s to %s: not the node's address", rel, ip)
                raise web.HTTPForbidden()
            if not await self._blocking(self.installing, node):
                log.warning("refused %s to %s: %s is not being installed", rel, ip, node)
                raise web.HTTPNotFound()
        elif not world_readable(path):
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": "no-store"}
                                if parts[0] == "autoinst" else None)

    def installing(self, node: str) -> bool:
        """Its install files are for the network only while chain.currstate says install."""
        from xcatd.plugins.nodeset import INSTALL_PREFIX
        values = self.db.resolve([node], {"chain": ["currstate"]})
        return (values[node].get(("chain", "currstate")) or "").startswith(INSTALL_PREFIX)

    def remove_autoinst(self, node: str, site: dict[str, str]) -> None:
        """Remove the node's install files (``<node>``, the ``<node>/`` directory of an
        autoinstall, ``<node>.<anything>`` that is not another node's): they hold the root
        password's hash and the spent token, and are of no use after the install."""
        base = self.installdir(site) / "autoinst"
        try:
            names = [e.name for e in os.scandir(base)
                     if e.name == node or e.name.startswith(node + ".")]
        except FileNotFoundError:
            return
        for name in names:
            if name != node and self._autoinst_owner(name) != node:
                continue
            path = base / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def _autoinst_owner(self, name: str) -> str | None:
        """The node an autoinst file belongs to: its name, or the part before a dot
        (n01, n01.pre)."""
        candidates = [name]
        while "." in candidates[-1]:
            candidates.append(candidates[-1].rsplit(".", 1)[0])
        known = {r["node"] for r in self.db.rows("nodelist", keys=candidates)}
        return next((c for c in candidates if c in known), None)

    async def handle_tftpboot(self, request: web.Request) -> web.StreamResponse:
        site = self.site()
        path = await self._blocking(safe_file, self.tftpdir(site), request.match_info["path"])
        if path is None or not world_readable(path):
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    # ---- the per-node boot script ------------------------------------------------------------
    async def handle_boot_script(self, request: web.Request) -> web.Response:
        node = request.match_info["node"]
        site = self.site()
        ip = self.client_ip(request, site)
        if not _safe_name(node):
            raise web.HTTPNotFound()
        exists, want = await self._blocking(self.node_ip, node)
        if not exists:
            raise web.HTTPNotFound()
        if _yes(site.get("httpsourcecheck")) and (want is None or _plain_ip(want) != ip):
            log.warning("refused the boot script of %s to %s: not the node's address", node, ip)
            raise web.HTTPForbidden()
        try:
            text = await self._blocking(self.boot_fetch, node, site)
        except LockTimeout:
            raise web.HTTPServiceUnavailable(text="busy\n") from None
        if text is None:
            raise web.HTTPNotFound()
        return web.Response(text=text, content_type="text/plain",
                            headers={"Cache-Control": "no-store"})

    def boot_fetch(self, node: str, site: dict[str, str]) -> str | None:
        """Count the fetch, move the status, stop an install loop; the script to serve."""
        from xcatd.plugins import nodeset as ns
        with self.locks.hold({node}, f"boot script of {node}", LOCK_TIMEOUT):
            ctx = self._context(node, site)
            run = ns.NodesetRun(ctx, [node])
            state = run.v(node, "chain", "currstate") or ""
            if state.startswith(ns.INSTALL_PREFIX):
                self._count_install_boot(ctx, run, node, site)
            elif state == "boot":
                self._set_status(node, "booting")
            path = run.tftpdir(node) / "xcat/xnba/nodes" / node
            try:
                return path.read_text()
            except (FileNotFoundError, NotADirectoryError):
                return None

    def _count_install_boot(self, ctx, run, node: str, site: dict[str, str]) -> None:
        from xcatd.plugins import nodeset as ns
        try:
            limit = int(site.get("maxinstallboots") or DEFAULT_MAX_INSTALL_BOOTS)
        except ValueError:
            limit = DEFAULT_MAX_INSTALL_BOOTS
        rows = self.db.rows("bootstate", keys=[node])
        count = int((rows[0].get("installboots") if rows else 0) or 0) + 1
        if count > limit:
            log.warning("%s fetched its install boot script %d times without reporting: "
                        "status failed, booting from disk", node, count)
            for _ in ns.set_states(ctx, {node: ("boot", None)}, dhcp=False,
                                   status={node: "failed"}, run=run):
                pass
            return
        with self.db.begin() as conn:
            self.db.set_rows(conn, "bootstate", {(node,): {
                "installboots": count, "lastfetch": ns.now_text()}})
            self.db.set_rows(conn, "nodelist", {(node,): {
                "status": "installing", "statustime": ns.now_text()}})

    def _set_status(self, node: str, status: str) -> None:
        from xcatd.plugins.nodeset import now_text
        with self.db.begin() as conn:
            self.db.set_rows(conn, "nodelist", {(node,): {"status": status,
                                                          "statustime": now_text()}})

    def _context(self, node: str, site: dict[str, str]):
        from xcatd.daemon.dispatch import Context
        from xcatd.base.request import Request
        return Context(Request("nodeset", node, user="root", client="xcatd-http"), self.paths,
                       db=self.db, site=dict(site))

    # ---- the callback ------------------------------------------------------------------------
    async def handle_callback(self, request: web.Request) -> web.Response:
        node = request.match_info["node"]
        site = self.site()
        ip = self.client_ip(request, site)
        try:
            body = await asyncio.wait_for(request.read(), 30)
        except (web.HTTPRequestEntityTooLarge, TimeoutError):
            raise web.HTTPBadRequest(text="bad request\n") from None
        status = (parse_qs(body.decode("utf-8", "replace")).get("status") or [""])[0].strip()
        if status not in STATUSES:
            raise web.HTTPBadRequest(text=f"status must be one of {', '.join(STATUSES)}\n")
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        try:
            ok, reason = await self._blocking(self.callback, node, status, token, ip, site)
        except LockTimeout:     # curl --retry tries a 503 again
            raise web.HTTPServiceUnavailable(text="busy\n") from None
        if not ok:
            log.warning("callback for %s from %s denied: %s", node, ip, reason)
            raise web.HTTPForbidden(text="forbidden\n")
        return web.Response(text=f"ok: {reason}\n" if reason else "ok\n")

    def callback(self, node: str, status: str, token: str, ip: str | None,
                 site: dict[str, str]) -> tuple[bool, str]:
        """Check the report and act on it, under the node's lock (a replay waits, then
        finds the token retired). Returns (allowed, why not) for a refused report and
        (True, what went wrong, or "") for an accepted one. The audit row is written
        whatever happens."""
        from xcatd.plugins import nodeset as ns
        ok, reason = False, "not a node"
        try:
            if _safe_name(node):
                reason = "the node is busy (a nodeset holds its lock)"
                with self.locks.hold({node}, f"callback of {node}", LOCK_TIMEOUT):
                    reason = "internal error while checking the report"
                    ok, reason = self._check(node, token, ip, site)
                    if ok:
                        reason = self._act(node, status, site, ns)
        finally:
            self._audit(site, node, ip, status, ok, reason)
        return ok, reason

    def _check(self, node: str, token: str, ip: str | None,
               site: dict[str, str]) -> tuple[bool, str]:
        from xcatd.plugins.nodeset import token_hash
        exists, want = self.node_ip(node)
        if not exists:
            return False, "not a node"
        if _yes(site.get("httpsourcecheck")) and (want is None or _plain_ip(want) != ip):
            return False, f"source address {ip} is not the node's (hosts.ip {want or 'unset'})"
        rows = self.db.rows("bootstate", keys=[node])
        stored = (rows[0].get("tokenhash") if rows else None) or ""
        if not token or not stored or not hmac.compare_digest(token_hash(token), stored):
            return False, "bad or retired token"
        return True, ""

    def _act(self, node: str, status: str, site: dict[str, str], ns) -> str:
        """Act on a genuine report; never raises. ``installed`` removes the install files
        and moves the chain along, ``failed`` sets it to ``boot``. Where the chain cannot
        go where it should, the node is set to ``boot`` (its next boot is from its disk);
        where even that fails, the status is still recorded and the token retired. Returns
        what went wrong, for the node and the audit log, or ""."""
        if status == "booted":
            try:
                self._set_status(node, "booted")
            except Exception:
                log.exception("cannot record %s's report %s", node, status)
                return "the report could not be recorded (see xcatd's log)"
            return ""
        note = ""
        if status == "installed":
            try:
                self.remove_autoinst(node, site)
            except Exception as exc:
                log.error("cannot remove the install files of %s: %s", node, exc)
                note = f"its install files could not be removed ({_why(exc, node)})"
            why = self._move_along(node, status, site, ns)
            if not why:
                return note
            log.error("%s reported installed but its chain could not move along (%s): "
                      "setting it to boot", node, why)
            note = _join(note, f"its chain could not move along ({why}); set to boot")
        why = self._move(node, {node: ("boot", None)}, status, site, ns)
        if not why:
            return note
        log.error("%s reported %s but could not be set to boot (%s)", node, status, why)
        note = _join(note, f"it could not be set to boot ({why})")
        try:
            with self.db.begin() as conn:
                self.db.set_rows(conn, "bootstate", {(node,): {"tokenhash": None}})
                self.db.set_rows(conn, "nodelist", {(node,): {"status": status,
                                                              "statustime": ns.now_text()}})
        except Exception:
            log.exception("cannot record %s's report %s", node, status)
            note = _join(note, "the report could not be recorded (see xcatd's log)")
        return note

    def _move_along(self, node: str, status: str, site: dict[str, str], ns) -> str:
        """Set the next state of the node's chain; "" when set, else why not."""
        try:
            run = ns.NodesetRun(self._context(node, site), [node])
            wanted = run.next_states(ns.Outcome()) or {node: ("boot", None)}
        except Exception as exc:
            return _why(exc, node)
        return self._move(node, wanted, status, site, ns, run)

    def _move(self, node: str, wanted: dict[str, tuple[str, str | None]], status: str,
              site: dict[str, str], ns, run=None) -> str:
        """Set ``wanted`` through nodeset (no DHCP); "" when the node was set, else why not."""
        try:
            ctx = run.ctx if run is not None else self._context(node, site)
            lines = list(ns.set_states(ctx, wanted, dhcp=False, status={node: status},
                                       run=run or ns.NodesetRun(ctx, [node])))
        except Exception as exc:
            return _why(exc, node)
        if any(r.node == node and r.data is not None for r in lines):
            return ""
        return "; ".join(str(r.error) for r in lines if r.error) or "nothing was set"

    def _audit(self, site: dict[str, str], node: str, ip: str | None, status: str, ok: bool,
               reason: str) -> None:
        skip = set(split_list(site.get("auditskipcmds")))
        if ok and ("ALL" in skip or "callback" in skip):
            return
        row = {"audittime": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
               "userid": node[:64], "clientname": ip or "?", "clienttype": "callback",
               "command": "callback", "noderange": node[:64], "args": f"status={status}",
               "status": "Allowed" if ok else "Denied", "comments": reason or None}
        try:
            if self.service is not None:
                self.service.jobs.audit(row)
                return
            with self.db.begin() as conn:
                self.db.insert_row(conn, "auditlog", row)
        except Exception:
            log.exception("cannot write the audit row of %s's callback", node)


def _why(exc: Exception, node: str) -> str:
    """An XcatError's own words; anything else is logged and named only by its kind."""
    from xcatd.base.request import XcatError
    if isinstance(exc, XcatError):
        return str(exc)
    log.error("callback of %s: %s", node, exc, exc_info=exc)
    return f"internal error {type(exc).__name__}, see xcatd's log"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


# ---- path safety -------------------------------------------------------------------------------
def _safe_name(name: str) -> bool:
    return bool(name) and "/" not in name and not name.startswith(".") and "\x00" not in name


#: Hidden names installers fetch from the media tree (anaconda reads .treeinfo and
#: .discinfo from inst.repo; Debian and Ubuntu media describe themselves in .disk/).
INSTALLER_DOTFILES = frozenset({".treeinfo", ".discinfo", ".disk"})


def safe_file(root: Path, rel: str) -> Path | None:
    """The regular file ``rel`` names inside ``root``, or None: no ``..``, no hidden names
    but the installers' own (INSTALLER_DOTFILES), no symlink that leads out of the tree, no
    directory (so no listing)."""
    parts = rel.split("/")
    if not rel or rel.endswith("/") or any(
            not p or "\x00" in p or (p.startswith(".") and p not in INSTALLER_DOTFILES)
            for p in parts):
        return None
    try:
        base = root.resolve(strict=True)
        real = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a loop of links
        return None
    if not real.is_relative_to(base):
        return None
    try:
        st = real.stat()
    except OSError:
        return None
    return real if stat_mod.S_ISREG(st.st_mode) else None


def world_readable(path: Path) -> bool:
    """Files only root may read are not for the network (a node's own files excepted)."""
    try:
        return bool(os.stat(path).st_mode & stat_mod.S_IROTH)
    except OSError:
        return False


# ---- running it ---------------------------------------------------------------------------------
async def start_site(paths: Paths, service: Any, host: str | None, *,
                     ephemeral: bool = False) -> HttpSite | None:
    """xcatd's hook: start the HTTP site where the site table says (``ephemeral``: on a free
    port at ``host``, for a daemon that was itself asked for a free port). A port that
    cannot be bound is logged, not fatal: the command daemon still works without it."""
    site = service.db.site() if service is not None else Database.open(paths).site()
    where = (host, 0) if ephemeral else listen_address(site, host)
    if where is None:
        log.info("HTTP site disabled (site.httpbind=none)")
        return None
    http = HttpSite(paths, service)
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
