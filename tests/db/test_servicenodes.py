"""Service node pools, leases and heartbeats (xcatd.db.servicenodes), on SQLite and
PostgreSQL: exact-name pools with group inheritance, the lease recorded once and moved with a
new epoch (by snmove, by auto-failover, back to the management node), fencing by epoch, and
snmove's database side done all or nothing."""
from __future__ import annotations

import datetime
import re

import pytest

from xcatd.db import servicenodes as sns
from xcatd.db.database import Database, DBError
from xcatd.db.servicenodes import Moved, Owner

T0 = datetime.datetime(2030, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def later(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request):
    """(the ``mn`` fixture on each database; no xcatd needed here)"""
    return request.param


#: node -> groups; the pools sit on the groups (rack1: sn1,sn2) or on a node's own row
NODES = {"n1": "rack1,compute,all", "n2": "rack1,compute,all", "n3": "rack10,compute,all",
         "n4": "compute,all", "n5": "rack1,compute,all", "n6": "rack10,compute,all",
         "n7": "solo,compute,all", "n8": "trio,compute,all"}
POOLS = {"rack1": "sn1,sn2", "rack10": "sn10", "n3": "sn10, sn1", "n5": "sn2,sn1",
         "solo": "sn1", "trio": "sn1,sn2,sn3"}


@pytest.fixture
def db(mn) -> Database:
    db = mn.db
    with db.begin() as conn:
        db.set_rows(conn, "nodelist", {(n,): {"groups": g} for n, g in NODES.items()})
        db.set_rows(conn, "noderes", {(k,): {"servicenode": v} for k, v in POOLS.items()})
    return db


def set_site(db: Database, **values: str | None) -> None:
    with db.begin() as conn:
        db.set_rows(conn, "site", {(k,): {"value": v} for k, v in values.items()})


def set_noderes(db: Database, key: str, **values: str | None) -> None:
    with db.begin() as conn:
        db.set_rows(conn, "noderes", {(key,): values})


def leases(db: Database) -> dict[str, tuple[str | None, int]]:
    return {r["node"]: (r["servicenode"], int(r["epoch"])) for r in db.rows("nodeowner")}


def noderes(db: Database, node: str) -> dict[str, str | None]:
    """The node's own noderes row (not what it inherits)."""
    rows = db.rows("noderes", keys=[node])
    cols = ("servicenode", "xcatmaster", "tftpserver", "nfsserver", "monserver")
    return {c: rows[0][c] for c in cols} if rows else {}


def beat(db: Database, **ages: float) -> None:
    """Each named service node's heartbeat, ``age`` seconds before T0 + 100 s."""
    for sn, age in ages.items():
        sns.heartbeat(db, sn, "127.0.0.1", 3001, when=later(100 - age))


NOW = later(100)


# ---- pools and who serves what -------------------------------------------------------------
def test_pools_are_inherited_from_groups_in_order_and_a_node_row_wins(db):
    assert sns.pools(db, ["n1", "n3", "n4", "n5", "n6"]) == {
        "n1": ["sn1", "sn2"], "n3": ["sn10", "sn1"], "n4": [], "n5": ["sn2", "sn1"],
        "n6": ["sn10"]}


def test_served_by_matches_exact_names_so_sn1_never_takes_sn10s_nodes(db):
    assert sns.served_by(db, "sn1") == ["n1", "n2", "n7", "n8"]
    assert sns.served_by(db, "sn10") == ["n3", "n6"]
    assert sns.served_by(db, "sn") == []
    assert sns.served_by(db, "sn1.*") == []


def test_served_by_follows_the_lease_while_the_pool_names_it(db):
    sns.owners(db, ["n1", "n2"], now=T0)
    sns.move(db, ["n1"], "sn3", now=T0)
    set_noderes(db, "rack1", servicenode="sn2,sn1")  # reordered: n2's lease stays with sn1
    assert sns.served_by(db, "sn1") == ["n2", "n7", "n8"]
    assert sns.served_by(db, "sn3") == ["n1"]
    assert "n5" in sns.served_by(db, "sn2")  # its own row: sn2 first
    # a pool that no longer names the lease's service node: the first of the pool, as the
    # next ask records it (sn1 stops serving n2 at once, in its DHCP too)
    set_noderes(db, "rack1", servicenode="sn9")
    assert "n2" not in sns.served_by(db, "sn1") and "n2" in sns.served_by(db, "sn9")
    assert sns.owners(db, ["n2"], now=T0)["n2"].servicenode == "sn9"
    assert sns.still_served(db, "sn9", ["n1", "n2"]) == ["n2"]


# ---- leases --------------------------------------------------------------------------------
def test_owners_records_the_first_member_with_epoch_1_and_keeps_it(db):
    assert sns.owners(db, ["n1", "n3", "n5"], now=T0) == {
        "n1": Owner("sn1", 1), "n3": Owner("sn10", 1), "n5": Owner("sn2", 1)}
    assert leases(db) == {"n1": ("sn1", 1), "n3": ("sn10", 1), "n5": ("sn2", 1)}
    since = {r["node"]: r["since"] for r in db.rows("nodeowner")}
    assert since["n1"] == "2030-01-01T12:00:00.000000Z"
    # asked again later, and with the pool reordered: the lease stays where it is
    set_noderes(db, "rack1", servicenode="sn2,sn1")
    assert sns.owners(db, ["n1"], now=later(3600)) == {"n1": Owner("sn1", 1)}
    assert leases(db)["n1"] == ("sn1", 1)
    assert {r["node"]: r["since"] for r in db.rows("nodeowner")}["n1"] == since["n1"]


def test_a_lease_whose_service_node_left_the_pool_moves_to_the_first_member(db):
    sns.owners(db, ["n1"], now=T0)
    set_noderes(db, "rack1", servicenode="sn3,sn2")
    assert sns.owners(db, ["n1"], now=T0) == {"n1": Owner("sn3", 2)}
    assert leases(db)["n1"] == ("sn3", 2)


def test_a_node_without_a_pool_is_the_management_nodes_and_gets_no_lease(db):
    assert sns.owners(db, ["n4"], now=T0) == {"n4": Owner(None, 0)}
    assert "n4" not in leases(db)


def test_emptying_a_pool_moves_the_lease_back_to_the_management_node_with_a_new_epoch(db):
    sns.owners(db, ["n1", "n2"], now=T0)
    set_noderes(db, "rack1", servicenode=None)
    assert sns.owners(db, ["n1"], now=T0) == {"n1": Owner(None, 2)}
    assert leases(db) == {"n1": (None, 2), "n2": ("sn1", 1)}
    assert sns.owners(db, ["n1"], now=T0) == {"n1": Owner(None, 2)}  # once
    # n2's lease is recorded back at its next ask; meanwhile it is already not sn1's
    assert sns.served_by(db, "sn1") == ["n7", "n8"]
    assert {"n1", "n2"} <= set(sns.served_by(db, None))


def test_auto_failover_moves_a_silent_owner_s_nodes_to_the_first_live_member(db):
    set_site(db, snautofailover="yes", snheartbeattimeout="30")
    beat(db, sn1=1, sn2=1, sn3=1)
    assert sns.owners(db, ["n1", "n8"], now=NOW) == {"n1": Owner("sn1", 1),
                                                     "n8": Owner("sn1", 1)}
    beat(db, sn1=31, sn2=31, sn3=5)  # sn1 and sn2 silent past the timeout
    assert sns.owners(db, ["n1", "n8"], now=NOW) == {"n1": Owner("sn1", 1),  # none alive
                                                     "n8": Owner("sn3", 2)}
    beat(db, sn2=0)
    assert sns.owners(db, ["n1", "n8"], now=NOW) == {"n1": Owner("sn2", 2),
                                                     "n8": Owner("sn3", 2)}
    assert leases(db) == {"n1": ("sn2", 2), "n8": ("sn3", 2)}
    beat(db, sn1=0)  # sn1 is back: the nodes stay where they are now
    assert sns.owners(db, ["n1", "n8"], now=NOW) == {"n1": Owner("sn2", 2),
                                                     "n8": Owner("sn3", 2)}


def test_auto_failover_follows_the_site_timeout(db):
    set_site(db, snautofailover="yes", snheartbeattimeout="120")
    sns.owners(db, ["n1"], now=NOW)
    beat(db, sn1=90, sn2=0)
    assert sns.owners(db, ["n1"], now=NOW) == {"n1": Owner("sn1", 1)}
    beat(db, sn1=121)
    assert sns.owners(db, ["n1"], now=NOW) == {"n1": Owner("sn2", 2)}


def test_without_auto_failover_a_dead_owner_keeps_its_nodes(db):
    sns.owners(db, ["n1"], now=NOW)
    beat(db, sn1=3600, sn2=0)
    for setting in (None, "no", "0"):
        set_site(db, snautofailover=setting, snheartbeattimeout="30")
        assert sns.owners(db, ["n1"], now=NOW) == {"n1": Owner("sn1", 1)}, setting
        assert leases(db) == {"n1": ("sn1", 1)}


# ---- heartbeats ----------------------------------------------------------------------------
def test_alive_counts_heartbeats_younger_than_the_timeout(db):
    beat(db, sn1=0, sn2=30, sn3=30.5, sn10=7200)
    assert sns.alive(db, now=NOW) == {"sn1", "sn2"}  # default: 30 s
    assert sns.alive(db, timeout=10, now=NOW) == {"sn1"}
    set_site(db, snheartbeattimeout="60")
    assert sns.alive(db, now=NOW) == {"sn1", "sn2", "sn3"}
    row = db.rows("snstatus", keys=["sn1"])[0]
    assert (row["address"], row["port"], row["heartbeat"]) == (
        "127.0.0.1", "3001", "2030-01-01T12:01:40.000000Z")


def test_a_heartbeat_row_without_a_readable_time_is_not_alive(db):
    with db.begin() as conn:
        db.set_rows(conn, "snstatus", {("sn1",): {"heartbeat": "yesterday"},
                                       ("sn2",): {"heartbeat": None}})
    assert sns.alive(db, now=NOW) == set()


def test_heartbeat_timeout_reads_the_site_key(db):
    for value, seconds in [(None, 30.0), ("", 30.0), ("45", 45.0), (" 2.5 ", 2.5)]:
        set_site(db, snheartbeattimeout=value)
        assert sns.heartbeat_timeout(db) == seconds, value


def test_heartbeat_timeout_refuses_a_bad_value_naming_the_key(db):
    set_site(db, snautofailover="yes")
    for value in ("abc", "30s", "0", "-5"):
        set_site(db, snheartbeattimeout=value)
        with pytest.raises(DBError, match=re.escape(f"site.snheartbeattimeout='{value}'")):
            sns.heartbeat_timeout(db)
        with pytest.raises(DBError, match=re.escape("site.snheartbeattimeout")):
            sns.owners(db, ["n1"], now=NOW)
        assert leases(db) == {}


def test_heartbeat_timeout_refuses_nan(db):
    set_site(db, snheartbeattimeout="nan")
    with pytest.raises(DBError, match=re.escape("site.snheartbeattimeout='nan'")):
        sns.heartbeat_timeout(db)


# ---- fencing -------------------------------------------------------------------------------
def test_fence_lets_the_owner_act_with_its_current_epoch(db):
    sns.owners(db, ["n1", "n2"], now=T0)
    assert sns.fence(db, "sn1", {"n1": 1, "n2": 1}) == {}


def test_fence_refuses_a_node_owned_by_another_service_node_or_by_the_management_node(db):
    sns.owners(db, ["n1", "n2"], now=T0)
    sns.move(db, ["n1"], "sn2", now=T0)
    assert sns.fence(db, "sn1", {"n1": 1, "n2": 1, "n4": 0}) == {
        "n1": "sn1 no longer serves n1 (its owner is sn2)",
        "n4": "sn1 no longer serves n4 (its owner is the management node)"}


def test_fence_refuses_a_stale_epoch_after_the_node_came_back(db):
    """sn1 paused past the timeout: its nodes went to sn2 and were moved back; the epoch it
    still holds is refused."""
    sns.owners(db, ["n1"], now=T0)
    sns.move(db, ["n1"], "sn2", now=T0)
    sns.move(db, ["n1"], "sn1", now=T0)
    assert leases(db)["n1"] == ("sn1", 3)
    assert sns.fence(db, "sn1", {"n1": 1}) == {
        "n1": "sn1's lease on n1 is stale (epoch 1, now 3)"}
    assert sns.fence(db, "sn1", {"n1": 3}) == {}


# ---- snmove's database side ----------------------------------------------------------------
def test_move_to_a_destination_puts_it_first_and_raises_the_epoch_by_one(db):
    sns.owners(db, ["n1"], now=T0)
    assert sns.move(db, ["n1", "n2"], "sn3", now=T0) == [
        Moved("n1", "sn1", "sn3", 2), Moved("n2", "sn1", "sn3", 1)]
    assert leases(db) == {"n1": ("sn3", 2), "n2": ("sn3", 1)}
    assert sns.pools(db, ["n1", "n2", "n5"]) == {
        "n1": ["sn3", "sn1", "sn2"], "n2": ["sn3", "sn1", "sn2"], "n5": ["sn2", "sn1"]}
    assert sns.move(db, ["n1"], "sn2", now=T0) == [Moved("n1", "sn3", "sn2", 3)]
    assert sns.pools(db, ["n1"])["n1"] == ["sn2", "sn3", "sn1"]
    assert sns.owners(db, ["n1"], now=T0) == {"n1": Owner("sn2", 3)}


def test_move_without_destination_takes_the_next_member_after_the_acting_one(db):
    assert sns.move(db, ["n1", "n3", "n5"], None, now=T0) == [
        Moved("n1", "sn1", "sn2", 1), Moved("n3", "sn10", "sn1", 1),
        Moved("n5", "sn2", "sn1", 1)]
    assert sns.pools(db, ["n1"])["n1"] == ["sn2", "sn1"]
    assert sns.move(db, ["n1"], None, now=T0) == [Moved("n1", "sn2", "sn1", 2)]  # and back


def test_move_without_destination_starts_from_the_lease_not_the_pool_head(db):
    set_site(db, snautofailover="yes")
    beat(db, sn1=3600, sn2=0, sn3=0)
    assert sns.owners(db, ["n8"], now=NOW) == {"n8": Owner("sn2", 1)}
    assert sns.move(db, ["n8"], None, now=NOW) == [Moved("n8", "sn2", "sn3", 2)]
    assert sns.pools(db, ["n8"])["n8"] == ["sn3", "sn1", "sn2"]


def test_a_node_without_a_backup_fails_the_whole_move_and_changes_nothing(db):
    sns.owners(db, ["n1"], now=T0)
    set_noderes(db, "n2", xcatmaster="sn1")
    before = (leases(db), {n: noderes(db, n) for n in NODES})
    with pytest.raises(DBError) as exc:
        sns.move(db, ["n1", "n2", "n7"], None, now=T0)
    assert str(exc.value) == "Could not determine a backup service node for node n7."
    with pytest.raises(DBError) as exc:
        sns.move(db, ["n4", "n1", "n6"], None, now=T0)
    assert str(exc.value) == ("Could not determine a backup service node for node n4.; "
                              "Could not determine a backup service node for node n6.")
    assert (leases(db), {n: noderes(db, n) for n in NODES}) == before


def test_move_rewrites_only_the_servers_that_named_the_old_service_node(db):
    set_noderes(db, "n1", xcatmaster="sn1", tftpserver="sn1", nfsserver="10.0.0.9",
                monserver="sn1")
    set_noderes(db, "n2", tftpserver="sn10", nfsserver="sn1x")
    sns.move(db, ["n1", "n2"], "sn3", now=T0)
    assert noderes(db, "n1") == {"servicenode": "sn3,sn1,sn2", "xcatmaster": "sn3",
                                 "tftpserver": "sn3", "nfsserver": "10.0.0.9",
                                 "monserver": "sn3"}
    assert noderes(db, "n2") == {"servicenode": "sn3,sn1,sn2", "xcatmaster": None,
                                 "tftpserver": "sn10", "nfsserver": "sn1x", "monserver": None}


def test_move_names_destn_and_recognises_sourcen(db):
    set_noderes(db, "n1", xcatmaster="sn1-ib", tftpserver="sn1", nfsserver="sn1-ib")
    sns.move(db, ["n1"], "sn2", destn="sn2-ib", sourcen="sn1-ib", now=T0)
    assert noderes(db, "n1") == {"servicenode": "sn2,sn1", "xcatmaster": "sn2-ib",
                                 "tftpserver": "sn2-ib", "nfsserver": "sn2-ib",
                                 "monserver": None}


def test_move_writes_the_node_row_and_leaves_an_inherited_group_value_alone(db):
    set_noderes(db, "rack1", xcatmaster="sn1")
    sns.move(db, ["n1"], "sn2", now=T0)
    got = db.resolve(["n1", "n2"], {"noderes": ["xcatmaster", "servicenode"]})
    assert got["n1"] == {("noderes", "xcatmaster"): "sn2", ("noderes", "servicenode"): "sn2,sn1"}
    assert got["n2"] == {("noderes", "xcatmaster"): "sn1", ("noderes", "servicenode"): "sn1,sn2"}
    assert db.rows("noderes", keys=["rack1"])[0]["servicenode"] == "sn1,sn2"


def test_a_node_already_on_the_destination_is_left_alone(db):
    sns.owners(db, ["n1"], now=T0)
    set_noderes(db, "n1", xcatmaster="sn1")
    assert sns.move(db, ["n1", "n5"], "sn1", now=T0) == [Moved("n5", "sn2", "sn1", 1)]
    assert leases(db) == {"n1": ("sn1", 1), "n5": ("sn1", 1)}
    assert noderes(db, "n1") == {"servicenode": None, "xcatmaster": "sn1", "tftpserver": None,
                                 "nfsserver": None, "monserver": None}
    assert sns.move(db, ["n1"], "sn1", now=T0) == []


def test_move_of_a_node_without_a_pool_to_a_destination(db):
    assert sns.move(db, ["n4"], "sn2", now=T0) == [Moved("n4", None, "sn2", 1)]
    assert sns.pools(db, ["n4"])["n4"] == ["sn2"]
    assert sns.owners(db, ["n4"], now=T0) == {"n4": Owner("sn2", 1)}


def test_move_rewrites_a_monserver_pair_whose_first_part_is_the_old_service_node(db):
    set_noderes(db, "n1", monserver="sn1,sn1-ib")
    sns.move(db, ["n1"], "sn2", destn="sn2-ib", now=T0)
    assert noderes(db, "n1")["monserver"] == "sn2,sn2-ib"


def test_move_with_destn_replaces_the_xcatmaster_the_nodes_knew(db):
    set_noderes(db, "n1", xcatmaster="sn1-ib", tftpserver="sn1-ib")
    sns.move(db, ["n1"], "sn2", destn="sn2-ib", now=T0)
    got = noderes(db, "n1")
    assert (got["xcatmaster"], got["tftpserver"]) == ("sn2-ib", "sn2-ib")
