"""xcatexport / xcatimport of a 10,000-node management node, beside the baseline of the same
work done by hand in the same run: ``dumpxCATdb -p`` + ``tar`` (zstd, all cores) of the same
trees one way, ``restorexCATdb -p`` + ``tar -x`` the other.

The management node is bench/db.py's cluster (10,000 nodes in 50 groups, ~30 attributes each,
regex values) plus two osimages whose rootimgdir holds a 60 MB packed image (random bytes: a
squashfs does not compress further) with a kernel and an initrd, exported --with-images and
with secrets sealed (the default). Peak memory (maximum RSS) is measured per process, with
and without the images: streaming means it does not grow with the archive.

xcatimport's time is split at its "Imported ..." line: before it, reading, verifying and the
one transaction; after it, regenerating hosts, DHCP, DNS and 10,000 nodes' boot files through
the request pipeline, which the baseline does not do at all.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xcatd.base.paths import Paths
from xcatd.daemon.initialize import initialize
from xcatd.db.database import Database

sys.path.insert(0, str(Path(__file__).resolve().parent))
from db import stanza  # bench/db.py's cluster

BIN = Path(sys.executable).parent
IMAGE_MB = 60


def timed(argv: list[str], env: dict[str, str], *, mark: str | None = None,
          cwd: str | None = None) -> tuple[float, float | None, int]:
    """(seconds, seconds until a stdout line starting with ``mark``, max RSS in KiB)."""
    t = time.perf_counter()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=cwd)
    at = None
    assert p.stdout is not None
    for line in p.stdout:
        if mark and at is None and line.startswith(mark):
            at = time.perf_counter() - t
    err = p.stderr.read() if p.stderr else ""
    _pid, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}): {err[-2000:]}")
    return elapsed, at, usage.ru_maxrss


def build(root: Path, nodes: int, groups: int, images: bool) -> None:
    paths = Paths(root)
    initialize(paths, client_home=str(root / "root"))
    env = {**os.environ, "XCATROOT": str(root), "XCATBYPASS": "1", "HOME": str(root / "root")}
    subprocess.run([str(BIN / "mkdef"), "-z"], input=stanza(nodes, groups), env=env,
                   text=True, check=True, capture_output=True)
    db = Database.open(paths)
    with db.begin() as conn:
        db.set_rows(conn, "hosts", {(f"rack{g:02d}",): {
            "ip": r"|r(\d+)n(\d+)|10.($1+0).(($2-1)/250).(($2-1)%250+1)|"}
            for g in range(1, groups + 1)})
        db.set_rows(conn, "ipmi", {(f"rack{g:02d}",): {
            "bmc": r"|r(\d+)n(\d+)|bmc-$1-$2|", "password": f"bmc-secret-{g}"}
            for g in range(1, groups + 1)})
        db.set_rows(conn, "passwd", {("system", "root"): {"password": "root-secret"},
                                     ("ipmi", "ADMIN"): {"password": "ipmi-secret"}})
        for i in (1, 2):
            name = f"debian12-x86_64-netboot-compute{i}"
            rootimgdir = f"/install/netboot/debian12/x86_64/compute{i}"
            db.set_rows(conn, "osimage", {(name,): {"imagetype": "linux", "provmethod": "netboot",
                                                    "osvers": "debian12", "osarch": "x86_64",
                                                    "profile": f"compute{i}"}})
            db.set_rows(conn, "linuximage", {(name,): {
                "rootimgdir": rootimgdir,
                "pkglist": f"/install/custom/netboot/compute{i}.pkglist"}})
            d = paths.under(rootimgdir)
            d.mkdir(parents=True, exist_ok=True)
            if images:
                with open(d / "rootimg.sfs", "wb") as fh:
                    for _ in range(IMAGE_MB):
                        fh.write(os.urandom(1 << 20))
                (d / "kernel").write_bytes(os.urandom(8 << 20))
                (d / "initrd-stateless.gz").write_bytes(os.urandom(12 << 20))
            (d / "manifest.json").write_text(json.dumps({"image": name}) + "\n")
            custom = paths.under("/install/custom/netboot")
            custom.mkdir(parents=True, exist_ok=True)
            (custom / f"compute{i}.pkglist").write_text("#INCLUDE:base.pkglist#\nopenssh-server\n")
            (custom / "base.pkglist").write_text("systemd\nlinux-image-amd64\n")
    db.dispose()


def trees(root: Path) -> list[str]:
    """The trees xcatexport takes from this root, for the baseline's tar."""
    names = ["etc/xcat", "install/postscripts", "install/custom", "install/netboot"]
    if (root / "root/.ssh").exists():
        names.append("root/.ssh")
    return [n for n in names if (root / n).exists()]


