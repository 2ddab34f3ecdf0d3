"""Service nodes: which one acts for each node, and which are alive.

A node's pool is ``noderes.servicenode``, an ordered list of service node names, matched
exactly (xCAT matched them as regular expressions, so ``sn1`` also meant ``sn10``). A node
with no pool is served by the management node itself.

Each service node's xcatd heartbeats into ``snstatus`` (its address, port and the time); a
service node is alive while its last heartbeat is younger than ``site.snheartbeattimeout``
seconds (default 30).

Who acts for a node is a lease row in ``nodeowner``: the service node and an epoch. The first
request for a node records the first member of its pool with epoch 1. ``snmove`` (and, with
``site.snautofailover``, a dead owner) moves the lease in one transaction and raises the epoch:
a service node acting for a node presents the epoch it was given, and ``fence`` refuses a stale
one, so a service node that was paused past the timeout cannot act on nodes it lost meanwhile.
"""
from __future__ import annotations

import datetime
import math
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from xcatd.base.noderange import natural_key
from xcatd.base.request import Request
from xcatd.db.database import SA_TABLES, Database, DBError, split_list

#: seconds after its last heartbeat a service node counts as dead
DEFAULT_HEARTBEAT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Owner:
    """The service node acting for a node (None: the management node) and the lease's
    epoch."""

    servicenode: str | None
    epoch: int


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stamp(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.UTC)
    except ValueError:
        return None


def pools(db: Database, nodes: Iterable[str], conn: Connection | None = None
          ) -> dict[str, list[str]]:
    """Each node's service node pool, in order (group inheritance as any attribute)."""
    values = db.resolve(list(nodes), {"noderes": ["servicenode"]}, conn=conn)
    return {n: split_list(v.get(("noderes", "servicenode"))) for n, v in values.items()}


def any_pool(db: Database) -> bool:
    """Whether any node or group names a service node pool (one row read at most): without
    one, every node is the management node's own. (A lease left from an emptied pool is
    moved back when a pool is next named; meanwhile nobody acts for it but the MN.)"""
    t = SA_TABLES["noderes"]
    stmt = sa.select(sa.literal(1)).where(t.c.servicenode.is_not(None),
                                          t.c.servicenode != "").limit(1)
    with db.connect() as conn:
        return conn.execute(stmt).first() is not None


def db_now(db: Database, conn: Connection | None = None) -> datetime.datetime:
    """The time by the database server's clock (PostgreSQL), so that the service nodes'
    heartbeats and the management node's reading of them share one clock whatever the
    machines' clocks say; this machine's on SQLite (no service nodes there)."""
    if db.engine.url.get_backend_name() == "sqlite":
        return _now()
    if conn is None:
        with db.connect() as c:
            return db_now(db, c)
    return conn.execute(sa.text("SELECT now()")).scalar_one().astimezone(datetime.UTC)


def heartbeat(db: Database, sn: str, address: str, port: int, *,
              when: datetime.datetime | None = None) -> None:
    """Record that service node ``sn`` is alive, reachable at address:port (the time by
    the database's clock unless ``when``)."""
    with db.begin() as conn:
        db.set_rows(conn, "snstatus", {(sn,): {"address": address, "port": str(port),
                                               "heartbeat": _stamp(when or db_now(db, conn))}})


def alive(db: Database, *, timeout: float | None = None, now: datetime.datetime | None = None,
          conn: Connection | None = None) -> set[str]:
    """The service nodes whose heartbeat is younger than the timeout."""
    if timeout is None:
        timeout = heartbeat_timeout(db, conn)
    now = now or db_now(db, conn)
    out = set()
    for r in db.rows("snstatus", conn):
        beat = _parse(r.get("heartbeat"))
        if beat is not None and (now - beat).total_seconds() <= timeout:
            out.add(r["node"])
    return out


def heartbeat_timeout(db: Database, conn: Connection | None = None) -> float:
    value = db.site(conn).get("snheartbeattimeout")
    try:
        seconds = float(value) if value else DEFAULT_HEARTBEAT_TIMEOUT
    except ValueError:
        raise DBError(f"site.snheartbeattimeout={value!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise DBError(f"site.snheartbeattimeout={value!r} must be a number of seconds "
                      "more than 0")
    return seconds


