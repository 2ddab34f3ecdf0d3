"""The relay: a request's nodes split by the service node acting for each, each part sent to
that service node's xcatd over mutual TLS, the answers merged as they come.

On the management node, dispatch hands a relayed command (RELAYED) here once it holds the
nodes' locks. The nodes the management node serves itself run here, in this thread, through
the command's handler; each service node gets one sub-request with its nodes, the epoch of
each node's lease (xcatd.db.servicenodes) and the few secrets the request needs, lent for the
request alone (a service node never holds the master key). Job ids, policy and audit stay
here: the service node runs the part through dispatch (locks, admin locks, errors by kind)
without a job or a policy decision of its own, and refuses the nodes whose lease it no
longer holds (``fence``).

What cannot silently go wrong:
- a service node that is down, unreachable, or whose heartbeat stopped: one error line per
  node, ``Unable to dispatch hierarchical sub-command to sn1:3001: <why>``, at once;
- a service node that dies or stops answering mid-request (no byte for the silence bound,
  site.snheartbeattimeout; a live one sends a keep-alive every few seconds): its nodes that
  had no answer yet are each reported ``lost``, never run twice;
- with ``retry`` (``--retry``), those nodes move (as snmove moves them: new lease and epoch)
  to the next live member of their pool and run there, once.
"""
from __future__ import annotations

import dataclasses
import http.client
import json
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from xcatd.base.noderange import NodeRange, natural_key
from xcatd.base.paths import Paths
from xcatd.base.request import ErrorKind, Request, Response
from xcatd.db import servicenodes
from xcatd.db.database import DBError
from xcatd.handler import CommandSpec, Context
from xcatd.handler import spec as command_spec
from xcatd.netconf.dhcp.common import omapi_key
from xcatd.security.credentials import SN_OU, certificate_cn, certificate_ou, relay_files

log = logging.getLogger("xcatd.daemon.relay")

#: The commands whose nodes go to the service node acting for each. (makedns stays on the
#: management node: its BIND holds the zones, and service nodes' name servers forward to it
#: or serve copies, as xCAT's do.)
RELAYED = frozenset({"rpower", "rsetboot", "rinv", "rvitals", "reventlog", "nodeset",
                     "makedhcp", "xdsh", "xdcp", "updatenode", "nodestat"})
#: The relayed commands that reach the nodes' management controllers: lent the nodes' own
#: rows of the node-keyed secret tables (ipmi.password, ...) and their methods' passwd rows.
HARDWARE = frozenset({"rpower", "rsetboot", "rinv", "rvitals", "reventlog"})
#: The passwd rows other relayed commands read (nodeset: the root password its install
#: files carry; makedhcp: the OMAPI key of the service node's dhcpd). Nothing else is lent.
PASSWD_KEYS = {"nodeset": ("system",), "makedhcp": ("omapi",)}
#: The relayed commands that, with no noderange (makedhcp -n, -a), run on the management node
#: and on every service node, each for the nodes it serves.
EVERYWHERE = frozenset({"makedhcp"})
#: The relayed commands a former service node runs for nodes it no longer serves (makedhcp
#: -d: its dhcpd forgets them), sent there by name (release).
RELEASED = frozenset({"makedhcp"})
#: The origin (Identity.clienttype) of a part relayed by the management node: its service
#: node runs it and never relays it further.
RELAY_ORIGIN = "relay"
RELAY_PATH = "/v1/relay"
DEFAULT_PORT = 3001
#: The longest line of a service node's answer (one response, its output included)
MAX_LINE = 16 * 1024 * 1024
#: The longest wait for a service node's keep-alive: a few are sent within the silence bound.
MAX_KEEPALIVE = 5.0


def relayed(spec: CommandSpec, nodes: NodeRange | None, origin: str) -> bool:
    return (spec.name in RELAYED and origin != RELAY_ORIGIN
            and (nodes is not None or spec.name in EVERYWHERE))


def keepalive_interval(silence: float) -> float:
    """How often a service node says it is still working on a part: often enough that
    three fit in the silence bound."""
    return max(0.2, min(MAX_KEEPALIVE, silence / 3))


def _error(message: str, node: str | None, kind: ErrorKind = ErrorKind.BUSY) -> Response:
    return Response(node=node, error=message, errorcode=1, kind=kind.value)


