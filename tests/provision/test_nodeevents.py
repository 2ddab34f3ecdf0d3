"""The node event log and the status watchdog (xcatd.provision.nodeevents) on SQLite and
PostgreSQL: what a node may post (a bad event refused naming its field, nothing written),
the tail kept short and printable, site.nodeeventsmax per node, bulk reads and a bulk
watchdog in a fixed number of statements, and the watchdog thread (xcatd.daemon.watchdog)
that logs and survives a failing round. Every watchdog test gives ``now``."""
from __future__ import annotations

import datetime
import logging
import time
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from xcatd.base.request import ErrorKind, XcatError
from xcatd.daemon import watchdog as dog
from xcatd.db.cluster import Cluster
from xcatd.db.database import SA_TABLES
from xcatd.provision import nodeevents as ne

NOW = datetime.datetime(2026, 12, 6, 10, 0, 0)
OLD = "12-06-2026 08:59:59"      # 3601 s before NOW, in nodelist.statustime's format
FRESH = "12-06-2026 09:30:00"    # 1800 s before NOW


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request):
    """The event log is SQL that differs by backend (window functions, row-value IN,
    RETURNING): both, and no daemon."""
    return request.param


@pytest.fixture
def mn3(mn):
    """n1-n3 in compute."""
    nodelist(mn, {f"n{i}": {"groups": "compute"} for i in range(1, 4)})
    return mn


def nodelist(mn, rows: dict[str, dict]) -> None:
    with mn.db.begin() as conn:
        mn.db.set_rows(conn, "nodelist", {(n,): v for n, v in rows.items()})


def site(mn, **values: str) -> None:
    with mn.db.begin() as conn:
        mn.db.set_rows(conn, "site", {(k,): {"value": v} for k, v in values.items()})


def cluster(mn) -> Cluster:
    return Cluster(mn.paths, mn.db)


def stored(mn, node: str | None = None) -> list[dict]:
    rows = sorted(mn.db.rows("nodeevents", include_disabled=True), key=lambda r: r["recid"])
    return [r for r in rows if node is None or r["node"] == node]


def ok(script: str = "hello", **more) -> dict:
    return {"phase": "postscripts", "script": script, "rc": 0, "duration": 0.0123,
            "status": "ok", "tail": "hi\n", **more}


