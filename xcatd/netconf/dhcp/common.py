"""What every DHCP backend serves and to whom: the networks this server answers on, one
host block per MAC, and our own checks (duplicate MAC or IP, an address outside every network
served, a node with a MAC but no address: what ``dhcpd -t`` misses). Boot files follow each
node's boot loader (xcatd.netboot.loaders) and the client's firmware: iPXE (user class
"iPXE") gets the node's HTTP script, UEFI and BIOS their first-stage loaders.
"""
from __future__ import annotations

import base64
import os
import socket
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from xcatd.base.noderange import NodeRange, natural_key
from xcatd.base.request import ErrorKind, Response, XcatError
from xcatd.db import servicenodes
from xcatd.db.cluster import Cluster
from xcatd.db.netinfo import Network, gather, network_of, networks, valid_ip, valid_mac
from xcatd.netboot.bootfiles import LoaderFile, missing_message, needed
from xcatd.netboot.loaders import LOADERS
from xcatd.netconf.manager import ConfigManager

OMAPI_PORT = 7911


@dataclass
class HostBlock:
    name: str
    mac: str
    ip: str
    hostname: str
    nextserver: str
    bios: str
    uefi: str
    ipxe: str | None
    #: the UEFI loader as a URL, for UEFI HTTP boot clients (vendor class HTTPClient)
    http: str = ""


@dataclass
class Plan:
    """What a DHCP configuration serves: networks, host blocks, and nodes with no MAC."""

    nets: list[Network]
    hosts: list[HostBlock]
    no_mac: list[str]


def served_networks(cluster: Cluster) -> list[Network]:
    """Networks this server answers on: all, or those on its DHCP interfaces (a service
    node's servicenode.dhcpinterfaces, else site.dhcpinterfaces). A network whose
    networks.dhcpserver names another server is that server's."""
    sn = cluster.servicenode
    if sn:
        me = servicenodes.server_names(cluster.db, sn)
        me |= set(cluster.db.node_groups([sn]).get(sn, []))
    else:
        host = socket.gethostname()
        me = {cluster.site.get("master") or "", host, host.split(".")[0], socket.getfqdn()}
    text = cluster.site.get("dhcpinterfaces") or ""
    if sn:
        own = cluster.db.rows("servicenode", keys=[sn])
        text = (own[0].get("dhcpinterfaces") if own else None) or text
    wanted = dhcp_interfaces(text, me)
    out = []
    for n in networks(cluster.db):
        if wanted and (n.row.get("mgtifname") or "") not in wanted:
            continue
        server = n.row.get("dhcpserver")
        if server and "" not in me and server not in me | {"<xcatmaster>"}:
            continue  # another server (a service node) answers there
        out.append(n)
    return out


def dhcp_interfaces(text: str, me: set[str]) -> set[str]:
    """The interfaces a server known by the names ``me`` (its names, addresses and groups)
    listens on, from xCAT's dhcpinterfaces: ``eth1,eth2`` for every server, or per server
    or group, ``xcatmn|eth1,eth2;service|bond0``; the entries that name this server win over
    those for every server.

    >>> sorted(dhcp_interfaces("xcatmn|eth1,eth2;service|bond0", {"xcatmn"}))
    ['eth1', 'eth2']
    >>> sorted(dhcp_interfaces("xcatmn|eth1,eth2;service|bond0", {"sn1", "service"}))
    ['bond0']
    >>> sorted(dhcp_interfaces("eth0,eth1", {"sn1"}))
    ['eth0', 'eth1']
    """
    mine: set[str] = set()
    everyone: set[str] = set()
    for entry in text.split(";"):
        host, sep, ifs = entry.strip().rpartition("|")
        names = {i.strip() for i in ifs.split(",") if i.strip()}
        if not sep:
            everyone |= names
        elif host.strip() in me:
            mine |= names
    return mine or everyone


def scope(cluster: Cluster) -> list[str]:
    """The nodes this server's DHCP configuration holds: a service node's own (the nodes it
    acts for), the management node's those no service node acts for; every node where the
    site says the servers share one flat network (site.disjointdhcps=0)."""
    names = sorted(cluster.all_nodes(), key=natural_key)
    if (cluster.site.get("disjointdhcps") or "").strip() == "0":
        return names
    mine = set(servicenodes.served_by(cluster.db, cluster.servicenode))
    return [n for n in names if n in mine]


