"""ISC dhcpd: dhcpd.conf (mode 0600: it holds the OMAPI key) checked by ``dhcpd -t``, and
live changes through OMAPI (pypureomapi)."""
from __future__ import annotations

import datetime
from collections.abc import Iterator

import pypureomapi

from xcatd.base.files import run_check
from xcatd.base.noderange import NodeRange
from xcatd.base.progress import Meter
from xcatd.base.request import ErrorKind, Response, XcatError
from xcatd.base.templating import custom_dir, environment
from xcatd.db.cluster import Cluster
from xcatd.db.netinfo import Network
from xcatd.netconf.dhcp.common import OMAPI_PORT, DhcpManager, HostBlock, Plan, omapi_key, ranges
from xcatd.netconf.manager import Generated

DHCPD_CONF = "/etc/dhcp/dhcpd.conf"


class IscDhcp(DhcpManager):
    """dhcpd.conf (mode 0600: it holds the OMAPI key) checked by ``dhcpd -t``; live changes
    through OMAPI (pypureomapi)."""

    name = "dhcpd"
    refused = "The DHCP configuration was not changed"

    def render(self, data: Plan) -> list[Generated]:
        path = self.cluster.paths.under(DHCPD_CONF)
        return [Generated(path, render_dhcpd(self.cluster, data.nets, data.hosts), 0o600,
                          lambda tmp: run_check(["dhcpd", "-t", "-4", "-cf", str(tmp)],
                                                "the generated dhcpd.conf"))]

    def _omapi(self):
        site = self.cluster.site
        key = omapi_key(self.cluster)
        server = site.text("omapiserver", "127.0.0.1")
        port = site.port("omapiport", OMAPI_PORT)
        try:
            return pypureomapi, pypureomapi.Omapi(server, port, str(key["name"]).encode(),
                                                  str(key["secret"]).encode(), timeout=10)
        except (OSError, pypureomapi.OmapiError) as exc:
            raise XcatError(f"Cannot reach dhcpd's OMAPI at {server}:{port}: {exc} (is dhcpd "
                            "running with the configuration makedhcp -n wrote?)",
                            kind=ErrorKind.UPSTREAM) from None

    def update(self, nodes: list[str], *, delete: bool = False) -> Iterator[Response]:
        plan = self.plan(nodes, lenient=delete, refused="Nothing was sent to dhcpd")
        lib, omapi = self._omapi()
        meter = Meter("Removing nodes from dhcpd" if delete else "Updating dhcpd",
                      total=len(plan.hosts), unit="hosts")
        try:
            for done, h in enumerate(plan.hosts, 1):
                try:
                    try:
                        omapi.del_host(h.mac)
                    except lib.OmapiErrorNotFound:
                        pass
                    if not delete:
                        omapi.add_host_supersede(h.ip, h.mac, h.name, hostname=h.hostname,
                                                 statements=host_statements(h))
                except (OSError, lib.OmapiError) as exc:
                    yield Response(node=h.hostname, error=f"dhcpd OMAPI: {exc}", errorcode=1)
                tick = meter.tick(done)
                if tick is not None:
                    yield tick
        finally:
            omapi.close()
        if plan.no_mac and not delete:
            yield Response(warning=f"No MAC address (mac.mac): {NodeRange(plan.no_mac)}")

    def query(self, nodes: list[str]) -> Iterator[Response]:
        plan = self.plan(nodes, lenient=True, refused="Nothing was sent to dhcpd")
        lib, omapi = self._omapi()
        try:
            for h in plan.hosts:
                try:
                    found = omapi.lookup_by_host(mac=h.mac)
                    yield Response(node=h.hostname, data=", ".join(
                        f"{k} = {v}" for k, v in sorted(found.items())))
                except lib.OmapiErrorNotFound:
                    yield Response(node=h.hostname, error=f"not known to dhcpd ({h.mac})",
                                   errorcode=1)
                except (OSError, lib.OmapiError) as exc:
                    yield Response(node=h.hostname, error=f"dhcpd OMAPI: {exc}", errorcode=1)
        finally:
            omapi.close()
        if plan.no_mac:
            yield Response(warning=f"No MAC address (mac.mac): {NodeRange(plan.no_mac)}")


def render_dhcpd(cluster: Cluster, nets: list[Network], hosts: list[HostBlock]) -> str:
    site = cluster.site
    master = site.master()
    subnets = []
    for n in nets:
        if n.net.version != 4:
            continue
        row = n.row
        subnets.append({
            "name": n.name, "net": str(n.net.network_address), "mask": str(n.net.netmask),
            "interface": row.get("mgtifname"), "gateway": row.get("gateway")
            if row.get("gateway") not in (None, "", "<xcatmaster>") else None,
            "nameservers": ", ".join(
                (row.get("nameservers") or site.get("nameservers") or "")
                .replace("<xcatmaster>", master).split(",")).strip(", ") or None,
            "domain": row.get("domain"),
            "nextserver": row.get("tftpserver") or master,
            "ranges": ranges(row.get("dynamicrange"), n),
        })
    env = environment(cluster.paths, site)
    return env.get_template("dhcpd.conf.j2").render(
        lease=site.get("dhcplease") or "43200", domain=site.get("domain"),
        omapi=omapi_key(cluster), subnets=subnets, hosts=hosts,
        custom_dir=custom_dir(cluster.paths, site),
        now=datetime.datetime.now().isoformat(timespec="seconds"))


def host_statements(h: HostBlock) -> str:
    """The per-host statements OMAPI carries: the same boot choice as the file."""
    choose = (f'if substring(option vendor-class-identifier, 0, 10) = "HTTPClient" '
              f'{{ option vendor-class-identifier "HTTPClient"; filename "{h.http}"; }} '
              f'elsif option client-architecture = 00:07 or option client-architecture = 00:09 '
              f'{{ filename "{h.uefi}"; }} else {{ filename "{h.bios}"; }}')
    if h.ipxe:
        choose = (f'if exists user-class and option user-class = "iPXE" '
                  f'{{ option vendor-class-identifier "PXEClient"; filename "{h.ipxe}"; }} '
                  f'else {{ {choose} }}')
    return f"next-server {h.nextserver}; {choose}"
