"""makedns: BIND's configuration and zones (-n), or the named nodes on the running named
(add, -d delete) by signed dynamic updates. The work is xcatd.netconf.bind's."""
from __future__ import annotations

from collections.abc import Iterator

from xcatd.base.noderange import NodeRange, natural_key
from xcatd.base.progress import Meter
from xcatd.base.request import Request, Response
from xcatd.handler import FLAG, Context, command
from xcatd.netconf.bind import Bind


@command("makedns", noderange="optional", writes=lambda r: bool(r.args.get("delete")),
         args={"new": FLAG, "delete": FLAG})
def makedns(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    names = sorted(ctx.all_nodes(), key=natural_key) if nodes is None else nodes.sorted()
    bind = Bind(ctx, names)
    if req.args.get("new"):
        yield from Meter("Writing the DNS zones").around(bind.rebuild())
    else:
        what = "Removing DNS records" if req.args.get("delete") else "Updating DNS records"
        yield from Meter(what).around(bind.update(names, delete=bool(req.args.get("delete"))))