@contextmanager
def statements(mn):
    seen: list[str] = []

    def before(conn, cursor, statement, params, context, executemany):
        seen.append(statement)

    sa.event.listen(mn.db.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(mn.db.engine, "before_cursor_execute", before)


# ---- record -------------------------------------------------------------------------------
def test_recorded_events_read_back_typed_oldest_first(mn3):
    notes = ne.record(cluster(mn3), "n1", [
        ok(), {"phase": "postscripts", "script": "hang@10 a b", "status": "timeout",
               "duration": 10, "tail": "waiting\n"}])
    assert notes == []
    got = ne.recent(cluster(mn3), ["n1", "n2"], 10)
    assert got["n2"] == []
    first, second = got["n1"]
    assert (first["phase"], first["script"], first["rc"], first["duration"], first["status"],
            first["tail"]) == ("postscripts", "hello", 0, 0.012, "ok", "hi\n")
    assert (second["script"], second["rc"], second["duration"], second["status"]) == (
        "hang@10 a b", None, 10.0, "timeout")
    assert first["recid"] < second["recid"]
    assert datetime.datetime.strptime(first["time"], "%Y-%m-%d %H:%M:%S")
    row = stored(mn3, "n1")[0]
    assert (row["rc"], row["duration"]) == ("0", "0.012")   # text columns, as the contract


@pytest.mark.parametrize("event, message", [
    ({"status": "ok"}, "event 2: no phase (one of enrol, netboot, install, postscripts, "
                       "postbootscripts, updatenode, syncfiles, otherpkgs, boot)"),
    ({"phase": "reboot", "status": "ok"}, "event 2: bad phase 'reboot': one of enrol,"),
    ({"phase": "boot", "status": "fine"}, "event 2: bad status 'fine': one of started, ok,"),
    ({"phase": "boot", "status": "watchdog"}, "event 2: bad status 'watchdog': one of"),
    ({"phase": "boot", "status": "ok", "script": "x" * 513},
     "event 2: bad script: longer than 512 characters"),
    ({"phase": "boot", "status": "ok", "script": "a\nb"},
     "event 2: bad script: control characters in it"),
    ({"phase": "boot", "status": "ok", "script": 7}, "event 2: bad script 7: the entry as"),
    ({"phase": "boot", "status": "ok", "rc": "x"}, "event 2: bad rc 'x': a whole number"),
    ({"phase": "boot", "status": "ok", "rc": True}, "event 2: bad rc True: a whole number"),
    ({"phase": "boot", "status": "ok", "rc": 1.5}, "event 2: bad rc 1.5: a whole number"),
    ({"phase": "boot", "status": "ok", "duration": -1}, "event 2: bad duration -1: seconds"),
    ({"phase": "boot", "status": "ok", "duration": "nan"}, "event 2: bad duration 'nan'"),
    ({"phase": "boot", "status": "ok", "duration": [1]}, "event 2: bad duration [1]"),
    ({"phase": "boot", "status": "ok", "tail": {"a": 1}}, "event 2: bad tail {'a': 1}"),
    ({"phase": "boot", "status": "ok", "secret": "x"}, "event 2: unknown field 'secret'"),
    ({"phase": "boot", "status": "ok", "node": "n2"}, "event 2: bad node: a node reports"),
    ("ok", "event 2: not an object of fields"),
])
def test_a_bad_event_is_refused_naming_its_field_and_nothing_is_written(mn3, event, message):
    with pytest.raises(XcatError) as err:
        ne.record(cluster(mn3), "n1", [ok(), event])
    assert str(err.value).startswith(message), str(err.value)
    assert err.value.kind is ErrorKind.BAD_REQUEST   # the node API answers 400
    assert stored(mn3) == []


def test_rc_and_duration_may_come_as_text_or_be_empty(mn3):
    ne.record(cluster(mn3), "n1", [ok(rc="-15", duration="2.5"), ok(rc="", duration=None),
                                   ok(node="n1", time="ignored")])
    assert [(r["rc"], r["duration"]) for r in stored(mn3)] == [
        ("-15", "2.500"), ("", ""), ("0", "0.012")]
    assert stored(mn3)[2]["time"] != "ignored"     # the management node's clock


def test_at_most_100_events_in_one_post(mn3):
    ne.record(cluster(mn3), "n1", [ok()] * 100)
    with pytest.raises(XcatError, match="101 events in one post, more than 100"):
        ne.record(cluster(mn3), "n1", [ok()] * 101)
    assert len(stored(mn3)) == 100


def test_events_of_a_name_that_is_not_a_node_are_refused(mn3):
    with pytest.raises(XcatError, match="n9 is not a node") as err:
        ne.record(cluster(mn3), "n9", [ok()])
    assert err.value.kind is ErrorKind.NOT_FOUND
    assert stored(mn3) == []


def test_the_tail_keeps_its_last_2000_printable_characters(mn3):
    head = "\x1b[31mred\x1b[0m\tx\r\nbell\x07\x00end\r"
    notes = ne.record(cluster(mn3), "n1", [ok(tail=head), ok(tail=head + "y" * 2500 + "LAST")])
    short, long_ = (r["tail"] for r in stored(mn3))
    assert short == "red     x\nbell\N{REPLACEMENT CHARACTER}\N{REPLACEMENT CHARACTER}end\n"
    assert len(long_) == 2000 and long_.endswith("yLAST")
    assert notes == ["event 1: 2 control characters in its tail replaced",
                     "event 2: 2 control characters in its tail replaced",
                     "event 2: tail cut to its last 2000 characters"]


def test_each_node_keeps_its_newest_nodeeventsmax_events(mn3):
    site(mn3, nodeeventsmax="5")
    c = cluster(mn3)
    ne.record(c, "n2", [ok("other")] * 3)
    for i in range(8):
        ne.record(c, "n1", [ok(f"s{i}")])
    assert [r["script"] for r in stored(mn3, "n1")] == ["s3", "s4", "s5", "s6", "s7"]
    ne.record(c, "n1", [ok(f"b{i}") for i in range(7)])   # one post larger than the cap
    assert [r["script"] for r in stored(mn3, "n1")] == ["b2", "b3", "b4", "b5", "b6"]
    assert len(stored(mn3, "n2")) == 3                      # others untouched


def test_the_default_cap_is_200_and_a_bad_one_falls_back_to_it(mn3):
    site(mn3, nodeeventsmax="many")
    notes = ne.record(cluster(mn3), "n1", [ok()] * 100)
    notes += ne.record(cluster(mn3), "n1", [ok()] * 100)
    notes += ne.record(cluster(mn3), "n1", [ok("newest")] * 5)
    assert len(stored(mn3, "n1")) == 200
    assert stored(mn3, "n1")[-1]["script"] == "newest"
    assert notes[0] == "site.nodeeventsmax 'many' is not a whole number: keeping 200 events " \
                       "per node"


def test_in_the_callers_transaction_events_go_with_it(mn3):
    c = cluster(mn3)
    with pytest.raises(RuntimeError), mn3.db.begin() as conn:
        ne.record(c, "n1", [ok()], conn=conn)
        assert len(mn3.db.rows("nodeevents", conn)) == 1
        raise RuntimeError("the caller's next step failed")
    assert stored(mn3) == []


# ---- reading ------------------------------------------------------------------------------
def test_recent_gives_the_newest_n_oldest_first_without_disabled_rows(mn3):
    c = cluster(mn3)
    ne.record(c, "n1", [ok(f"s{i}") for i in range(6)])
    t = SA_TABLES["nodeevents"]
    with mn3.db.begin() as conn:
        conn.execute(t.update().where(t.c.script == "s5").values(disable="1"))
    assert [e["script"] for e in ne.recent(c, ["n1"], 3)["n1"]] == ["s2", "s3", "s4"]


def test_last_failure_is_the_latest_failed_timeout_or_watchdog_event(mn3):
    c = cluster(mn3)
    ne.record(c, "n1", [ok(), ok("bad", status="failed", rc=1), ok("hang", status="timeout"),
                        ok("later")])
    ne.record(c, "n2", [ok()])
    got = ne.last_failure(c, ["n1", "n2", "n3"])
    assert got["n1"]["script"] == "hang" and got["n1"]["status"] == "timeout"
    assert got["n2"] is None and got["n3"] is None


def test_reads_cost_the_same_statements_for_3_nodes_as_for_1000(mn):
    names = [f"n{i}" for i in range(1, 1001)]
    nodelist(mn, {n: {"groups": "compute"} for n in names})
    c = cluster(mn)
    rows = [{"node": n, "time": "2026-12-06 10:00:00", "phase": "postscripts",
             "script": s, "rc": "1", "duration": "1.000", "status": st, "tail": "x"}
            for n in names for s, st in (("a", "ok"), ("b", "failed"), ("c", "ok"))]
    with mn.db.begin() as conn:
        conn.execute(SA_TABLES["nodeevents"].insert(), rows)
    counts = []
    for few in (names[:3], names):
        with statements(mn) as seen:
            recent = ne.recent(c, few, 2)
            failures = ne.last_failure(c, few)
        counts.append(len(seen))
        assert all([e["script"] for e in recent[n]] == ["b", "c"] for n in few)
        assert all(failures[n]["script"] == "b" for n in few)
    assert counts[0] == counts[1] == 2, counts


# ---- how events read ----------------------------------------------------------------------
@pytest.mark.parametrize("event, text", [
    (ok("hang", status="timeout", rc=None, duration=10.004, tail="one\nwaiting\n\n"),
     "postscript 'hang' timeout after 10 s: waiting"),
    (ok("quick", phase="postbootscripts", status="timeout", rc=-9, duration=2.5, tail=""),
     "postbootscript 'quick' timeout after 2.5 s"),
    (ok("bad x", status="failed", rc=3, tail=""), "postscript 'bad x' failed (rc=3)"),
    (ok("", phase="install", status="failed", rc=None, tail="no disk\n"),
     "install failed: no disk"),
    (ok("", phase="postscripts", status="watchdog", rc=None, tail="timeout in configuring: "
        "no word from the node for 3700 s\n"),
     "timeout in configuring: no word from the node for 3700 s"),
])
def test_failure_text_names_the_script_and_its_last_line(event, text):
    assert ne.failure_text(event) == text


# ---- the watchdog -------------------------------------------------------------------------
def states(mn) -> dict[str, tuple]:
    return {r["node"]: (r["status"], r["statustime"], r["updatestatus"], r["updatestatustime"])
            for r in mn.db.rows("nodelist")}


def test_silent_nodes_at_work_become_failed_with_a_watchdog_event(mn):
    nodelist(mn, {
        "a1": {"status": "installing", "statustime": OLD},
        "a2": {"status": "netbooting", "statustime": OLD},
        "a3": {"status": "booting", "statustime": OLD},
        "a4": {"status": "configuring", "statustime": OLD},
        "f1": {"status": "configuring", "statustime": FRESH},
        "o1": {"status": "booted", "statustime": OLD},
        "o2": {"status": "installed", "statustime": OLD},
        "o3": {"status": "ping", "statustime": OLD},
        "o4": {"status": "installing", "statustime": ""},
        "u1": {"status": "booted", "statustime": OLD, "updatestatus": "syncing",
               "updatestatustime": OLD},
        "u2": {"updatestatus": "synced", "updatestatustime": OLD}})
    before = states(mn)
    failed = ne.watchdog(cluster(mn), NOW)
    assert sorted(failed) == [("a1", "installing"), ("a2", "netbooting"), ("a3", "booting"),
                              ("a4", "configuring"), ("u1", "syncing")]
    after = states(mn)
    stamp = "12-06-2026 10:00:00"
    for n in ("a1", "a2", "a3", "a4"):
        assert after[n] == ("failed", stamp, None, None)
    assert after["u1"] == ("booted", OLD, "failed", stamp)   # its status stays
    for n in ("f1", "o1", "o2", "o3", "o4", "u2"):
        assert after[n] == before[n]
    events = {r["node"]: r for r in stored(mn)}
    assert sorted(events) == ["a1", "a2", "a3", "a4", "u1"]
    a4 = events["a4"]
    assert (a4["phase"], a4["status"], a4["time"]) == ("postscripts", "watchdog",
                                                       "2026-12-06 10:00:00")
    assert a4["tail"] == ("timeout in configuring: no word from the node for 3601 s "
                          "(site.nodestatustimeout is 3600)")
    assert [events[n]["phase"] for n in ("a1", "a2", "a3", "u1")] == [
        "install", "netboot", "boot", "updatenode"]
    assert ne.watchdog(cluster(mn), NOW) == []              # failed once


def test_an_event_from_the_node_counts_as_word_from_it(mn):
    nodelist(mn, {"n1": {"status": "configuring", "statustime": OLD},
                  "n2": {"status": "configuring", "statustime": OLD}})
    with mn.db.begin() as conn:
        conn.execute(SA_TABLES["nodeevents"].insert(), [
            {"node": "n1", "time": "2026-12-06 09:50:00", "phase": "postscripts",
             "status": "started"},
            {"node": "n2", "time": "2026-12-06 08:00:00", "phase": "postscripts",
             "status": "started"}])
    assert ne.watchdog(cluster(mn), NOW) == [("n2", "configuring")]
    assert states(mn)["n1"][0] == "configuring"


@pytest.mark.parametrize("value, failed", [("", True), ("7200", False), ("60", True),
                                           ("0", False), ("no", False)])
def test_site_nodestatustimeout_sets_the_limit_and_0_or_no_turns_it_off(mn, value, failed):
    site(mn, nodestatustimeout=value)
    nodelist(mn, {"n1": {"status": "installing", "statustime": OLD}})
    assert ne.watchdog(cluster(mn), NOW) == ([("n1", "installing")] if failed else [])


def test_a_bad_nodestatustimeout_is_an_error_naming_it(mn):
    site(mn, nodestatustimeout="soon")
    with pytest.raises(ValueError, match=r"site\.nodestatustimeout 'soon' is not a whole"):
        ne.watchdog(cluster(mn), NOW)


def test_a_report_that_comes_meanwhile_wins(mn, monkeypatch):
    """The node reports between the watchdog's read and its write: its report stands."""
    nodelist(mn, {"n1": {"status": "configuring", "statustime": OLD},
                  "n2": {"status": "configuring", "statustime": OLD}})
    real = ne._last_heard

    def reported_meanwhile(conn, nodes):
        with mn.db.engine.begin() as other:
            mn.db.set_rows(other, "nodelist", {("n1",): {"status": "booted",
                                                         "statustime": "12-06-2026 09:59:59"}})
        return real(conn, nodes)
    monkeypatch.setattr(ne, "_last_heard", reported_meanwhile)
    assert ne.watchdog(cluster(mn), NOW) == [("n2", "configuring")]
    assert states(mn)["n1"][0] == "booted"
    assert [r["node"] for r in stored(mn)] == ["n2"]


def test_the_watchdog_costs_the_same_statements_for_3_nodes_as_for_1000(mn):
    counts = []
    for size in (3, 1000):
        names = [f"s{size}n{i}" for i in range(size)]
        nodelist(mn, {n: {"status": "configuring", "statustime": OLD} for n in names})
        with statements(mn) as seen:
            failed = ne.watchdog(cluster(mn), NOW)
        assert len(failed) == size
        counts.append(len([s for s in seen if not s.lstrip().upper().startswith(
            ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"))]))
    assert counts[0] == counts[1], counts
    assert len(stored(mn)) == 1003


# ---- the watchdog thread ------------------------------------------------------------------
def test_a_round_logs_each_node_it_failed(mn, caplog):
    nodelist(mn, {"n1": {"status": "installing", "statustime": OLD}})
    with caplog.at_level(logging.WARNING, logger="xcatd.daemon.watchdog"):
        assert dog.Watchdog(mn.paths).run_once(NOW) == [("n1", "installing")]
    assert "n1: failed: timeout in installing" in caplog.text


def test_a_failing_round_is_logged_and_the_next_one_runs(mn, caplog, monkeypatch):
    nodelist(mn, {"n1": {"status": "installing", "statustime": OLD}})
    w = dog.Watchdog(mn.paths)
    real = ne.watchdog

    def database_away(cluster, now=None):
        raise sa.exc.OperationalError("UPDATE nodelist", {}, Exception("database is locked"))
    monkeypatch.setattr(ne, "watchdog", database_away)
    with caplog.at_level(logging.ERROR, logger="xcatd.daemon.watchdog"):
        assert w.run_once(NOW) == []
    assert "node status watchdog: (builtins.Exception) database is locked (trying again " \
           "next round)" in caplog.text
    monkeypatch.setattr(ne, "watchdog", real)
    assert w.run_once(NOW) == [("n1", "installing")]


@pytest.mark.parametrize("value, seconds", [("", 60), ("100", 25), ("2", 1), ("0", 60),
                                            ("bad", 60)])
def test_the_thread_waits_a_quarter_of_the_timeout_at_most_a_minute(mn, value, seconds):
    site(mn, nodestatustimeout=value)
    assert dog.Watchdog(mn.paths).interval() == seconds


def test_the_thread_fails_silent_nodes_and_stops(mn):
    site(mn, nodestatustimeout="4")       # a round every second
    nodelist(mn, {"n1": {"status": "configuring", "statustime": "01-01-2020 00:00:00"}})
    w = dog.start(mn.paths)
    try:
        deadline = time.monotonic() + 60
        while states(mn)["n1"][0] != "failed" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert states(mn)["n1"][0] == "failed"
    finally:
        w.stop()
    assert not w._thread.is_alive()
    assert w.rounds >= 1
