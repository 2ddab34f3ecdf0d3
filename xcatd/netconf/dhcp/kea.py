"""Kea (site.dhcpbackend=kea): a JSON configuration checked by ``kea-dhcp4 -t``, and live
changes by ``config-set`` over Kea's control socket (Debian's Kea has no host_cmds hook, so a
change sends the whole configuration: ~0.5 s at 10,000 hosts).

Kea cannot choose a per-host boot file by client class, so iPXE clients get one chain
script (xcat/xnba/boot.ipxe, written here) that fetches their node's script by the host name
the reservation hands out; BIOS, UEFI and UEFI HTTP boot (vendor class HTTPClient, given
the iPXE EFI image as a URL) loaders come from client classes, and nodes
that boot another way (pxe, grub2) carry their boot file in their reservation.
"""
from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

from xcatd.base.files import locked, run_check, write_atomic
from xcatd.base.request import ErrorKind, Response, XcatError
from xcatd.db.cluster import Cluster
from xcatd.db.netinfo import Network, network_of
from xcatd.netconf.dhcp.common import DhcpManager, HostBlock, Plan, no_networks
from xcatd.netconf.manager import Generated

KEA_CONF = "/etc/kea/kea-dhcp4.conf"
CHAIN = "#!ipxe\nchain http://{server}:{port}/tftpboot/xcat/xnba/nodes/${{hostname}}\n"


def paths(cluster: Cluster) -> dict[str, Path]:
    return {"conf": cluster.paths.under(KEA_CONF),
            "socket": cluster.paths.under("/var/run/kea/kea4-ctrl-socket"),
            "leases": cluster.paths.under("/var/lib/kea/dhcp4.leases"),
            "chain": cluster.tftpdir / "xcat/xnba/boot.ipxe"}


def reservation(h: HostBlock) -> dict:
    res = {"hw-address": h.mac, "ip-address": h.ip, "hostname": h.hostname,
           "next-server": h.nextserver}
    if not h.ipxe:  # not xnba: the node's own loader, whatever the client class
        res["boot-file-name"] = h.bios
    return res


def config(cluster: Cluster, nets: list[Network], hosts: list[HostBlock]) -> dict:
    site = cluster.site
    master = site.master()
    port = site.httpport()
    p = paths(cluster)
    interfaces = sorted({n.row["mgtifname"] for n in nets if n.row.get("mgtifname")})
    by_net: dict[str, list[dict]] = {n.name: [] for n in nets}
    for h in hosts:
        by_net[network_of(nets, h.ip).name].append(reservation(h))
    subnets = []
    for i, n in enumerate(nets, 1):
        row = n.row
        sub = {"id": i, "subnet": str(n.net), "next-server": row.get("tftpserver") or master,
               "boot-file-name": "xcat/xnba.kpxe", "reservations": by_net[n.name],
               "option-data": []}
        if row.get("gateway") not in (None, "", "<xcatmaster>"):
            sub["option-data"].append({"name": "routers", "data": row["gateway"]})
        if row.get("dynamicrange"):
            sub["pools"] = [{"pool": r.replace("-", " - ")} for r in
                            row["dynamicrange"].replace(";", ",").split(",") if r.strip()]
        subnets.append(sub)
    options = []
    if site.get("domain"):
        options.append({"name": "domain-name", "data": site["domain"]})
    if site.get("nameservers"):
        options.append({"name": "domain-name-servers",
                        "data": site["nameservers"].replace("<xcatmaster>", master)})
    return {"Dhcp4": {
        "interfaces-config": {"interfaces": interfaces},
        "control-socket": {"socket-type": "unix", "socket-name": str(p["socket"])},
        "lease-database": {"type": "memfile", "persist": True, "name": str(p["leases"])},
        "valid-lifetime": site.integer("dhcplease", 43200, low=1),
        "option-data": options,
        "client-classes": [
            {"name": "XCAT_IPXE", "test": "substring(option[77].hex,0,4) == 'iPXE'",
             "boot-file-name": f"http://{master}:{port}/tftpboot/xcat/xnba/boot.ipxe",
             # iPXE then waits for no ProxyDHCP offer (about 3 s a boot)
             "option-data": [{"name": "vendor-class-identifier", "data": "PXEClient"}]},
            {"name": "XCAT_HTTPBOOT",  # UEFI HTTP boot: the iPXE EFI image, as a URL
             "test": "substring(option[60].hex,0,10) == 'HTTPClient'",
             "boot-file-name": f"http://{master}:{port}/tftpboot/xcat/xnba.efi",
             "option-data": [{"name": "vendor-class-identifier", "data": "HTTPClient"}]},
            {"name": "XCAT_UEFI",
             "test": "option[93].hex == 0x0007 or option[93].hex == 0x0009",
             "boot-file-name": "xcat/xnba.efi"},
        ],
        "subnet4": subnets,
        "loggers": [{"name": "kea-dhcp4", "severity": "INFO",
                     "output_options": [{"output": "stdout"}]}],
    }}


