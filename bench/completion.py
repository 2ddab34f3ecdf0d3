"""Completion benchmark: one TAB of pyxcat's bash completion with 10,000 node names, beside
bash's own `compgen -W` over the same names in the same bash (the peer), and click's built-in
shell completion (a Python start per TAB), in one run.

A TAB runs the completion function in the user's shell: it reads the cached name list with
one awk; it never starts Python. The figures are the median time of one call of the
function (bash's EPOCHREALTIME around it). Budget: 200 ms per TAB at 10,000 nodes. The
cache is refreshed from the daemon in the background (nodels, lsdef -t group -s, lsdef -t
osimage -s); that refresh is timed last, through XCATBYPASS on a scratch management node
(root only; skipped otherwise).
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

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "share/bash-completion/completions/pyxcat"
BUDGET_MS = 200.0

#: (label, command line as typed before TAB, prefix for the compgen -W peer or None)
WORKLOADS = [
    ("options: rpower -", "rpower -", None),
    ("actions: rpower r01n0001 ", "rpower r01n0001 ", None),
    ("every name: rpower ", "rpower ", ""),
    ("1,000 names: rpower r03", "rpower r03", "r03"),
    ("10 names: rpower r03n001", "rpower r03n001", "r03n001"),
    ("noderange tail: rpower r01n0001,r02n00", "rpower r01n0001,r02n00", "r02n00"),
]

DRIVER = r"""
. "$SCRIPT"
runs=$1
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( $# / 2 + 1 ))p"; }
time_calls() {  # label line: median microseconds of one _pyxcat call
    local line=$2 i t0 t1 n
    local -a us
    for (( i = 0; i < runs; i++ )); do
        COMP_LINE=$line; COMP_POINT=${#line}
        read -ra COMP_WORDS <<< "$line"; [[ $line == *' ' ]] && COMP_WORDS+=("")
        COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
        t0=$EPOCHREALTIME
        _pyxcat rpower "${COMP_WORDS[COMP_CWORD]}" ""
        t1=$EPOCHREALTIME
        us+=( $(( ${t1/./} - ${t0/./} )) )
    done
    n=${#COMPREPLY[@]}
    printf 'ours\t%s\t%s\t%s\n' "$1" "$(median "${us[@]}")" "$n"
}
time_peer() {  # label prefix: median microseconds of compgen -W over the cached names
    local i t0 t1 n
    local -a us reply
    for (( i = 0; i < runs; i++ )); do
        t0=$EPOCHREALTIME
        mapfile -t reply < <(compgen -W "$(< "$NAMES")" -- "$2")
        t1=$EPOCHREALTIME
        us+=( $(( ${t1/./} - ${t0/./} )) )
    done
    n=${#reply[@]}
    printf 'peer\t%s\t%s\t%s\n' "$1" "$(median "${us[@]}")" "$n"
}
t0=$EPOCHREALTIME
. "$SCRIPT"
t1=$EPOCHREALTIME
printf 'load\tsource the script\t%s\t0\n' $(( ${t1/./} - ${t0/./} ))
while IFS=$'\t' read -r label line prefix; do
    time_calls "$label" "$line"
    [[ $prefix == - ]] || time_peer "$label" "$prefix"
done
"""


def names(count: int) -> list[str]:
    """rNNnNNNN: 1,000 nodes a rack, and a few groups."""
    per_rack = 1000
    return ([f"r{n // per_rack + 1:02d}n{n % per_rack + 1:04d}" for n in range(count)]
            + ["all", "compute", "gpu", "login"])


def measure(tmp: Path, count: int, runs: int) -> list[tuple[str, str, float, int]]:
    cache = tmp / "cache"
    (cache / "pyxcat").mkdir(parents=True)
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "XCATROOT": str(tmp / "root"),
           "SCRIPT": str(SCRIPT)}
    env.pop("XCATHOST", None)
    key = "".join(c if c.isalnum() or c in "._-" else "_" for c in env["XCATROOT"])
    listing = cache / "pyxcat" / f"names-{key}"
    # stamped now: no refresh is started while the figures are taken
    listing.write_text(f"# {int(time.time()) + 3600}\n" + "\n".join(names(count)) + "\n")
    plain = tmp / "names.txt"
    plain.write_text("\n".join(names(count)) + "\n")
    env["NAMES"] = str(plain)
    stdin = "".join(f"{label}\t{line}\t{'-' if prefix is None else prefix}\n"
                    for label, line, prefix in WORKLOADS)
    out = subprocess.run(["bash", "-c", DRIVER, "bench", str(runs)], input=stdin, env=env,
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        who, label, micros, found = line.split("\t")
        rows.append((who, label, int(micros) / 1000, int(found)))
    return rows


def click_completion(runs: int) -> float | None:
    """Median ms of click's own completion of `rpower -` (a Python start per TAB)."""
    exe = BIN / "rpower"
    if not exe.exists():
        return None
    env = {**os.environ, "_RPOWER_COMPLETE": "bash_complete", "COMP_WORDS": "rpower -",
           "COMP_CWORD": "1"}
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([str(exe)], env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def refresh(tmp: Path, count: int) -> tuple[float, int] | None:
    """Seconds the background refresh takes on a management node with ``count`` nodes
    (XCATBYPASS: root only), and the names it cached."""
    if os.geteuid() != 0:
        return None
    root = tmp / "mn"
    root.mkdir()
    env = {**os.environ, "XCATROOT": str(root), "XCATBYPASS": "1", "HOME": str(tmp),
           "XDG_CACHE_HOME": str(tmp / "refresh-cache"), "PATH": f"{BIN}:{os.environ['PATH']}",
           "SCRIPT": str(SCRIPT)}
    env.pop("XCATHOST", None)
    subprocess.run([str(BIN / "xcatconfig")], env=env, capture_output=True, check=False)
    racks = (count + 999) // 1000
    subprocess.run([str(BIN / "nodeadd"), f"r[01-{racks:02d}]n[0001-1000]",
                    "groups=compute,all"], env=env, check=True, capture_output=True)
    script = r"""
. "$SCRIPT"
_pyxcat_refresh
_pyxcat_cachefile names
pidfile="${REPLY%/*}/.refresh-${REPLY##*/}"
sleep 0.05
while [[ -e $pidfile ]]; do sleep 0.05; done
wc -l < "$REPLY"
"""
    t = time.perf_counter()
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                         check=True, timeout=600).stdout
    return time.perf_counter() - t, int(out.strip() or 0) - 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--no-refresh", action="store_true", help="skip the refresh figure")
    a = ap.parse_args()
    if shutil.which("bash") is None or shutil.which("awk") is None:
        sys.exit("bash and awk are needed")
    tmp = Path(tempfile.mkdtemp(prefix="pyxcat-bench-completion-"))
    try:
        rows = measure(tmp, a.nodes, a.runs)
        ours = {label: (ms, n) for who, label, ms, n in rows if who in ("ours", "load")}
        peer = {label: (ms, n) for who, label, ms, n in rows if who == "peer"}
        print(f"{a.nodes:,} node names cached; median of {a.runs} calls; peer: bash's "
              "compgen -W over the same names")
        print(f"{'workload':40} {'pyxcat':>9} {'compgen -W':>11} {'ratio':>7} {'offered':>8}")
        for label, (ms, n) in ours.items():
            if label in peer:
                pms, pn = peer[label]
                assert pn == n, f"{label}: pyxcat offers {n}, compgen {pn}"
                print(f"{label:40} {ms:7.1f}ms {pms:9.1f}ms {pms / ms:6.1f}x {n:8}")
            else:
                print(f"{label:40} {ms:7.1f}ms {'':>11} {'':>7} {n:8}")
        slowest = max(ms for ms, _ in ours.values())
        clicked = click_completion(max(3, a.runs // 4))
        if clicked is not None:
            opts = ours["options: rpower -"][0]
            print(f"{'click completion: rpower - (peer)':40} {clicked:7.1f}ms "
                  f"({clicked / opts:.0f}x the pyxcat TAB)")
        print(f"slowest pyxcat TAB: {slowest:.1f} ms (budget {BUDGET_MS:.0f} ms at "
              f"{a.nodes:,} nodes): {'within' if slowest <= BUDGET_MS else 'OVER'}")
        if not a.no_refresh:
            got = refresh(tmp, a.nodes)
            if got is None:
                print("background refresh: skipped (XCATBYPASS needs root)")
            else:
                secs, cached = got
                print(f"background refresh (nodels + lsdef, XCATBYPASS): {secs:.1f} s for "
                      f"{cached:,} names")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
