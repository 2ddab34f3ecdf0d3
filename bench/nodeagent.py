"""Node agent benchmark: many simulated node agents (xcatd.lab.agentsim: asyncio tasks in
this process, each with its own key, certificate and source address in 127.0.0.0/8)
against a real xcatd process (the console script, on a scratch management node made by
``xcatconfig``, with its default auditing and job records).

Measures, with the CPU seconds of the xcatd process beside each wall time:
  (a) enrolment: enrols/s (token check, CSR signed, nodecert row: plain HTTP);
  the boot: configuring, plan, script, one batch of events, booted (mutual TLS);
  (b) events: every agent posts ``--events`` events, in one batch (as xcatagent does when
      they queue up) and then one post per event, side by side: events/s;
  (c) ``updatenode <all> -P hello`` through xcatd (the CLI) while the agents long-poll:
      wall time at updatenode's default fanout (64, xCAT's) and at ``--fanout`` (target:
      < 10 s),
      and at ``--fanout`` again with agents that post no event per script (what that
      event costs);
  (d) CPU seconds of xcatd per 1,000 events, batched and one by one.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
HELLO = '#!/bin/sh\necho "hello from $NODE"\n'
TARGET_UPDATENODE = 10.0
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with status {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def runner(env: dict[str, str]):
    """``run(*argv)``: a console script of the venv run in process (XCATBYPASS) with
    ``env``; its stdout, or the bench stops saying what failed."""
    def run(*argv: str) -> str:
        p = subprocess.run([str(BIN / argv[0]), *argv[1:]], env={**env, "XCATBYPASS": "1"},
                           capture_output=True, text=True, check=False)
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {p.stderr[-1500:]}")
        return p.stdout
    return run


def stop(proc: subprocess.Popen | None) -> None:
    """Stop a process started in its own session (xcatd), by its process group."""
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def raise_nofile(agents: int) -> str:
    import resource
    need = agents * 2 + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return f"open files: soft limit {soft}"
    if hard != resource.RLIM_INFINITY and hard < need:
        raise SystemExit(f"{agents} agents need about {need} open files; the hard limit is "
                         f"{hard} (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return f"open files: soft limit raised from {soft} to {hard}"


class Meter:
    """Wall and xcatd CPU seconds of a phase, printed as one table row."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rows: list[tuple[str, float, float, str]] = []

    async def measure(self, name: str, coro, rate=None) -> tuple[float, float]:
        cpu = cpu_seconds(self.pid)
        t = time.perf_counter()
        await coro
        wall = time.perf_counter() - t
        used = cpu_seconds(self.pid) - cpu
        self.rows.append((name, wall, used, rate(wall, used) if rate else ""))
        return wall, used

    def print(self) -> None:
        print(f"  {'phase':44} {'wall s':>8} {'xcatd CPU s':>12}  figures")
        for name, wall, cpu, rate in self.rows:
            print(f"  {name:44} {wall:8.2f} {cpu:12.2f}  {rate}")


