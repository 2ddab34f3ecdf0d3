"""Boot storm benchmark: the HTTP site of a real xcatd (the console script, on a scratch
management node made by ``xcatconfig``) serving one large file, standing in for a diskless
node's ``rootimg.sfs``, to many concurrent clients on loopback, against nginx (sendfile on)
serving the same file from the same directory, in the same run.

Each client is a ``curl`` process (C, so the client is not what is measured), all started at
once; a Python-thread client (http.client, 1 MiB reads) is there with ``--client python``.
Prints each server's throughput (total bytes / wall time from the first start to the last
finish), p50/p99 of the per-client completion times, the ratio (target: xcatd within 1.5x
of nginx's throughput), and whether one download's sha256 matches the file's.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REL = "install/netboot/debian12/x86_64/compute/rootimg.sfs"
TARGET = 1.5


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


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


def sha256_of_download(port: int) -> tuple[str, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", f"/{REL}")
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"GET /{REL} on port {port}: HTTP {resp.status}")
    h, n = hashlib.sha256(), 0
    while chunk := resp.read(1 << 20):
        h.update(chunk)
        n += len(chunk)
    conn.close()
    return h.hexdigest(), n


def storm_curl(port: int, clients: int) -> tuple[float, list[float], int]:
    url = f"http://127.0.0.1:{port}/{REL}"
    t = time.perf_counter()
    procs = [subprocess.Popen(["curl", "-sS", "-f", "-o", "/dev/null", "-w",
                               "%{time_total} %{size_download}", url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(clients)]
    times, total = [], 0
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"curl {url}: exit {p.returncode}: {err.strip()}")
        secs, size = out.split()
        times.append(float(secs))
        total += int(size)
    return time.perf_counter() - t, times, total


def storm_python(port: int, clients: int) -> tuple[float, list[float], int]:
    times: list[float] = []
    sizes: list[int] = []
    errors: list[str] = []
    start = threading.Barrier(clients + 1)

    def client() -> None:
        buf = bytearray(1 << 20)
        try:
            start.wait()
            t = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            conn.request("GET", f"/{REL}")
            resp = conn.getresponse()
            n = 0
            while k := resp.readinto(buf):
                n += k
            conn.close()
            times.append(time.perf_counter() - t)
            sizes.append(n)
            if resp.status != 200:
                errors.append(f"HTTP {resp.status}")
        except OSError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for th in threads:
        th.start()
    start.wait()
    t = time.perf_counter()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    if errors:
        raise SystemExit(f"{len(errors)} clients failed: {errors[0]}")
    return wall, times, sum(sizes)


NGINX_CONF = """\
worker_processes auto;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /install/ {{ }}
    }}
}}
"""


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> int:
    from xcatd.lab.ports import free_port
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=100, help="concurrent clients (100)")
    ap.add_argument("--size-mb", type=int, default=200, help="size of the file (200 MB)")
    ap.add_argument("--client", choices=("curl", "python"), default="curl")
    args = ap.parse_args()
    if not shutil.which("nginx"):
        print("bootstorm bench: skipped (nginx is not installed: apt-get install nginx)")
        return 0
    if args.client == "curl" and not shutil.which("curl"):
        print("bootstorm bench: skipped (curl is not installed; or use --client python)")
        return 0
    storm = storm_curl if args.client == "curl" else storm_python

    tmp = Path(tempfile.mkdtemp(prefix="pyxcat-bench-bootstorm-"))
    tmp.chmod(0o755)  # nginx's workers (nobody) read the file through it
    root, home = tmp / "root", tmp / "home"
    root.mkdir()
    home.mkdir()
    env = {**os.environ, "XCATROOT": str(root), "HOME": str(home)}
    env.pop("XCATBYPASS", None)
    xport, hport, nport = free_port(), free_port(), free_port()
    env["XCATHOST"] = f"127.0.0.1:{xport}"
    xcatd = nginx = None
    try:
        for argv in (["xcatconfig"], ["chtab", "key=httpport", f"site.value={hport}"],
                     ["chtab", "key=httpbind", "site.value=127.0.0.1"]):
            p = subprocess.run([str(BIN / argv[0]), *argv[1:]],
                               env={**env, "XCATBYPASS": "1"}, capture_output=True,
                               text=True, check=False)
            if p.returncode != 0:
                raise SystemExit(f"{' '.join(argv)} failed: {p.stderr[-1500:]}")
        image = root / REL
        image.parent.mkdir(parents=True, exist_ok=True)
        want = hashlib.sha256()
        with open(image, "wb") as f:
            for _ in range(args.size_mb):
                block = os.urandom(1 << 20)
                want.update(block)
                f.write(block)
        image.chmod(0o644)
        for d in [image.parent, *image.parent.parents]:
            if d == tmp.parent:
                break
            d.chmod(d.stat().st_mode | 0o555)

        xcatd = subprocess.Popen([str(BIN / "xcatd"), "--listen", "127.0.0.1", "--port",
                                  str(xport)], env=env, start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=nport, root=root))
        nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp), "-g",
                                  "daemon off;"], start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(hport, xcatd, "xcatd's HTTP site")
        wait_port(nport, nginx, "nginx")

        print(f"bootstorm bench: {args.clients} concurrent {args.client} clients, one file of "
              f"{args.size_mb} MB, loopback, {os.cpu_count()} CPUs")
        results = {}
        for name, port in (("xcatd", hport), ("nginx", nport)):
            digest, n = sha256_of_download(port)  # also warms the page cache
            match = "match" if digest == want.hexdigest() and n == args.size_mb << 20 \
                else "DIFFER"
            wall, times, total = storm(port, args.clients)
            rate = total / wall / 2**20
            results[name] = rate
            print(f"  {name:6} {rate:8.0f} MB/s  {total / 2**30:6.1f} GiB in {wall:6.2f} s  "
                  f"per client p50 {pct(times, 50):6.2f} s  p99 {pct(times, 99):6.2f} s  "
                  f"sha256 of one download: {match}")
        ratio = results["nginx"] / results["xcatd"]
        print(f"  nginx / xcatd throughput: {ratio:.2f}x (target <= {TARGET:.1f}x: "
              f"{'met' if ratio <= TARGET else 'MISSED'})")
    finally:
        stop(nginx)
        stop(xcatd)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
