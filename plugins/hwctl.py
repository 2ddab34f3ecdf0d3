"""rpower and rsetboot, and fence_node for the rest of the toolkit.

Nodes route by nodehm.power (else nodehm.mgt) to a hardware manager; BMC address, port and
credentials come from the node's ipmi row (regex values work), else the passwd row with
key=ipmi. Every node's result prints as soon as it is known; one dead BMC is one error line.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from xcatd.base.paths import Paths
from xcatd.daemon.dispatch import Context, command
from xcatd.hardware.base import (
    BOOT_DEVICES,
    BOOT_WORDS,
    POWER_ACTIONS,
    Limits,
    Target,
    group_by,
    manager,
)
from xcatd.base.noderange import NodeRange
from xcatd.base.request import Request, Response, XcatError

READ_ACTIONS = ("stat", "state", "status")
STATUS_AFTER = {"on": "powering-on", "boot": "powering-on", "reset": "powering-on",
                "cycle": "powering-on", "off": "powering-off", "softoff": "powering-off"}


def targets(ctx: Context, nodes: list[str]) -> tuple[dict[str, list[Target]], list[Response]]:
    """{mgt: [Target]} for the nodes, and an error Response for each node that cannot be
    reached (no method, no BMC address)."""
    values = ctx.db.resolve(nodes, {"nodehm": ["mgt", "power"],
                                    "ipmi": ["bmc", "bmcport", "username", "password"]},
                            groups=ctx.node_groups_if_loaded(nodes))
    default = (ctx.db.match("passwd", {"key": "ipmi"}) or [{}])[0]
    routed, errors = [], []
    for node in nodes:
        v = values[node]
        mgt = v.get(("nodehm", "power")) or v.get(("nodehm", "mgt"))
        if not mgt:
            errors.append(Response(node=node, error="no hardware management method "
                                                    "(nodehm.mgt)", errorcode=1))
            continue
        if mgt != "ipmi":
            errors.append(Response(node=node, error=f"mgt={mgt} is not supported yet (only "
                                                    "ipmi)", errorcode=1))
            continue
        bmc = v.get(("ipmi", "bmc"))
        if not bmc:
            errors.append(Response(node=node, error="no BMC address (ipmi.bmc)", errorcode=1))
            continue
        try:
            port = int(v.get(("ipmi", "bmcport")) or 623)
        except ValueError:
            errors.append(Response(node=node, error="ipmi.bmcport is not a number",
                                   errorcode=1))
            continue
        routed.append((mgt, Target(node, bmc, port,
                                   v.get(("ipmi", "username")) or default.get("username") or "",
                                   v.get(("ipmi", "password")) or default.get("password") or "")))
    return group_by(routed), errors


def _writes_rpower(req: Request) -> bool:
    return (req.args.get("action") or "stat") not in READ_ACTIONS


@command("rpower", noderange="required", writes=_writes_rpower)
def rpower(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    action = (req.args.get("action") or "").lower()
    if action not in POWER_ACTIONS + READ_ACTIONS + ("boot",):
        raise XcatError(f"Unsupported command: rpower {action} (use on, off, softoff, reset, "
                        "boot, cycle, stat, state, status or nmi)")
    routes, errors = targets(ctx, nodes.sorted())
    yield from errors
    limits = Limits.from_site(ctx.site)
    changed: dict[str, str] = {}
    for mgt, ts in routes.items():
        hw = manager(mgt)
        if action in READ_ACTIONS:
            outcomes = hw.power_state(ts, limits)
        elif action == "boot":  # on if off, reset if on
            outcomes = _boot(hw, ts, limits)
        else:
            outcomes = hw.set_power(ts, action, limits)
        for o in outcomes:
            if o.error:
                yield Response(node=o.node, error=o.error, errorcode=1)
                continue
            if action in READ_ACTIONS:
                yield Response(node=o.node, data=o.value)
                continue
            changed[o.node] = STATUS_AFTER.get(action, "")
            word = {"boot": o.value, "cycle": "off on", "softoff": "softoff", "reset": "reset",
                    "nmi": "nmi"}.get(action, o.value)
            yield Response(node=o.node, data=word)
    _set_status(ctx, {n: s for n, s in changed.items() if s})


def _boot(hw, ts: list[Target], limits: Limits):
    """xCAT's rpower boot: a node that is on is reset ('on reset'), one that is off is
    powered on ('off on')."""
    on, off = [], []
    for o in hw.power_state(ts, limits):
        if o.error:
            yield o
        else:
            (on if o.value == "on" else off).append(o.node)
    by_node = {t.node: t for t in ts}
    for o in hw.set_power([by_node[n] for n in on], "reset", limits):
        o.value = o.value if o.error else "on reset"
        yield o
    for o in hw.set_power([by_node[n] for n in off], "on", limits):
        o.value = o.value if o.error else "off on"
        yield o


def _set_status(ctx: Context, status: dict[str, str]) -> None:
    if not status:
        return
    import datetime
    now = datetime.datetime.now().strftime("%m-%d-%Y %H:%M:%S")
    with ctx.db.begin() as conn:
        ctx.db.set_rows(conn, "nodelist", {(n,): {"status": s, "statustime": now}
                                           for n, s in status.items()})


def _writes_rsetboot(req: Request) -> bool:
    return (req.args.get("device") or "stat") != "stat"


@command("rsetboot", noderange="required", writes=_writes_rsetboot)
def rsetboot(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    device = (req.args.get("device") or "").lower()
    if device != "stat" and device not in BOOT_DEVICES:
        raise XcatError(f"Unsupported boot device {device!r}: use net, hd, cd, def or stat")
    routes, errors = targets(ctx, nodes.sorted())
    yield from errors
    limits = Limits.from_site(ctx.site)
    for mgt, ts in routes.items():
        hw = manager(mgt)
        outcomes = hw.boot_device(ts, limits) if device == "stat" else hw.set_boot_device(
            ts, BOOT_DEVICES[device], bool(req.args.get("persistent")),
            bool(req.args.get("uefi")), limits)
        for o in outcomes:
            if o.error:
                yield Response(node=o.node, error=o.error, errorcode=1)
            else:
                yield Response(node=o.node, data=BOOT_WORDS.get(o.value or "default", o.value))


# ---- fencing, as a library call -------------------------------------------------------------
@dataclass(frozen=True)
class FenceResult:
    node: str
    fenced: bool
    message: str


def fence_node(name: str, paths: Paths | None = None) -> FenceResult:
    """Power a node off through whatever manages it and verify it is off (libfence's job)."""
    ctx = Context(Request("fence_node", name, user="root"), paths)
    try:
        nodes = ctx.expand(name)
    except Exception as exc:
        return FenceResult(name, False, str(exc))
    if len(nodes) != 1:
        return FenceResult(name, False, f"{name} is not one node")
    routes, errors = targets(ctx, nodes.sorted())
    if errors:
        return FenceResult(name, False, errors[0].error or "cannot reach its BMC")
    for mgt, ts in routes.items():
        for o in manager(mgt).set_power(ts, "off", Limits.from_site(ctx.site)):
            if o.error:
                return FenceResult(name, False, o.error)
            if o.value != "off":
                return FenceResult(name, False, f"still {o.value} after power off")
            _set_status(ctx, {name: "powering-off"})
            return FenceResult(name, True, "off")
    return FenceResult(name, False, "no hardware manager")