@dataclasses.dataclass
class Part:
    """The nodes one service node acts for in this request."""

    sn: str
    leases: dict[str, int]        # node -> the epoch of its lease
    address: str | None = None
    port: int = DEFAULT_PORT
    retried: bool = False          # a retry's part: its lost nodes are not retried again
    released: list[str] = dataclasses.field(default_factory=list)  # nodes it let go of

    @property
    def everywhere(self) -> bool:
        """A part of a request for no nodes in particular (makedhcp -n): the service node
        runs it for the nodes it serves."""
        return not self.leases

    @property
    def where(self) -> str:
        return f"{self.sn}:{self.port}"


class _Sender(threading.Thread):
    """One part, sent and read in a thread of its own; what it reads goes to the merge
    queue: ("r", part, Response) for each response, then ("end", part, lost, why)."""

    def __init__(self, tls: _Tls, part: Part, body: Callable[[], dict[str, Any]],
                 silence: float, out: queue.Queue) -> None:
        super().__init__(name=f"relay-{part.sn}", daemon=True)
        self.tls, self.part, self.body, self.silence, self.out = tls, part, body, silence, out
        self.conn: http.client.HTTPSConnection | None = None
        self.closed = threading.Event()
        self.sent = False

    def close(self) -> None:
        """Stop reading (the request was cancelled): the service node sees its connection
        close and cancels the part."""
        self.closed.set()
        conn = self.conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def run(self) -> None:
        answered: set[str] = set()
        why: str | None = None
        ended = started = False
        try:
            resp = self._send()
            while True:
                raw = resp.readline(MAX_LINE + 1)
                if not raw:
                    break
                if len(raw) > MAX_LINE:
                    raise ValueError(f"a line longer than {MAX_LINE} bytes")
                record = json.loads(raw)
                if not isinstance(record, dict):
                    raise ValueError(f"a record that is not an object: {raw[:80]!r}")
                if "r" in record:
                    r = Response.from_dict(record["r"])
                    if r.node is not None and (not isinstance(r.node, str) or (
                            self.part.leases and r.node not in self.part.leases)):
                        raise ValueError(f"an answer for {str(r.node)[:40]!r}, not a node "
                                         "of its part")
                    if r.node:
                        answered.add(r.node)
                    self.out.put(("r", self.part, r))
                elif "end" in record:
                    ended = True
                    break
                elif "lost" in record:  # the service node gave its part up
                    why = f"{self.part.sn} gave its part up: {str(record['lost'])[:200]}"
                    break
        except _Refused as exc:
            why = str(exc)
        except TimeoutError:
            why = (f"{self.part.sn} sent nothing for {self.silence:g} s "
                   "(site.snheartbeattimeout)")
        except ssl.SSLError as exc:
            why = f"TLS with {self.part.sn} failed: {exc.reason or exc}"
        except (OSError, http.client.HTTPException) as exc:
            what = getattr(exc, "strerror", None) or exc.__class__.__name__
            why = (f"connection to {self.part.sn} lost: {what}" if self.sent else
                   f"cannot reach {self.part.address}:{self.part.port}: {what}")
        except Exception as exc:  # (anything else it sent: never a reader that dies unheard)
            why = (f"{self.part.sn} sent something that is not a response "
                   f"({exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0][:200]})")
        finally:
            started = self.sent
            if self.conn is not None:
                self.conn.close()
            if self.closed.is_set():
                why = "cancelled"
            if ended:
                self.out.put(("end", self.part, [], None, True))
            else:
                lost = [n for n in self.part.leases if n not in answered] or \
                    ([] if self.part.leases else [self.part.sn])
                self.out.put(("end", self.part, lost, why or f"{self.part.sn} closed the "
                              "connection before the end of its part", started))

    def _send(self) -> http.client.HTTPResponse:
        if self.part.address is None:
            raise _Refused(f"{self.part.sn} has never reported a heartbeat (is its xcatd "
                           "running, and has it joined? xcatconfig --servicenode)")
        ctx = self.tls.context()
        try:  # (in this thread: the parts are made at once, not one after another)
            data = json.dumps(self.body()).encode()
        except Exception as exc:  # a database failure: this part's nodes say so
            raise _Refused(f"the part could not be made: {exc.__class__.__name__}: "
                           f"{(str(exc).splitlines() or [''])[0]}") from None
        self.conn = http.client.HTTPSConnection(self.part.address, self.part.port,
                                                context=ctx, timeout=self.silence)
        self.conn.connect()
        peer = self.conn.sock.getpeercert()  # type: ignore[union-attr]
        if certificate_ou(peer) != SN_OU or certificate_cn(peer) != self.part.sn:
            raise _Refused(f"the xcatd at {self.part.address}:{self.part.port} is not "
                           f"service node {self.part.sn} (its certificate names "
                           f"{certificate_cn(peer)!r}, role {certificate_ou(peer)!r})")
        self.conn.request("POST", RELAY_PATH, data, {"Content-Type": "application/json"})
        self.sent = True  # from here on the service node may be acting on the nodes
        resp = self.conn.getresponse()
        if resp.status != 200:
            try:
                message = json.loads(resp.read() or b"{}").get("error") or resp.reason
            except ValueError:
                message = resp.reason
            raise _Refused(f"{self.part.sn} refused the request: {message}")
        return resp


