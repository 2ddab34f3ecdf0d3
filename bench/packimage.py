"""packimage benchmark: packimage (the command as admins run it, through a live xcatd; and in
process through XCATBYPASS) against plain ``mksquashfs`` with the same options on the same
tree, run after run in the same process; then image size and pack time for squashfs with
zstd, xz and gzip, and xCAT's default ``cpio.gz``.

The tree is the lab's cached Debian 12 image (.cache/lab/diskless/debian12-*.tar, unpacked
into a scratch directory) when there is one, else a generated tree of about 300 MB (text
that compresses as a system does, and some random data that does not). Target: packimage
within 1.10x of mksquashfs alone. Run as root (the tree keeps its owners).
"""
from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
IMAGE = "debian12-x86_64-netboot-compute"
ROOTIMGDIR = "install/netboot/debian12/x86_64/compute"
RUNS = 3
TARGET = 1.10


def run(env: dict, *argv: str) -> float:
    t = time.perf_counter()
    p = subprocess.run([str(BIN / argv[0]), *argv[1:]], env=env, capture_output=True,
                       text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {p.stderr[-1500:]}")
    return time.perf_counter() - t


def timed(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def cached_image() -> Path | None:
    found = sorted((REPO / ".cache/lab/diskless").glob("debian12-*.tar"),
                   key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def make_tree(tree: Path) -> str:
    """The tree to pack; says where it came from."""
    tree.mkdir(parents=True)
    tar = cached_image()
    if tar is not None:
        p = subprocess.run(["tar", "-x", "-f", str(tar), "-C", str(tree), "--numeric-owner"],
                           capture_output=True, text=True, check=False)
        if p.returncode == 0:
            return f"the cached Debian 12 image {tar.name}"
        shutil.rmtree(tree)
        tree.mkdir()
    rng = random.Random(12)
    words = [("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))))
             for _ in range(4000)]
    total = 0
    for d in range(60):
        sub = tree / f"usr/share/d{d:02}"
        sub.mkdir(parents=True)
        for f in range(200):
            if f % 10 == 0:
                data = rng.randbytes(rng.randint(10_000, 60_000))
            else:
                data = " ".join(rng.choices(words, k=rng.randint(500, 5000))).encode()
            (sub / f"f{f:03}").write_bytes(data)
            total += len(data)
    (tree / "etc").mkdir()
    (tree / "etc/shadow").write_text("root:*:19700:0:99999:7:::\n")
    (tree / "var/lib/dpkg").mkdir(parents=True)
    (tree / "var/lib/dpkg/status").write_text("")
    return f"a generated tree of {total // 2**20} MB"


def size_of(tree: Path) -> int:
    out = subprocess.run(["du", "-sb", str(tree)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def main() -> int:
    if os.geteuid() != 0:
        print("packimage bench: skipped (run as root: the tree keeps its owners)")
        return 0
    if not shutil.which("mksquashfs"):
        print("packimage bench: skipped (mksquashfs is not installed: squashfs-tools)")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="pyxcat-bench-pack-"))
    root, home = tmp / "root", tmp / "home"
    root.mkdir()
    home.mkdir()
    env = {**os.environ, "XCATROOT": str(root), "HOME": str(home), "XCATBYPASS": "1"}
    from xcatd.lab.ports import free_port
    port = free_port()
    denv = {**{k: v for k, v in env.items() if k != "XCATBYPASS"},
            "XCATHOST": f"127.0.0.1:{port}"}
    daemon = None
    try:
        run(env, "xcatconfig")
        run(env, "chtab", "key=system", "passwd.username=root", "passwd.password=cluster")
        run(env, "mkdef", "-t", "osimage", "-o", IMAGE, "imagetype=linux", "provmethod=netboot",
            "osvers=debian12", "osarch=x86_64", "profile=compute")
        destdir = root / ROOTIMGDIR
        tree = destdir / "rootimg"
        origin = make_tree(tree)
        print(f"packimage bench: {origin}, {size_of(tree) / 2**20:.0f} MB, {os.cpu_count()} "
              "CPUs")
        plain_out = tmp / "plain.sfs"
        plain = ["mksquashfs", str(tree), str(plain_out), "-noappend", "-comp", "zstd",
                 "-Xcompression-level", "3", "-one-file-system", "-quiet", "-no-progress"]
        log = tmp / "xcatd.log"
        with open(log, "wb") as fh:
            daemon = subprocess.Popen([str(BIN / "xcatd"), "--listen", "127.0.0.1", "--port",
                                       str(port)], env=denv, start_new_session=True,
                                      stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while "ready on" not in log.read_text(errors="replace"):  # ready when the log says so
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"xcatd did not start: {log.read_text()[-1500:]}")
            time.sleep(0.1)
        ours, inproc, theirs, startup = [], [], [], []
        timed(plain)  # warm the page cache
        for _ in range(RUNS):  # interleaved, so all see the same machine
            theirs.append(timed(plain))
            ours.append(run(denv, "packimage", IMAGE))
            inproc.append(run(env, "packimage", IMAGE))
            startup.append(run(env, "lsdef", "-t", "osimage", "-o", IMAGE))
        t_ours, t_theirs = statistics.median(ours), statistics.median(theirs)
        t_in, t_start = statistics.median(inproc), statistics.median(startup)
        ratio = t_ours / t_theirs
        print(f"  packimage through xcatd     {t_ours:6.2f} s   "
              f"mksquashfs alone {t_theirs:6.2f} s   ratio {ratio:.2f}x "
              f"(target <= {TARGET:.2f}x: {'met' if ratio <= TARGET else 'MISSED'})")
        print(f"  packimage in process (XCATBYPASS) {t_in:6.2f} s: ratio {t_in / t_theirs:.2f}x; "
              f"its start-up (lsdef of the osimage) {t_start:.2f} s")
        print("  method / compression       time        size")
        for argv, name in ((["-c", "zstd"], "rootimg.sfs"), (["-c", "xz"], "rootimg.sfs"),
                           (["-c", "gzip"], "rootimg.sfs"),
                           (["-m", "cpio", "-c", "gzip"], "rootimg.cpio.gz")):
            t = run(env, "packimage", *argv, IMAGE)
            size = (destdir / name).stat().st_size
            label = f"{argv[1] if argv[0] == '-m' else 'squashfs'} {argv[-1]}"
            print(f"  {label:24} {t:7.2f} s  {size / 2**20:8.1f} MB")
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
