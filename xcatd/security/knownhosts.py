"""root's known_hosts on the management node, kept for its nodes (makeknownhosts): each node
gets one line per host key it was handed (xcatd.security.nodekeys), naming it by every name
ssh may be given for it: the node, node.domain, its hosts.hostnames aliases, its hosts.ip.

``edit`` is the whole rule, on text. A line whose first name is one of a node's names is
that node's: it goes, and the node's fresh lines take the place of its first one (nodes
with none go last). A line of someone else's that also names the node loses that name and
keeps the rest; any other line (comments, ``@cert-authority``/``@revoked``, hashed names,
patterns, other hosts) is kept byte for byte.

>>> old = "n1,10.0.0.1 ssh-rsa OLD\\n# admin\\nlogin,n1 ssh-rsa L\\n|1|x=|y= ssh-rsa H\\n"
>>> print(edit(old, {"n1": "n1,10.0.0.1 ssh-ed25519 NEW\\n"},
...            {"n1": "n1", "10.0.0.1": "n1"}), end="")
n1,10.0.0.1 ssh-ed25519 NEW
# admin
login ssh-rsa L
|1|x=|y= ssh-rsa H
>>> edit(old, {}, {"n1": "n1", "10.0.0.1": "n1"}).splitlines()[0]
'# admin'

``update`` reads the file once, edits it and writes it once, atomically (a temporary file
renamed into place, the file's mode and owner kept, 0644 for a new one, the previous
content in known_hosts.backup as xCAT keeps it), under a lock, so concurrent runs lose
nothing of each other's.
"""
from __future__ import annotations

import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from xcatd.base.files import locked, write_atomic
from xcatd.base.noderange import NodeRange, natural_key
from xcatd.base.request import ErrorKind, Response, XcatError
from xcatd.db.cluster import Cluster
from xcatd.db.netinfo import network_of, networks, valid_ip
from xcatd.security.nodekeys import NodeKeyError, known_hosts_line, known_hosts_path

#: mode of a known_hosts made here (ssh's own, under the usual umask)
NEW_MODE = 0o644
BACKUP_SUFFIX = ".backup"  # xCAT's name for the previous file

_SPACE = re.compile(r"[ \t]")


def _hosts_field(line: str) -> tuple[str, str, str] | None:
    """(leading blanks, the host names field, the rest) of a plain known_hosts line; None
    for a line that names no plain hosts (blank, comment, marker, hashed)."""
    body = line.lstrip(" \t")
    if not body or body[0] in "#@|\r":
        return None
    m = _SPACE.search(body)
    end = m.start() if m else len(body)
    return line[:len(line) - len(body)], body[:end], body[end:]


def edit(text: str, fresh: Mapping[str, str], owner: Mapping[str, str]) -> str:
    """``text`` with the lines of the nodes ``owner`` names (lower-case name -> node)
    replaced by their ``fresh`` lines (``node -> lines``), or removed where ``fresh`` has
    none for them."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out: list[str] = []
    placed: set[str] = set()
    for line in lines:
        parts = _hosts_field(line)
        if parts is None:
            out.append(line)
            continue
        lead, hosts, rest = parts
        names = hosts.split(",")
        hits = [owner.get(n.lower()) for n in names]
        if not any(hits):
            out.append(line)
        elif hits[0] is not None:  # the node's own line: its fresh lines stand here
            for node in dict.fromkeys(h for h in hits if h is not None):
                if node not in placed and node in fresh:
                    out.extend(fresh[node].splitlines())
                placed.add(node)
        else:  # another host's line naming the node too: it keeps its other names
            kept = [n for n, h in zip(names, hits) if h is None]
            out.append(lead + ",".join(kept) + rest)
    for node in sorted(fresh, key=natural_key):
        if node not in placed:
            out.extend(fresh[node].splitlines())
    return "".join(f"{line}\n" for line in out)


@dataclass
class NodeNames:
    """What the tables say each node is called."""
    names: dict[str, list[str]] = field(default_factory=dict)  # node -> names for its lines
    no_ip: list[str] = field(default_factory=list)             # nodes without hosts.ip
    errors: dict[str, str] = field(default_factory=dict)       # node -> why it has none


def node_names(cluster: Cluster, nodes: list[str]) -> NodeNames:
    """Each node's names (as xCAT's: the node, node.<domain> where the domain is its
    network's or site.domain, then hosts.hostnames and hosts.ip), one query per table."""
    values = cluster.db.resolve(nodes, {"hosts": ["ip", "hostnames"]},
                                groups=cluster.node_groups_if_loaded(nodes))
    nets = networks(cluster.db)
    site_domain = cluster.site.get("domain")
    out = NodeNames()
    for node in nodes:
        v = values.get(node, {})
        ip = (v.get(("hosts", "ip")) or "").strip()
        if ip and not valid_ip(ip):
            out.errors[node] = f"hosts.ip is not an address: {ip}"
            continue
        net = network_of(nets, ip) if ip else None
        domain = ((net.row.get("domain") if net else None) or site_domain or "").strip(".")
        names = [node]
        if domain and not node.endswith("." + domain):
            names.append(f"{node}.{domain}")
        names += [a for a in re.split(r"[,\s]+", v.get(("hosts", "hostnames")) or "") if a]
        if ip:
            names.append(ip)
        else:
            out.no_ip.append(node)
        out.names[node] = list(dict.fromkeys(names))
    return out


