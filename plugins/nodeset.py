"""nodeset: what each node does the next time it boots from the network.

``nodeset <noderange> osimage[=<image>] | boot | shell | standby | runcmd=<cmd> |
runimage=<url> | shutdown | offline | next | stat``, and comma chains; xCAT's older
``install``, ``netboot`` and ``statelite`` mean each node's own osimage. The work is done by
xcatd.provision.nextboot; this module only reads the request.
"""
from __future__ import annotations

from collections.abc import Iterator

from xcatd.base.noderange import NodeRange
from xcatd.base.progress import Meter
from xcatd.base.request import Request, Response, XcatError
from xcatd.handler import TEXT, Context, command
from xcatd.provision.nextboot import (
    LEGACY_STATES,
    USAGE,
    NodesetRun,
    Outcome,
    set_states,
    split_chain,
    stat,
)


def _writes(req: Request) -> bool:
    states = split_chain(str(req.args.get("state") or ""))
    return not states or states[0] != "stat"


@command("nodeset", noderange="required", writes=_writes, args={"state": TEXT})
def nodeset(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    states = split_chain(str(req.args.get("state") or ""))
    if not states:  # none given, or only separators (nodeset n1 ,)
        raise XcatError(USAGE)
    names = nodes.sorted() if nodes else []
    first, rest = states[0], ",".join(states[1:]) or None
    if first == "stat":
        yield from _stat(ctx, names)
        return
    run = NodesetRun(ctx, names)
    if first == "next":
        out = Outcome()
        wanted = run.next_states(out)
        yield from out.errors
    elif first in LEGACY_STATES:
        run.check_chain(states[1:])
        wanted, errors = run.legacy_states(first, rest)
        yield from errors
    else:
        run.check_chain(states)
        wanted = {n: (first, rest) for n in names}
    if wanted:
        # planning and writing come before the first answer: dots on a terminal meanwhile
        meter = Meter(f"Setting the next boot of {len(wanted)} nodes")
        for resp in meter.around(set_states(ctx, wanted, run=run)):
            yield _with_state(resp)


def _stat(ctx: Context, names: list[str]) -> Iterator[Response]:
    meter = Meter("Reading boot states", total=len(names), unit="nodes")
    for done, resp in enumerate(stat(ctx, names), 1):
        yield _with_state(resp)
        tick = meter.tick(done)
        if tick is not None:
            yield tick


def _with_state(resp: Response) -> Response:
    """A node's state line with its machine-readable form, ``{"state": "boot"}`` (--json)."""
    if resp.node is not None and resp.data is not None and resp.error is None \
            and resp.obj is None:
        resp.obj = {"state": resp.data}
    return resp
