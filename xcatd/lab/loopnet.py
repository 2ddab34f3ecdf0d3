"""A network namespace with live and dead addresses, all in 127.0.0.0/8, for nodestat and pping.

Inside it, 127.0.0.0/16 is local (every address answers ping, and refuses or accepts TCP as
its listeners decide) and 127.1.0.0/16 is routed out of a veth to a gateway that never
answers (a permanent neighbour entry, so not even ARP is asked): packets to a dead address
leave and vanish, as they do for a powered-off node on a LAN. Nothing leaves the two
namespaces. Needs root and iproute2.

    with LoopNet() as net:
        net.run([sys.executable, "-c", "..."])        # runs inside the namespace
"""
from __future__ import annotations

import itertools
import os
import subprocess
from typing import Any

from xcatd.lab import Scene, kill_pid, netns_pids

LIVE = "127.0.0.0/16"
DEAD = "127.1.0.0/16"
_seq = itertools.count()


def live(i: int) -> str:
    """The i-th live address (127.0.1.1, 127.0.1.2, ...; 127.0.0.x is left to the host's
    habits)."""
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def dead(i: int) -> str:
    return f"127.1.{i // 250}.{1 + i % 250}"


class LoopNet(Scene):
    def __init__(self) -> None:
        k = next(_seq)
        self.ns = f"pyxl{os.getpid()}{k % 100}"
        self.sink = self.ns + "z"
        self._made: list[str] = []

    def setup(self) -> None:
        for ns in (self.ns, self.sink):
            _ip("netns", "add", ns)
            self._made.append(ns)
        ns = self.ns
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "add", "dead0", "type", "veth", "peer", "name", "sink0",
            "netns", self.sink)
        _ip("-n", ns, "link", "set", "dead0", "up")
        _ip("-n", self.sink, "link", "set", "sink0", "up")
        for conf in ("all", "dead0"):  # 127/8 may leave through dead0
            self.run(["sysctl", "-qw", f"net.ipv4.conf.{conf}.route_localnet=1"],
                     check=True)
        _ip("-n", ns, "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local")
        _ip("-n", ns, "route", "add", "local", LIVE, "dev", "lo", "table", "local")
        _ip("-n", ns, "neigh", "add", "127.2.0.1", "lladdr", "02:00:00:00:00:99",
            "dev", "dead0", "nud", "permanent")
        _ip("-n", ns, "route", "add", DEAD, "via", "127.2.0.1", "dev", "dead0", "onlink")

    def close(self) -> None:
        for ns in self._made:
            for pid in netns_pids(ns):
                kill_pid(pid)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self._made.clear()

    def argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *map(str, argv)]

    def run(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """subprocess.run inside the namespace (120 s unless told)."""
        kw.setdefault("timeout", 120)
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.argv(argv), **kw)


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if r.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
