"""Postscript plan benchmark: the plans of 10,000 nodes (their ordered lists from
xcatdefaults, the osimage and the nodes' groups, every script file checked and hashed, and
the environment rendered from the shipped mypostscript template), in process on SQLite.

The bulk builder (xcatd.provision.postscripts.PlanBuilder over every node) is compared with
the naive way, one builder per node (each node's tables read for it alone, as a per-node
request would), timed on a sample of nodes and scaled to 10,000. The number of SQL
statements is printed for both: the bulk one must not grow with the number of nodes.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

NODES = 10_000
NAIVE_SAMPLE = 200
IMG = "debian12-x86_64-install-compute"
SCRIPTS = ["syslog", "remoteshell", "syncfiles", "otherpkgs", "confignetwork",
           "setupntp", "custom/site/hello.sh", "custom/site/slurm.sh"]


def setup(root: Path) -> None:
    from xcatd.base.paths import Paths
    from xcatd.daemon.initialize import initialize
    from xcatd.db.database import Database
    paths = Paths(root)
    initialize(paths)
    db = Database.open(paths)
    names = [f"n{i}" for i in range(1, NODES + 1)]
    with db.begin() as conn:
        db.set_rows(conn, "site", {("master",): {"value": "10.0.0.1"},
                                   ("domain",): {"value": "hpc.example"}})
        db.set_rows(conn, "networks", {("10.0.0.0", "255.255.0.0"): {"netname": "mgt"}})
        db.set_rows(conn, "osimage", {(IMG,): {
            "provmethod": "install", "osvers": "debian12", "osarch": "x86_64",
            "profile": "compute", "imagetype": "linux",
            "postscripts": "confignetwork,setupntp", "postbootscripts": "custom/site/slurm.sh"}})
        db.set_rows(conn, "nodelist", {(n,): {"groups": f"rack{(i - 1) // 40},compute,all"}
                                       for i, n in enumerate(names, 1)})
        db.set_rows(conn, "nodetype", {("compute",): {"os": "debian12", "arch": "x86_64",
                                                      "profile": "compute",
                                                      "provmethod": IMG}})
        db.set_rows(conn, "postscripts", {("compute",): {
            "postscripts": "custom/site/hello.sh compute"}})
        db.set_rows(conn, "hosts", {("compute",): {
            "ip": r"|\D+(\d+)|10.0.(($1-1)/250).(($1-1)%250+1)|"}})
        db.set_rows(conn, "mac", {("compute",): {
            "mac": r"|\D+(\d+)|52:54:00:00:(($1/256)%256):($1%256)|"}})
        db.set_rows(conn, "nics", {("compute",): {
            "nicips": r"ib0!|\D+(\d+)|10.1.(($1-1)/250).(($1-1)%250+1)|",
            "nictypes": "ib0!Infiniband"}})
    base = root / "install/postscripts"
    for name in SCRIPTS:
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n# a postscript\n" + "echo configuring\n" * 200)


class Statements:
    """Counts the SQL statements a block runs."""

    def __init__(self, engine) -> None:
        self.engine, self.count = engine, 0

    def _seen(self, *_args) -> None:
        self.count += 1

    def __enter__(self):
        import sqlalchemy as sa
        sa.event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc) -> None:
        import sqlalchemy as sa
        sa.event.remove(self.engine, "before_cursor_execute", self._seen)


def main() -> int:
    from xcatd.base.paths import Paths
    from xcatd.db.cluster import Cluster
    from xcatd.db.database import Database
    from xcatd.provision.postscripts import PlanBuilder
    tmp = Path(tempfile.mkdtemp(prefix="pyxcat-bench-postscripts-"))
    root = tmp / "root"
    root.mkdir()
    os.environ.update(XCATROOT=str(root), HOME=str(tmp))
    try:
        setup(root)
        paths = Paths(root)
        db = Database.open(paths)
        names = [f"n{i}" for i in range(1, NODES + 1)]
        with Statements(db.engine) as bulk_sql:
            t = time.perf_counter()
            plans = PlanBuilder(Cluster(paths, db), names).plans()
            bulk = time.perf_counter() - t
        bad = [p for p in plans.values() if not p.ok]
        if bad:
            raise SystemExit(f"{len(bad)} plans failed: {bad[0].errors}")
        scripts = sum(len(p.scripts) for p in plans.values())
        env_bytes = sum(len(p.env or "") for p in plans.values())
        sample = names[:: NODES // NAIVE_SAMPLE][:NAIVE_SAMPLE]
        with Statements(db.engine) as naive_sql:
            t = time.perf_counter()
            for n in sample:
                PlanBuilder(Cluster(paths, db), [n]).plan(n)
            naive = (time.perf_counter() - t) * NODES / len(sample)
        per_node_sql = naive_sql.count / len(sample)
        print(f"postscript plans of {NODES:,} nodes, SQLite, in process "
              f"({scripts:,} scripts, {env_bytes / 1e6:.1f} MB of environment)")
        print(f"  bulk (one PlanBuilder)          {bulk:6.2f} s  {NODES / bulk:8,.0f} nodes/s"
              f"  {bulk_sql.count} SQL statements")
        print(f"  naive (one builder per node)    {naive:6.2f} s  {NODES / naive:8,.0f} nodes/s"
              f"  {per_node_sql:.0f} SQL statements per node (scaled from {len(sample)})")
        print(f"  bulk is {naive / bulk:.0f}x faster")
        db.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
