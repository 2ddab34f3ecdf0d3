"""rinv, rvitals and reventlog: what a node's management controller knows about its hardware.

Nodes route exactly as rpower's do (xcatd.hardware.routing: nodehm.mgt, the ipmi table,
the passwd table), to their driver's inventory, sensors or event-log interface. The driver
returns each node's lines in xCAT's words as soon as that node answers; one dead BMC is one
``node: Error: ...`` line and the exit code says so.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from xcatd.base.noderange import NodeRange
from xcatd.base.request import Request, Response, XcatError
from xcatd.handler import FLAG, TEXT, TEXT_OR_TEXTS, Context, command
from xcatd.hardware.interfaces import (
    INVENTORY,
    VITALS,
    EventLogInterface,
    InventoryInterface,
    Limits,
    Outcome,
    SensorsInterface,
)
from xcatd.hardware.routing import routes

#: rinv words: the interface's, and xCAT's cheap extras for BMCs.
RINV_WORDS = INVENTORY + ("vpd", "mprom", "deviceid", "asset", "misc")
#: rvitals words: the interface's, and xCAT's 'wattage'.
RVITALS_WORDS = VITALS + ("wattage",)


@command("rinv", noderange="required", args={"what": TEXT_OR_TEXTS})
def rinv(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    what = _words(req, "rinv", RINV_WORDS)
    if len(what) > 1:
        raise XcatError(f"rinv takes one of {', '.join(RINV_WORDS)}, not "
                        f"'{' '.join(what)}'")
    yield from _each_driver(ctx, nodes, InventoryInterface,
                            lambda hw, ts, lim: hw.inventory(ts, what[0], lim), shape=_fields)


@command("rvitals", noderange="required", args={"what": TEXT_OR_TEXTS})
def rvitals(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    what = ",".join(_words(req, "rvitals", RVITALS_WORDS))
    yield from _each_driver(ctx, nodes, SensorsInterface,
                            lambda hw, ts, lim: hw.vitals(ts, what, lim), shape=_fields)


def _writes_reventlog(req: Request) -> bool:
    return _reventlog_words(req)[0] == "clear"


@command("reventlog", noderange="required", writes=_writes_reventlog,
         args={"what": TEXT, "sort": FLAG})
def reventlog(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    word, count = _reventlog_words(req)
    clear = word == "clear"
    newest_first = bool(req.args.get("sort")) and not clear
    yield from _each_driver(ctx, nodes, EventLogInterface,
                            lambda hw, ts, lim: hw.event_log(ts, count, clear, lim),
                            reverse=newest_first, shape=_eventlog)


# ---- arguments -----------------------------------------------------------------------------
def _words(req: Request, cmd: str, allowed: tuple[str, ...]) -> list[str]:
    """The request's words (a string or a list, commas split too), 'all' when none; an
    unknown word is an error that names it."""
    raw = req.args.get("what") or []
    if isinstance(raw, str):
        raw = [raw]
    words = [w.strip().lower() for item in raw for w in str(item).split(",") if w.strip()]
    for w in words:
        if w not in allowed:
            raise XcatError(f"Unsupported command: {cmd} {w} (use {', '.join(allowed)})")
    return list(dict.fromkeys(words)) or ["all"]


def _reventlog_words(req: Request) -> tuple[str, int | None]:
    """('all'|'clear'|'count', N): xCAT's reventlog takes a number of entries, all or
    clear."""
    word = str(req.args.get("what") or "all").strip().lower()
    if word in ("all", "clear"):
        return word, None
    if word.isdigit() and int(word) > 0:
        return "count", int(word)
    raise XcatError(f"Unsupported command: reventlog {word} (use a number of entries, all "
                    "or clear)")


# ---- the machine-readable form of a line (--json) ------------------------------------------
#: reventlog lines that are notes, not entries: xCAT's words for an empty or a cleared SEL
SEL_NOTES = ("no SEL entries", "SEL cleared")


def _fields(line: str) -> dict[str, Any] | None:
    """A labelled line as one field, ``{"CPU Temp": "40 C (104 F)"}``; other lines stay
    text."""
    label, sep, value = line.partition(": ")
    return {label: value} if sep and label.strip() else None


def _eventlog(line: str) -> dict[str, Any]:
    """``{"eventlog": [entry]}`` (a node's entries add up, in the order printed); a note
    about the SEL is ``{"eventlog": [], "message": note}``."""
    if line in SEL_NOTES:
        return {"eventlog": [], "message": line}
    return {"eventlog": [line]}


# ---- running -------------------------------------------------------------------------------
def _each_driver(ctx: Context, nodes: NodeRange | None, kind: type, call,
                 reverse: bool = False, shape: Callable[[str], dict | None] = lambda _: None
                 ) -> Iterator[Response]:
    """Route the nodes to their drivers as ``kind``, run ``call(driver, targets, limits)``
    per driver and turn each node's outcome into its lines as it arrives (``shape`` gives a
    line's machine-readable form)."""
    found, errors = routes(ctx, nodes.sorted(), kind)
    yield from errors
    limits = Limits.from_site(ctx.site)
    for route in found:
        yield from _responses(call(route.impl, route.targets, limits), reverse, shape)


def _responses(outcomes: Iterable[Outcome], reverse: bool,
               shape: Callable[[str], dict | None]) -> Iterator[Response]:
    for o in outcomes:
        if o.error:
            yield Response(node=o.node, error=o.error, errorcode=1)
            continue
        lines = list(o.lines or ([o.value] if o.value else []))
        for line in reversed(lines) if reverse else lines:
            yield Response(node=o.node, data=line, obj=shape(line))