class _Refused(Exception):
    pass


class _Tls:
    """The management node's TLS client context for its service nodes (its relay
    certificate), made once per request, when the first part needs it."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self._ctx: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def context(self) -> ssl.SSLContext:
        with self._lock:
            if self._ctx is None:
                files = relay_files(self.paths)
                if not files.exists():
                    raise _Refused(f"no relay certificate at {files.cred}: run xcatconfig "
                                   "on the management node")
                ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                                 cafile=str(files.ca))
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2
                ctx.check_hostname = False  # the name checked is the certificate's CN
                ctx.load_cert_chain(str(files.cred))
                self._ctx = ctx
            return self._ctx


# ---- the management node's side ------------------------------------------------------------
def run(spec: CommandSpec, request: Request, ctx: Context, nodes: NodeRange, *,
        retry: bool = False, cancel: threading.Event | None = None,
        release: str | None = None) -> Iterator[Response]:
    """The request's responses: its local nodes' from the handler, here, and each service
    node's part's as they arrive. ``release``: the request goes to that (former) service
    node alone, for nodes it no longer serves (makedhcp -d after snmove)."""
    if release is not None:
        yield from _release(request, ctx, nodes, release, cancel)
        return
    if nodes is None:
        yield from _everywhere(spec, request, ctx, cancel)
        return
    names = nodes.sorted()
    if not servicenodes.any_pool(ctx.db):  # no service nodes: the common path, one read
        result = spec.handler(request, ctx, nodes)
        if result is not None:
            yield from result
        return
    moved: list[servicenodes.Moved] = []
    owners = servicenodes.owners(ctx.db, names, moved=moved)
    if moved:  # site.snautofailover: their new service node writes their files first
        by = {}
        for m in moved:
            by.setdefault((m.old, m.new), []).append(m.node)
        for (old, new), ns in sorted(by.items()):
            yield Response(warning=f"{old} silent past site.snheartbeattimeout: "
                                   f"{NodeRange(ns)} moved to {new}")
        yield from regenerate(ctx, [m.node for m in moved], cancel)
    local = [n for n in names if owners[n].servicenode is None]
    parts: dict[str, Part] = {}
    for n in names:
        o = owners[n]
        if o.servicenode is not None:
            parts.setdefault(o.servicenode, Part(o.servicenode, {})).leases[n] = o.epoch
    merge = _Merge(request, ctx, retry, cancel)
    try:
        for part in parts.values():
            yield from merge.start(part)
        if local:
            sub = dataclasses.replace(request, noderange=",".join(local))
            result = spec.handler(sub, ctx, nodes - [n for n in names if n not in local]
                                  if len(local) < len(names) else nodes)
            for resp in result or ():
                yield resp
                yield from merge.drain(block=False)
        yield from merge.drain(block=True)
    finally:
        merge.close()


def regenerate(ctx: Context, nodes: list[str], cancel: threading.Event | None
               ) -> Iterator[Response]:
    """Before the request acts on them: the moved nodes' DHCP entries and boot files in
    their current state, written by their new service node (so a node the request resets
    boots from it), but for what the request itself is (a nodeset writes them anyway).
    Inside the request: no locks of their own (the request holds what it needs)."""
    for r in servicenodes.regeneration(ctx.db, nodes):
        if r.command == ctx.request.command:
            continue
        r = dataclasses.replace(r, user=ctx.request.user, client=ctx.request.client)
        sub = Context(r, ctx.paths, ctx.db, ctx.site, jobs=ctx.jobs, daemon=ctx.daemon)
        yield from run(command_spec(r.command), r, sub, sub.expand(r.noderange or ""),
                       cancel=cancel)


def _release(request: Request, ctx: Context, nodes: NodeRange | None, sn: str,
             cancel: threading.Event | None) -> Iterator[Response]:
    if nodes is None or not request.args.get("delete"):
        yield _error("release: a noderange and makedhcp -d", None, ErrorKind.BAD_REQUEST)
        return
    merge = _Merge(request, ctx, False, cancel)
    try:
        yield from merge.start(Part(sn, {}, released=nodes.sorted()))
        yield from merge.drain(block=True)
    finally:
        merge.close()


def _everywhere(spec: CommandSpec, request: Request, ctx: Context,
                cancel: threading.Event | None) -> Iterator[Response]:
    """A request for no nodes in particular: here, then on every service node that has ever
    reported (each answers for the nodes it serves; its lines are named after it)."""
    result = spec.handler(request, ctx, None)
    failed = False
    for resp in result or ():
        failed = failed or resp.failed
        yield resp
    # (a retired service node is not asked, nor one that runs no such service)
    used = servicenodes.in_use(ctx.db) - (servicenodes.without_dhcp(ctx.db)
                                          if request.command == "makedhcp" else set())
    sns = sorted(r["node"] for r in ctx.db.rows("snstatus") if r["node"] in used)
    if failed or not sns:  # (the management node's own failure: the SNs would repeat it)
        return
    merge = _Merge(request, ctx, False, cancel)
    try:
        for sn in sns:
            yield from merge.start(Part(sn, {}))
        yield from merge.drain(block=True)
    finally:
        merge.close()


def _prepare(request: Request, ctx: Context) -> None:
    """What the management node makes before a service node can run its part: what a
    service node's database role may not write (makedhcp: the OMAPI key in passwd)."""
    if request.command == "makedhcp":
        omapi_key(ctx)


