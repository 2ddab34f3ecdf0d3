"""makedhcp: the DHCP server configuration from networks, site and the nodes.

``makedhcp -n`` renders the whole configuration (one template render with the loop inside),
checks it with our own checks (duplicate MAC or IP, an address outside every network
served, a node with a MAC but no address: what dhcpd -t misses) and then with ``dhcpd -t``,
and only then replaces the live file. Boot files follow each node's noderes.netboot and the
client's firmware: iPXE (user class "iPXE") gets the node's HTTP script, UEFI and BIOS their
first-stage loaders.
"""
from __future__ import annotations

import base64
import datetime
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from xcatd.daemon.dispatch import Context, command
from xcatd.base.files import CheckFailed, run_check, write_checked
from xcatd.db.netinfo import Network, gather, network_of, networks, valid_ip, valid_mac
from xcatd.base.noderange import NodeRange, natural_key
from xcatd.base.request import Request, Response, XcatError
from xcatd.base.templating import custom_dir, environment

DHCPD_CONF = "/etc/dhcp/dhcpd.conf"
OMAPI_PORT = 7911

#: netboot -> (BIOS loader, UEFI loader, iPXE script or None); {node}/{server}/{port}
BOOTFILES = {
    "xnba": ("xcat/xnba.kpxe", "xcat/xnba.efi",
             "http://{server}:{port}/tftpboot/xcat/xnba/nodes/{node}"),
    "pxe": ("pxelinux.0", "xcat/xnba.efi", None),
    "grub2": ("boot/grub2/grub2-{node}", "boot/grub2/grub2-{node}", None),
}


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


def served_networks(ctx: Context) -> list[Network]:
    """Networks this server answers on: all, or those on site.dhcpinterfaces."""
    nets = networks(ctx.db)
    wanted = {i.split("|")[-1].strip() for i in (ctx.site.get("dhcpinterfaces") or "")
              .replace(";", ",").split(",") if i.strip()}
    master = ctx.site.get("master")
    out = []
    for n in nets:
        if wanted and (n.row.get("mgtifname") or "") not in wanted:
            continue
        server = n.row.get("dhcpserver")
        if server and master and server not in (master, "<xcatmaster>"):
            continue  # another server (a service node) answers there
        out.append(n)
    return out


def _ranges(text: str | None, net: Network) -> list[tuple[str, str]]:
    out = []
    for part in (text or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not sep or not valid_ip(lo) or not valid_ip(hi) or lo not in net or hi not in net:
            raise XcatError(f"network {net.name}: bad dynamicrange '{part}' (expected "
                            f"first-last inside {net.net})")
        out.append((lo.strip(), hi.strip()))
    return out


def omapi_key(ctx: Context) -> dict[str, object]:
    """The OMAPI key from passwd key=omapi, created on first use."""
    rows = ctx.db.match("passwd", {"key": "omapi"})
    if rows and rows[0].get("password"):
        return {"name": rows[0].get("username") or "xcat_key", "secret": rows[0]["password"],
                "port": OMAPI_PORT}
    secret = base64.b64encode(os.urandom(64)).decode()
    with ctx.db.begin() as conn:
        ctx.db.set_rows(conn, "passwd", {("omapi", "xcat_key"): {"password": secret}})
    return {"name": "xcat_key", "secret": secret, "port": OMAPI_PORT}


def plan_hosts(ctx: Context, names: list[str], nets: list[Network]
               ) -> tuple[list[HostBlock], list[str], list[str]]:
    """Host blocks, the nodes skipped for having no MAC, and the problems found."""
    data = gather(ctx.db, names, groups=ctx.node_groups_if_loaded(names))
    master = ctx.site.get("master") or "127.0.0.1"
    port = ctx.site.get("httpport") or "80"
    hosts: list[HostBlock] = []
    no_mac: list[str] = []
    problems: list[str] = []
    by_mac: dict[str, list[str]] = defaultdict(list)
    by_ip: dict[str, list[str]] = defaultdict(list)
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
        server = nn.tftpserver or nn.xcatmaster or net.row.get("tftpserver") or master
        bios, uefi, ipxe = BOOTFILES.get((nn.netboot or "xnba").lower(), BOOTFILES["xnba"])
        fill = {"node": node, "server": server, "port": port}
        for i, (mac, _name) in enumerate(nn.macs):
            if not valid_mac(mac):
                problems.append(f"{node}: '{mac}' is not a MAC address (mac.mac)")
                continue
            by_mac[mac].append(node)
            hosts.append(HostBlock(node if i == 0 else f"{node}-{i + 1}", mac, nn.ip, node,
                                   server, bios.format(**fill), uefi.format(**fill),
                                   ipxe.format(**fill) if ipxe else None))
    problems += [f"MAC {mac} belongs to more than one node: {','.join(ns)}"
                 for mac, ns in by_mac.items() if len(set(ns)) > 1]
    problems += [f"IP {ip} belongs to more than one node: {','.join(ns)}"
                 for ip, ns in by_ip.items() if len(ns) > 1]
    return hosts, no_mac, problems


def render_dhcpd(ctx: Context, nets: list[Network], hosts: list[HostBlock]) -> str:
    site = ctx.site
    master = site.get("master") or "127.0.0.1"
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
            "ranges": _ranges(row.get("dynamicrange"), n),
        })
    env = environment(ctx.paths, site)
    return env.get_template("dhcpd.conf.j2").render(
        lease=site.get("dhcplease") or "43200", domain=site.get("domain"),
        omapi=omapi_key(ctx), subnets=subnets, hosts=hosts,
        custom_dir=custom_dir(ctx.paths, site),
        now=datetime.datetime.now().isoformat(timespec="seconds"))


