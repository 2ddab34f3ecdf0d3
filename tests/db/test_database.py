"""The table database on SQLite and PostgreSQL: xCAT's inheritance, regex values, disabled
rows, bulk reads, transactions."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from xcatd.db.database import BULK_THRESHOLD, DBError, where_clause


@contextmanager
def count_queries(db):
    seen: list[str] = []

    def before(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", before)


def _load(mn, nodes: int = 40):
    db = mn.db
    with db.begin() as conn:
        db.set_rows(conn, "nodelist", {
            (f"n{i}",): {"groups": f"rack{i % 4},compute,all"} for i in range(1, nodes + 1)})
        db.set_rows(conn, "nodehm", {("compute",): {"mgt": "ipmi", "cons": "ipmi"},
                                     ("rack1",): {"mgt": "openbmc"},
                                     ("n2",): {"mgt": "kvm"}})
        db.set_rows(conn, "hosts", {("compute",): {"ip": r"|\D+(\d+)|10.0.0.($1+0)|"},
                                    ("n3",): {"ip": "192.168.0.3"}})
        db.set_rows(conn, "nodetype", {("all",): {"os": "rocky9", "arch": "x86_64"},
                                       ("n4",): {"os": ""}})
    return db


def test_own_row_wins_then_first_group_in_order(mn):
    db = _load(mn)
    got = db.resolve(["n1", "n2", "n5"], {"nodehm": ["mgt", "cons"]})
    assert got["n1"][("nodehm", "mgt")] == "openbmc"     # rack1 comes before compute
    assert got["n2"][("nodehm", "mgt")] == "kvm"         # own row
    assert got["n2"][("nodehm", "cons")] == "ipmi"       # own row lacks it: group fills in
    assert got["n5"][("nodehm", "mgt")] == "openbmc"     # n5 is in rack1 (5 % 4)


def test_empty_own_value_falls_back_to_group(mn):
    db = _load(mn)
    assert db.resolve(["n4"], {"nodetype": ["os"]})["n4"][("nodetype", "os")] == "rocky9"


def test_regex_values_are_computed_for_each_node(mn):
    db = _load(mn)
    got = db.resolve(["n3", "n17"], {"hosts": ["ip"]})
    assert got["n3"][("hosts", "ip")] == "192.168.0.3"
    assert got["n17"][("hosts", "ip")] == "10.0.0.17"
    raw = db.resolve(["n17"], {"hosts": ["ip"]}, computed=False)
    assert raw["n17"][("hosts", "ip")].startswith("|")


def test_blame_says_where_a_value_came_from(mn):
    db = _load(mn)
    got = db.resolve(["n2", "n6"], {"nodehm": ["mgt"]}, blame=True)
    assert got["n2"][("nodehm", "mgt")] == ("kvm", "n2")
    assert got["n6"][("nodehm", "mgt")] == ("ipmi", "compute")


def test_disabled_rows_are_ignored(mn):
    db = _load(mn)
    with db.begin() as conn:
        db.set_rows(conn, "nodehm", {("rack1",): {"disable": "yes"}})
    assert db.resolve(["n1"], {"nodehm": ["mgt"]})["n1"][("nodehm", "mgt")] == "ipmi"


@pytest.mark.parametrize("count", [10, BULK_THRESHOLD + 100])
def test_resolution_costs_a_fixed_number_of_queries(mn, count):
    db = _load(mn, nodes=count)
    nodes = [f"n{i}" for i in range(1, count + 1)]
    wanted = {"nodehm": ["mgt"], "hosts": ["ip"], "nodetype": ["os", "arch"],
              "noderes": ["netboot"]}
    with count_queries(db) as seen:
        got = db.resolve(nodes, wanted)
    assert len(seen) == 1 + len(wanted)  # nodelist + one per table, whatever the node count
    assert len(got) == count and got[nodes[-1]][("nodetype", "arch")] == "x86_64"


def test_a_failed_transaction_leaves_nothing_behind(mn):
    db = _load(mn)
    with pytest.raises(DBError), db.begin() as conn:
        db.set_rows(conn, "nodehm", {("n1",): {"mgt": "changed"}})
        db.set_rows(conn, "nodehm", {("n1",): {"nosuchcolumn": "x"}})
    assert db.resolve(["n1"], {"nodehm": ["mgt"]})["n1"][("nodehm", "mgt")] == "openbmc"


def test_where_values_are_bound_parameters_not_sql(mn):
    db = _load(mn)
    evil = "x' OR '1'='1"
    assert db.rows("nodelist", where=where_clause("nodelist", [f"node=={evil}"])) == []
    assert len(db.rows("nodelist", where=where_clause("nodelist", ["node!=n1"]))) == 39


def test_like_selection_is_case_sensitive_on_both_backends(mn):
    db = _load(mn, nodes=3)
    with db.begin() as conn:
        db.set_rows(conn, "nodelist", {("N9",): {"groups": "x"}})
    got = {r["node"] for r in db.rows("nodelist", where=where_clause("nodelist", ["node=~n%"]))}
    assert got == {"n1", "n2", "n3"}


@pytest.mark.parametrize("bad,word", [("nodex==1", "nodex"), ("node~~1", "node~~1")])
def test_bad_selection_names_the_bad_part(mn, bad, word):
    with pytest.raises(DBError) as exc:
        where_clause("nodelist", [bad])
    assert word in str(exc.value)


def test_a_column_added_to_a_table_since_the_database_was_made_is_added_on_open(mn):
    """The schema grows by columns too (bootstate.tokentime came with node enrolment): an
    older database gets them, empty, the first time a process opens it; rows are kept."""
    from xcatd.db.database import Database
    db = mn.db
    with db.begin() as conn:
        db.set_rows(conn, "bootstate", {("n1",): {"tokenhash": "h", "installboots": 2}})
        conn.execute(sa.text('ALTER TABLE "bootstate" DROP COLUMN "tokentime"'))
    assert "tokentime" not in {c["name"] for c in sa.inspect(db.engine).get_columns(
        "bootstate")}
    again = Database(db.url)          # a new process's view of the same database
    again.check_ready()
    cols = {c["name"] for c in sa.inspect(again.engine).get_columns("bootstate")}
    assert "tokentime" in cols
    row = again.rows("bootstate", keys=["n1"])[0]
    assert (row["tokenhash"], row["installboots"], row["tokentime"]) == ("h", 2, None)
    again.engine.dispose()
