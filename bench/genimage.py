"""genimage benchmark: ``genimage`` (the console script, in process through XCATBYPASS=1, on a
scratch management node made by ``xcatconfig``) against ``mmdebstrap`` alone with the same
package list, suite (bookworm) and mirror, in the same run, interleaved.

Both use one local .deb cache (genimage's own, ``$PYXCAT_IMAGE_CACHE/debs/bookworm-amd64``,
bind-mounted into the peer's target the same way), warmed by one untimed build of each, so
the network is not what is measured (only apt's index download, which both do). genimage's
cache of finished trees (``images/<digest>.tar.zst``) is emptied before each timed run, so
genimage really builds; it still saves the tree it built there, which the peer does not do:
that stage's time is printed on its own. The osimage's postinstall is a script that does
nothing (the shipped one configures the node; the peer has nothing like it), and the default
list has no kernel, so no initrd is made. Target: genimage within 1.15x of mmdebstrap alone.
Run as root (mmdebstrap --mode=root). Progress lines of genimage are timed as they arrive,
giving the time of each stage.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
IMAGE = "debian12-x86_64-netboot-bench"
TARGET = 1.15
DEFAULT_PACKAGES = "systemd-sysv,udev,curl,iproute2,kmod"


def run(env: dict, *argv: str) -> None:
    p = subprocess.run([str(BIN / argv[0]), *argv[1:]], env=env, capture_output=True,
                       text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {p.stderr[-1500:]}")


def genimage(env: dict) -> tuple[float, list[tuple[float, str]]]:
    """Wall time of one genimage, and (seconds since start, line) for each progress line."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(BIN / "genimage"), IMAGE], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.perf_counter() - t0, line.rstrip()))
    rc = proc.wait()
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit("genimage failed:\n" + "\n".join(s for _, s in lines[-30:]))
    return wall, lines


def stage_times(lines: list[tuple[float, str]], wall: float) -> dict[str, float]:
    """Seconds spent from each progress line to the next (the last one to the end)."""
    out: dict[str, float] = {}
    for i, (t, text) in enumerate(lines):
        end = lines[i + 1][0] if i + 1 < len(lines) else wall
        out[text.strip()] = out.get(text.strip(), 0.0) + end - t
    return out


def peer_argv(packages: list[str], debs: Path, target: Path) -> list[str]:
    """mmdebstrap alone, with the same .deb cache bound in (in a private mount namespace,
    as genimage runs it, so the bind mount cannot outlive it)."""
    return ["unshare", "--mount", "--propagation", "private", "--",
            "mmdebstrap", "--mode=root", "--variant=minbase", "--quiet",
            "--include=" + ",".join(packages), "--architectures=amd64",
            "--skip=download/empty", "--skip=essential/unlink",
            '--setup-hook=mkdir -p "$1/var/cache/apt/archives" && mount --bind '
            f'{shlex.quote(str(debs))} "$1/var/cache/apt/archives"',
            '--customize-hook=umount "$1/var/cache/apt/archives"',
            SUITE, str(target), MIRROR]


def mmdebstrap(packages: list[str], debs: Path, target: Path) -> float:
    shutil.rmtree(target, ignore_errors=True)
    t = time.perf_counter()
    # the environment genimage gives mmdebstrap, as anyone running it unattended would
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
    p = subprocess.run(peer_argv(packages, debs, target), capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, env=env, check=False)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"mmdebstrap failed: {p.stderr[-1500:]}")
    return wall


