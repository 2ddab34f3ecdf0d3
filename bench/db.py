"""Database benchmark: 10,000 nodes in 50 groups, ~30 attributes each, regex values on
hosts.ip and ipmi.bmc; timed end to end as commands, on SQLite and on PostgreSQL.

Side by side in the same run:
- the floor: Python start-up plus importing the command (what no implementation can beat);
- a per-node reader (xCAT's getNodeAttribs pattern: a query per node per table, then one per
  group) resolving the same attributes as ``nodels all groups mgt ip`` on the same database.
Targets: ``lsdef -l`` of 10,000 nodes under 2 s, ``nodels all groups mgt ip`` under 1 s.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from xcatd.base.paths import Paths
from xcatd.base.regexval import compute
from xcatd.daemon.initialize import initialize
from xcatd.db.database import SA_TABLES, Database
from xcatd.lab import postgres

BIN = Path(sys.executable).parent


def stanza(nodes: int, groups: int) -> str:
    out = ["# <xCAT data object stanza file>"]
    per = nodes // groups
    for i in range(1, nodes + 1):
        rack = (i - 1) // per + 1
        out += [
            f"\nr{rack:02d}n{i:05d}:", "    objtype=node",
            f"    groups=rack{rack:02d},compute,all", "    mgt=ipmi", "    arch=x86_64",
            "    os=rocky9.4", "    profile=compute", "    provmethod=install",
            "    netboot=xnba",
            f"    mac=52:54:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
            f"    serial=SN{i:07d}", "    mtm=7X21CTO1WW", f"    rack=rack{rack:02d}",
            f"    unit={i % 42 + 1}", "    room=dc1", "    primarynic=eth0",
            "    installnic=mac", "    xcatmaster=10.0.0.1", "    tftpserver=10.0.0.1",
            "    nfsserver=10.0.0.1", "    cons=ipmi", "    serialport=0",
            "    serialspeed=115200", f"    switch=sw{rack:02d}", f"    switchport={i % 48 + 1}",
            "    bmcusername=ADMIN", "    nodetype=osi", "    status=booted",
            "    chain=runcmd=bmcsetup", "    currstate=boot", "    cpucount=64",
            "    memory=512G",
        ]
    return "\n".join(out) + "\n"


def run(root: Path, *argv: str, stdin: str | None = None) -> float:
    env = {**os.environ, "XCATROOT": str(root), "XCATBYPASS": "1"}
    t = time.perf_counter()
    p = subprocess.run([str(BIN / argv[0]), *argv[1:]], input=stdin, env=env, text=True,
                       capture_output=True, check=False)
    elapsed = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {p.stderr[-2000:]}")
    return elapsed


def median(fn, repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def per_node_reader(db: Database, nodes: list[str]) -> dict[str, tuple]:
    """xCAT's pattern: each node's row, then its groups' rows, one query at a time."""
    out = {}
    nl, hm, hosts = SA_TABLES["nodelist"], SA_TABLES["nodehm"], SA_TABLES["hosts"]
    with db.connect() as conn:
        for node in nodes:
            groups = conn.execute(sa.select(nl.c.groups).where(nl.c.node == node)).scalar()
            chain = [node, *(groups or "").split(",")]
            values = []
            for table, col in ((hm, "mgt"), (hosts, "ip")):
                value = None
                for key in chain:
                    value = conn.execute(sa.select(table.c[col]).where(table.c.node == key)
                                         ).scalar()
                    if value:
                        break
                values.append(compute(value, node))
            out[node] = (groups, *values)
    return out


def bench_backend(name: str, url: str | None, nodes: int, groups: int, repeat: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"pyxcat-bench-{name}-"))
    try:
        paths = Paths(tmp)
        initialize(paths, db_url=url)
        text = stanza(nodes, groups)
        t_mkdef = run(tmp, "mkdef", "-z", stdin=text)
        rows = {(f"rack{g:02d}",): {"ip": r"|r(\d+)n(\d+)|10.($1+0).(($2-1)/250).(($2-1)%250+1)|"}
                for g in range(1, groups + 1)}
        bmc = {(f"rack{g:02d}",): {"bmc": r"|r(\d+)n(\d+)|bmc-$1-$2|", "password": "x"}
               for g in range(1, groups + 1)}
        db = Database.open(paths)
        with db.begin() as conn:
            db.set_rows(conn, "hosts", rows)
            db.set_rows(conn, "ipmi", bmc)
        t_lsdef = median(lambda: run(tmp, "lsdef", "-l"), repeat)
        t_nodels = median(lambda: run(tmp, "nodels", "all", "groups", "mgt", "ip"), repeat)
        node_names = sorted(db.all_nodes())
        t = time.perf_counter()
        per_node_reader(db, node_names[:1000])
        t_peer = (time.perf_counter() - t) * nodes / 1000  # scaled from 1,000 nodes
        db.dispose()
        return {"mkdef": t_mkdef, "lsdef": t_lsdef, "nodels": t_nodels, "peer": t_peer}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--groups", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = ap.parse_args()
    floor = median(lambda: _floor(), 3)
    print(f"{args.nodes} nodes, {args.groups} groups, ~30 attributes per node")
    print(f"floor (python start + import of a command): {floor:.2f}s")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        server = None
        url = None
        if backend == "postgres":
            if postgres.bindir() is None:
                print("postgres: skipped (PostgreSQL not installed)")
                continue
            server = postgres.start()
            url = server.new_database()
        try:
            r = bench_backend(backend, url, args.nodes, args.groups, args.repeat)
        finally:
            if server:
                server.stop()
        print(f"\n[{backend}]")
        print(f"  mkdef -z ({args.nodes} nodes from a stanza file): {r['mkdef']:.2f}s")
        print(f"  lsdef -l (all nodes):        {r['lsdef']:.2f}s   target < 2s   "
              f"{'ok' if r['lsdef'] < 2 else 'MISSED'}")
        print(f"  nodels all groups mgt ip:    {r['nodels']:.2f}s   target < 1s   "
              f"{'ok' if r['nodels'] < 1 else 'MISSED'}")
        print(f"  per-node reader, same data:  {r['peer']:.2f}s   "
              f"ratio per-node / nodels = {r['peer'] / r['nodels']:.1f}x")
    return 0


def _floor() -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import xcatd.commands.nodels"], check=True)
    return time.perf_counter() - t


if __name__ == "__main__":
    sys.exit(main())
