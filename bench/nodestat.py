"""nodestat and pping benchmark: 1,000 nodes, half of them dead, beside fping in the same run.

Everything runs in a network namespace (xcatd.lab.loopnet, root only) where 127.0.0.0/16
answers and 127.1.0.0/16 is routed to a gateway that never answers: a dead node costs a
timeout, as a powered-off one does on a LAN. An "sshd" (a listener on port 22) runs in the
namespace, so live nodes answer on one of nodestat's six ports. Measured, whole commands
with their Python start-up (XCATBYPASS, SQLite): ``pping``, ``nodestat``, and the probe
alone; beside ``fping`` over the same addresses, as xCAT's ``pping -f`` runs it (fping's
defaults: 4 tries, 500 ms growing by 1.5) and with about pping's budget (3 tries in 1 s).
Target: pping and nodestat of 1,000 nodes, 500 dead, in under 5 s.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
TARGET = 5.0

LISTEN = """
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 22)); s.listen(4096); print("up", flush=True)
while True:
    c, _ = s.accept(); c.close()
"""

PROBE = """
import sys, time
from xcatd.base import reach
addrs = sys.stdin.read().split()
t = time.perf_counter()
got, why = reach.probe(addrs, [22, 443, 15002, 8002, 3389, 135])
print(f"{time.perf_counter() - t:.3f} {sum(r.alive for r in got.values())} {why or ''}")
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--dead", type=int, default=None, help="dead nodes (default: half)")
    a = ap.parse_args()
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("nodestat bench: skipped (network namespaces need root and iproute2)")
        return 0
    from xcatd.lab.loopnet import LoopNet, dead, live
    n = a.nodes
    nd = n // 2 if a.dead is None else a.dead
    addrs = [live(i) for i in range(n - nd)] + [dead(i) for i in range(nd)]
    tmp = Path(tempfile.mkdtemp(prefix="pyxcat-bench-nodestat-"))
    root = tmp / "root"
    root.mkdir()
    env = {**os.environ, "XCATROOT": str(root), "HOME": str(tmp), "XCATBYPASS": "1"}
    listener = None
    try:
        subprocess.run([str(BIN / "xcatconfig")], env=env, check=True, capture_output=True)
        subprocess.run([str(BIN / "nodeadd"), f"n[0-{n - 1}]", "groups=compute"], env=env,
                       check=True, capture_output=True)
        csv = "#node,ip,hostnames,otherinterfaces,comments,disable\n" + "".join(
            f'"n{i}","{addr}",,,,\n' for i, addr in enumerate(addrs))
        hosts = tmp / "hosts.csv"  # tabrestore names the table after the file
        hosts.write_text(csv)
        subprocess.run([str(BIN / "tabrestore"), str(hosts)], env=env, check=True,
                       capture_output=True)
        noderange = f"n[0-{n - 1}]"
        with LoopNet() as net:
            listener = subprocess.Popen(net.argv([sys.executable, "-c", LISTEN]),
                                        stdout=subprocess.PIPE, text=True,
                                        start_new_session=True)
            listener.stdout.readline()
            rows = []

            def timed(label: str, argv: list[str], check, stdin: str | None = None) -> float:
                t = time.perf_counter()
                r = net.run(argv, env=env, input=stdin, timeout=600)
                el = time.perf_counter() - t
                rows.append((label, el, check(r)))
                return el

            def count(word: str):
                return lambda r: f"{sum(ln.endswith(': ' + word) for ln in r.stdout.splitlines())}"\
                                 f" {word}"

            floor = timed("python start-up: pping of one node", [BIN / "pping", "n0"],
                          count("ping"))
            pp = timed(f"pping {noderange}", [BIN / "pping", noderange], count("ping"))
            ns = timed(f"nodestat {noderange} (6 ports)", [BIN / "nodestat", noderange],
                       count("sshd"))
            timed("  the probe alone (in process)", [sys.executable, "-c", PROBE],
                  lambda r: r.stdout.strip(), "\n".join(addrs))
            fp = fq = None
            if shutil.which("fping"):
                fp = timed("fping, its defaults (xCAT's pping -f)", ["fping", *addrs],
                           lambda r: f"{r.stdout.count(' is alive')} alive")
                fq = timed("fping -r 2 -t 333 -i 1 (pping's budget)",
                           ["fping", "-a", "-q", "-r", "2", "-t", "333", "-i", "1", *addrs],
                           lambda r: f"{len(r.stdout.split())} alive")
        print(f"pping/nodestat over {n} nodes on 127/8, {nd} of them dead (silent), in a "
              "network namespace; whole commands, XCATBYPASS, SQLite")
        for label, el, what in rows:
            print(f"  {label:44} {el:6.2f}s   {what}")
        for label, el in ((f"pping {noderange}", pp), (f"nodestat {noderange}", ns)):
            print(f"  {label:44} target < {TARGET:.0f}s: {'ok' if el < TARGET else 'MISSED'}")
        if fp is not None:
            print(f"  ratio fping (defaults) / pping: {fp / pp:.2f}x; fping (same budget) / "
                  f"pping: {fq / pp:.2f}x; pping without start-up / fping (same budget): "
                  f"{max(pp - floor, 0.001) / fq:.2f}x")
        else:
            print("  fping is not installed (Debian package fping): no peer figures")
    finally:
        if listener is not None and listener.poll() is None:
            from xcatd.lab import kill_pid
            kill_pid(listener.pid)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
