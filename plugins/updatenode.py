"""updatenode: sync files (-F), update software (-S), run postscripts (-P) and re-deliver
keys (-k) on running nodes, through each node's agent (xcatd.provision.agenttasks): no ssh
from the management node to the nodes.

With none of -F, -S, -P, -k it does -F, -S and -P, in that order, as xCAT does. Each node
goes through its steps in order, at most ``--fanout`` nodes at a time (xCAT's default, 64;
site.maxssh bounds ssh, which updatenode does not use); ``-t`` bounds each node's whole
run (default DEFAULT_TIMEOUT).
A node whose agent is not connected gets one error line at once; a node still running
at its timeout gets one error line, and the others go on. nodelist.updatestatus is
``syncing`` while a node's run goes on, then ``synced`` or ``failed``, with the time in
updatestatustime. The exit code is non-zero if any node or script failed.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, wait

from xcatd.base import cancel as cancelling
from xcatd.base.request import Request, Response, XcatError
from xcatd.handler import FLAG, NUMBER, TEXT, Context, command
from xcatd.provision import nodeevents
from xcatd.provision.agenttasks import NotConnected, Task, board_for
from xcatd.provision.nextboot import now_text
from xcatd.provision.postscripts import PlanBuilder

DEFAULT_TIMEOUT = 1800
DEFAULT_FANOUT = 64
MAX_LINES = 5000       # lines of one node's result shown
MAX_LINE = 4096        # characters of one line
DISKLESS = ("netboot", "statelite")

#: xCAT's wording for the illegal combinations
BOTH_F = "You can not specify both the -f and -F flags."
F_ALONE = ("If you specify the -f flag you must not specify either the -S or -k or -P or "
           "-F flags")
K_ALONE = "If you use the -k flag, you cannot specify the -S,-P,-f or -F flags."

DONE = {"sync": "File synchronization has completed.",
        "sw": "Running of Software maintenance has completed.",
        "scripts": "Running of postscripts has completed.",
        "keys": "Redeliver security files has completed."}


def steps_of(args: dict) -> list[tuple[str, dict]]:
    """The tasks each node runs, in xCAT's order, or XcatError with xCAT's message."""
    sync, snsync, sw = bool(args.get("sync")), bool(args.get("snsync")), bool(args.get("sw"))
    post = bool(args.get("postscripts")) or bool(args.get("scripts"))
    keys = bool(args.get("security"))
    if snsync and sync:
        raise XcatError(BOTH_F)
    if snsync and (sw or keys or post):
        raise XcatError(F_ALONE)
    if keys and (sw or post or sync or snsync):
        raise XcatError(K_ALONE)
    if snsync:
        raise XcatError("updatenode -f (--snsync) syncs files to service nodes, which this "
                        "management node does not have yet")
    if keys:
        return [("keys", {"kind": "keys", "scripts": "remoteshell"})]
    if not (sync or sw or post):
        sync = sw = post = True
    steps = []
    if sync:
        steps.append(("sync", {"kind": "sync"}))
    if sw:
        steps.append(("sw", {"kind": "scripts", "scripts": "otherpkgs"}))
    if post:
        steps.append(("scripts", {"kind": "scripts",
                                  "scripts": (args.get("scripts") or "").strip() or None}))
    return steps


@command("updatenode", noderange="required", writes=True,
         args={"sync": FLAG, "snsync": FLAG, "sw": FLAG, "postscripts": FLAG,
               "scripts": TEXT, "security": FLAG, "fanout": NUMBER, "timeout": NUMBER,
               "verbose": FLAG})
def updatenode(req: Request, ctx: Context, nodes) -> Iterator[Response]:
    steps = steps_of(req.args)
    names = nodes.sorted()
    timeout = _positive(req.args.get("timeout"), DEFAULT_TIMEOUT, "-t")
    fanout = int(_positive(req.args.get("fanout"), DEFAULT_FANOUT, "--fanout"))
    board = board_for(ctx.paths.root)
    if not board.attached:
        raise XcatError("updatenode reaches nodes through their agents, which connect to "
                        "xcatd: run it through xcatd, not with XCATBYPASS")
    if any(name == "sw" for name, _ in steps):
        yield from _diskless_warnings(ctx, names)
    _set_update_status(ctx, {n: "syncing" for n in names})
    todo = deque(names)
    running: dict = {}                   # future -> (node, task, deadline, step index)
    outcome: dict[str, str] = {}
    ok_nodes: dict[str, list[str]] = {name: [] for name, _ in steps}

    plans = _Plans(ctx, names)

    def start(node: str, index: int, deadline: float) -> Response | None:
        spec = steps[index][1]
        args = {k: v for k, v in spec.items() if k != "kind"}
        if spec["kind"] == "scripts":   # the plan goes with the task: no request for it
            args["plan"] = plans.of(node, spec.get("scripts"))
        try:
            task = board.submit(node, spec["kind"], args)
        except NotConnected as exc:
            outcome[node] = "failed"
            return Response(node=node, error=str(exc))
        running[task.future] = (node, task, deadline, index)
        return None

    while todo or running:
        if cancelling.requested():
            for _node, task, _d, _i in running.values():
                board.cancel(task)
            break
        while todo and len(running) < fanout:
            node = todo.popleft()
            err = start(node, 0, time.monotonic() + timeout)
            if err is not None:
                yield err
        if not running:
            continue
        soonest = min(d for _n, _t, d, _i in running.values())
        done, _ = wait(list(running), timeout=max(0.0, min(1.0, soonest - time.monotonic())),
                       return_when=FIRST_COMPLETED)
        for fut in done:
            node, task, deadline, index = running.pop(fut)
            try:
                result = fut.result()
            except NotConnected as exc:
                outcome[node] = "failed"
                yield Response(node=node, error=str(exc))
                continue
            yield from _result_lines(node, result)
            yield from _record_events(ctx, node, result.get("events"))
            step = steps[index][0]
            if _rc(result) != 0:
                outcome[node] = "failed"
            else:
                ok_nodes[step].append(node)
            if index + 1 < len(steps):
                err = start(node, index + 1, deadline)
                if err is not None:
                    yield err
            else:
                outcome.setdefault(node, "synced")
        now = time.monotonic()
        for fut, (node, task, deadline, _i) in list(running.items()):
            if now >= deadline:
                del running[fut]
                board.cancel(task)
                outcome[node] = "failed"
                yield Response(node=node, error=f"updatenode timed out after {timeout:g} s "
                                                 "(the node's agent did not finish; see "
                                                 f"nodeevents {node})")
    for node in names:
        outcome.setdefault(node, "failed")
    _set_update_status(ctx, outcome)
    for name, _spec in steps:
        if name == "sync" and ok_nodes[name]:
            yield Response(data=f'File synchronization has completed for nodes: '
                                f'"{",".join(ok_nodes[name])}"')
        elif ok_nodes[name]:
            yield Response(data=DONE[name])


class _Plans:
    """The nodes' plans for updatenode -P, made in bulk (a fixed number of queries for any
    number of nodes), once per list of scripts, as a node's task needs it."""

    def __init__(self, ctx: Context, names: list[str]) -> None:
        self.ctx, self.names = ctx, names
        self._builder: PlanBuilder | None = None

    def of(self, node: str, scripts: str | None) -> dict:
        if self._builder is None:
            self._builder = PlanBuilder(self.ctx, self.names, updatenode=True)
        return {**self._builder.plan_of(node, scripts).as_dict(), "mode": "updatenode"}


