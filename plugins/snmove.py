"""snmove: move nodes to another service node (xcatd.db.servicenodes.move), in one
transaction: the node's pool, its lease (with a new epoch, which fences the old service
node), and the server attributes that named the old service node."""
from __future__ import annotations

from collections.abc import Iterator

from xcatd.base.noderange import NodeRange
from xcatd.base.request import Request, Response, XcatError
from xcatd.db import servicenodes
from xcatd.handler import FLAG, TEXT, Context, command, root_only


def _served(req: Request, ctx: Context) -> NodeRange | None:
    """The nodes ``-s`` names, for the node locks (a locked one is refused, not moved)."""
    source = req.args.get("source")
    return NodeRange.fromlist(servicenodes.served_by(ctx.db, source)) if source else None


def _is_service_node(ctx: Context, name: str) -> bool:
    """A row in the servicenode table (its own or one of its groups'), or a heartbeat."""
    if ctx.db.rows("snstatus", keys=[name]):
        return True
    keys = [name, *ctx.db.node_groups([name]).get(name, [])]
    return bool(ctx.db.rows("servicenode", keys=keys))


@command("snmove", noderange="optional", writes=True, lock_nodes=_served,
         args={"source": TEXT, "sourcen": TEXT, "dest": TEXT, "destn": TEXT,
               "ignorenodes": FLAG, "liteonly": FLAG, "postscripts": TEXT, "verbose": FLAG})
def snmove(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    root_only(req, "snmove")
    a = req.args
    if a.get("postscripts") and a.get("ignorenodes"):
        raise XcatError("-P and -i flags cannot be specified at the same time.")
    if a.get("liteonly"):
        raise XcatError("The '-l' option is not supported for Linux nodes.")
    if nodes is None and not a.get("source"):
        raise XcatError("A node range or the source service node must be specified.")
    dest = a.get("dest")
    if dest and not _is_service_node(ctx, dest):
        raise XcatError(f"{dest} is not a service node: it has no row in the servicenode "
                        f"table (chdef {dest} setupdhcp=1 ...) and has never "
                        "reported itself alive")
    if nodes is not None:
        names = nodes.sorted()
    elif req.noderange:  # -s, narrowed by dispatch to the nodes that are not locked
        names = [n for n in req.noderange.split(",") if n]
    else:
        names = servicenodes.served_by(ctx.db, a["source"])
    if a.get("source") and nodes is not None:
        acting = set(servicenodes.served_by(ctx.db, a["source"]))
        names = [n for n in names if n in acting]
    yield Response(data="Moving nodes to their backup service nodes.")
    if not names:
        yield Response(data="No nodes to move.")
        return
    moved = servicenodes.move(ctx.db, names, dest, destn=a.get("destn"),
                              sourcen=a.get("sourcen"))  # all or nothing: then say so
    yield Response(data="Setting new values in the xCAT database.")
    for m in moved:
        if a.get("verbose"):
            yield Response(node=m.node, data=f"moved from {m.old or 'the management node'} "
                                             f"to {m.new} (lease epoch {m.epoch})")
    # the new service node writes their DHCP entries and boot files (dispatch runs these
    # once the move has let go of the nodes; the relay sends them to the new owner)
    # (-i: the tables alone, as when the new service node is not up yet)
    if not a.get("ignorenodes"):
        nodes = [m.node for m in moved]
        living = servicenodes.alive(ctx.db)  # (a dead one has nothing to forget)
        released: dict[str, list[str]] = {}
        for m in moved:
            if m.old and m.old != m.new and m.old in living:
                released.setdefault(m.old, []).append(m.node)
        ctx.followups.append(lambda: servicenodes.regeneration(ctx.db, nodes, released))
