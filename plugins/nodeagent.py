"""What a node and its agent ask of the management node, each a node-originated command
(origin "node", so only the node API sends them; policy rows may name nodes, and every one
is audited and recorded as a job like any command):

- ``enrol``: the boot's token and a certificate request -> the node's certificate
  (xcatd.provision.nodeidentity); over the plain HTTP node site, the only one a node
  without a certificate can reach.
- ``getpostscript`` (xCAT's name): the node's plan (xcatd.provision.postscripts), or one
  script file of the postscripts directory to fetch;
- ``getcredentials`` (xCAT's name): what remoteshell installs: the management node's root
  public keys and the node's own ssh host keys, in one answer; or, for a certificate
  request, a new node certificate (updatenode -k);
- ``syncfiles`` (xCAT's name): the node's synclist plan, or one file it lists;
- ``updatenodestat`` (xCAT's name): the agent's events (one per script) and status.

All but ``enrol`` come over mutual TLS with the node's certificate; the front puts the
certificate's fingerprint in ``certfp`` and each handler first checks it is the node's
current one, from the node's address (xcatd.provision.nodeidentity.check_node), so a
refusal is audited.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from xcatd.base.noderange import NodeRange
from xcatd.base.request import Request, Response, XcatError, not_found
from xcatd.handler import NODE_ORIGIN, TEXT, Arg, Context, command
from xcatd.provision import nodeevents, nodeidentity, nodereports
from xcatd.provision.nextboot import now_text
from xcatd.provision.postscripts import EntryError, PlanBuilder, check_name, script_file
from xcatd.provision.synclist import SyncPlanner
from xcatd.security import nodekeys

LOCK_TIMEOUT = 30.0
MODES = ("boot", "install", "updatenode")
AGENT_STATUSES = ("configuring", "booted", "failed")
MAX_EVENTS = 100


def _events_ok(v: Any) -> bool:
    return isinstance(v, list) and len(v) <= MAX_EVENTS and all(
        isinstance(e, dict) and all(isinstance(k, str) and (x is None or (isinstance(
            x, str | int | float) and not isinstance(x, bool))) for k, x in e.items())
        for e in v)


EVENTS = Arg(f"a list of at most {MAX_EVENTS} events (objects of strings and numbers)",
             _events_ok)
NODE_ARGS = {"node": TEXT, "certfp": TEXT}


def _node(req: Request, _ctx: Context | None = None) -> NodeRange:
    node = req.args.get("node")
    if not isinstance(node, str) or not node:
        raise XcatError("node must be a node name")
    return NodeRange((node,))


def _checked(req: Request, ctx: Context) -> str:
    node = _node(req).sorted()[0]
    nodeidentity.check_node(ctx, node, str(req.args.get("certfp") or ""), req.client)
    return node


# ---- enrolment ---------------------------------------------------------------------------------
@command("enrol", origin=NODE_ORIGIN, writes=True, lock_nodes=_node, authenticates=True,
         lock_timeout=LOCK_TIMEOUT, args={"node": TEXT, "token": TEXT, "csr": TEXT})
def enrol(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    node = _node(req).sorted()[0]
    got = nodeidentity.enrol(ctx, node, str(req.args.get("token") or ""), req.client,
                             str(req.args.get("csr") or "").encode())
    got["master"] = _master(ctx, node)
    yield Response(node=node, data="enrolled", obj=got)


def _master(ctx: Context, node: str) -> str:
    """Where the node reaches xcatd: noderes.xcatmaster, else site.master (on a service
    node: its own address on the node's network)."""
    v = ctx.db.resolve([node], {"noderes": ["xcatmaster"], "hosts": ["ip"]})[node]
    return ctx.node_master(v.get(("noderes", "xcatmaster")), v.get(("hosts", "ip")))


# ---- the plan and its scripts ------------------------------------------------------------------
@command("getpostscript", origin=NODE_ORIGIN, authenticates=True,
         args={**NODE_ARGS, "mode": TEXT, "scripts": TEXT, "fetch": TEXT})
def getpostscript(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    node = _checked(req, ctx)
    fetch = req.args.get("fetch")
    if fetch:  # one file of the postscripts directory (world-readable over HTTP anyway)
        try:
            rel = check_name(fetch, fetch)
        except EntryError as exc:
            raise XcatError(str(exc)) from None
        path, got = script_file(ctx, rel)   # no table read: one stat (hashes are cached)
        if isinstance(got, str):
            raise not_found(got)
        yield Response(node=node, obj={"path": str(path), "sha256": got[0], "size": got[1]})
        return
    mode = req.args.get("mode") or "boot"
    if mode not in MODES:
        raise XcatError(f"mode must be one of {', '.join(MODES)}")
    builder = PlanBuilder(ctx, [node], updatenode=mode == "updatenode")
    plan = builder.plan_of(node, req.args.get("scripts"))
    yield Response(node=node, obj={"plan": {**plan.as_dict(), "mode": mode}})


# ---- credentials -------------------------------------------------------------------------------
@command("getcredentials", origin=NODE_ORIGIN, authenticates=True,
         args={**NODE_ARGS, "what": TEXT, "csr": TEXT})
def getcredentials(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    node = _checked(req, ctx)
    what = req.args.get("what")
    if what == "certificate":   # a new certificate for a new key (updatenode -k)
        got = nodeidentity.renew(ctx, node, str(req.args.get("certfp") or ""), req.client,
                                 str(req.args.get("csr") or "").encode())
        yield Response(node=node, data="certificate renewed", obj={"credentials": got})
        return
    if what != "remoteshell":
        raise not_found(f"no credentials called {what!r} (known: remoteshell, certificate)")
    creds = {"authorized_keys": nodekeys.root_public_keys(ctx.paths, ctx.installdir),
             "host_keys": nodekeys.node_host_keys(ctx.paths, node)}
    yield Response(node=node, obj={"credentials": creds})   # obj is never recorded


# ---- files -------------------------------------------------------------------------------------
@command("syncfiles", origin=NODE_ORIGIN, authenticates=True,
         args={**NODE_ARGS, "path": TEXT})
def syncfiles(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    node = _checked(req, ctx)
    plan = SyncPlanner(ctx, [node]).plan(node)
    path = req.args.get("path")
    if path:
        if not plan.allows(path):
            raise not_found(f"{path} is not in the synclist of {node}")
        yield Response(node=node, obj={"path": path})
        return
    yield Response(node=node, obj={"synclist": plan.as_dict()})


# ---- events and status -------------------------------------------------------------------------
@command("updatenodestat", origin=NODE_ORIGIN, authenticates=True,
         args={**NODE_ARGS, "status": TEXT, "events": EVENTS, "failed": TEXT})
def updatenodestat(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    node = _checked(req, ctx)
    status = req.args.get("status")
    if status and status not in AGENT_STATUSES:
        raise XcatError(f"status must be one of {', '.join(AGENT_STATUSES)}")
    warnings: list[str] = []
    events = req.args.get("events") or []
    if events:
        warnings += nodeevents.record(ctx, node, events) or []
    if status == "booted":
        note = nodereports.booted(ctx, node)   # the count of netboots starts again
        if note:
            warnings.append(note)
    elif status:
        with ctx.db.begin() as conn:
            ctx.db.set_rows(conn, "nodelist", {(node,): {"status": status,
                                                         "statustime": now_text()}})
    for w in warnings:
        yield Response(node=node, warning=w)
    yield Response(node=node, data=f"recorded {len(events)} events"
                   + (f", status {status}" if status else ""))