async def run_bench(args, pid: int, tokens: dict[str, str], http: str, env: dict) -> None:
    from xcatd.lab.agentsim import Fleet, SimAgent
    n, per = len(tokens), args.events
    meter = Meter(pid)
    boots: list[list[str]] = []

    async def boot(agent: SimAgent) -> None:
        boots.append(await agent.boot())

    def batch_events(agent: SimAgent):
        return agent.post_events([{"phase": "postscripts", "script": f"s{i}", "status": "ok",
                                   "rc": 0, "duration": 0.01, "tail": "done\n"}
                                  for i in range(per)])

    async def single_events(agent: SimAgent) -> None:
        for i in range(per):
            await agent.post_events([{"phase": "postscripts", "script": f"s{i}",
                                      "status": "ok", "rc": 0, "duration": 0.01,
                                      "tail": "done\n"}])

    async def updatenode(*extra: str) -> None:
        p = await asyncio.create_subprocess_exec(
            str(BIN / "updatenode"), "simagents", "-P", "hello", *extra, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await p.communicate()
        done = sum(1 for line in out.decode().splitlines()
                   if line.endswith(": postscript end....: hello exited with code 0"))
        if p.returncode != 0 or done != n:
            raise SystemExit(f"updatenode {' '.join(extra)}: exit {p.returncode}, {done} of "
                             f"{n} nodes answered: {err.decode()[-1500:]}")

    def per_s(count: int, what: str):
        return lambda wall, _cpu: f"{count / wall:8.0f} {what}/s"

    def per_1000_events(count: int):
        return lambda wall, cpu: (f"{count / wall:8.0f} events/s, "
                                  f"{cpu / count * 1000:5.2f} CPU s per 1,000 events")

    def nodes_per_s(wall: float, cpu: float) -> str:
        return (f"{n / wall:8.0f} nodes/s, {cpu / n * 1000:5.1f} CPU ms per node, "
                f"target < {TARGET_UPDATENODE:g} s: "
                f"{'met' if wall < TARGET_UPDATENODE else 'MISSED'}")

    async with Fleet(tokens, http, concurrency=args.concurrency) as fleet:
        await meter.measure(f"(a) enrol {n} agents", fleet.each(SimAgent.enrol),
                            per_s(n, "enrols"))
        if fleet.errors:
            raise SystemExit(f"{len(fleet.errors)} agents did not enrol, e.g. "
                             f"{fleet.errors[:3]}")
        await meter.measure(f"boot {n} agents (5 requests each)", fleet.each(boot),
                            per_s(5 * n, "requests"))
        await meter.measure(f"(b) {per} events per agent, one batch each",
                            fleet.each(batch_events), per_1000_events(n * per))
        await meter.measure(f"(b) {per} events per agent, one post each",
                            fleet.each(single_events), per_1000_events(n * per))
        await meter.measure(f"long polls of {n} agents open", fleet.serve(wait=25))
        await meter.measure("(c) updatenode -P, default fanout (64)",
                            updatenode(), nodes_per_s)
        await meter.measure(f"(c) updatenode -P --fanout {args.fanout}",
                            updatenode("--fanout", str(args.fanout)), nodes_per_s)
        for agent in fleet.agents:   # what the agent's per-script event costs
            agent.task_events = False
        await meter.measure("(c) the same, agents posting no events",
                            updatenode("--fanout", str(args.fanout)), nodes_per_s)
        errors = list(fleet.errors)
    if errors:
        raise SystemExit(f"{len(errors)} agent errors, e.g. {errors[:3]}")
    if len(boots) != n or any(b != ["hello"] for b in boots):
        raise SystemExit("not every agent booted with its plan")
    meter.print()
    (_, b_wall, b_cpu, _), (_, s_wall, s_cpu, _) = meter.rows[2:4]
    print(f"  events one by one vs batched: {s_wall / b_wall:.1f}x the wall time, "
          f"{s_cpu / max(b_cpu, 1e-9):.1f}x the xcatd CPU")


def main() -> int:
    from xcatd.base.paths import Paths
    from xcatd.lab.agentsim import arm, define
    from xcatd.lab.ports import free_port
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=1000, help="simulated agents (1000)")
    ap.add_argument("--events", type=int, default=20, help="events per agent (20)")
    ap.add_argument("--concurrency", type=int, default=100,
                    help="agents at work at once in the enrol, boot and events phases (100)")
    ap.add_argument("--fanout", type=int, default=1000,
                    help="updatenode --fanout of the second run (1000)")
    args = ap.parse_args()
    limits = raise_nofile(args.agents)

    tmp = Path(tempfile.mkdtemp(prefix="pyxcat-bench-nodeagent-"))
    root, home = tmp / "root", tmp / "home"
    root.mkdir()
    home.mkdir()
    env = {**os.environ, "XCATROOT": str(root), "HOME": str(home)}
    env.pop("XCATBYPASS", None)
    xport, hport = free_port(), free_port()
    env["XCATHOST"] = f"127.0.0.1:{xport}"
    os.environ.update(XCATROOT=str(root), HOME=str(home))
    xcatd = None
    log = tmp / "xcatd.log"

    run = runner(env)

    try:
        run("xcatconfig")
        run("chtab", "key=httpport", f"site.value={hport}")
        run("chtab", "key=httpbind", "site.value=127.0.0.1")
        paths = Paths(root)
        nodes = define(run, paths, args.agents, xcatdport=xport, scripts={"hello": HELLO})
        tokens = arm(paths, nodes)
        with open(log, "w") as fh:
            xcatd = subprocess.Popen([str(BIN / "xcatd"), "--listen", "127.0.0.1", "--port",
                                      str(xport)], env=env, start_new_session=True,
                                     stdout=fh, stderr=subprocess.STDOUT)
        wait_port(xport, xcatd, "xcatd")
        wait_port(hport, xcatd, "xcatd's HTTP site")
        print(f"nodeagent bench: {args.agents} simulated agents (asyncio, one process, "
              f"{args.concurrency} at work at once), a real xcatd process (SQLite, audit "
              f"and job records on), loopback, {os.cpu_count()} CPUs; {limits}")
        asyncio.run(run_bench(args, xcatd.pid, tokens, f"127.0.0.1:{hport}", env))
    finally:
        stop(xcatd)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
