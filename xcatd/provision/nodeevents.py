"""The status event log of each node, and the watchdog that fails a node gone silent.

A node's agent posts what it does (an event per script: phase, script, exit code, duration,
status, the tail of its output) through the node API, which hands them to ``record``; the
log keeps the newest site.nodeeventsmax events of each node (default 200). ``recent`` and
``last_failure`` read it for nodeevents, nodestat and lsdef, in a fixed number of queries
whatever the number of nodes. ``watchdog`` fails the nodes whose nodelist.status says they
are at work (installing, netbooting, booting, configuring; updatestatus syncing) but that
have said nothing for site.nodestatustimeout seconds (default 3600; 0 or no: never).

>>> row, notes = check_event(1, {"phase": "postscripts", "script": "hello", "rc": 0,
...                              "duration": 0.0123, "status": "ok", "tail": "hi\\r\\n"}, "n1")
>>> row["rc"], row["duration"], row["tail"], notes
('0', '0.012', 'hi\\n', [])
>>> check_event(2, {"phase": "postscripts", "status": "ok", "rc": "x"}, "n1")
Traceback (most recent call last):
...
xcatd.base.request.XcatError: event 2: bad rc 'x': a whole number, or empty
>>> event_line({"time": "2026-12-06 10:00:01", "phase": "postscripts", "script": "hello",
...             "status": "ok", "rc": 0, "duration": 0.012})
'2026-12-06 10:00:01 postscripts hello ok rc=0 0.012s'
"""
from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from xcatd.base.request import XcatError, not_found
from xcatd.base.site import FALSE_WORDS, SiteValueError, SiteValues
from xcatd.db.cluster import Cluster
from xcatd.db.database import DISABLED, SA_TABLES

PHASES = ("enrol", "netboot", "install", "postscripts", "postbootscripts", "updatenode",
          "syncfiles", "otherpkgs", "boot")
STATUSES = ("started", "ok", "failed", "timeout", "booted", "skipped", "watchdog")
#: What a node may say; ``watchdog`` is the management node's own word
NODE_STATUSES = tuple(s for s in STATUSES if s != "watchdog")
FAILURES = ("failed", "timeout", "watchdog")

MAX_EVENTS = 100          # events in one post
MAX_SCRIPT = 512          # characters of a script entry
MAX_TAIL = 2000           # characters of output kept, the last ones
MAX_DURATION = 10 ** 9    # seconds (about 31 years)
DEFAULT_KEEP = 200        # site.nodeeventsmax
DEFAULT_TIMEOUT = 3600    # site.nodestatustimeout
#: Nodes per statement: far below SQLite's and PostgreSQL's limits on bound parameters
CHUNK = 5000

#: nodelist.status of a node at work -> the phase of its watchdog event
ACTIVE = {"installing": "install", "netbooting": "netboot", "booting": "boot",
          "configuring": "postscripts"}
#: nodelist.updatestatus of a node at work -> the phase of its watchdog event
UPDATE_ACTIVE = {"syncing": "updatenode"}

#: nodelist.statustime as xCAT (and xcatd.provision.nextboot.now_text) writes it
XCAT_TIME = "%m-%d-%Y %H:%M:%S"
#: nodeevents.time: sortable, as the audit log's
EVENT_TIME = "%Y-%m-%d %H:%M:%S"

_FIELDS = ("phase", "script", "rc", "duration", "status", "tail")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_RC = re.compile(r"-?\d{1,10}")


def event_time(now: datetime.datetime | None = None) -> str:
    return (now or datetime.datetime.now()).strftime(EVENT_TIME)


# ---- checking what a node posts --------------------------------------------------------------
def check_event(n: int, raw: Any, node: str) -> tuple[dict[str, str], list[str]]:
    """Event number ``n`` as a row (text columns) and notes on what was changed in it; an
    XcatError naming the bad field refuses it."""
    if not isinstance(raw, Mapping):
        raise XcatError(f"event {n}: not an object of fields")
    unknown = sorted(str(k)[:40] for k in raw if k not in (*_FIELDS, "node", "time"))
    if unknown:
        raise XcatError(f"event {n}: unknown field '{unknown[0]}' (fields: "
                        f"{', '.join(_FIELDS)})")
    if "node" in raw and raw["node"] != node:
        raise XcatError(f"event {n}: bad node: a node reports about itself only")
    notes: list[str] = []
    row = {"phase": _word(n, raw, "phase", PHASES),
           "status": _word(n, raw, "status", NODE_STATUSES),
           "script": _script(n, raw.get("script")),
           "rc": _rc(n, raw.get("rc")),
           "duration": _duration(n, raw.get("duration")),
           "tail": _tail(n, raw.get("tail"), notes)}
    return row, notes