def _record_events(ctx: Context, node: str, events) -> Iterator[Response]:
    """The events the node's agent sent with its result, in the node's event log."""
    if not events or not isinstance(events, list):
        return
    try:
        for note in nodeevents.record(ctx, node, list(events)[:nodeevents.MAX_EVENTS]) or []:
            yield Response(node=node, warning=note)
    except XcatError as exc:
        yield Response(node=node, warning=f"events not recorded: {exc}")


def _rc(result: dict) -> int:
    """The exit code the node's agent sent (1 for anything that is not a number)."""
    rc = result.get("rc") or 0
    return rc if isinstance(rc, int) and not isinstance(rc, bool) else 1


def _result_lines(node: str, result: dict) -> Iterator[Response]:
    """The agent's lines, each as the node's; what the node sent is checked for shape."""
    lines = result.get("lines")
    failed = result.get("failed")
    lines = lines if isinstance(lines, list) else []
    failed = failed if isinstance(failed, list) else []
    for line in lines[:MAX_LINES]:
        yield Response(node=node, data=str(line)[:MAX_LINE])
    if len(lines) > MAX_LINES:
        yield Response(node=node, warning=f"{len(lines) - MAX_LINES} more lines not shown "
                                          "(the node's /var/log/xcat/xcat.log has them)")
    if _rc(result) != 0:
        what = f": {', '.join(map(str, failed))} failed" if failed else ""
        yield Response(node=node, error=f"updatenode failed on the node{what}")


def _positive(value, default, flag: str):
    if value is None:
        return default
    if value <= 0:
        raise XcatError(f"{flag} must be a positive number, not {value:g}")
    return float(value)


def _diskless_warnings(ctx: Context, names: list[str]) -> Iterator[Response]:
    values = ctx.db.resolve(names, {"nodetype": ["provmethod"],
                                    "noderes": ["current_osimage"]})
    images = {n: values[n].get(("nodetype", "provmethod")) or
              values[n].get(("noderes", "current_osimage")) for n in names}
    rows = {r["imagename"]: r for r in ctx.db.rows("osimage", keys={i for i in
                                                                   images.values() if i})}
    for node in names:
        image = images.get(node)
        method = (rows.get(image) or {}).get("provmethod") or image
        if method in DISKLESS or (rows.get(image) or {}).get("provmethod") in DISKLESS:
            yield Response(node=node, warning=(
                "this node is diskless: software installed by updatenode -S lasts until it "
                f"reboots. To keep it, add the packages to osimage {image}'s otherpkglist "
                f"(or pkglist) and run genimage {image}; packimage {image}"))


def _set_update_status(ctx: Context, status: dict[str, str]) -> None:
    if not status:
        return
    stamp = now_text()
    with ctx.db.begin() as conn:
        ctx.db.set_rows(conn, "nodelist", {(n,): {"updatestatus": s,
                                                  "updatestatustime": stamp}
                                           for n, s in status.items()})


__all__ = ["Task", "steps_of", "updatenode"]
