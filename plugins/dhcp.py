"""makedhcp: the DHCP server's configuration (-n), or the named nodes on the running server
(add, -d delete, -q query). The work is xcatd.netconf.dhcp's, for the backend that
site.dhcpbackend names (ISC dhcpd or Kea)."""
from __future__ import annotations

from collections.abc import Iterator

from xcatd.base.noderange import NodeRange
from xcatd.base.progress import Meter
from xcatd.base.request import Request, Response, XcatError
from xcatd.handler import FLAG, Context, command
from xcatd.netconf import dhcp


@command("makedhcp", noderange="optional", writes=lambda r: bool(r.args.get("delete")),
         args={"new": FLAG, "all": FLAG, "delete": FLAG, "query": FLAG})
def makedhcp(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    a = req.args
    manager = dhcp.manager(ctx)
    if a.get("new"):
        if nodes is not None:
            raise XcatError("makedhcp -n rebuilds the whole configuration for every node; "
                            "give no noderange (makedhcp <noderange> changes those nodes "
                            "on the running server)")
        yield from Meter("Writing the DHCP configuration").around(manager.rebuild())
        return
    if a.get("all"):
        names = dhcp.scope(ctx)  # (a service node's own nodes, the MN's)
    elif nodes is not None:
        names = nodes.sorted()   # only these: never re-plan every node for a few
    else:
        raise XcatError("makedhcp needs -n, -a or a noderange")
    if a.get("query"):
        yield from manager.query(names)
    else:
        what = "Removing nodes from" if a.get("delete") else "Updating"
        yield from Meter(f"{what} {manager.name}").around(
            manager.update(names, delete=bool(a.get("delete"))))
