"""Power benchmark: `rpower <N nodes> stat` through a real xcatd against a simulated BMC fleet
(pyghmi Bmc servers), cold (first login) and warm (sessions kept), beside two peers in the
same run: ipmitool one process per node, 64 at a time, and plain sequential pyghmi.
Targets at N = 1,000: warm >= 1,000 nodes/s, cold >= 300 nodes/s.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BIN = Path(sys.executable).parent


def main() -> int:
    from xcatd.lab.bmcfleet import Fleet
    from xcatd.lab.ports import free_port
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--peer-nodes", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=300, help="per command, seconds")
    a = ap.parse_args()
    n = a.nodes
    tmp = Path(tempfile.mkdtemp(prefix="pyxcat-bench-power-"))
    root, home = tmp / "root", tmp / "home"
    root.mkdir()
    home.mkdir()
    port = free_port()
    env = {**os.environ, "XCATROOT": str(root), "HOME": str(home),
           "XCATHOST": f"127.0.0.1:{port}"}
    env.pop("XCATBYPASS", None)
    proc = None
    try:
        with Fleet(count=n) as fleet:
            base = fleet.base_port
            bypass = {**env, "XCATBYPASS": "1"}
            subprocess.run([str(BIN / "xcatconfig")], env=env, check=True, capture_output=True)
            subprocess.run([str(BIN / "nodeadd"), f"n[0-{n - 1}]", "groups=compute",
                            "nodehm.mgt=ipmi", "ipmi.bmc=127.0.0.1"], env=bypass, check=True)
            subprocess.run([str(BIN / "chtab"), "node=compute",
                            rf"ipmi.bmcport=|\D+(\d+)|({base}+$1)|"], env=bypass, check=True)
            subprocess.run([str(BIN / "chtab"), "key=ipmi", "passwd.username=admin",
                            "passwd.password=secret"], env=bypass, check=True)
            proc = subprocess.Popen([str(BIN / "xcatd"), "--listen", "127.0.0.1", "--port",
                                     str(port)], env=env, start_new_session=True,
                                    stderr=subprocess.PIPE, text=True)
            while "ready on" not in (proc.stderr.readline() or "ready on"):
                pass
            results = {}
            for label in ("cold", "warm"):
                t = time.perf_counter()
                try:
                    r = subprocess.run([str(BIN / "rpower"), f"n[0-{n - 1}]", "stat"], env=env,
                                       capture_output=True, text=True, check=False,
                                       timeout=a.timeout)
                    ok = sum(1 for ln in r.stdout.splitlines() if ln.endswith(": off"))
                except subprocess.TimeoutExpired:
                    ok = -1  # did not finish
                results[label] = (time.perf_counter() - t, ok)
            m = a.peer_nodes

            def ipmitool(i: int) -> None:
                subprocess.run(["ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1",
                                "-p", str(fleet.port(i)), "-U", "admin", "-P", "secret",
                                "chassis", "power", "status"], capture_output=True, check=False)

            peer_ipmitool = None
            if shutil.which("ipmitool"):
                t = time.perf_counter()
                with ThreadPoolExecutor(64) as ex:
                    list(ex.map(ipmitool, range(m)))
                peer_ipmitool = m / (time.perf_counter() - t)
            t = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", (
                "from pyghmi.ipmi import command\n"
                "ok = 0\n"
                f"for i in range({m}):\n"
                "    try:\n"
                f"        command.Command('127.0.0.1','admin','secret',port={base}+i).get_power()\n"
                "        ok += 1\n"
                "    except Exception:\n"
                "        pass\n"
                "print(ok)")], capture_output=True, text=True, check=False,
                timeout=a.timeout)
            peer_seq = m / (time.perf_counter() - t)
            peer_ok = p.stdout.strip() or "0"
        print(f"rpower stat of {n} simulated BMCs through xcatd (whole command, start-up incl.)")
        for label, target in (("cold", 300), ("warm", 1000)):
            el, ok = results[label]
            if ok < 0:
                print(f"  {label}: did not finish in {a.timeout:.0f}s   target >= {target}/s"
                      "   MISSED")
                continue
            rate = n / el
            print(f"  {label}: {el:6.2f}s  {rate:7.0f} nodes/s  ({ok}/{n} answered)  "
                  f"target >= {target}/s  {'ok' if rate >= target else 'MISSED'}")
        if peer_ipmitool:
            print(f"  peer ipmitool, 64 in parallel ({m} nodes): {peer_ipmitool:7.0f} nodes/s"
                  f"   ratio warm/ipmitool {n / results['warm'][0] / peer_ipmitool:.1f}x")
        print(f"  peer sequential pyghmi, cold ({m} nodes, {peer_ok} answered): "
              f"{peer_seq:7.0f} nodes/s   ratio cold/pyghmi "
              f"{n / results['cold'][0] / peer_seq:.1f}x")
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