class _Merge:
    """The parts under way and their queue."""

    def __init__(self, request: Request, ctx: Context, retry: bool,
                 cancel: threading.Event | None) -> None:
        _prepare(request, ctx)
        self.request, self.ctx, self.retry, self.cancel = request, ctx, retry, cancel
        self.queue: queue.Queue = queue.Queue()
        self.senders: list[_Sender] = []
        self.running = 0
        self.tls = _Tls(ctx.paths)
        self.silence = servicenodes.heartbeat_timeout(ctx.db)
        self.status = {r["node"]: r for r in ctx.db.rows("snstatus")}
        self.living = servicenodes.alive(ctx.db, timeout=self.silence)
        try:
            self.default_port = ctx.site.port("xcatdport", DEFAULT_PORT)
        except Exception:
            self.default_port = DEFAULT_PORT

    def start(self, part: Part) -> Iterator[Response]:
        row = self.status.get(part.sn)
        if row is not None:
            part.address = row.get("address") or None
            try:
                part.port = int(row.get("port") or self.default_port)
            except ValueError:
                part.port = self.default_port
        else:
            part.port = self.default_port
        if row is not None and part.sn not in self.living:
            why = (f"no heartbeat from {part.sn} within site.snheartbeattimeout "
                   f"({self.silence:g} s)")
            yield from self._failed(part, list(part.leases), why, started=False)
            return
        request = dataclasses.replace(
            self.request, noderange=",".join(part.leases or part.released) or None)

        def body() -> dict[str, Any]:
            return {"request": request.to_dict(), "leases": part.leases,
                    "released": part.released, "lent": self._lent(list(part.leases)),
                    "keepalive": keepalive_interval(self.silence)}

        sender = _Sender(self.tls, part, body, self.silence, self.queue)
        self.senders.append(sender)
        self.running += 1
        sender.start()

    def _lent(self, nodes: list[str]) -> dict[str, str]:
        """The secrets this part's command reads for its nodes, and only those: the
        hardware commands their nodes' (and groups') rows of the node-keyed secret tables
        and the passwd defaults of their management methods; the others the passwd keys
        they name (PASSWD_KEYS)."""
        db, command = self.ctx.db, self.request.command
        keys = set(PASSWD_KEYS.get(command, ()))
        names: set[str] = set()
        if command in HARDWARE and nodes:
            groups = db.node_groups(nodes)
            names = set(nodes) | {g for gs in groups.values() for g in gs}
            methods = db.resolve(nodes, {"nodehm": ["mgt", "power"]})
            keys |= {v for m in methods.values() for v in m.values() if v}
        if not names and not keys:
            return {}
        return db.lendable_secrets(names, keys)

    def drain(self, *, block: bool) -> Iterator[Response]:
        while self.running:
            try:
                item = self.queue.get(timeout=0.5) if block else self.queue.get_nowait()
            except queue.Empty:
                if not block:
                    return
                if self.cancel is not None and self.cancel.is_set():
                    self.close()
                continue
            if item[0] == "r":
                resp = item[2]
                if item[1].everywhere and resp.node is None:
                    resp.node = item[1].sn
                yield resp
                continue
            _, part, lost, why, started = item
            self.running -= 1
            if lost:
                yield from self._failed(part, lost, why, started=started)

    def _failed(self, part: Part, nodes: list[str], why: str, *, started: bool
                ) -> Iterator[Response]:
        """The nodes of ``part`` that have no answer: retried on the next live member of
        their pool (with retry), else one error line each."""
        nodes = sorted(nodes, key=natural_key)
        if part.everywhere:  # one line, named after the service node
            yield _error(f"lost: {part.sn} stopped answering ({why})" if started else
                         f"Unable to dispatch hierarchical sub-command to {part.where}: {why}",
                         part.sn)
            return
        if self.retry and not part.retried and why != "cancelled":
            if not started or self._dead(part.sn):
                yield from self._retry(part, nodes, why)
                return
            for n in nodes:  # it may still be acting on them: never a second time
                yield _error(f"lost: {part.sn} stopped answering before this node's result "
                             f"({why}) but still heartbeats: not run elsewhere, so that no "
                             "node runs twice", n)
            return
        for n in nodes:
            if started:
                yield _error(f"lost: {part.sn} stopped answering before this node's result "
                             f"({why})" + ("" if part.retried else "; --retry runs it on the "
                                           "next service node in its pool"), n)
            else:
                yield _error(f"Unable to dispatch hierarchical sub-command to "
                             f"{part.where}: {why}", n)

    def _dead(self, sn: str) -> bool:
        """Whether ``sn``, which had the part, is dead by the heartbeat rule, waiting for it
        up to the silence bound (and a margin): a service node that stopped answering but
        still heartbeats may still be acting on its nodes."""
        deadline = time.monotonic() + self.silence * 1.5
        while True:
            if sn not in servicenodes.alive(self.ctx.db, timeout=self.silence):
                return True
            if time.monotonic() > deadline or (self.cancel and self.cancel.is_set()):
                return False
            time.sleep(min(0.5, self.silence / 4))

    def _retry(self, part: Part, nodes: list[str], why: str) -> Iterator[Response]:
        living = servicenodes.alive(self.ctx.db, timeout=self.silence) - {part.sn}
        pools = servicenodes.pools(self.ctx.db, nodes)
        targets: dict[str, list[str]] = {}
        for n in nodes:
            members = pools.get(n, [])
            after = members[members.index(part.sn) + 1:] + members[:members.index(part.sn)] \
                if part.sn in members else members
            dest = next((m for m in after if m in living), None)
            if dest is None:
                yield _error(f"lost: {part.sn} failed ({why}) and no other service node in "
                             "this node's pool is alive", n)
                continue
            targets.setdefault(dest, []).append(n)
        for dest, moved_nodes in targets.items():
            try:
                moved = servicenodes.move(self.ctx.db, moved_nodes, dest)
            except DBError as exc:
                for n in moved_nodes:
                    yield _error(f"lost: could not move the node to {dest}: {exc}", n)
                continue
            yield from regenerate(self.ctx, [m.node for m in moved], self.cancel)
            epochs = {m.node: m.epoch for m in moved}
            if len(epochs) < len(moved_nodes):  # moved there meanwhile (snmove, a failover)
                for r in self.ctx.db.rows("nodeowner", keys=[n for n in moved_nodes
                                                             if n not in epochs]):
                    if r.get("servicenode") == dest:
                        epochs[r["node"]] = int(r.get("epoch") or 0)
            for n in moved_nodes:
                if n not in epochs:
                    yield _error(f"lost: {part.sn} failed ({why}) and the node moved "
                                 "meanwhile: run it again", n)
            leases = {n: epochs[n] for n in moved_nodes if n in epochs}
            yield Response(warning=f"{part.sn} failed ({why}): {len(leases)} node(s) moved "
                                   f"to {dest} and run there")
            yield from self.start(Part(dest, leases, retried=True))

    def close(self) -> None:
        for s in self.senders:
            s.close()


