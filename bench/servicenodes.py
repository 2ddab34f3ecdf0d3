"""Service-node relay benchmark: `rpower <N nodes> stat` through the management node, the
same simulated BMCs reached two ways in the same run: "direct" (nodes with no service node:
the management node's xcatd talks IPMI itself) and "relayed" (nodes with servicenode=snK: the
management node splits the request, one part per service node over mutual TLS, each service
node's xcatd talks IPMI). xcatd.lab.snlab: each xcatd in its own network namespace, the
database on a throwaway PostgreSQL; each service node's fleet is reachable from it and from
the management node.

Printed, never asserted: medians of alternating runs (after one cold run of each), the ratio
relayed/direct, where the CPU went (the machine's user+sys from /proc/stat; the management
node's xcatd, the service nodes' xcatds, the BMC fleets, PostgreSQL and the client from
/proc/<pid>/stat), and the figures a scaling estimate needs: each service node's part wall
time (its log's "relayed part" line to its last node's line at the client), the relay's
overhead, the management node's CPU seconds per 1,000 relayed nodes, bytes on the management
node's link per relayed node, PostgreSQL connections in use, heartbeat writes per second.

    bench/servicenodes.py                       # 10,000 BMCs behind 10 service nodes
    bench/servicenodes.py --nodes 200 --sns 2   # a quick check (under a minute)
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*relayed part: ")


# ---- what the machine and its processes did -------------------------------------------------
def machine_ticks() -> tuple[int, int]:
    """(busy user+nice+sys+irq+softirq, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    busy = f[0] + f[1] + f[2] + f[5] + f[6]
    return busy, sum(f[:8])


def proc_ticks(pid: int, children: bool = False) -> int:
    """utime+stime of ``pid`` (with ``children``: plus its reaped children's), 0 once gone."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    ticks = int(f[11]) + int(f[12])
    return ticks + (int(f[13]) + int(f[14]) if children else 0)


def children_of(ppid: int) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                f = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(f[1]) == ppid:
                out.append(int(entry.name))
    return out


class CpuGroups:
    """CPU ticks per group of processes (mn, sn, fleet, postgres), per PID, so a process
    that started or ended between two snapshots counts what it did in between."""

    def __init__(self, lab, fleets, pg) -> None:
        self.lab, self.fleets, self.pg = lab, fleets, pg

    def snapshot(self) -> dict[str, dict[int, int]]:
        pg_pids = children_of(self.pg.pid)
        return {
            "mn": {self.lab.mn.xcatd.pid: proc_ticks(self.lab.mn.xcatd.pid)},
            "sn": {sn.xcatd.pid: proc_ticks(sn.xcatd.pid) for sn in self.lab.sns},
            "fleet": {p.pid: proc_ticks(p.pid) for f in self.fleets for p in f.procs},
            # backends that came and went are in the postmaster's reaped children's time
            "postgres": {self.pg.pid: proc_ticks(self.pg.pid, children=True),
                         **{p: proc_ticks(p) for p in pg_pids}},
        }

    @staticmethod
    def seconds(before: dict, after: dict) -> dict[str, float]:
        return {g: sum(max(0, t - before[g].get(pid, 0)) for pid, t in after[g].items()) / HZ
                for g in after}


class Sampler(threading.Thread):
    """The machine's busy share each ``every`` seconds, and PostgreSQL's connections to the
    lab's database (pg_stat_activity, this sampler's own left out), while a run lasts."""

    def __init__(self, pg, dbname: str, every: float = 0.25) -> None:
        super().__init__(name="sampler", daemon=True)
        self.pg, self.dbname, self.every = pg, dbname, every
        self.halt = threading.Event()
        self.busy: list[float] = []
        self.conns: list[tuple[int, int, dict[str, int]]] = []  # (all, active, by role)

    def run(self) -> None:
        import psycopg
        with psycopg.connect(host="127.0.0.1", port=self.pg.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            last = machine_ticks()
            while True:
                stopping = self.halt.wait(self.every)
                now = machine_ticks()
                if now[1] > last[1]:
                    self.busy.append((now[0] - last[0]) / (now[1] - last[1]))
                last = now
                rows = conn.execute(
                    "SELECT usename, state FROM pg_stat_activity WHERE datname = %s "
                    "AND pid <> pg_backend_pid()", (self.dbname,)).fetchall()
                roles: dict[str, int] = {}
                for user, _state in rows:
                    roles[str(user)] = roles.get(str(user), 0) + 1
                self.conns.append((len(rows), sum(1 for _u, s in rows if s == "active"),
                                   roles))
                if stopping:
                    return

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def link_bytes(ns: str) -> int:
    """rx+tx bytes of eth0 in namespace ``ns``."""
    r = subprocess.run(["ip", "-n", ns, "-j", "-s", "link", "show", "eth0"],
                       capture_output=True, text=True, check=True, timeout=30)
    s = json.loads(r.stdout)[0]["stats64"]
    return s["rx"]["bytes"] + s["tx"]["bytes"]


def snstatus_writes(pg, dbname: str) -> int:
    import psycopg
    with psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname=dbname,
                         autocommit=True) as conn:
        row = conn.execute("SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables "
                           "WHERE relname = 'snstatus'").fetchone()
    return int(row[0]) if row else 0


# ---- one run ---------------------------------------------------------------------------------
@dataclass
class Run:
    kind: str
    wall: float = 0.0
    answered: int = 0
    failures: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # group -> CPU seconds
    busy_avg: float = 0.0          # machine user+sys, share of all CPUs
    busy_peak: float = 0.0
    link: int = 0                  # bytes on the management node's eth0
    conns: tuple[int, int] = (0, 0)  # most connections, most active
    roles: dict[str, int] = field(default_factory=dict)
    parts: dict[str, float] = field(default_factory=dict)  # sn -> part wall time
    first_part: float = 0.0        # command start to the first part's log line
    spread: float = 0.0            # first part's log line to the last one's


def rpower(lab, groups: CpuGroups, pg, dbname: str, kind: str, n: int, sns: int,
           timeout: float) -> Run:
    """`rpower <kind> stat` from the management node's namespace, its lines read as they
    come (each service node's last line timed)."""
    run = Run(kind)
    sampler = Sampler(pg, dbname)
    env = {**lab.mn.env(), "XCATHOST": "127.0.0.1:3001", "PYTHONUNBUFFERED": "1"}
    prefix = re.compile(r"^r(\d+)n\d+: ")
    last: dict[str, float] = {}
    link0 = link_bytes(lab.mn.ns)
    cpu0, machine0 = groups.snapshot(), machine_ticks()
    sampler.start()
    t0 = time.time()
    proc = subprocess.Popen(lab.mn.argv([BIN / "rpower", kind, "stat"]), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.endswith(": off"):
                run.answered += 1
                m = prefix.match(line)
                if m:
                    last[f"sn{m.group(1)}"] = time.time()
            elif len(run.failures) < 5:
                run.failures.append(line)
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        killer.cancel()
        proc.stdout.close()
    run.wall = time.time() - t0
    sampler.stop()
    cpu1, machine1 = groups.snapshot(), machine_ticks()
    run.busy_avg = (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1])
    run.link = link_bytes(lab.mn.ns) - link0
    run.cpu = CpuGroups.seconds(cpu0, cpu1)
    run.cpu["client"] = usage.ru_utime + usage.ru_stime
    if sampler.busy:
        run.busy_peak = max(sampler.busy)
    if sampler.conns:
        run.conns = (max(c[0] for c in sampler.conns), max(c[1] for c in sampler.conns))
        for _a, _b, roles in sampler.conns:
            for r, c in roles.items():
                run.roles[r] = max(run.roles.get(r, 0), c)
    if proc.returncode and not run.failures:
        run.failures.append(f"rpower exited {proc.returncode}")
    if kind == "relayed":
        starts = {}
        for k in range(1, sns + 1):
            sn = lab.members[f"sn{k}"]
            mine = [s for s in part_starts(sn.log) if s >= t0 - 1]
            if mine:
                starts[sn.name] = mine[-1]
        for sn, begun in starts.items():
            if sn in last:
                run.parts[sn] = last[sn] - begun
        if starts:
            run.first_part = min(starts.values()) - t0
            run.spread = max(starts.values()) - min(starts.values())
    return run


def part_starts(log: Path) -> list[float]:
    """When each "relayed part" line of a service node's log was written (epoch seconds)."""
    out = []
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        m = LOG_TIME.match(line)
        if m:
            out.append(datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
                       .timestamp())
    return out


# ---- the cluster -----------------------------------------------------------------------------
def sizes(n: int, sns: int) -> list[int]:
    return [n // sns + (1 if i < n % sns else 0) for i in range(sns)]


def define(lab, fleets, counts: list[int]) -> None:
    """Per service node k: r<k>n<i> (group rel<k>, relayed; servicenode=sn<k>) and d<k>n<i>
    (group dir<k>, direct; no service node), both on BMC i of fleet k."""
    def do(*argv: str) -> None:
        r = lab.mn.cli(*argv, bypass=True)
        if r.rc:
            raise RuntimeError(f"{' '.join(argv)}: {r.out}{r.err}")

    for k, (fleet, count) in enumerate(zip(fleets, counts, strict=True), 1):
        do("nodeadd", f"r{k}n[0-{count - 1}]", f"groups=rel{k},relayed")
        do("nodeadd", f"d{k}n[0-{count - 1}]", f"groups=dir{k},direct")
        for group in (f"rel{k}", f"dir{k}"):
            do("chtab", f"node={group}", rf"ipmi.bmcport=|\D+\d+\D+(\d+)|({fleet.base_port}+$1)|")
        do("chtab", f"node=rel{k}", f"noderes.servicenode=sn{k}")
    for group in ("relayed", "direct"):
        do("chtab", f"node={group}", "nodehm.mgt=ipmi")
        do("chtab", f"node={group}", "ipmi.bmc=127.0.0.1")
    do("chtab", "key=ipmi", "passwd.username=admin", "passwd.password=secret")


# ---- the report ------------------------------------------------------------------------------
def med(runs: list[Run], f) -> float:
    return statistics.median([f(r) for r in runs])


def report(n: int, sns: int, cold: dict[str, Run], warm: dict[str, list[Run]],
           heartbeat: tuple[float, float, float], setup: float) -> None:
    d, r = warm["direct"], warm["relayed"]
    print(f"\nrpower stat of {n} simulated BMCs, {sns} service nodes of {n // sns} "
          f"(whole command, client start-up included); {NCPU} CPUs; lab set up in "
          f"{setup:.0f}s")
    print(f"  cold (first login; relayed also records {n} leases): direct "
          f"{cold['direct'].wall:6.2f}s   relayed {cold['relayed'].wall:6.2f}s")
    print(f"  warm, median of {len(d)} alternating runs each:")
    print(f"  {'nodes':>6} {'direct s':>9} {'relayed s':>10} {'relayed/direct':>15}")
    dw, rw = med(d, lambda x: x.wall), med(r, lambda x: x.wall)
    print(f"  {n:>6} {dw:>9.2f} {rw:>10.2f} {rw / dw:>14.2f}x")
    print("  answered (every run): direct "
          f"{min(x.answered for x in d)}..{max(x.answered for x in d)}/{n}, relayed "
          f"{min(x.answered for x in r)}..{max(x.answered for x in r)}/{n}")
    print(f"\n  CPU during the warm runs (medians; % of one CPU over the run's wall time; "
          f"machine = user+sys of all {NCPU} CPUs)")
    print(f"  {'':8} {'machine avg':>11} {'peak .25s':>9}  " + "  ".join(
        f"{g:>9}" for g in ("mn xcatd", "sn xcatds", "fleet", "postgres", "client")))
    for kind, runs in (("direct", d), ("relayed", r)):
        cells = []
        for g in ("mn", "sn", "fleet", "postgres", "client"):
            cells.append(f"{med(runs, lambda x, g=g: x.cpu.get(g, 0) / x.wall) * 100:8.0f}%")
        print(f"  {kind:8} {med(runs, lambda x: x.busy_avg) * 100:10.0f}% "
              f"{med(runs, lambda x: x.busy_peak) * 100:8.0f}%  " + "  ".join(cells))
    print(f"  (CPU seconds, medians: direct mn {med(d, lambda x: x.cpu['mn']):.2f}, relayed "
          f"mn {med(r, lambda x: x.cpu['mn']):.2f} + sn {med(r, lambda x: x.cpu['sn']):.2f})")
    parts = [x for run in r for x in run.parts.values()]
    per_run_max = [max(run.parts.values()) for run in r if run.parts]
    print("\n  figures for the scaling estimate (warm, medians):")
    if parts:
        print(f"  per-SN part wall time ({n // sns} nodes): median {statistics.median(parts):.2f}s,"
              f" slowest SN per run {statistics.median(per_run_max):.2f}s "
              "(its log's 'relayed part' line to its last node's line at the client)")
        print(f"  command start to the first part on an SN: "
              f"{med(r, lambda x: x.first_part):.2f}s; first to last part started: "
              f"{med(r, lambda x: x.spread):.2f}s")
    print(f"  relay overhead, relayed - direct: {rw - dw:+.2f}s for {n} nodes")
    print(f"  MN xcatd CPU s per 1,000 nodes: relayed "
          f"{med(r, lambda x: x.cpu['mn']) / n * 1000:.3f}, direct "
          f"{med(d, lambda x: x.cpu['mn']) / n * 1000:.3f}; SN xcatd CPU s per 1,000 "
          f"relayed nodes {med(r, lambda x: x.cpu['sn']) / n * 1000:.3f}")
    print(f"  bytes on the MN's link per node: relayed {med(r, lambda x: x.link) / n:.0f} "
          f"(TLS to the SNs; rx+tx) direct {med(d, lambda x: x.link) / n:.0f} (IPMI)")
    for kind, runs in (("direct", d), ("relayed", r)):
        roles: dict[str, int] = {}
        for x in runs:
            for role, c in x.roles.items():
                roles[role] = max(roles.get(role, 0), c)
        print(f"  PostgreSQL connections during {kind}: most {max(x.conns[0] for x in runs)}"
              f" (most active at once {max(x.conns[1] for x in runs)}); by role: "
              + ", ".join(f"{k} {v}" for k, v in sorted(roles.items())))
    writes, expected, window = heartbeat
    print(f"  heartbeat writes (snstatus rows written): {writes:.2f}/s measured over the "
          f"runs ({window:.0f}s), {expected:.2f}/s expected ({sns} SNs, each every "
          "site.snheartbeattimeout/3)")
    if window < 30:
        print("  (PostgreSQL publishes its counters up to 10 s late: a short window is unreliable)")
    bad = [(x.kind, f) for x in (*d, *r, *cold.values()) for f in x.failures]
    if bad:
        print("  first lines that were not 'off':")
        for kind, line in bad[:10]:
            print(f"    {kind}: {line}")


def main() -> int:
    from xcatd.daemon.relay import keepalive_interval
    from xcatd.db.servicenodes import DEFAULT_HEARTBEAT_TIMEOUT
    from xcatd.lab import postgres
    from xcatd.lab.snlab import ServiceNodeLab
    from xcatd.lab.twomn import pg_socket_url, usable
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10000)
    ap.add_argument("--sns", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="warm runs of each, alternating")
    ap.add_argument("--timeout", type=float, default=900, help="per command, seconds")
    a = ap.parse_args()
    if a.sns < 1 or a.nodes < a.sns:
        ap.error("--nodes must be at least --sns, and --sns at least 1")
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    why = usable() or (None if postgres.bindir() else "PostgreSQL is not installed")
    if why:
        print(f"skipped: {why}")
        return 0
    started = time.monotonic()
    pg = postgres.start()
    try:
        url = pg.new_database()
        dbname = url.rsplit("/", 1)[1]
        url = pg_socket_url(url, Path(pg.base) / "sock", pg.port)
        with tempfile.TemporaryDirectory(prefix="pyxcat-bench-sn-") as tmp, \
                ServiceNodeLab(Path(tmp) / "lab", url, sns=a.sns) as lab:
            lab.start()
            counts = sizes(a.nodes, a.sns)
            fleets = [lab.start_fleet(c, reach=[f"sn{k}", "mn"])
                      for k, c in enumerate(counts, 1)]
            define(lab, fleets, counts)
            groups = CpuGroups(lab, fleets, pg)
            setup = time.monotonic() - started

            def one(kind: str) -> Run:
                return rpower(lab, groups, pg, dbname, kind, a.nodes, a.sns, a.timeout)

            w0, t0 = snstatus_writes(pg, dbname), time.monotonic()
            cold = {kind: one(kind) for kind in ("direct", "relayed")}
            warm: dict[str, list[Run]] = {"direct": [], "relayed": []}
            for i in range(a.rounds):
                for kind in (("direct", "relayed") if i % 2 == 0 else ("relayed", "direct")):
                    warm[kind].append(one(kind))
            time.sleep(1)  # PostgreSQL's statistics lag a little
            window = time.monotonic() - t0
            writes = (snstatus_writes(pg, dbname) - w0) / window
            expected = a.sns / keepalive_interval(DEFAULT_HEARTBEAT_TIMEOUT)
            report(a.nodes, a.sns, cold, warm, (writes, expected, window), setup)
            errors = "".join(f.errors() for f in fleets)
            if errors:
                print(f"  the BMC fleets wrote {len(errors.splitlines())} lines on stderr")
    finally:
        pg.stop()
    print(f"  total {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
