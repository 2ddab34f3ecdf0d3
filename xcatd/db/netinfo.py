"""Node addresses for the network services (hosts, DHCP, DNS), gathered in bulk.

One resolve over hosts, nics, mac and noderes for all the nodes (group values and regex
values included), then plain Python: the services never query per node.

>>> parse_macs("52:54:00:00:00:01|52:54:00:00:00:02!n1-eth1")
[('52:54:00:00:00:01', None), ('52:54:00:00:00:02', 'n1-eth1')]
>>> parse_nic_map("eth0!10.0.0.1,ib0!10.1.0.1|10.1.1.1")
{'eth0': ['10.0.0.1'], 'ib0': ['10.1.0.1', '10.1.1.1']}
>>> parse_nic_map(r"ib0!|\\D+(\\d+)|10.1.0.($1+0)|", "n7")
{'ib0': ['10.1.0.7']}
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from xcatd.base.regexval import RegexValueError
from xcatd.db.database import Database, DBError, split_list
from xcatd.db.nics import nic_values

_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")

NODE_COLUMNS = {
    "hosts": ["ip", "hostnames", "otherinterfaces"],
    "nics": ["nicips", "nichostnamesuffixes", "nichostnameprefixes", "nicaliases"],
    "mac": ["mac", "interface"],
    "noderes": ["tftpserver", "xcatmaster", "netboot", "installnic", "primarynic"],
    "nodetype": ["arch"],
}


def parse_macs(value: str | None) -> list[tuple[str, str | None]]:
    """mac.mac: 'mac|mac!hostname' -> [(mac, hostname or None)]."""
    out = []
    for part in (value or "").split("|"):
        part = part.strip()
        if not part:
            continue
        mac, _, name = part.partition("!")
        out.append((mac.strip().lower().replace("-", ":"), name.strip() or None))
    return out


def parse_nic_map(value: str | None, node: str | None = None) -> dict[str, list[str]]:
    """nics.* columns: 'eth0!a|b,ib0!c' -> {'eth0': ['a', 'b'], 'ib0': ['c']}; an
    interface's regex value (a group's row) is computed for ``node``."""
    try:
        return nic_values(value, node)
    except RegexValueError as exc:
        raise DBError(f"{node}: bad regular expression value in the nics table: {exc}"
                      ) from None


@dataclass
class NodeNet:
    node: str
    ip: str | None = None
    aliases: list[str] = field(default_factory=list)
    macs: list[tuple[str, str | None]] = field(default_factory=list)
    nics: list[tuple[str, str, str]] = field(default_factory=list)   # (nic, ip, hostname)
    nic_aliases: dict[str, list[str]] = field(default_factory=dict)  # nic hostname -> aliases
    other: list[tuple[str, str]] = field(default_factory=list)       # (hostname, ip)
    tftpserver: str | None = None
    xcatmaster: str | None = None
    netboot: str | None = None
    arch: str | None = None


def gather(db: Database, nodes: list[str], conn=None,
           groups: dict[str, list[str]] | None = None) -> dict[str, NodeNet]:
    """Every node's addresses, with one query per table whatever the number of nodes."""
    values = db.resolve(nodes, NODE_COLUMNS, conn=conn, groups=groups)
    out: dict[str, NodeNet] = {}
    for node in nodes:
        v = values[node]
        nn = NodeNet(node, ip=v.get(("hosts", "ip")),
                     aliases=[a for a in re.split(r"[,\s]+", v.get(("hosts", "hostnames"), ""))
                              if a],
                     macs=parse_macs(v.get(("mac", "mac"))),
                     tftpserver=v.get(("noderes", "tftpserver")),
                     xcatmaster=v.get(("noderes", "xcatmaster")),
                     netboot=v.get(("noderes", "netboot")), arch=v.get(("nodetype", "arch")))
        ips = parse_nic_map(v.get(("nics", "nicips")), node)
        suffixes = parse_nic_map(v.get(("nics", "nichostnamesuffixes")), node)
        prefixes = parse_nic_map(v.get(("nics", "nichostnameprefixes")), node)
        aliases = parse_nic_map(v.get(("nics", "nicaliases")), node)
        for nic, addrs in ips.items():
            for i, addr in enumerate(addrs):
                if not addr:
                    continue
                suf = suffixes.get(nic, [])
                pre = prefixes.get(nic, [])
                s = suf[i] if i < len(suf) else (suf[0] if suf and i == 0 else None)
                p = pre[i] if i < len(pre) else (pre[0] if pre and i == 0 else None)
                if not s and not p:
                    s = f"-{nic}" + (f"-{i + 1}" if i else "")
                name = f"{p or ''}{node}{s or ''}"
                nn.nics.append((nic, addr, name))
                names = aliases.get(nic, [])
                if i < len(names) and names[i].split():
                    nn.nic_aliases[name] = names[i].split()
        for entry in split_list(v.get(("hosts", "otherinterfaces"))):
            name, sep, addr = entry.partition(":")
            name = name.strip()
            if name.startswith("-"):  # xCAT: a leading '-' is a suffix of the node's name
                name = node + name
            if sep and addr:
                nn.other.append((name, addr.strip()))
        out[node] = nn
    return out


def valid_mac(mac: str) -> bool:
    return bool(_MAC.match(mac))


def valid_ip(addr: str | None) -> bool:
    try:
        ipaddress.ip_address(addr or "")
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class Network:
    name: str
    net: ipaddress.IPv4Network | ipaddress.IPv6Network
    row: dict

    def __contains__(self, addr: str) -> bool:
        try:
            return ipaddress.ip_address(addr) in self.net
        except ValueError:
            return False


def networks(db: Database, conn=None) -> list[Network]:
    """The networks table as address objects; a row with a bad net/mask is an error."""
    out = []
    for row in db.rows("networks", conn):
        try:
            net = ipaddress.ip_network(f"{row['net']}/{row['mask']}", strict=False)
        except ValueError:
            raise DBError(f"network {row.get('netname') or row['net']}: bad net/mask "
                          f"{row['net']}/{row['mask']}") from None
        out.append(Network(row.get("netname") or str(net), net, row))
    return out


def network_of(nets: list[Network], addr: str) -> Network | None:
    """The most specific network holding addr."""
    best = None
    for n in nets:
        if addr in n and (best is None or n.net.prefixlen > best.net.prefixlen):
            best = n
    return best
