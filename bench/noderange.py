"""Noderange benchmark: pyxcat's NodeRange beside ClusterShell's NodeSet, same workloads, one run.

Prints the median time of each workload for both and the ratio (ClusterShell / pyxcat: above 1
means pyxcat is faster). Target: at least 2x on every workload.
"""
from __future__ import annotations

import statistics
import sys
import time

from xcatd.base.noderange import NodeRange, fold

try:
    from ClusterShell.NodeSet import NodeSet as CSNodeSet
except ImportError:  # pragma: no cover
    sys.exit("ClusterShell is needed for the side-by-side run: pip install clustershell")

N = 100_000
NAMES = [f"n{i}" for i in range(1, N + 1)]
COMMA = ",".join(f"c{i * 7}" for i in range(1000))


def timeit(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


WORKLOADS = {
    "expand n[1-100000]": (
        lambda: len(NodeRange.fromstring("n[1-100000]")),
        lambda: len(list(CSNodeSet("n[1-100000]")))),
    "expand rack[1-50]-n[1-40]": (
        lambda: len(NodeRange.fromstring("rack[1-50]-n[1-40]")),
        lambda: len(list(CSNodeSet("rack[1-50]-n[1-40]")))),
    "1,000 comma atoms": (
        lambda: len(NodeRange.fromstring(COMMA)),
        lambda: len(list(CSNodeSet(COMMA)))),
    "fold 100k names": (
        lambda: fold(NAMES),
        lambda: str(CSNodeSet.fromlist(NAMES))),
    "difference of two 100k ranges": (
        lambda: len(NodeRange.fromstring("n[1-100000]") - NodeRange.fromstring("n[50001-150000]")),
        lambda: len(CSNodeSet("n[1-100000]") - CSNodeSet("n[50001-150000]"))),
}


def main() -> int:
    # both must agree before they are timed
    for name, (ours, theirs) in WORKLOADS.items():
        if name.startswith("fold"):
            assert NodeRange.fromstring(ours()).names == set(NAMES)
        else:
            assert ours() == theirs(), name
    print(f"{'workload':34} {'pyxcat':>10} {'ClusterShell':>13} {'ratio':>7}")
    worst = float("inf")
    for name, (ours, theirs) in WORKLOADS.items():
        a, b = timeit(ours), timeit(theirs)
        ratio = b / a
        worst = min(worst, ratio)
        print(f"{name:34} {a * 1000:8.1f}ms {b * 1000:11.1f}ms {ratio:6.1f}x")
    print(f"slowest ratio: {worst:.1f}x (target >= 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