# ---- the service node's side ----------------------------------------------------------------
def check_body(body: Any) -> tuple[Request, dict[str, int], dict[str, str], float]:
    """The relayed request (its noderange the released nodes, for a release), its leases,
    lent secrets and keep-alive interval; ValueError naming the bad part."""
    if not isinstance(body, dict) or not isinstance(body.get("request"), dict):
        raise ValueError('expected {"request": {...}, "leases": {...}}')
    req = Request.from_dict(body["request"])
    req.validate()
    leases = body.get("leases")
    released = body.get("released") or []
    if not isinstance(released, list) or not all(isinstance(n, str) for n in released):
        raise ValueError("released must be a list of node names")
    if released and (leases or req.command not in RELEASED or not req.args.get("delete")):
        raise ValueError("released nodes go with makedhcp -d alone")
    if released or (not leases and req.command in EVERYWHERE and not req.noderange):
        leases = {}
    elif not isinstance(leases, dict) or not leases or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in leases.items()):
        raise ValueError("leases must be an object of node names and epochs")
    lent = body.get("lent") or {}
    if not isinstance(lent, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in lent.items()):
        raise ValueError("lent must be an object of strings")
    keep = body.get("keepalive", MAX_KEEPALIVE)
    if not isinstance(keep, int | float) or isinstance(keep, bool) or not 0.1 <= keep <= 60:
        raise ValueError("keepalive must be a number of seconds from 0.1 to 60")
    if released:
        req = dataclasses.replace(req, noderange=",".join(released))
    return req, leases, lent, float(keep)