@dataclass
class Written:
    path: Path
    changed: bool
    lines: int             # lines in the file now
    backup: Path | None    # where the previous content went


def update(path: Path, fresh: Mapping[str, str], owner: Mapping[str, str]) -> Written:
    """Edit the known_hosts file at ``path`` (see ``edit``): one read, one write, under the
    file's lock; nothing is written when nothing changes."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with locked(path):
        try:
            old: bytes | None = path.read_bytes()
            st = path.stat()
        except FileNotFoundError:
            old, st = None, None
        except OSError as exc:
            raise XcatError(f"{path}: cannot read it: {exc.strerror or exc}",
                            kind=ErrorKind.CONFLICT) from None
        text = (old or b"").decode("utf-8", "surrogateescape")
        new = edit(text, fresh, owner).encode("utf-8", "surrogateescape")
        if old is not None and new == old:
            return Written(path, False, new.count(b"\n"), None)
        mode = stat.S_IMODE(st.st_mode) if st is not None else NEW_MODE
        own = (st.st_uid, st.st_gid) if st is not None else None
        backup = path.with_name(path.name + BACKUP_SUFFIX) if old is not None else None
        try:
            if backup is not None:
                write_atomic(backup, old, mode=mode, owner=own)
            write_atomic(path, new, mode=mode, owner=own)
        except OSError as exc:
            raise XcatError(f"{path}: cannot write it: {exc.strerror or exc}",
                            kind=ErrorKind.CONFLICT) from None
    return Written(path, True, new.count(b"\n"), backup)


def make_known_hosts(cluster: Cluster, nodes: list[str], *, remove: bool = False,
                     verbose: bool = False) -> Iterator[Response]:
    """makeknownhosts: the nodes' lines in root's known_hosts made afresh from their host
    keys (made now for a node that has none yet), or with ``remove`` taken out. A node
    whose names cannot stand in the file is one error; its lines stay as they were."""
    path = known_hosts_path(cluster.paths)
    found = node_names(cluster, nodes)
    errors = dict(found.errors)
    fresh: dict[str, str] = {}
    if not remove:
        for node, names in found.names.items():
            try:
                fresh[node] = known_hosts_line(cluster.paths, node, names)
            except NodeKeyError as exc:
                errors[node] = str(exc)
    owner = {name.lower(): node for node, names in found.names.items() if node not in errors
             for name in names}
    written = update(path, fresh, owner)
    for node in sorted(errors, key=natural_key):
        yield Response(node=node, error=errors[node], errorcode=1)
    if found.no_ip and not remove:
        yield Response(warning="No IP address (hosts.ip) for: "
                               f"{NodeRange(found.no_ip)} (their lines carry no address)")
    if verbose:
        for node in nodes:
            if node in errors:
                continue
            if remove:
                yield Response(node=node, data=f"removed from {path}")
            else:
                yield Response(node=node, data=f"{','.join(found.names[node])}: "
                               f"{len(fresh[node].splitlines())} keys")
        note = ", unchanged" if not written.changed else \
            f" (the previous one is {written.backup.name})" if written.backup else ""
        yield Response(data=f"{path}: {written.lines} lines{note}")