def autofailover(db: Database, conn: Connection | None = None) -> bool:
    return (db.site(conn).get("snautofailover") or "").strip().lower() in ("1", "yes", "y",
                                                                          "true")


def owners(db: Database, nodes: Iterable[str], *, now: datetime.datetime | None = None,
           moved: list[Moved] | None = None) -> dict[str, Owner]:
    """Who acts for each node, with the lease's epoch; leases are recorded in one
    transaction. With site.snautofailover on, a node whose owner's heartbeat stopped moves
    to the first live member of its pool as snmove would move it (pool order, lease, server
    attributes). Without it a node stays with its owner, dead or not: the request says so
    for each node it could not reach, and the admin moves nodes with snmove."""
    nodes = list(nodes)
    for attempt in (1, 2):  # two first asks for the same node at once: the loser reads again
        if moved is not None:
            moved.clear()  # (what a failed attempt recorded did not happen)
        try:
            return _owners(db, nodes, now, moved)
        except sa_exc.IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _owners(db: Database, nodes: list[str], now: datetime.datetime | None,
            moved: list[Moved] | None) -> dict[str, Owner]:
    with db.begin() as conn:
        out, changes, failed_over = _plan_owners(db, conn, nodes, now)
        if changes or failed_over:  # hold those leases (a move at the same time waits, or
            # we do), then decide again on what they are now; a read alone locks nothing
            db.lock_rows(conn, "nodeowner", [k[0] for k in changes] + list(failed_over))
            out, changes, failed_over = _plan_owners(db, conn, nodes, now)
        if changes:
            db.set_rows(conn, "nodeowner", changes)
        if failed_over:
            for m in _apply_moves(db, conn, failed_over, now=now):
                out[m.node] = Owner(m.new, m.epoch)
                if moved is not None:
                    moved.append(m)
    return out


def _plan_owners(db: Database, conn: Connection, nodes: list[str],
                 now: datetime.datetime | None
                 ) -> tuple[dict[str, Owner], dict[tuple, dict], dict[str, str]]:
    """Who acts for each node, the lease rows to write, and the nodes to fail over."""
    pool = pools(db, nodes, conn)
    failover = autofailover(db, conn)
    living = alive(db, now=now, conn=conn) if failover else set()
    leases = {r["node"]: r for r in db.rows("nodeowner", conn, keys=nodes)}
    out: dict[str, Owner] = {}
    changes: dict[tuple, dict] = {}
    failed_over: dict[str, str] = {}
    for n in nodes:
        members = pool.get(n, [])
        lease = leases.get(n)
        epoch = int(lease["epoch"] or 0) if lease else 0
        current = lease.get("servicenode") if lease else None
        if not members:
            out[n] = Owner(None, epoch)
            if current:  # its pool was emptied: the management node acts for it now
                changes[(n,)] = {"servicenode": None, "epoch": epoch + 1,
                                 "since": _stamp(now or _now())}
                out[n] = Owner(None, epoch + 1)
            continue
        want = current if current in members else members[0]
        if failover and want not in living:
            alive_member = next((m for m in members if m in living), None)
            if alive_member is not None and current is not None:
                failed_over[n] = alive_member
                continue
            want = alive_member or want
        if want != current:
            epoch += 1
            changes[(n,)] = {"servicenode": want, "epoch": epoch,
                             "since": _stamp(now or _now())}
        out[n] = Owner(want, epoch)
    return out, changes, failed_over


def fence(db: Database, sn: str, leases: dict[str, int], conn: Connection | None = None
          ) -> dict[str, str]:
    """The nodes among ``leases`` ({node: epoch} a service node was given) that ``sn`` may no
    longer act for, each with the reason; checked against the lease rows as they are now."""
    rows = {r["node"]: r for r in db.rows("nodeowner", conn, keys=list(leases))}
    refused = {}
    for node, epoch in leases.items():
        r = rows.get(node)
        if r is None or r.get("servicenode") != sn:
            refused[node] = (f"{sn} no longer serves {node} (its owner is "
                             f"{(r or {}).get('servicenode') or 'the management node'})")
        elif int(r.get("epoch") or 0) != epoch:
            refused[node] = (f"{sn}'s lease on {node} is stale (epoch {epoch}, now "
                             f"{r.get('epoch')})")
    return refused