def _bad(n: int, field: str, value: Any, why: str) -> XcatError:
    shown = repr(value) if not isinstance(value, str) else f"'{value[:40]}'"
    return XcatError(f"event {n}: bad {field} {shown[:60]}: {why}")


def _word(n: int, raw: Mapping, field: str, words: tuple[str, ...]) -> str:
    value = raw.get(field)
    if value not in words:
        if value is None:
            raise XcatError(f"event {n}: no {field} (one of {', '.join(words)})")
        raise _bad(n, field, value, f"one of {', '.join(words)}")
    return value


def _script(n: int, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(n, "script", value, "the entry as text")
    if len(value) > MAX_SCRIPT:
        raise XcatError(f"event {n}: bad script: longer than {MAX_SCRIPT} characters")
    if not value.isprintable():
        raise XcatError(f"event {n}: bad script: control characters in it")
    return value


def _rc(n: int, value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, int) and not isinstance(value, bool) and -2**31 <= value < 2**31:
        return str(value)
    if isinstance(value, str) and _RC.fullmatch(value.strip()):
        return str(int(value))
    raise _bad(n, "rc", value, "a whole number, or empty")


def _duration(n: int, value: Any) -> str:
    if value is None or value == "":
        return ""
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and len(value) < 32:
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or not 0 <= number < MAX_DURATION:
        raise _bad(n, "duration", value, "seconds, a number from 0")
    return f"{number:.3f}"


def _tail(n: int, value: Any, notes: list[str]) -> str:
    """Printable text and newlines only (carriage returns made newlines, tabs expanded,
    terminal colour codes dropped, other control characters replaced), its last MAX_TAIL
    characters."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(n, "tail", value, "the output as text")
    text = _ANSI.sub("", value.replace("\r\n", "\n").replace("\r", "\n")).expandtabs(8)
    bad = sum(1 for c in text if c != "\n" and not c.isprintable())
    if bad:
        text = "".join(c if c == "\n" or c.isprintable() else "\N{REPLACEMENT CHARACTER}"
                       for c in text)
        notes.append(f"event {n}: {bad} control characters in its tail replaced")
    if len(text) > MAX_TAIL:
        text = text[-MAX_TAIL:]
        notes.append(f"event {n}: tail cut to its last {MAX_TAIL} characters")
    return text


def keep_per_node(site: SiteValues) -> int:
    """site.nodeeventsmax: the events kept per node (default DEFAULT_KEEP)."""
    return site.integer("nodeeventsmax", DEFAULT_KEEP, low=1)


# ---- writing ---------------------------------------------------------------------------------
def record(cluster: Cluster, node: str, events: list[dict], *,
           conn: Connection | None = None) -> list[str]:
    """Check and store what ``node`` posted, all of it or (XcatError naming the bad event
    and field) nothing; the node's oldest events past site.nodeeventsmax go in the same
    transaction (the caller's ``conn``, else one of its own). Returns notes on what was
    changed (a tail cut or cleaned, a bad site.nodeeventsmax)."""
    if not isinstance(events, list):
        raise XcatError("events must be a list of event objects")
    if len(events) > MAX_EVENTS:
        raise XcatError(f"{len(events)} events in one post, more than {MAX_EVENTS}")
    rows, notes = [], []
    for n, raw in enumerate(events, 1):
        row, more = check_event(n, raw, node)
        rows.append(row)
        notes += more
    if not rows:
        return notes
    try:
        keep = keep_per_node(cluster.site)
    except SiteValueError as exc:
        keep = DEFAULT_KEEP
        notes.append(f"{exc}: keeping {keep} events per node")
    when = event_time()
    for row in rows:
        row.update(node=node, time=when)
    if conn is None:
        with cluster.db.begin() as own:
            _store(cluster, own, node, rows, keep)
    else:
        _store(cluster, conn, node, rows, keep)
    return notes


def _store(cluster: Cluster, conn: Connection, node: str, rows: list[dict], keep: int) -> None:
    if not cluster.db.rows("nodelist", conn, keys=[node]):
        raise not_found(f"{node} is not a node")
    conn.execute(SA_TABLES["nodeevents"].insert(), rows)
    prune(conn, [node], keep)


def prune(conn: Connection, nodes: list[str], keep: int) -> int:
    """Delete all but the newest ``keep`` events of each of ``nodes``; how many went."""
    t = SA_TABLES["nodeevents"]
    rank = sa.func.row_number().over(partition_by=t.c.node, order_by=t.c.recid.desc())
    ranked = sa.select(t.c.recid, rank.label("rank")).where(
        t.c.node.in_(sa.bindparam("nodes", expanding=True))).subquery("ranked")
    stmt = t.delete().where(t.c.recid.in_(
        sa.select(ranked.c.recid).where(ranked.c.rank > sa.bindparam("keep"))))
    gone = 0
    for part in _chunks(sorted(set(nodes))):
        gone += conn.execute(stmt, {"nodes": part, "keep": keep}).rowcount or 0
    return gone


# ---- reading ---------------------------------------------------------------------------------
def typed(row: Mapping[str, Any]) -> dict[str, Any]:
    """An event as --json shows it: rc an integer and duration a number (None when empty)."""
    return {"recid": row["recid"], "time": row["time"] or "", "phase": row["phase"] or "",
            "script": row["script"] or "", "rc": _int(row["rc"]),
            "duration": _float(row["duration"]), "status": row["status"] or "",
            "tail": row["tail"] or ""}


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _ranked(cluster: Cluster, nodes: Iterable[str], most: int,
            statuses: tuple[str, ...] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The newest ``most`` active events of each node (of ``statuses`` only, if given),
    oldest first: one query per CHUNK nodes."""
    names = list(dict.fromkeys(nodes))
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    if not names:
        return out
    t = SA_TABLES["nodeevents"]
    rank = sa.func.row_number().over(partition_by=t.c.node, order_by=t.c.recid.desc())
    inner = sa.select(t, rank.label("rank")).where(
        t.c.node.in_(sa.bindparam("nodes", expanding=True)),
        sa.or_(t.c.disable.is_(None), t.c.disable.notin_(DISABLED)))
    if statuses:
        inner = inner.where(t.c.status.in_(statuses))
    ranked = inner.subquery("ranked")
    stmt = sa.select(*[ranked.c[c.name] for c in t.columns]).where(
        ranked.c.rank <= sa.bindparam("most")).order_by(ranked.c.recid)
    with cluster.db.connect() as conn:
        for part in _chunks(names):
            for row in conn.execute(stmt, {"nodes": part, "most": most}).mappings():
                out[row["node"]].append(typed(row))
    return out


def recent(cluster: Cluster, nodes: Iterable[str], n: int) -> dict[str, list[dict[str, Any]]]:
    """{node: its newest ``n`` events, oldest first}; every node named has an entry."""
    return _ranked(cluster, nodes, max(1, int(n)))


def last_failure(cluster: Cluster, nodes: Iterable[str]) -> dict[str, dict[str, Any] | None]:
    """{node: its latest failed, timeout or watchdog event, or None}."""
    return {n: (evs[-1] if evs else None)
            for n, evs in _ranked(cluster, nodes, 1, FAILURES).items()}


def _chunks(names: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(names), CHUNK):
        yield names[i:i + CHUNK]


# ---- how events read -------------------------------------------------------------------------
def event_line(ev: Mapping[str, Any]) -> str:
    """``2026-12-06 10:00:01 postscripts hello ok rc=0 0.012s``: the empty parts left out."""
    parts = [ev.get("time") or "", ev.get("phase") or ""]
    if ev.get("script"):
        parts.append(ev["script"])
    parts.append(ev.get("status") or "")
    if ev.get("rc") is not None and ev.get("rc") != "":
        parts.append(f"rc={ev['rc']}")
    if ev.get("duration") is not None and ev.get("duration") != "":
        parts.append(f"{float(ev['duration']):.3f}s")
    return " ".join(p for p in parts if p)


def tail_lines(ev: Mapping[str, Any]) -> list[str]:
    """The lines of an event's output tail, without the blank ones at either end."""
    lines = (ev.get("tail") or "").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    return lines


_WHAT = {"postscripts": "postscript", "postbootscripts": "postbootscript",
         "updatenode": "updatenode script", "syncfiles": "syncfiles",
         "otherpkgs": "otherpkgs"}


def failure_text(ev: Mapping[str, Any], width: int = 160) -> str:
    """One line on a failure event, for nodestat: ``postscript 'hang' timeout after 10 s``,
    then its output's last line (where a script says what went wrong), or the watchdog's
    verdict."""
    lines = [line.strip() for line in tail_lines(ev) if line.strip()]
    if ev.get("status") == "watchdog":
        text = lines[0] if lines else f"timeout in {ev.get('phase')}"
    else:
        phase = ev.get("phase") or ""
        what = f"{_WHAT.get(phase, phase)} '{ev['script']}'" if ev.get("script") else phase
        if ev.get("status") == "timeout":
            dur = _float(ev.get("duration"))
            text = f"{what} timeout" + (f" after {_seconds(dur)} s" if dur is not None else "")
        else:
            rc = ev.get("rc")
            text = f"{what} failed" + (f" (rc={rc})" if rc not in (None, "") else "")
        if lines:
            text += f": {lines[-1]}"
    return text if len(text) <= width else text[:width - 3] + "..."


def _seconds(dur: float) -> str:
    """10 for 10.003, 2.5 for 2.5: a script's timeout as the admin wrote it."""
    return f"{dur:.0f}" if dur >= 10 else f"{dur:.2g}"


# ---- the watchdog ----------------------------------------------------------------------------
def status_timeout(site: SiteValues) -> int | None:
    """site.nodestatustimeout in seconds (default DEFAULT_TIMEOUT), None when 0 or no; a
    value that is neither raises SiteValueError."""
    text = site.text("nodestatustimeout").lower()
    if not text:
        return DEFAULT_TIMEOUT
    if text in FALSE_WORDS:
        return None
    seconds = site.integer("nodestatustimeout", DEFAULT_TIMEOUT, low=0)
    return seconds or None


def parse_time(text: str | None) -> datetime.datetime | None:
    """A statustime (xCAT's MM-DD-YYYY or the event log's YYYY-MM-DD), else None."""
    for fmt in (XCAT_TIME, EVENT_TIME):
        try:
            return datetime.datetime.strptime((text or "").strip(), fmt)
        except ValueError:
            continue
    return None


def watchdog(cluster: Cluster, now: datetime.datetime | None = None) -> list[tuple[str, str]]:
    """Fail the nodes at work that have said nothing (no status, no event) for longer than
    site.nodestatustimeout: nodelist.status (or updatestatus) ``failed`` and a ``watchdog``
    event ``timeout in <state>``, for all of them in one transaction. A node whose state
    or statustime changed meanwhile (its report came) is left alone. Returns the (node,
    state) pairs failed."""
    timeout = status_timeout(cluster.site)
    if timeout is None:
        return []
    now = now or datetime.datetime.now()
    limit = datetime.timedelta(seconds=timeout)
    db, t = cluster.db, SA_TABLES["nodelist"]
    cols = (("status", "statustime", ACTIVE), ("updatestatus", "updatestatustime",
                                               UPDATE_ACTIVE))
    with db.connect() as conn:
        rows = conn.execute(sa.select(
            t.c.node, t.c.status, t.c.statustime, t.c.updatestatus, t.c.updatestatustime,
            t.c.disable).where(sa.or_(t.c.status.in_(list(ACTIVE)),
                                      t.c.updatestatus.in_(list(UPDATE_ACTIVE))))).mappings().all()
        silent: list[tuple[str, str, str, str, datetime.datetime]] = []
        for r in rows:
            if (r["disable"] or "").lower() in DISABLED:
                continue
            for col, timecol, words in cols:
                since = parse_time(r[timecol])
                if r[col] in words and since is not None and now - since > limit:
                    silent.append((r["node"], col, r[col], r[timecol], since))
        if not silent:
            return []
        heard = _last_heard(conn, sorted({s[0] for s in silent}))
    silent = [s for s in silent if not (heard.get(s[0]) and now - heard[s[0]] <= limit)]
    if not silent:
        return []
    failed: list[tuple[str, str]] = []
    events: list[dict[str, str]] = []
    stamp = now.strftime(XCAT_TIME)
    with db.begin() as conn:
        for col, timecol, words in cols:
            mine = [s for s in silent if s[1] == col]
            if not mine:
                continue
            stmt = t.update().where(sa.tuple_(t.c.node, t.c[col], t.c[timecol]).in_(
                sa.bindparam("was", expanding=True))).values(
                {col: "failed", timecol: stamp}).returning(t.c.node)
            done: set[str] = set()
            for i in range(0, len(mine), CHUNK):
                part = mine[i:i + CHUNK]
                done |= {n for (n,) in conn.execute(stmt, {"was": [(s[0], s[2], s[3])
                                                                   for s in part]})}
            for node, _col, word, _text, since in mine:
                if node not in done:
                    continue
                quiet = int((now - max(since, heard.get(node) or since)).total_seconds())
                failed.append((node, word))
                events.append({"node": node, "time": event_time(now), "phase": words[word],
                               "script": "", "rc": "", "duration": "", "status": "watchdog",
                               "tail": f"timeout in {word}: no word from the node for "
                                       f"{quiet} s (site.nodestatustimeout is {timeout})"})
        if events:
            conn.execute(SA_TABLES["nodeevents"].insert(), events)
            try:
                keep = keep_per_node(cluster.site)
            except SiteValueError:
                keep = DEFAULT_KEEP
            prune(conn, [e["node"] for e in events], keep)
    return failed


def _last_heard(conn: Connection, nodes: list[str]) -> dict[str, datetime.datetime]:
    """When each node last posted an event (the watchdog's own do not count)."""
    t = SA_TABLES["nodeevents"]
    stmt = sa.select(t.c.node, sa.func.max(t.c.time)).where(
        t.c.node.in_(sa.bindparam("nodes", expanding=True)),
        t.c.status != "watchdog").group_by(t.c.node)
    out: dict[str, datetime.datetime] = {}
    for part in _chunks(nodes):
        for node, text in conn.execute(stmt, {"nodes": part}):
            when = parse_time(text)
            if when is not None:
                out[node] = when
    return out
