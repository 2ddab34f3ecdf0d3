"""Daemon benchmark: `nodels <one node> groups` through xcatd, by a keep-alive API client and
by the CLI, with the in-process path (XCATBYPASS=1) and Python start-up side by side.

A real xcatd process (the console script) serves a 1,000-node SQLite management node with
full auditing and job records. Prints latency percentiles, requests per second and ratios.
Targets: >= 1,000 requests/s through the API client; a CLI round trip dominated by Python
start-up, not by the daemon.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def api_worker(args: tuple[int, int, str, int]) -> list[float]:
    port, count, home, offset = args
    ctx = ssl.create_default_context(cafile=f"{home}/.xcat/ca.pem")
    ctx.load_cert_chain(f"{home}/.xcat/client-cred.pem")
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
    out = []
    for i in range(count):
        node = f"n{(offset + i) % 1000 + 1}"
        body = json.dumps({"request": {"command": "nodels", "noderange": node,
                                       "args": {"attributes": ["groups"]}}})
        t = time.perf_counter()
        conn.request("POST", "/v1/request", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        out.append(time.perf_counter() - t)
        if resp.status != 200 or b'"exitcode":0' not in data:
            raise SystemExit(f"bad answer: {resp.status} {data[:200]!r}")
    conn.close()
    return out


def run_cli(env: dict, argv: list[str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{argv} failed: {p.stderr}")
    return time.perf_counter() - t


def report(name: str, lat: list[float], wall: float) -> None:
    print(f"  {name:34} n={len(lat):5}  p50 {pct(lat, 50) * 1000:7.2f} ms  "
          f"p90 {pct(lat, 90) * 1000:7.2f} ms  p99 {pct(lat, 99) * 1000:7.2f} ms  "
          f"{len(lat) / wall:8.0f} req/s")


def main() -> int:
    from xcatd.lab.ports import free_port
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--api", type=int, default=2000, help="API requests")
    ap.add_argument("--clients", type=int, default=4, help="parallel API clients")
    ap.add_argument("--cli", type=int, default=2000, help="CLI requests")
    ap.add_argument("--cli-parallel", type=int, default=2)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pyxcat-bench-daemon-"))
    root, home = tmp / "root", tmp / "home"
    root.mkdir()
    home.mkdir()
    env = {**os.environ, "XCATROOT": str(root), "HOME": str(home)}
    env.pop("XCATBYPASS", None)
    port = free_port()
    env["XCATHOST"] = f"127.0.0.1:{port}"
    proc = None
    try:
        subprocess.run([str(BIN / "xcatconfig")], env=env, check=True, capture_output=True)
        subprocess.run([str(BIN / "nodeadd"), "n[1-1000]", "groups=compute,all",
                        "nodehm.mgt=ipmi"], env={**env, "XCATBYPASS": "1"}, check=True)
        t = time.perf_counter()
        proc = subprocess.Popen([str(BIN / "xcatd"), "--listen", "127.0.0.1", "--port",
                                 str(port)], env=env, start_new_session=True,
                                stderr=subprocess.PIPE, text=True)
        while True:  # ready when the log says so
            line = proc.stderr.readline()
            if "ready on" in line or not line:
                break
        print(f"xcatd started in {time.perf_counter() - t:.2f}s (process start to ready)")
        api_worker((port, 50, str(home), 0))  # warm up

        per = args.api // args.clients
        t = time.perf_counter()
        with multiprocessing.Pool(args.clients) as pool:
            parts = pool.map(api_worker, [(port, per, str(home), i * per)
                                          for i in range(args.clients)])
        api_wall = time.perf_counter() - t
        api = [x for p in parts for x in p]
        single = api_worker((port, min(500, args.api), str(home), 0))
        print("\nAPI (HTTPS keep-alive, client certificate, NDJSON stream, audit + job record)")
        report(f"{args.clients} clients in parallel", api, api_wall)
        report("1 client, sequential", single, sum(single))

        print(f"\nCLI (`nodels nX groups`, {args.cli_parallel} at a time)")
        floor = [run_cli(env, [sys.executable, "-c", "import xcatd.commands.nodels"])
                 for _ in range(20)]
        lat: list[float] = []
        bypass: list[float] = []
        t = time.perf_counter()
        with multiprocessing.pool.ThreadPool(args.cli_parallel) as tp:
            lat = tp.map(lambda i: run_cli(env, [str(BIN / "nodels"), f"n{i % 1000 + 1}",
                                                 "groups"]), range(args.cli))
        wall = time.perf_counter() - t
        with multiprocessing.pool.ThreadPool(args.cli_parallel) as tp:
            bypass = tp.map(lambda i: run_cli({**env, "XCATBYPASS": "1"},
                                              [str(BIN / "nodels"), f"n{i % 1000 + 1}",
                                               "groups"]), range(min(args.cli, 200)))
        report("through xcatd", lat, wall)
        report("in process (XCATBYPASS=1), peer", bypass, sum(bypass) / args.cli_parallel)
        f50, c50 = statistics.median(floor), statistics.median(lat)
        print(f"  python start-up + import of the command: p50 {f50 * 1000:.0f} ms = "
              f"{f50 / c50 * 100:.0f}% of a CLI round trip through xcatd")
        api_rate = len(api) / api_wall
        print(f"\nAPI: {api_rate:.0f} req/s = {api_rate / 1000:.2f}x the 1,000 req/s target; "
              f"CLI through xcatd vs in process (p50): "
              f"{statistics.median(bypass) / c50:.1f}x faster")
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