def serve(name: str, request: Request, leases: dict[str, int], lent: dict[str, str],
          ctx: Context, *, dispatch, locks, cancel: threading.Event) -> Iterator[Response]:
    """Run one relayed part on service node ``name``: the nodes whose lease it still holds,
    at the epoch the management node gave (the others refused, one line each), the lent
    secrets opening what the request reads."""
    ctx.servicenode = name
    if not leases and request.noderange:  # released: only nodes it no longer serves
        names = [n for n in request.noderange.split(",") if n]
        kept = servicenodes.still_served(ctx.db, name, names)
        for n in kept:
            yield _error(f"{name} still serves {n}: not released", n, ErrorKind.CONFLICT)
        names = [n for n in names if n not in kept]
        if not names:
            return
        request = dataclasses.replace(request, noderange=",".join(names))
        ctx.request = request
    if not leases:  # no lease: for no nodes in particular, or released nodes
        with ctx.db.sealer.lend(lent):
            yield from dispatch(command_spec(request.command), request, ctx, locks=locks,
                                owner=f"{request.command} relayed from the management node",
                                cancel=cancel, origin=RELAY_ORIGIN)
        return
    refused = servicenodes.fence(ctx.db, name, leases)
    for node in sorted(refused, key=natural_key):
        yield _error(refused[node], node, ErrorKind.CONFLICT)
    keep = [n for n in leases if n not in refused]
    if not keep:
        return
    request = dataclasses.replace(request, noderange=",".join(keep))
    ctx.request = request
    with ctx.db.sealer.lend(lent):
        yield from dispatch(command_spec(request.command), request, ctx, locks=locks,
                            owner=f"{request.command} relayed from the management node",
                            cancel=cancel, origin=RELAY_ORIGIN)
