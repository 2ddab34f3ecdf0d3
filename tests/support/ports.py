"""Free ports: the kernel picks them (bind to port 0), so parallel runs never collide.

>>> 0 < free_port() < 65536
True
"""
from __future__ import annotations

import socket


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (TCP by default, UDP with SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_ports(count: int, kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports, all held until every one is picked."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, kind)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