@dataclass(frozen=True)
class Moved:
    node: str
    old: str | None
    new: str
    epoch: int


def effective(members: list[str], lease: str | None) -> str | None:
    """Who acts for a node with pool ``members`` and a lease naming ``lease``, as owners()
    will record it at the next ask: nobody but the management node without a pool; the
    lease's service node while the pool still names it; else the first of the pool."""
    if not members:
        return None
    return lease if lease in members else members[0]


def served_by(db: Database, sn: str | None, conn: Connection | None = None) -> list[str]:
    """The nodes ``sn`` acts for now (see effective), by exact name; ``None``: the
    management node's."""
    nodes = sorted(db.all_nodes(conn))
    pool = pools(db, nodes, conn)
    leases = {r["node"]: r.get("servicenode") for r in db.rows("nodeowner", conn)}
    return [n for n in nodes if effective(pool.get(n, []), leases.get(n)) == sn]


def still_served(db: Database, sn: str, nodes: list[str]) -> list[str]:
    """The nodes among ``nodes`` that ``sn`` acts for (see effective), in name order."""
    leases = {r["node"]: r.get("servicenode") for r in db.rows("nodeowner", keys=nodes)}
    pool = pools(db, nodes)
    return sorted((n for n in nodes if effective(pool.get(n, []), leases.get(n)) == sn),
                  key=natural_key)


def in_use(db: Database, conn: Connection | None = None) -> set[str]:
    """The service nodes some node's pool names or some lease names: the others (retired)
    are no longer asked for anything."""
    nodes = sorted(db.all_nodes(conn))
    out = {m for members in pools(db, nodes, conn).values() for m in members}
    return out | {r["servicenode"] for r in db.rows("nodeowner", conn) if r.get("servicenode")}


def server_names(db: Database, sn: str, conn: Connection | None = None) -> set[str]:
    """The names a service node goes by in the tables: its own, and the address its
    heartbeat gives."""
    rows = db.rows("snstatus", conn, keys=[sn])
    return {sn, *(r["address"] for r in rows if r.get("address"))}


def move(db: Database, nodes: Iterable[str], dest: str | None, *, destn: str | None = None,
         sourcen: str | None = None, now: datetime.datetime | None = None) -> list[Moved]:
    """snmove: each node moves to ``dest`` (None: the next member of its pool after the one
    acting for it, xCAT's backup service node), all in one transaction or none (see
    _apply_moves). A node already served by its destination is left as it is."""
    nodes = list(nodes)
    with db.begin() as conn:
        db.lock_rows(conn, "nodeowner", nodes)
        pool = pools(db, nodes, conn)
        leases = {r["node"]: r.get("servicenode") for r in db.rows("nodeowner", conn,
                                                                   keys=nodes)}
        targets: dict[str, str] = {}
        nobackup = []
        for n in nodes:
            members = pool.get(n, [])
            old = leases.get(n) or (members[0] if members else None)
            new = dest
            if new is None:
                after = members[members.index(old) + 1:] if old in members else members[1:]
                new = after[0] if after else None
                if new is None:
                    nobackup.append(n)
                    continue
            if old != new:
                targets[n] = new
        if nobackup:
            raise DBError("; ".join(f"Could not determine a backup service node for node {n}."
                                    for n in nobackup[:20])
                          + (f" (and {len(nobackup) - 20} more)" if len(nobackup) > 20 else ""))
        return _apply_moves(db, conn, targets, destn=destn, sourcen=sourcen, now=now, pool=pool)


#: the server attributes that follow a node's service node
SERVER_ATTRS = ("xcatmaster", "tftpserver", "nfsserver", "monserver")


