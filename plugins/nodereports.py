"""What booting nodes send through the node API: ``bootscript`` (a network boot fetches its
iPXE script), ``callback`` (an installer or a booted node reports) and ``liteplan`` (a
statelite initrd fetches its plan). Only the node API may
send them (origin "node"); the work is xcatd.provision.nodereports'.

The node's name comes in ``args["node"]`` rather than as a noderange: it is one name from a
URL, never a range to expand. Both hold the node's lock, briefly (a node that waits longer
than 30 s for a nodeset retries); ``callback`` checks the node's token itself, so its audit
row says whether that proof held.
"""
from __future__ import annotations

from collections.abc import Iterator

from xcatd.base.noderange import NodeRange
from xcatd.base.request import Request, Response, XcatError
from xcatd.handler import NODE_ORIGIN, TEXT, Context, command
from xcatd.provision import nodereports

LOCK_TIMEOUT = 30.0


def _node(req: Request, _ctx: Context | None = None) -> NodeRange:
    node = req.args.get("node")
    if not isinstance(node, str) or not node:
        raise XcatError("node must be a node name")
    return NodeRange((node,))


@command("bootscript", origin=NODE_ORIGIN, writes=True, lock_nodes=_node,
         lock_timeout=LOCK_TIMEOUT, args={"node": TEXT})
def bootscript(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    node = _node(req).sorted()[0]
    script = nodereports.boot_script(ctx, node, req.client)
    yield Response(node=node, obj={"script": script})


@command("callback", origin=NODE_ORIGIN, writes=True, lock_nodes=_node,
         authenticates=True, lock_timeout=LOCK_TIMEOUT,
         args={"node": TEXT, "status": TEXT, "token": TEXT, "reason": TEXT})
def callback(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    node = _node(req).sorted()[0]
    note = nodereports.report(ctx, node, str(req.args.get("status") or ""),
                              str(req.args.get("token") or ""), req.client,
                              reason=str(req.args.get("reason") or ""))
    yield Response(node=node, warning=note) if note else Response(node=node, data="ok")


@command("liteplan", origin=NODE_ORIGIN, lock_nodes=_node, authenticates=True,
         lock_timeout=LOCK_TIMEOUT, args={"node": TEXT, "token": TEXT})
def liteplan(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    """A statelite node's initrd asks what to mount and where its files come from; the
    boot's token proves it (checked, not spent)."""
    node = _node(req).sorted()[0]
    plan = nodereports.lite_plan(ctx, node, str(req.args.get("token") or ""), req.client)
    yield Response(node=node, obj={"plan": plan})
