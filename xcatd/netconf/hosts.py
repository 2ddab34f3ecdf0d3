"""/etc/hosts (under XCATROOT) from the hosts and nics tables and the domain.

``update`` (makehosts, makehosts <noderange>) replaces the named nodes' entries where they
stand and appends new ones: every other line of the file is kept as it is; with ``delete``
(-d) it removes them. ``rebuild`` (-n) starts from scratch, keeping the localhost and
comment lines. ``long_first`` (-l) puts the long name first. The file is read, changed and
written under one lock, so concurrent makehosts lose nothing.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from xcatd.base.files import locked, write_atomic
from xcatd.base.noderange import NodeRange, natural_key
from xcatd.base.request import ErrorKind, Response, XcatError
from xcatd.db.cluster import Cluster
from xcatd.db.netinfo import NodeNet, gather, network_of, networks, valid_ip
from xcatd.netconf.manager import ConfigManager, Generated

HOSTS = "/etc/hosts"


def _is_localhost(line: str) -> bool:
    words = line.split()
    return bool(words) and (words[0] in ("127.0.0.1", "::1") or
                            any(w.startswith("localhost") for w in words[1:]))


def _bad(message: str) -> XcatError:
    return XcatError(message, kind=ErrorKind.CONFLICT)


def entries(nodes: dict[str, NodeNet], domain_of: Callable[[str], str | None],
            long_first: bool) -> tuple[dict[str, list[str]], list[str]]:
    """{node: [hosts lines]} and the nodes without an address."""
    out: dict[str, list[str]] = {}
    missing: list[str] = []
    for node in sorted(nodes, key=natural_key):
        nn = nodes[node]
        lines = []
        if nn.ip:
            if not valid_ip(nn.ip):
                raise _bad(f"hosts.ip of {node} is not an address: {nn.ip}")
            lines.append(_line(nn.ip, node, domain_of(nn.ip), long_first, nn.aliases))
        else:
            missing.append(node)
        for _nic, ip, name in nn.nics:
            if not valid_ip(ip):
                raise _bad(f"nics.nicips of {node} has a bad address: {ip}")
            lines.append(_line(ip, name, domain_of(ip), long_first,
                               nn.nic_aliases.get(name, [])))
        for name, ip in nn.other:
            if not valid_ip(ip):
                raise _bad(f"hosts.otherinterfaces of {node} has a bad address: {ip}")
            lines.append(_line(ip, name, domain_of(ip), long_first, []))
        if lines:
            out[node] = lines
    return out, missing


def _line(ip: str, name: str, domain: str | None, long_first: bool, aliases: list[str]) -> str:
    names = [name]
    if domain and not name.endswith("." + domain):
        names = [f"{name}.{domain}", name] if long_first else [name, f"{name}.{domain}"]
    return " ".join([ip, *names, *[a for a in aliases if a not in names]])


@dataclass
class HostsData:
    new: dict[str, list[str]]        # node -> its lines
    missing: list[str]               # nodes with no address
    owned: dict[str, str]            # a name in the file -> the node that owns it


class HostsManager(ConfigManager):
    name = "hosts"

    def __init__(self, cluster: Cluster, nodes: list[str] | None = None,
                 long_first: bool = False) -> None:
        super().__init__(cluster)
        self.nodes = nodes
        self.long_first = long_first
        self.path: Path = cluster.paths.under(HOSTS)

    def collect(self) -> HostsData:
        names = self.nodes if self.nodes is not None else sorted(self.cluster.all_nodes(),
                                                                 key=natural_key)
        nets = networks(self.cluster.db)
        site_domain = self.cluster.site.get("domain")

        def domain_of(ip: str) -> str | None:
            n = network_of(nets, ip)
            return (n.row.get("domain") if n else None) or site_domain

        data = gather(self.cluster.db, names)
        new, missing = entries(data, domain_of, self.long_first)
        owned = {}  # the names each node owns in the file: its own, its nics', its others'
        for node, nn in data.items():
            for name in [node, *[n for _, _, n in nn.nics], *[n for n, _ in nn.other]]:
                owned[name] = node
        return HostsData(new, missing, owned)

    def _current(self) -> list[str]:
        try:
            return self.path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def render(self, data: HostsData) -> list[Generated]:
        """The rebuilt file: the localhost and comment lines kept, then every entry."""
        kept = [ln for ln in self._current() if _is_localhost(ln) or ln.startswith("#")]
        body = kept + [ln for node in sorted(data.new, key=natural_key) for ln in data.new[node]]
        return [Generated(self.path, "\n".join(body) + "\n" if body else "")]

    def _edited(self, data: HostsData, delete: bool) -> list[Generated]:
        """The file with the nodes' entries replaced in place (or removed), new ones last."""
        body, placed = [], set()
        for ln in self._current():
            words = ln.split("#", 1)[0].split()
            owner = next((data.owned[w] for w in words[1:] if w in data.owned), None) \
                if words else None
            if owner is None:
                body.append(ln)
            elif not delete and owner not in placed:
                body.extend(data.new.get(owner, []))  # replace the node's entries in place
                placed.add(owner)
        if not delete:
            for node in sorted(data.new, key=natural_key):
                if node not in placed:
                    body.extend(data.new[node])
        return [Generated(self.path, "\n".join(body) + "\n" if body else "")]

    def _write(self, files: list[Generated], data: HostsData, delete: bool
               ) -> Iterator[Response]:
        for f in files:
            if not f.path.exists() or f.path.read_text() != f.text:
                write_atomic(f.path, f.text, mode=f.mode)
        if data.missing and not delete:
            yield Response(warning="No IP address (hosts.ip) for: " + str(NodeRange(data.missing)))

    def rebuild(self) -> Iterator[Response]:
        with locked(self.path):  # read, change and write as one
            data = self.collect()
            responses = list(self._write(self.render(data), data, False))
        yield from responses

    def update(self, nodes: list[str], *, delete: bool = False) -> Iterator[Response]:
        self.nodes = nodes
        with locked(self.path):
            data = self.collect()
            responses = list(self._write(self._edited(data, delete), data, delete))
        yield from responses