def _apply_moves(db: Database, conn: Connection, targets: dict[str, str], *,
                 destn: str | None = None, sourcen: str | None = None,
                 now: datetime.datetime | None = None,
                 pool: dict[str, list[str]] | None = None) -> list[Moved]:
    """Move each node to its target in the caller's transaction: the target first in the
    node's pool (the others after it, in their order), the lease to it with the next epoch,
    and the server attributes that named the old service node (by name, by ``sourcen``, or
    as the node's xcatmaster, its name as the node knows it) now name ``destn`` (or the
    target). With ``destn`` the node's xcatmaster is ``destn``, as xCAT's -D sets it.
    monserver's ``sn,sn-as-the-node-knows-it`` pair is rewritten part by part."""
    nodes = list(targets)
    if not nodes:
        return []
    pool = pool if pool is not None else pools(db, nodes, conn)
    leases = {r["node"]: r for r in db.rows("nodeowner", conn, keys=nodes)}
    res = db.resolve(nodes, {"noderes": list(SERVER_ATTRS)}, conn=conn)
    noderes: dict[tuple, dict] = {}
    owner_rows: dict[tuple, dict] = {}
    moved: list[Moved] = []
    for n, new in targets.items():
        lease = leases.get(n) or {}
        members = pool.get(n, [])
        old = lease.get("servicenode") or (members[0] if members else None)
        have = {c: res.get(n, {}).get(("noderes", c)) for c in SERVER_ATTRS}
        facing_old = {x for x in (sourcen, have["xcatmaster"] if destn else None) if x}
        facing_new = destn or new

        values: dict[str, str | None] = {
            "servicenode": ",".join([new, *[m for m in members if m != new]])}
        for col in ("xcatmaster", "tftpserver", "nfsserver"):
            v = have[col]
            w = facing_new if (v and (v == old or v in facing_old)) else v
            if w != v:
                values[col] = w
        if destn:
            values["xcatmaster"] = destn
        if have["monserver"]:
            parts = [p.strip() for p in have["monserver"].split(",")]
            if len(parts) == 2 and parts[0] == old:  # "sn,sn-as-the-node-knows-it"
                mon = f"{new},{facing_new}"
            else:
                mon = ",".join(new if p == old else facing_new if p in facing_old else p
                               for p in parts)
            if mon != have["monserver"]:
                values["monserver"] = mon
        noderes[(n,)] = values
        epoch = int(lease.get("epoch") or 0) + 1
        owner_rows[(n,)] = {"servicenode": new, "epoch": epoch,
                            "since": _stamp(now or _now())}
        moved.append(Moved(n, old, new, epoch))
    db.set_rows(conn, "noderes", noderes)
    db.set_rows(conn, "nodeowner", owner_rows)
    return moved


def boot_states(db: Database, nodes: Iterable[str] | None = None) -> dict[str, list[str]]:
    """The nodeset state that rewrites each node's boot files as they are (chain.currstate;
    an install or netboot state is the node's own osimage, as nodeset takes it), with its
    nodes (all nodes with a state, or those of ``nodes``), in name order."""
    states: dict[str, list[str]] = {}
    rows = db.rows("chain") if nodes is None else db.rows("chain", keys=list(nodes))
    for r in rows:
        state = (r.get("currstate") or "").strip()
        if not state:
            continue
        if state.partition(" ")[0] in ("install", "netboot", "statelite"):
            state = "osimage"
        states.setdefault(state, []).append(r["node"])
    return {s: sorted(ns, key=natural_key) for s, ns in sorted(states.items())}


def without_dhcp(db: Database) -> set[str]:
    """The service nodes that run no DHCP server: servicenode.dhcpserver 0 (xCAT's switch;
    unset, a service node serves its nodes' DHCP)."""
    return {r["node"] for r in db.rows("servicenode")
            if (r.get("dhcpserver") or "").strip().lower() in ("0", "no", "n", "false")}


def regeneration(db: Database, nodes: list[str], released: dict[str, list[str]] | None = None
                 ) -> list[Request]:
    """What a move of ``nodes`` to another service node asks: their former service nodes
    that are still up (``released``: service node -> its former nodes) forget their DHCP
    entries, and the new one writes them and their boot files in their current state (the
    relay sends each to the node's new owner)."""
    if not nodes:
        return []
    no_dhcp = without_dhcp(db)
    out = [Request("makedhcp", ",".join(sorted(ns, key=natural_key)),
                   {"delete": True, "release": sn})
           for sn, ns in sorted((released or {}).items()) if ns and sn not in no_dhcp]
    leases = {r["node"]: r.get("servicenode") for r in db.rows("nodeowner", keys=nodes)}
    dhcp = [n for n in nodes if leases.get(n) not in no_dhcp]
    if dhcp:
        out.append(Request("makedhcp", ",".join(sorted(dhcp, key=natural_key))))
    out += [Request("nodeset", ",".join(ns), {"state": state})
            for state, ns in boot_states(db, nodes).items()]
    return out