@command("makedhcp", noderange="optional")
def makedhcp(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    """makedhcp -n: the whole configuration, every node with a MAC."""
    a = req.args
    backend = (ctx.site.get("dhcpbackend") or "dhcpd").lower()
    if backend not in ("dhcpd", "isc", "kea"):
        raise XcatError(f"site.dhcpbackend '{backend}' is not dhcpd or kea")
    if backend == "kea":
        yield from _kea(req, ctx, nodes)
        return
    if not a.get("new"):
        yield from _live(req, ctx, nodes)
        return
    if nodes is not None:
        raise XcatError("makedhcp -n rebuilds the whole configuration for every node; give no "
                        "noderange (per-node changes on a running server are not built yet)")
    names = sorted(ctx.all_nodes(), key=natural_key)
    nets = served_networks(ctx)
    if not nets:
        raise XcatError("No networks to serve: define them (makenetworks, mkdef -t network) "
                        "or check site.dhcpinterfaces")
    hosts, no_mac, problems = plan_hosts(ctx, names, nets)
    if problems:
        raise XcatError("The DHCP configuration was not changed:\n" + "\n".join(problems))
    text = render_dhcpd(ctx, nets, hosts)
    path = ctx.paths.under(DHCPD_CONF)
    try:  # mode 0600: it holds the OMAPI key
        write_checked(path, text, lambda tmp: run_check(["dhcpd", "-t", "-4", "-cf", str(tmp)],
                                                        "the generated dhcpd.conf"),
                      mode=0o600)
    except CheckFailed as exc:
        raise XcatError(f"{exc}; {path} was not changed:\n{exc.output}") from None
    if no_mac:
        yield Response(warning=f"No MAC address (mac.mac), not in the DHCP configuration: "
                               f"{NodeRange(no_mac)}")


# ---- a running dhcpd, through OMAPI ----------------------------------------------------------
def host_statements(h: HostBlock) -> str:
    """The per-host statements OMAPI carries: the same boot choice as the file."""
    choose = (f'if option client-architecture = 00:07 or option client-architecture = 00:09 '
              f'{{ filename "{h.uefi}"; }} else {{ filename "{h.bios}"; }}')
    if h.ipxe:
        choose = (f'if exists user-class and option user-class = "iPXE" '
                  f'{{ filename "{h.ipxe}"; }} else {{ {choose} }}')
    return f"next-server {h.nextserver}; {choose}"


def _omapi(ctx: Context):
    try:
        import pypureomapi
    except ImportError:
        raise XcatError("pypureomapi is not installed: makedhcp cannot reach dhcpd") from None
    key = omapi_key(ctx)
    server = ctx.site.get("omapiserver") or "127.0.0.1"
    port = int(ctx.site.get("omapiport") or OMAPI_PORT)
    try:
        return pypureomapi, pypureomapi.Omapi(server, port, str(key["name"]).encode(),
                                              str(key["secret"]).encode(), timeout=10)
    except (OSError, pypureomapi.OmapiError) as exc:
        raise XcatError(f"Cannot reach dhcpd's OMAPI at {server}:{port}: {exc} (is dhcpd "
                        "running with the configuration makedhcp -n wrote?)") from None


def _live(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    a = req.args
    if a.get("all"):
        names = sorted(ctx.all_nodes(), key=natural_key)
    elif nodes is not None:
        names = nodes.sorted()
    else:
        raise XcatError("makedhcp needs -n, -a or a noderange")
    nets = served_networks(ctx)
    hosts, no_mac, problems = plan_hosts(ctx, names, nets)
    if a.get("delete") or a.get("query"):
        problems = [p for p in problems if "more than one node" in p]
    if problems:
        raise XcatError("Nothing was sent to dhcpd:\n" + "\n".join(problems))
    lib, omapi = _omapi(ctx)
    try:
        for h in hosts:
            try:
                if a.get("query"):
                    found = omapi.lookup_by_host(mac=h.mac)
                    yield Response(node=h.hostname, data=", ".join(
                        f"{k} = {v}" for k, v in sorted(found.items())))
                    continue
                try:
                    omapi.del_host(h.mac)
                except lib.OmapiErrorNotFound:
                    pass
                if not a.get("delete"):
                    omapi.add_host_supersede(h.ip, h.mac, h.name, hostname=h.hostname,
                                             statements=host_statements(h))
            except lib.OmapiErrorNotFound:
                yield Response(node=h.hostname, error=f"not known to dhcpd ({h.mac})",
                               errorcode=1)
            except (OSError, lib.OmapiError) as exc:
                yield Response(node=h.hostname, error=f"dhcpd OMAPI: {exc}", errorcode=1)
    finally:
        omapi.close()
    if no_mac and not a.get("delete"):
        yield Response(warning=f"No MAC address (mac.mac): {NodeRange(no_mac)}")


# ---- Kea --------------------------------------------------------------------------------------
def _kea(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    from xcatd.plugins import kea
    a = req.args
    if a.get("new") and nodes is not None:
        raise XcatError("makedhcp -n rebuilds the whole configuration for every node; give no "
                        "noderange")
    nets = [n for n in served_networks(ctx) if n.net.version == 4]
    if not nets:
        raise XcatError("No networks to serve: define them (makenetworks, mkdef -t network) "
                        "or check site.dhcpinterfaces")
    if a.get("new") or a.get("all"):
        names = sorted(ctx.all_nodes(), key=natural_key)
    elif nodes is not None:
        names = nodes.sorted()   # only these: never re-plan every node for a few
    else:
        raise XcatError("makedhcp needs -n, -a or a noderange")
    hosts, no_mac, problems = plan_hosts(ctx, names, nets)
    if a.get("delete") or a.get("query"):
        problems = [p for p in problems if "more than one node" in p]
    if problems:
        raise XcatError("The DHCP configuration was not changed:\n" + "\n".join(problems))
    if a.get("new"):
        kea.write(ctx, kea.config(ctx, nets, hosts))
    else:
        yield from kea.live(ctx, nets, hosts, names, delete=bool(a.get("delete")),
                            query=bool(a.get("query")))
    if no_mac and not a.get("query"):
        yield Response(warning=f"No MAC address (mac.mac), not in the DHCP configuration: "
                               f"{NodeRange(no_mac)}")