def ranges(text: str | None, net: Network) -> list[tuple[str, str]]:
    out = []
    for part in (text or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not sep or not valid_ip(lo) or not valid_ip(hi) or lo not in net or hi not in net:
            raise XcatError(f"network {net.name}: bad dynamicrange '{part}' (expected "
                            f"first-last inside {net.net})", kind=ErrorKind.CONFLICT)
        out.append((lo.strip(), hi.strip()))
    return out


def omapi_key(cluster: Cluster) -> dict[str, object]:
    """The OMAPI key from passwd key=omapi, created on first use."""
    rows = cluster.db.match("passwd", {"key": "omapi"})
    if rows and rows[0].get("password"):
        return {"name": rows[0].get("username") or "xcat_key", "secret": rows[0]["password"],
                "port": OMAPI_PORT}
    secret = base64.b64encode(os.urandom(64)).decode()
    with cluster.db.begin() as conn:
        cluster.db.set_rows(conn, "passwd", {("omapi", "xcat_key"): {"password": secret}})
    return {"name": "xcat_key", "secret": secret, "port": OMAPI_PORT}


def plan_hosts(cluster: Cluster, names: list[str], nets: list[Network]
               ) -> tuple[list[HostBlock], list[str], list[str]]:
    """Host blocks, the nodes skipped for having no MAC, and the problems found."""
    data = gather(cluster.db, names, groups=cluster.node_groups_if_loaded(names))
    master = cluster.site.master()
    port = str(cluster.site.httpport())
    hosts: list[HostBlock] = []
    no_mac: list[str] = []
    problems: list[str] = []
    by_mac: dict[str, list[str]] = defaultdict(list)
    by_ip: dict[str, list[str]] = defaultdict(list)
    # the boot loaders DHCP would hand out: only those in the TFTP root (mknb puts them)
    tftpdir = cluster.tftpdir
    seen: dict[str, bool] = {}

    def present(f: LoaderFile) -> bool:
        if f.name not in seen:
            seen[f.name] = (tftpdir / f.name).is_file()
        return seen[f.name]

    unplaced: dict[tuple[LoaderFile, ...], list[str]] = {}
    for node in names:
        nn = data[node]
        if not nn.macs:
            no_mac.append(node)
            continue
        if not nn.ip:
            problems.append(f"{node}: no IP address (hosts.ip)")
            continue
        if not valid_ip(nn.ip):
            problems.append(f"{node}: hosts.ip {nn.ip} is not an address")
            continue
        net = network_of(nets, nn.ip)
        if net is None:
            problems.append(f"{node}: {nn.ip} is outside every network this server answers "
                            "on (networks table, site.dhcpinterfaces)")
            continue
        by_ip[nn.ip].append(node)
        server = nn.tftpserver or nn.xcatmaster or net.row.get("tftpserver") or (
            cluster.server_for(nn.ip) if cluster.servicenode else master)
        # an unknown netboot boots like xnba here; nodeset names the bad value
        netboot = (nn.netboot or "xnba").lower()
        netboot = netboot if netboot in LOADERS else "xnba"
        boot = LOADERS[netboot].dhcp(node, server, port)
        lacking = [f for f in needed([netboot]) if not present(f)]
        if lacking:
            unplaced.setdefault(tuple(lacking), []).append(node)
            continue
        for i, (mac, _name) in enumerate(nn.macs):
            if not valid_mac(mac):
                problems.append(f"{node}: '{mac}' is not a MAC address (mac.mac)")
                continue
            by_mac[mac].append(node)
            hosts.append(HostBlock(node if i == 0 else f"{node}-{i + 1}", mac, nn.ip, node,
                                   server, boot.bios, boot.uefi, boot.ipxe,
                                   f"http://{server}:{port}/tftpboot/{boot.uefi}"))
    problems += [missing_message(tftpdir, list(files), ns) for files, ns in unplaced.items()]
    problems += [f"MAC {mac} belongs to more than one node: {','.join(ns)}"
                 for mac, ns in by_mac.items() if len(set(ns)) > 1]
    problems += [f"IP {ip} belongs to more than one node: {','.join(ns)}"
                 for ip, ns in by_ip.items() if len(ns) > 1]
    return hosts, no_mac, problems


def no_networks() -> XcatError:
    return XcatError("No networks to serve: define them (makenetworks, mkdef -t network) or "
                     "check site.dhcpinterfaces", kind=ErrorKind.CONFLICT)


class DhcpManager(ConfigManager):
    """What dhcpd and Kea share: the plan, and the checks that come before any change."""

    #: the networks this backend can serve (Kea: IPv4 only)
    ipv4_only = False
    #: what the backend says when a plan fails our checks
    refused = "The DHCP configuration was not changed"

    def networks(self) -> list[Network]:
        nets = served_networks(self.cluster)
        return [n for n in nets if n.net.version == 4] if self.ipv4_only else nets

    def plan(self, names: list[str], *, lenient: bool = False,
             refused: str | None = None) -> Plan:
        """The plan for ``names``; our checks fail it (naming every problem) unless
        ``lenient``, where only two nodes sharing a MAC or an IP does (a removal or a
        query needs no address)."""
        nets = self.networks()
        hosts, no_mac, problems = plan_hosts(self.cluster, names, nets)
        if lenient:
            problems = [p for p in problems if "more than one node" in p]
        if problems:
            raise XcatError(f"{refused or self.refused}:\n" + "\n".join(problems),
                            kind=ErrorKind.CONFLICT)
        return Plan(nets, hosts, no_mac)

    def collect(self) -> Plan:
        if not self.networks():
            raise no_networks()
        return self.plan(scope(self.cluster))

    def report(self, data: Plan, written: list) -> Iterator[Response]:
        if data.no_mac:
            yield Response(warning=f"No MAC address (mac.mac), not in the DHCP configuration: "
                                   f"{NodeRange(data.no_mac)}")

    def query(self, nodes: list[str]) -> Iterator[Response]:
        """What the running server knows of each node (makedhcp -q)."""
        raise XcatError(f"{self.name}: queries are not supported")
