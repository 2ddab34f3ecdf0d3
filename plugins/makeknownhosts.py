"""makeknownhosts: the nodes' lines in the management node root's known_hosts, from the host
keys the management node made for them and hands them in remoteshell
(xcatd.security.knownhosts); -r (-d) removes them. Root only: it writes root's file."""
from __future__ import annotations

from collections.abc import Iterator

from xcatd.base.noderange import NodeRange
from xcatd.base.request import Request, Response
from xcatd.handler import FLAG, Context, command, root_only
from xcatd.security.knownhosts import make_known_hosts


@command("makeknownhosts", noderange="required", writes=False,
         args={"remove": FLAG, "verbose": FLAG})
def makeknownhosts(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    root_only(req, "makeknownhosts")
    names = nodes.sorted() if nodes is not None else []
    yield from make_known_hosts(ctx, names, remove=bool(req.args.get("remove")),
                                verbose=bool(req.args.get("verbose")))
