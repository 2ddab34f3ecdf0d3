"""nodeevents: what each node reported while it booted, installed and ran its postscripts.

``nodeevents <noderange> [-n N]`` prints the newest N events of each node (10 by default),
oldest first, one line each (``n1: 2026-12-06 10:00:01 postscripts hello ok rc=0
0.012s``), with the output tail of a failed, timed-out or watchdog event below it
(``n1:     | line``); a node with none says ``n1: no events``. --json gives the events
typed, under each node's ``events``. The log is xcatd.provision.nodeevents.
"""
from __future__ import annotations

from collections.abc import Iterator

from xcatd.base.noderange import NodeRange
from xcatd.base.request import Request, Response, XcatError
from xcatd.handler import NUMBER, Context, command
from xcatd.provision import nodeevents

DEFAULT_COUNT = 10
#: The most events one node shows (more than site.nodeeventsmax keeps by default)
MAX_COUNT = 100_000


@command("nodeevents", noderange="required", args={"count": NUMBER})
def show_events(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    count = req.args.get("count")
    if count is None:
        count = DEFAULT_COUNT
    if not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise XcatError(f"nodeevents: -n takes a whole number from 1 to {MAX_COUNT}, "
                        f"not {count!r}")
    names = nodes.sorted() if nodes else []
    events = nodeevents.recent(ctx, names, count)
    for node in names:
        if not events[node]:
            yield Response(node=node, data="no events", obj={"events": []})
            continue
        for ev in events[node]:
            yield Response(node=node, data=nodeevents.event_line(ev), obj={"events": [ev]})
            if ev["status"] in nodeevents.FAILURES:
                for line in nodeevents.tail_lines(ev):  # the text only: the event holds them
                    yield Response(node=node, data=f"    | {line}", obj={})
