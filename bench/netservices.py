"""Network services benchmark: 10,000 nodes, timed end to end as commands (in process).

makehosts -n, makedhcp -n (ISC dhcpd with dhcpd -t, and Kea with kea-dhcp4 -t), makedns -n
(dnspython zones,
named-checkconf and named-checkzone included), and makedns of 100 nodes on top against a
running named (RFC 2136 with TSIG). Side by side: the checkers alone on the same files (the
floor no implementation can beat) and xCAT's per-node read pattern for the same data.
Targets: each full rebuild under 3 s, 100-node incremental under 1 s. (Incremental
makedhcp through OMAPI is not built yet, so it is not measured.)
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
NODES = 10_000


def run(env: dict, *argv: str) -> float:
    t = time.perf_counter()
    p = subprocess.run([str(BIN / argv[0]), *argv[1:]], env=env, capture_output=True,
                       text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {p.stderr[-1500:]}")
    return time.perf_counter() - t


def serve_on(env: dict, lab) -> None:
    """Serve the cluster's networks on the lab's server interface and write the config."""
    run(env, "chtab", "key=dhcpinterfaces", f"site.value={lab.server_if}")
    run(env, "mkdef", "-f", "-t", "network", "-o", "mgt", "net=10.0.0.0",
        "mask=255.255.0.0", f"mgtifname={lab.server_if}")
    run(env, "mkdef", "-f", "-t", "network", "-o", "lab", f"net={lab.subnet}",
        "mask=255.255.255.0", f"mgtifname={lab.server_if}")  # the interface's own
    run(env, "makedhcp", "-n")


def incremental_dhcp(env: dict, root: Path, tmp: Path) -> tuple[float, float]:
    """100 new nodes on a running dhcpd (OMAPI) and a running Kea (config-set), both in a
    lab namespace: makedhcp runs inside it, so its traffic never leaves it."""
    from xcatd.lab.netns import Lab
    new = f"n[{NODES + 1}-{NODES + 100}]"
    exe = str(BIN / "makedhcp")
    with Lab(workdir=tmp / "lab") as lab:
        serve_on(env, lab)
        lab.start_dhcpd(root / "etc/dhcp/dhcpd.conf", tmp / "leases")

        def inside(*argv: str) -> float:
            t = time.perf_counter()
            p = lab.run("server", [exe, *argv], env=env)
            if p.returncode != 0:
                raise SystemExit(f"makedhcp {argv} failed: {p.stderr[-1500:]}")
            return time.perf_counter() - t

        omapi = median(lambda: inside(new))
    with Lab(workdir=tmp / "lab2") as lab:
        run(env, "chtab", "key=dhcpbackend", "site.value=kea")
        serve_on(env, lab)
        kenv = {**os.environ, "KEA_PIDFILE_DIR": str(tmp), "KEA_LOCKFILE_DIR": str(tmp)}
        with open(tmp / "kea.log", "w") as log:
            lab.start("server", ["kea-dhcp4", "-c", str(root / "etc/kea/kea-dhcp4.conf")],
                      env=kenv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not (root / "var/run/kea/kea4-ctrl-socket").exists():
            if time.monotonic() > deadline:
                raise SystemExit("Kea did not start: " + (tmp / "kea.log").read_text()[-800:])
            time.sleep(0.2)
        kea = median(lambda: run(env, "makedhcp", new))
        run(env, "chtab", "key=dhcpbackend", "site.value=dhcpd")
    return omapi, kea


def probe(root: Path) -> Path:
    """The Kea file with no interfaces, as makedhcp checks it."""
    import json
    conf = json.loads((root / "etc/kea/kea-dhcp4.conf").read_text())
    conf["Dhcp4"]["interfaces-config"]["interfaces"] = []
    path = root / "kea-probe.json"
    path.write_text(json.dumps(conf))
    return path


def mac(i: int) -> str:
    return f"52:54:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"


def timed(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True)
    return time.perf_counter() - t


def median(fn, n: int = 3) -> float:
    return statistics.median(fn() for _ in range(n))


def main() -> int:
    from xcatd.lab.bind import Named
    from xcatd.lab.ports import free_port
    tmp = Path(tempfile.mkdtemp(prefix="pyxcat-bench-net-"))
    root, home = tmp / "root", tmp / "home"
    root.mkdir()
    home.mkdir()
    env = {**os.environ, "XCATROOT": str(root), "HOME": str(home), "XCATBYPASS": "1"}
    port = free_port()
    try:
        run(env, "xcatconfig")
        for k, v in (("domain", "hpc.example"), ("master", "10.0.0.1"), ("dnsport", str(port)),
                     ("dnslisten", "127.0.0.1"), ("nameserverhost", "mgt")):
            run(env, "chtab", f"key={k}", f"site.value={v}")
        run(env, "mkdef", "-t", "network", "-o", "mgt", "net=10.0.0.0", "mask=255.255.0.0",
            "dynamicrange=10.0.250.1-10.0.250.200")
        run(env, "mkdef", "-t", "network", "-o", "ib", "net=10.1.0.0", "mask=255.255.0.0")
        run(env, "nodeadd", f"n[1-{NODES}]", "groups=compute,all")
        run(env, "chtab", "node=compute",
            r"hosts.ip=|\D+(\d+)|10.0.(($1-1)/250).(($1-1)%250+1)|",
            r"nics.nicips=|\D+(\d+)|ib0!10.1.(($1-1)/250).(($1-1)%250+1)|",
            "nics.nichostnamesuffixes=ib0!-ib")
        from xcatd.base.paths import Paths
        from xcatd.db.database import Database
        db = Database.open(Paths(root))
        with db.begin() as conn:  # regex arithmetic is decimal: MACs are set per node
            db.set_rows(conn, "mac", {(f"n{i}",): {"mac": mac(i)} for i in range(1, NODES + 1)})

        hosts = median(lambda: run(env, "makehosts", "-n"))
        dhcp = median(lambda: run(env, "makedhcp", "-n"))
        run(env, "chtab", "key=dhcpbackend", "site.value=kea")
        kea = median(lambda: run(env, "makedhcp", "-n"))
        floor_kea = median(lambda: timed(["kea-dhcp4", "-t", str(probe(root))]))
        run(env, "chtab", "key=dhcpbackend", "site.value=dhcpd")
        dns_full = median(lambda: run(env, "makedns", "-n"))
        conf = root / "etc/dhcp/dhcpd.conf"
        floor_dhcp = median(lambda: timed(["dhcpd", "-t", "-4", "-cf", str(conf)]))
        zdir = root / "var/named"
        floor_dns = median(lambda: sum(
            timed(["named-checkzone", "-q", z.name[3:], str(z)])
            for z in zdir.glob("db.*") if not z.name.endswith(".jnl")))
        with Named(root / "etc/named.conf", port):
            run(env, "nodeadd", f"n[{NODES + 1}-{NODES + 100}]", "groups=compute,all")
            with db.begin() as conn:
                db.set_rows(conn, "mac", {(f"n{i}",): {"mac": mac(i)}
                                          for i in range(NODES + 1, NODES + 101)})
            inc_dns = median(lambda: run(env, "makedns", f"n[{NODES + 1}-{NODES + 100}]"))
        inc_omapi, inc_kea = incremental_dhcp(env, root, tmp)
        floor = median(lambda: timed([sys.executable, "-c", "import xcatd.commands.makedns"]))

        print(f"{NODES} nodes (plus an InfiniBand nic each), SQLite, in process")
        print(f"  python start-up + import:          {floor:.2f}s")
        rows = [("makehosts -n", hosts, 3, None),
                ("makedhcp -n (dhcpd -t included)", dhcp, 3, floor_dhcp),
                ("makedhcp -n Kea (kea-dhcp4 -t incl.)", kea, 3, floor_kea),
                ("makedns -n (named-check* included)", dns_full, 3, floor_dns),
                ("makedns 100 nodes (RFC 2136)", inc_dns, 1, None),
                ("makedhcp 100 nodes (dhcpd OMAPI)", inc_omapi, 1, None),
                ("makedhcp 100 nodes (Kea config-set)", inc_kea, 1, None)]
        for name, t, target, checker in rows:
            extra = f"   checker alone {checker:.2f}s ({checker / t * 100:.0f}%)" if checker \
                else ""
            print(f"  {name:36} {t:6.2f}s   target < {target}s   "
                  f"{'ok' if t < target else 'MISSED'}{extra}")
        db.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