def one_size(work: Path, nodes: int, groups: int, images: bool) -> dict[str, float]:
    tag = "images" if images else "plain"
    a, b, c = work / f"a-{tag}", work / f"b-{tag}", work / f"c-{tag}"
    build(a, nodes, groups, images)
    for d in (b, c):
        initialize(Paths(d), client_home=str(d / "root"))
    pp = work / f"passphrase-{tag}"
    pp.write_text("bench passphrase\n")
    os.chmod(pp, 0o600)

    def env(root: Path) -> dict[str, str]:
        return {**os.environ, "XCATROOT": str(root), "XCATBYPASS": "1",
                "HOME": str(root / "root")}

    flag = ["--with-images"] if images else []
    archive = work / f"mn-{tag}.tar.zst"
    r: dict[str, float] = {}
    r["export"], _, r["export_rss"] = timed(
        [str(BIN / "xcatexport"), "-f", str(archive), "--passphrase-file", str(pp), *flag],
        env(a))
    r["archive_mb"] = archive.stat().st_size / 1e6
    # the baseline: dumpxCATdb + tar of the same trees, zstd on every core
    dump = a / "dump"
    base = work / f"base-{tag}.tar.zst"
    t_dump, _, _ = timed([str(BIN / "dumpxCATdb"), "-p", str(dump)], env(a))
    t_tar, _, _ = timed(["tar", "-I", "zstd -T0 -3", "-cf", str(base), "-C", str(a), "dump",
                         *trees(a)], env(a))
    r["base_export"] = t_dump + t_tar
    r["import"], r["import_commit"], r["import_rss"] = timed(
        [str(BIN / "xcatimport"), "-f", str(archive), "--passphrase-file", str(pp)], env(b),
        mark="Imported")
    t_untar, _, _ = timed(["tar", "-I", "zstd -T0", "-xf", str(base), "-C", str(c)], env(c))
    t_restore, _, _ = timed([str(BIN / "restorexCATdb"), "-p", str(c / "dump")], env(c))
    r["base_import"] = t_untar + t_restore
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--groups", type=int, default=50)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pyxcat-bench-transfer-", dir=args.workdir))
    try:
        print(f"{args.nodes} nodes, 2 osimages; export with sealed secrets; SQLite")
        for images in (False, True):
            r = one_size(work, args.nodes, args.groups, images)
            for d in work.iterdir():  # room for the next size
                if d.is_dir():
                    shutil.rmtree(d, ignore_errors=True)
            what = f"with 2 x {IMAGE_MB} MB images" if images else "without images"
            print(f"\n[{what}] archive {r['archive_mb']:.1f} MB")
            print(f"  export: xcatexport {r['export']:.2f}s  vs dumpxCATdb -p + tar "
                  f"{r['base_export']:.2f}s  ratio {r['export'] / r['base_export']:.2f}x "
                  f"(target <= 1.5x)  peak RSS {r['export_rss'] / 1024:.0f} MiB")
            commit = r["import_commit"] or r["import"]
            print(f"  import: xcatimport to its commit {commit:.2f}s  vs tar -x + "
                  f"restorexCATdb -p {r['base_import']:.2f}s  ratio "
                  f"{commit / r['base_import']:.2f}x (target <= 1.5x)  peak RSS "
                  f"{r['import_rss'] / 1024:.0f} MiB")
            print(f"          then regenerating hosts, DHCP, DNS and {args.nodes:,} nodes' "
                  f"boot files: {r['import'] - commit:.2f}s (total {r['import']:.2f}s; the "
                  "baseline does none of it)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