def check(conf: dict, tmp: Path) -> None:
    """kea-dhcp4 -t refuses interfaces this host lacks: check a copy without them."""
    probe = json.loads(json.dumps(conf))
    probe["Dhcp4"]["interfaces-config"]["interfaces"] = []
    probe_path = tmp.with_name(tmp.name + ".probe")
    probe_path.write_text(json.dumps(probe))
    try:
        run_check(["kea-dhcp4", "-t", str(probe_path)], "the generated Kea configuration")
    finally:
        probe_path.unlink(missing_ok=True)


class Kea(DhcpManager):
    name = "kea"
    ipv4_only = True

    def render(self, data: Plan) -> list[Generated]:
        p = paths(self.cluster)
        for d in (p["socket"].parent, p["leases"].parent):
            d.mkdir(parents=True, exist_ok=True)
        conf = config(self.cluster, data.nets, data.hosts)
        site = self.cluster.site
        return [Generated(p["conf"], json.dumps(conf, indent=2) + "\n", 0o644,
                          lambda tmp: check(conf, tmp)),
                Generated(p["chain"], CHAIN.format(server=site.master(), port=site.httpport()))]

    def _live_plan(self, nodes: list[str], lenient: bool) -> Plan:
        if not self.networks():
            raise no_networks()
        return self.plan(nodes, lenient=lenient)

    def update(self, nodes: list[str], *, delete: bool = False) -> Iterator[Response]:
        """Change only these nodes' reservations in the configuration makedhcp -n wrote,
        then hand it to the running Kea (which checks it, and keeps the old one if it is
        bad)."""
        plan = self._live_plan(nodes, lenient=delete)
        path = paths(self.cluster)["conf"]
        with locked(path):  # read, change, hand over and write as one
            self._patch(plan, nodes, path, delete=delete)
        yield from self.report(plan, [])

    def query(self, nodes: list[str]) -> Iterator[Response]:
        self._live_plan(nodes, lenient=True)
        got = self.command("config-get")
        reservations = {r.get("hostname"): r for s in
                        got.get("arguments", {}).get("Dhcp4", {}).get("subnet4", [])
                        for r in s.get("reservations", [])}
        for node in nodes:
            r = reservations.get(node)
            if r is None:
                yield Response(node=node, error="not known to Kea", errorcode=1)
            else:
                yield Response(node=node, data=", ".join(f"{k} = {v}" for k, v in sorted(
                    r.items()) if not isinstance(v, list | dict)))

    def command(self, cmd: str, arguments: dict | None = None) -> dict:
        """One command on Kea's control socket."""
        path = paths(self.cluster)["socket"]
        msg = {"command": cmd, **({"arguments": arguments} if arguments is not None else {})}
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(30)
                s.connect(str(path))
                s.sendall(json.dumps(msg).encode())
                chunks = []
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    chunks.append(data)
                    try:
                        return json.loads(b"".join(chunks))
                    except ValueError:
                        continue
        except OSError as exc:
            raise XcatError(f"Cannot reach Kea's control socket {path}: {exc} (is kea-dhcp4 "
                            "running with the configuration makedhcp -n wrote?)",
                            kind=ErrorKind.UPSTREAM) from None
        raise XcatError(f"Kea closed its control socket without an answer to {cmd}",
                        kind=ErrorKind.UPSTREAM)

    def _patch(self, plan: Plan, names: list[str], path: Path, *, delete: bool) -> None:
        try:
            conf = json.loads(path.read_text())
        except FileNotFoundError:
            raise XcatError(f"No Kea configuration at {path}: run makedhcp -n first",
                            kind=ErrorKind.CONFLICT) from None
        except ValueError as exc:
            raise XcatError(f"{path} is not valid JSON ({exc}): run makedhcp -n",
                            kind=ErrorKind.CONFLICT) from None
        gone = set(names) | {h.mac for h in plan.hosts}
        subnets = {s["subnet"]: s for s in conf["Dhcp4"].get("subnet4", [])}
        for s in subnets.values():
            s["reservations"] = [r for r in s.get("reservations", [])
                                 if r.get("hostname") not in gone
                                 and r.get("hw-address") not in gone]
        if not delete:
            for h in plan.hosts:
                s = subnets.get(str(network_of(plan.nets, h.ip).net))
                if s is None:
                    raise XcatError(f"{h.hostname}: the Kea configuration has no subnet for "
                                    f"{h.ip}: run makedhcp -n", kind=ErrorKind.CONFLICT)
                s["reservations"].append(reservation(h))
        answer = self.command("config-set", conf)
        if answer.get("result") != 0:
            raise XcatError("Kea refused the configuration, nothing changed: "
                            f"{answer.get('text')}", kind=ErrorKind.UPSTREAM)
        write_atomic(path, json.dumps(conf, indent=2) + "\n")  # the lock is held; Kea checked it
