"""Many node agents against one live xcatd: simulated agents (xcatd.lab.agentsim), asyncio
tasks in this process, each with its own key, certificate and source address in
127.0.0.0/8, enrol over the HTTP site, then over mutual TLS fetch their plan and scripts,
post events and booted, and answer ``updatenode -P`` through their long polls."""
from __future__ import annotations

import asyncio
import contextlib
import resource
from collections import defaultdict

import pytest

from xcatd.lab.agentsim import Fleet, SimAgent, arm, define

HELLO = '#!/bin/sh\necho "hello from $NODE"\n'
#: file descriptors per agent in this process: its poll connection and xcatd's end of it,
#: and a spare pair for a request made while the poll waits
FDS_PER_AGENT = 4


@contextlib.contextmanager
def enough_files(count: int):
    """Raise the soft limit of open files to the hard one when ``count`` agents need more
    (agents and xcatd share this process); put it back after. Skip when even the hard limit
    is too low, saying how to raise it."""
    need = count * FDS_PER_AGENT + 512
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"{count} agents need about {need} open files; the hard limit is {hard} "
                    "(ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _run_fleet(mn, tokens: dict[str, str]) -> tuple[Fleet, dict[str, list[str]], object]:
    """Enrol, boot, serve, and updatenode through xcatd while the agents serve."""
    http = f"127.0.0.1:{mn.daemon.listening.http_port}"
    booted: dict[str, list[str]] = {}

    async def boot(agent: SimAgent) -> None:
        booted[agent.node] = await agent.boot()

    async with Fleet(tokens, http) as fleet:
        await fleet.each(SimAgent.enrol)
        assert not fleet.errors, fleet.errors[:5]
        await fleet.each(boot)
        assert not fleet.errors, fleet.errors[:5]
        await fleet.serve(wait=10)
        # -t bounds it, should the agents be gone (this thread outlives the event loop)
        result = await asyncio.to_thread(mn.run, "updatenode", "simagents", "-P", "hello",
                                         "-t", "300")
        assert not fleet.errors, fleet.errors[:5]
        return fleet, booted, result


@pytest.mark.parametrize("count", [
    200, pytest.param(1000, marks=pytest.mark.lab)])
def test_agents_enrol_boot_report_and_answer_updatenode(mn_daemon, count):
    nodes = define(mn_daemon.ok, mn_daemon.paths, count,
                   xcatdport=mn_daemon.daemon.listening.port, scripts={"hello": HELLO})
    tokens = arm(mn_daemon.paths, nodes)
    with enough_files(count):
        fleet, booted, r = asyncio.run(_run_fleet(mn_daemon, tokens))

    # every agent enrolled once, ran its plan (the group's one script) and asked for tasks
    assert booted == {n: ["hello"] for n in nodes}
    assert fleet.count("enrol") == count and fleet.count("task-done") == count
    certs = {row["node"]: row for row in mn_daemon.db.rows("nodecert", keys=nodes)}
    assert sorted(certs) == sorted(nodes) and all(c["fingerprint"] for c in certs.values())

    # updatenode: every node's lines, in xCAT's shape, and rc 0
    assert r.rc == 0, r.err[-2000:]
    lines = set(r.lines)
    missing = [n for n in nodes if not {f"{n}: postscript start..: hello",
                                        f"{n}: simulated hello on {n}",
                                        f"{n}: postscript end....: hello exited with code 0"}
               <= lines]
    assert not missing, f"{len(missing)} nodes without their lines, e.g. {missing[:5]}"
    assert sum(1 for line in r.lines if line.startswith("n")) == 3 * count
    assert r.lines[-1] == "Running of postscripts has completed."

    # the tables: booted, synced, and each node's events of the boot and of updatenode
    rows = mn_daemon.db.rows("nodelist", keys=nodes)
    assert {row["status"] for row in rows} == {"booted"}
    assert {row["updatestatus"] for row in rows} == {"synced"}
    assert all(row["updatestatustime"] for row in rows)
    events: dict[str, list[tuple]] = defaultdict(list)
    for e in mn_daemon.db.rows("nodeevents"):
        events[e["node"]].append((e["phase"], e["script"], e["status"], e["rc"]))
    want = [("postscripts", "hello", "ok", "0"), ("updatenode", "hello", "ok", "0")]
    wrong = [n for n in nodes if events[n] != want]
    assert not wrong, f"{len(wrong)} nodes with other events, e.g. {wrong[0]}: " \
                      f"{events[wrong[0]]}"
