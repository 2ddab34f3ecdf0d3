"""rpower and rsetboot: power and the next boot device, through each node's driver.

Nodes route by nodehm.power (else nodehm.mgt) to a driver's power or boot-device interface
(xcatd.hardware.routing); every node's result prints as soon as it is known, and one dead
BMC is one error line.
"""
from __future__ import annotations

import datetime
from collections.abc import Iterator

from xcatd.base.noderange import NodeRange
from xcatd.base.request import Request, Response, XcatError
from xcatd.db.cluster import Cluster
from xcatd.handler import FLAG, TEXT, Context, command
from xcatd.hardware.interfaces import (
    BOOT_DEVICES,
    BOOT_WORDS,
    POWER_ACTIONS,
    BootDeviceInterface,
    Limits,
    PowerInterface,
    Target,
)
from xcatd.hardware.routing import routes

READ_ACTIONS = ("stat", "state", "status")
STATUS_AFTER = {"on": "powering-on", "boot": "powering-on", "reset": "powering-on",
                "cycle": "powering-on", "off": "powering-off", "softoff": "powering-off"}


def _writes_rpower(req: Request) -> bool:
    return (req.args.get("action") or "stat") not in READ_ACTIONS


@command("rpower", noderange="required", writes=_writes_rpower, args={"action": TEXT})
def rpower(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    action = (req.args.get("action") or "").lower()
    if action not in POWER_ACTIONS + READ_ACTIONS + ("boot",):
        raise XcatError(f"Unsupported command: rpower {action} (use on, off, softoff, reset, "
                        "boot, cycle, stat, state, status or nmi)")
    found, errors = routes(ctx, nodes.sorted(), PowerInterface)
    yield from errors
    limits = Limits.from_site(ctx.site)
    changed: dict[str, str] = {}
    for route in found:
        hw: PowerInterface = route.impl
        if action in READ_ACTIONS:
            outcomes = hw.power_state(route.targets, limits)
        elif action == "boot":  # on if off, reset if on
            outcomes = _boot(hw, route.targets, limits)
        else:
            outcomes = hw.set_power(route.targets, action, limits)
        for o in outcomes:
            if o.error:
                yield Response(node=o.node, error=o.error, errorcode=1)
                continue
            if action in READ_ACTIONS:
                yield Response(node=o.node, data=o.value, obj={"power": o.value})
                continue
            changed[o.node] = STATUS_AFTER.get(action, "")
            word = {"boot": o.value, "cycle": "off on", "softoff": "softoff", "reset": "reset",
                    "nmi": "nmi"}.get(action, o.value)
            yield Response(node=o.node, data=word, obj={"power": word})
    set_status(ctx, {n: s for n, s in changed.items() if s})


def _boot(hw: PowerInterface, ts: list[Target], limits: Limits):
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


def set_status(cluster: Cluster, status: dict[str, str]) -> None:
    if not status:
        return
    now = datetime.datetime.now().strftime("%m-%d-%Y %H:%M:%S")
    with cluster.db.begin() as conn:
        cluster.db.set_rows(conn, "nodelist", {(n,): {"status": s, "statustime": now}
                                               for n, s in status.items()})


def _writes_rsetboot(req: Request) -> bool:
    return (req.args.get("device") or "stat") != "stat"


@command("rsetboot", noderange="required", writes=_writes_rsetboot,
         args={"device": TEXT, "persistent": FLAG, "uefi": FLAG})
def rsetboot(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    device = (req.args.get("device") or "stat").lower()  # xCAT: no word is 'stat'
    if device != "stat" and device not in BOOT_DEVICES:
        raise XcatError(f"Unsupported command: rsetboot {device} (use "
                        f"{', '.join(BOOT_DEVICES)} or stat)")
    found, errors = routes(ctx, nodes.sorted(), BootDeviceInterface)
    yield from errors
    limits = Limits.from_site(ctx.site)
    for route in found:
        hw: BootDeviceInterface = route.impl
        outcomes = hw.boot_device(route.targets, limits) if device == "stat" else \
            hw.set_boot_device(route.targets, BOOT_DEVICES[device],
                               bool(req.args.get("persistent")), bool(req.args.get("uefi")),
                               limits)
        for o in outcomes:
            if o.error:
                yield Response(node=o.node, error=o.error, errorcode=1)
            else:
                word = BOOT_WORDS.get(o.value or "default", o.value)
                yield Response(node=o.node, data=word, obj={"nextboot": word})