def seed(debs: Path) -> int:
    """Copy the lab's cached .debs (when there are any) into the scratch cache: fewer
    downloads in the warm-up; the lab cache itself is left alone."""
    lab = REPO / ".cache/lab/genimage/debs" / f"{SUITE}-amd64"
    n = 0
    for f in lab.glob("*.deb") if lab.is_dir() else ():
        shutil.copy2(f, debs / f.name)
        n += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packages", default=DEFAULT_PACKAGES,
                    help=f"comma-separated package list (default: {DEFAULT_PACKAGES})")
    ap.add_argument("--runs", type=int, default=1, help="timed runs of each (default 1)")
    ap.add_argument("--no-seed", action="store_true",
                    help="do not copy the lab's cached .debs into the scratch cache")
    args = ap.parse_args()
    packages = [p.strip() for p in args.packages.split(",") if p.strip()]
    if os.geteuid() != 0:
        print("genimage bench: skipped (run as root: mmdebstrap --mode=root)")
        return 0
    if not shutil.which("mmdebstrap"):
        print("genimage bench: skipped (mmdebstrap is not installed)")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="pyxcat-bench-genimage-"))
    root, home, cache = tmp / "root", tmp / "home", tmp / "cache"
    debs = cache / "debs" / f"{SUITE}-amd64"
    for d in (root, home, debs):
        d.mkdir(parents=True)
    env = {**os.environ, "XCATROOT": str(root), "HOME": str(home), "XCATBYPASS": "1",
           "PYXCAT_IMAGE_CACHE": str(cache)}
    try:
        run(env, "xcatconfig")
        custom = root / "install/custom/netboot/debian"
        custom.mkdir(parents=True)
        (custom / "bench.pkglist").write_text("\n".join(packages) + "\n")
        script = custom / "bench.postinstall"
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o755)
        run(env, "mkdef", "-t", "osimage", "-o", IMAGE, "imagetype=linux",
            "provmethod=netboot", "osvers=debian12", "osarch=x86_64", "profile=bench",
            "pkglist=/install/custom/netboot/debian/bench.pkglist",
            "postinstall=/install/custom/netboot/debian/bench.postinstall", f"pkgdir={MIRROR}")
        seeded = 0 if args.no_seed else seed(debs)
        print(f"genimage bench: {SUITE}, {len(packages)} packages in the list "
              f"({', '.join(packages)}), mirror {MIRROR}, {os.cpu_count()} CPUs; "
              f"{seeded} .debs seeded from the lab cache")
        t = time.perf_counter()
        genimage(env)  # warm-up: fills the .deb cache
        peer_target = tmp / "peer" / "rootimg"
        peer_target.parent.mkdir()
        mmdebstrap(packages, debs, peer_target)  # warm-up of the peer (page cache)
        print(f"  warm-up (both, untimed) {time.perf_counter() - t:.1f} s; .deb cache: "
              f"{len(list(debs.glob('*.deb')))} files")
        ours, theirs, saves = [], [], []
        stages: dict[str, float] = {}
        for _ in range(args.runs):  # interleaved, so both see the same machine
            shutil.rmtree(cache / "images", ignore_errors=True)  # really build
            wall, lines = genimage(env)
            ours.append(wall)
            stages = stage_times(lines, wall)
            saves.append(stages.get("saving the image in the cache", 0.0))
            theirs.append(mmdebstrap(packages, debs, peer_target))
        t_ours, t_theirs = statistics.median(ours), statistics.median(theirs)
        t_save = statistics.median(saves)
        ratio = t_ours / t_theirs
        print("  genimage stages (last run):")
        for text, secs in stages.items():
            print(f"    {secs:7.2f} s  {text[:90]}")
        print(f"  genimage {t_ours:7.2f} s   mmdebstrap alone {t_theirs:7.2f} s   "
              f"ratio {ratio:.2f}x (target <= {TARGET:.2f}x: "
              f"{'met' if ratio <= TARGET else 'MISSED'})")
        if args.runs > 1:
            print("  each run: genimage " + ", ".join(f"{x:.2f}" for x in ours)
                  + " s; mmdebstrap " + ", ".join(f"{x:.2f}" for x in theirs) + " s")
        print(f"  of which saving the tree in genimage's cache {t_save:.2f} s; without it: "
              f"ratio {(t_ours - t_save) / t_theirs:.2f}x")
        sizes = [int(subprocess.run(["du", "-sb", str(p)], capture_output=True, text=True,
                                    check=True).stdout.split()[0]) / 2**20
                 for p in (root / "install/netboot/debian12/x86_64/bench/rootimg",
                           peer_target)]
        print(f"  image root: genimage {sizes[0]:.0f} MB, mmdebstrap {sizes[1]:.0f} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
