"""BIND: configuration and zones from hosts, nics, networks and site; dynamic updates.

``rebuild`` (makedns -n) builds the forward zone (site.domain) and a reverse zone per
network with dnspython, writes named.conf (listen address and port from
site.dnslisten/site.dnsport, forwarders from site.forwarders), checks every file with
named-checkconf/named-checkzone and only then replaces the live ones. ``update`` (makedns
<noderange>, -d) changes a running named by RFC 2136 updates signed with TSIG (key passwd
key=dns), one message per zone and chunk, no restart.
"""
from __future__ import annotations

import base64
import ipaddress
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.zone
from dns.rdata import from_text as rdata

from xcatd.base.files import run_check
from xcatd.base.noderange import NodeRange, natural_key
from xcatd.base.progress import Meter
from xcatd.base.request import ErrorKind, Response, XcatError
from xcatd.base.templating import environment
from xcatd.db.cluster import Cluster
from xcatd.db.netinfo import Network, gather, network_of, networks, valid_ip
from xcatd.netconf.manager import ConfigManager, Generated, install

NAMED_CONF = "/etc/named.conf"
ZONE_DIR = "/var/named"
KEY_NAME = "xcat_key"
TTL = 86400


@dataclass(frozen=True)
class Record:
    name: str   # host name without the domain
    ip: str


def records(cluster: Cluster, names: list[str]) -> tuple[list[Record], list[str]]:
    """A records for the nodes, their nics and other interfaces; nodes without address."""
    data = gather(cluster.db, names, groups=cluster.node_groups_if_loaded(names))
    out, missing = [], []
    for node in names:
        nn = data[node]
        if nn.ip:
            out.append(Record(node, nn.ip))
        else:
            missing.append(node)
        out += [Record(host, ip) for _nic, ip, host in nn.nics]
        out += [Record(host, ip) for host, ip in nn.other]
    bad = [f"{r.name}: {r.ip}" for r in out if not valid_ip(r.ip)]
    if bad:
        raise XcatError("Not addresses, DNS not changed: " + ", ".join(bad))
    return out, missing


