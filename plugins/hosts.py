"""makehosts: /etc/hosts from the hosts and nics tables (xcatd.netconf.hosts). Without -n the
named nodes' entries (every node's, with no noderange) are replaced where they stand; -n
rebuilds the file keeping the localhost lines; -d removes the nodes' entries; -l puts the
long name first."""
from __future__ import annotations

from collections.abc import Iterator

from xcatd.base.noderange import NodeRange, natural_key
from xcatd.base.request import Request, Response
from xcatd.handler import FLAG, Context, command
from xcatd.netconf.hosts import HostsManager


@command("makehosts", noderange="optional", writes=False,
         args={"new": FLAG, "delete": FLAG, "longnamefirst": FLAG})
def makehosts(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    a = req.args
    names = nodes.sorted() if nodes is not None else sorted(ctx.all_nodes(), key=natural_key)
    hosts = HostsManager(ctx, names, long_first=bool(a.get("longnamefirst")))
    if a.get("new"):
        yield from hosts.rebuild()
    else:
        yield from hosts.update(names, delete=bool(a.get("delete")))
