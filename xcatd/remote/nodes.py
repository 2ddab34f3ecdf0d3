"""Where and how the parallel shell reaches nodes: their addresses (hosts.ip, else the name),
the management node's root key, its known_hosts (makeknownhosts), the remote-shell options
an admin may pass with ``-o``, and site.maxssh.

>>> parse_options(["-o StrictHostKeyChecking=no", "ConnectTimeout=5"])
{'StrictHostKeyChecking': 'no', 'ConnectTimeout': '5'}
>>> parse_options(["ForwardAgent=yes"])   # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: -o ForwardAgent: not an option xdsh takes (it takes StrictHostKeyChecking, ...)
"""
from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from xcatd.base.paths import Paths
from xcatd.db.cluster import Cluster
from xcatd.remote.engine import Settings, Target, asyncssh
from xcatd.security import nodekeys

#: The ssh options ``-o`` may set (OpenSSH's names), and the values each accepts.
OPTIONS = {"StrictHostKeyChecking": re.compile(r"(?i)yes|no|off|on"),
           "ConnectTimeout": re.compile(r"\d{1,5}"),
           "Port": re.compile(r"\d{1,5}")}
_WORD = re.compile(r"(?:-o\s*)?(\w+)\s*[= ]\s*(\S+)")


def parse_options(words: Iterable[str]) -> dict[str, str]:
    """``-o`` values ("Name=value", several per word, OpenSSH's ``-o`` prefix allowed) as
    {name: value}; ValueError naming the option that is not taken or not valid."""
    out: dict[str, str] = {}
    for word in words:
        text = word.strip()
        while text:
            m = _WORD.match(text)
            if not m:
                raise ValueError(f"-o {text!r}: expected Name=value")
            name, value = m.group(1), m.group(2)
            known = {k.lower(): k for k in OPTIONS}.get(name.lower())
            if known is None:
                raise ValueError(f"-o {name}: not an option xdsh takes (it takes "
                                 f"{', '.join(OPTIONS)})")
            if not OPTIONS[known].fullmatch(value):
                raise ValueError(f"-o {known}={value}: not a valid value")
            out[known] = value
            text = text[m.end():].lstrip(" ,")
            text = re.sub(r"^-o\s*", "", text)
    return out


def targets(cluster: Cluster, names: Sequence[str], port: int = 22) -> list[Target]:
    """One Target per node: hosts.ip when it is set, else the node's name (resolved by
    the engine, as ssh would). One read of the tables."""
    values = cluster.db.resolve(list(names), {"hosts": ["ip"]},
                                groups=cluster.node_groups_if_loaded(list(names)))
    return [Target(n, (values.get(n, {}).get(("hosts", "ip")) or n).strip() or n, port)
            for n in names]


_cache: dict[tuple, Any] = {}
_cache_lock = threading.Lock()


def _cached(path: Path, load) -> Any:
    """``load(path)`` once per version of the file (mtime, size, inode)."""
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
    with _cache_lock:
        if key not in _cache:
            for old in [k for k in _cache if k[0] == str(path)]:
                del _cache[old]
            _cache[key] = load(str(path))
        return _cache[key]


def root_key(paths: Paths) -> Any:
    """The management node's root private key (made on first use, as the remoteshell
    postscript hands its public half to the nodes)."""
    try:
        path = nodekeys.root_private_key(paths)
    except nodekeys.NodeKeyError as exc:
        raise ValueError(str(exc)) from None
    key = _cached(path, asyncssh.read_private_key)
    if key is None:
        raise ValueError("the management node's root ssh key cannot be read")
    return key


def known_hosts(paths: Paths) -> Any:
    """The parsed known_hosts (an empty one when the file is not there: every node is then
    refused until makeknownhosts runs)."""
    found = _cached(nodekeys.known_hosts_path(paths), asyncssh.read_known_hosts)
    return found if found is not None else asyncssh.import_known_hosts("")


def settings(paths: Paths, *, user: str = "root", fanout: int, timeout: float | None,
             options: dict[str, str] | None = None, env: dict[str, str] | None = None,
             maxssh: int | None = None) -> Settings:
    opts = options or {}
    strict = opts.get("StrictHostKeyChecking", "yes").lower() not in ("no", "off")
    return Settings(user=user, client_keys=[root_key(paths)],
                    known_hosts=known_hosts(paths) if strict else None, strict=strict,
                    fanout=fanout, timeout=timeout,
                    connect_timeout=float(opts.get("ConnectTimeout", 30)),
                    env=dict(env or {}), maxssh=maxssh)


def default_fanout(env: dict[str, str] | None = None) -> int | None:
    """DSH_FANOUT from the caller's environment, when it is a positive number."""
    value = (env if env is not None else os.environ).get("DSH_FANOUT", "")
    return int(value) if value.isdigit() and int(value) > 0 else None
