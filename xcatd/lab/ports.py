"""Free ports for the lab's throwaway services, tests and benchmarks: the kernel picks them
(bind to port 0), so parallel runs never collide on a guessed number.

>>> 0 < free_port() < 65536
True
>>> import socket
>>> first = free_port_block(10, socket.SOCK_DGRAM)
>>> 0 < first and first + 9 <= 65535
True

``free_port_block`` is for the simulated BMC fleets, whose nodes find their BMC by
arithmetic on one base port (``ipmi.bmcport=|\\D+(\\d+)|(base+$1)|``): ``count``
consecutive ports, starting at one the kernel chose, every one of them checked free.
"""
from __future__ import annotations

import contextlib
import socket

LOCALHOST = "127.0.0.1"
HIGHEST = 65535


def free_port(kind: int = socket.SOCK_STREAM, host: str = LOCALHOST) -> int:
    """A port nothing is bound to right now on ``host`` (TCP by default, UDP with
    ``socket.SOCK_DGRAM``), chosen by the kernel."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_port_block(count: int, kind: int = socket.SOCK_STREAM, host: str = LOCALHOST,
                    attempts: int = 100) -> int:
    """The first of ``count`` consecutive ports that are all free right now: the block
    starts at a kernel-chosen port and every port of it is bound once to check (all held
    until the whole block is known free); a block with a taken port, or one that would run
    past 65535, is dropped for another kernel-chosen start."""
    if count < 1:
        raise ValueError(f"a block of {count} ports")
    for _ in range(attempts):
        first = free_port(kind, host)
        if first + count - 1 > HIGHEST:
            continue
        with contextlib.ExitStack() as held:
            try:
                for port in range(first, first + count):
                    s = held.enter_context(socket.socket(socket.AF_INET, kind))
                    s.bind((host, port))
            except OSError:
                continue
            return first
    raise RuntimeError(f"no block of {count} free consecutive ports on {host} "
                       f"after {attempts} tries")