def reverse_zone(net: Network) -> str:
    """The in-addr.arpa zone covering a network, at an octet boundary."""
    if net.net.version == 6:
        nibbles = max(1, net.net.prefixlen // 4)
        rev = net.net.network_address.reverse_pointer.split(".")
        return ".".join(rev[32 - nibbles:])
    octets = max(1, net.net.prefixlen // 8)
    parts = str(net.net.network_address).split(".")[:octets]
    return ".".join(reversed(parts)) + ".in-addr.arpa"


def dns_key(cluster: Cluster) -> tuple[str, str]:
    """(name, base64 secret) from passwd key=dns, created on first use (hmac-sha256)."""
    rows = cluster.db.match("passwd", {"key": "dns"})
    if rows and rows[0].get("password"):
        return rows[0].get("username") or KEY_NAME, rows[0]["password"]
    secret = base64.b64encode(os.urandom(32)).decode()
    with cluster.db.begin() as conn:
        cluster.db.set_rows(conn, "passwd", {("dns", KEY_NAME): {"password": secret}})
    return KEY_NAME, secret


def _master(cluster: Cluster) -> tuple[str, str]:
    master = cluster.site.get("master") or "127.0.0.1"
    host = (cluster.site.get("nameserverhost") or socket.gethostname()).split(".")[0]
    return host, master


_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def _check_names(recs: list[Record], domain: str) -> None:
    bad = [r.name for r in recs if not all(_LABEL.match(p) for p in r.name.split("."))
           or len(f"{r.name}.{domain}") > 253]
    if bad:
        raise XcatError("Not valid DNS host names, DNS not changed: " + ", ".join(bad[:20]))


def build_zones(cluster: Cluster, recs: list[Record], domain: str,
                nets: list[Network]) -> dict[str, str]:
    """{zone: zone file text}. dnspython writes each zone's SOA, NS and glue; the host
    records (tens of thousands) are plain lines, ~40x faster than rdata objects, and
    named-checkzone checks the result either way."""
    _check_names(recs, domain)
    host, master = _master(cluster)
    zones: dict[str, list[str]] = {domain: []}
    for n in nets:
        zones.setdefault(reverse_zone(n), [])
    ns_fqdn = f"{host}.{domain}."
    for r in recs:
        if ":" in r.ip:
            zones[domain].append(f"{r.name} {TTL} IN AAAA {r.ip}")
        else:
            zones[domain].append(f"{r.name} {TTL} IN A {r.ip}")
        ptr = ipaddress.ip_address(r.ip).reverse_pointer
        for zname in zones:
            if zname != domain and ptr.endswith("." + zname):
                zones[zname].append(f"{ptr[: -len(zname) - 1]} {TTL} IN PTR {r.name}.{domain}.")
                break
    out = {}
    for zname, lines in zones.items():
        zone = dns.zone.Zone(dns.name.from_text(zname))
        # a serial that only grows (seconds since 1970), above any that updates reached
        soa = f"{ns_fqdn} root.{domain}. {int(time.time())} 10800 3600 604800 86400"
        with zone.writer() as txn:
            txn.add("@", TTL, rdata(dns.rdataclass.IN, dns.rdatatype.SOA, soa))
            txn.add("@", TTL, rdata(dns.rdataclass.IN, dns.rdatatype.NS, ns_fqdn))
            if zname == domain:
                txn.add(host, TTL, rdata(dns.rdataclass.IN, dns.rdatatype.A, master))
        out[zname] = zone.to_text(relativize=True) + "\n".join(lines) + ("\n" if lines else "")
    return out


def _served(cluster: Cluster, nets: list[Network], recs: list[Record]) -> list[str]:
    return [f"{r.name}: {r.ip}" for r in recs if network_of(nets, r.ip) is None]


@dataclass
class DnsData:
    domain: str
    nets: list[Network]
    recs: list[Record]
    missing: list[str]


class Bind(ConfigManager):
    name = "bind"

    def __init__(self, cluster: Cluster, nodes: list[str] | None = None) -> None:
        super().__init__(cluster)
        self.nodes = nodes

    def collect(self) -> DnsData:
        cluster = self.cluster
        domain = (cluster.site.get("domain") or "").strip(".")
        if not domain:
            raise XcatError("site.domain is not set: DNS needs a domain",
                            kind=ErrorKind.CONFLICT)
        names = self.nodes if self.nodes is not None else \
            sorted(cluster.all_nodes(), key=natural_key)
        nets = networks(cluster.db)
        if not nets:
            raise XcatError("No networks defined: makedns needs them for the reverse zones",
                            kind=ErrorKind.CONFLICT)
        recs, missing = records(cluster, names)
        outside = _served(cluster, nets, recs)
        if outside:
            raise XcatError("Addresses outside every defined network, DNS not changed: "
                            + ", ".join(outside), kind=ErrorKind.CONFLICT)
        return DnsData(domain, nets, recs, missing)

    def render(self, data: DnsData) -> list[Generated]:
        cluster = self.cluster
        zones = build_zones(cluster, data.recs, data.domain, data.nets)
        zdir = cluster.paths.under(ZONE_DIR)
        keyname, secret = dns_key(cluster)
        forwarders = [f for f in (cluster.site.get("forwarders") or "").replace(" ", ",")
                      .split(",") if f.strip()]
        conf = environment(cluster.paths, cluster.site).get_template("named.conf.j2").render(
            directory=str(zdir), port=cluster.site.port("dnsport", 53),
            listen=cluster.site.get("dnslisten") or "any", forwarders=forwarders,
            keyname=keyname, secret=secret, run=str(cluster.paths.under("/var/run/named")),
            zones=[{"name": z, "file": str(zdir / f"db.{z}"),
                    "journal": str(zdir / f"db.{z}.jnl")} for z in sorted(zones)])
        files = [Generated(zdir / f"db.{z}", text, 0o644,
                           lambda tmp, z=z: run_check(["named-checkzone", "-q", z, str(tmp)],
                                                      f"the zone {z}"))
                 for z, text in zones.items()]
        files.append(Generated(cluster.paths.under(NAMED_CONF), conf, 0o600,
                               lambda tmp: run_check(["named-checkconf", str(tmp)],
                                                     "named.conf")))
        self._zones = len(zones)
        return files

    def rebuild(self) -> Iterator[Response]:
        data = self.collect()
        files = self.render(data)
        self.cluster.paths.under("/var/run/named").mkdir(parents=True, exist_ok=True)
        zfiles = [f for f in files if f.path.name.startswith("db.")]
        for f in zfiles:
            f.mode = 0o644
        written = install(files, "DNS")
        for f in zfiles:
            if f.path in written:  # a new zone, a new journal
                f.path.with_name(f.path.name + ".jnl").unlink(missing_ok=True)
        yield Response(data=f"Wrote {self._zones} zones ({len(data.recs)} host records) and "
                            f"{self.cluster.paths.under(NAMED_CONF)}")
        yield from self._missing(data, False)

    def update(self, nodes: list[str], *, delete: bool = False) -> Iterator[Response]:
        self.nodes = nodes
        data = self.collect()
        yield from _update(self.cluster, data.recs, data.domain, data.nets, delete=delete)
        yield from self._missing(data, delete)

    @staticmethod
    def _missing(data: DnsData, delete: bool) -> Iterator[Response]:
        if data.missing and not delete:
            yield Response(warning=f"No IP address (hosts.ip), not in DNS: "
                                   f"{NodeRange(data.missing)}")


#: Names per UPDATE message: a DNS message over TCP holds at most 64 KiB.
UPDATE_CHUNK = 200


def _update(cluster: Cluster, recs: list[Record], domain: str, nets: list[Network], *,
            delete: bool) -> Iterator[Response]:
    """RFC 2136 updates in chunks: each chunk's forward and reverse changes go together, so a
    failure leaves whole nodes done or not done, and no message outgrows 64 KiB."""
    keyname, secret = dns_key(cluster)
    keyring = dns.tsigkeyring.from_text({keyname: ("hmac-sha256", secret)})
    server = cluster.site.get("dnsupdateserver") or "127.0.0.1"
    port = cluster.site.port("dnsport", 53)
    zones: set[str] = set()
    meter = Meter("Removing DNS records" if delete else "Updating DNS records",
                  total=len(recs), unit="records")
    for start in range(0, len(recs), UPDATE_CHUNK):
        chunk = recs[start:start + UPDATE_CHUNK]
        by_zone: dict[str, dns.update.UpdateMessage] = {}

        def msg(zone: str, by_zone=by_zone) -> dns.update.UpdateMessage:
            if zone not in by_zone:
                by_zone[zone] = dns.update.UpdateMessage(
                    zone, keyring=keyring, keyname=keyname, keyalgorithm=dns.tsig.HMAC_SHA256)
            return by_zone[zone]

        for r in chunk:
            fwd = msg(domain)
            fwd.delete(r.name)
            rev_zone = reverse_zone(network_of(nets, r.ip))
            ptr = ipaddress.ip_address(r.ip).reverse_pointer + "."
            rel = ptr[: -len(rev_zone) - 2]
            msg(rev_zone).delete(rel, "PTR")
            if not delete:
                fwd.add(r.name, TTL, "AAAA" if ":" in r.ip else "A", r.ip)
                msg(rev_zone).add(rel, TTL, "PTR", f"{r.name}.{domain}.")
        for zone, update in by_zone.items():
            try:
                answer = dns.query.tcp(update, server, port=port, timeout=30)
            except (OSError, dns.exception.DNSException) as exc:
                raise XcatError(f"DNS update of {zone} at {server}:{port} failed after "
                                f"{start} of {len(recs)} records: {exc}",
                                kind=ErrorKind.UPSTREAM) from None
            if answer.rcode() != dns.rcode.NOERROR:
                raise XcatError(f"DNS update of {zone} at {server}:{port} refused after "
                                f"{start} of {len(recs)} records: "
                                f"{dns.rcode.to_text(answer.rcode())}",
                                kind=ErrorKind.UPSTREAM)
            zones.add(zone)
        tick = meter.tick(start + len(chunk))
        if tick is not None:
            yield tick
    verb = "Removed" if delete else "Updated"
    yield Response(data=f"{verb} {len(recs)} host records in {len(zones)} zones")
