"""makenetworks: networks rows from the management node's own interfaces (`ip -j addr`).

Each IPv4 address on an interface that is up (loopback excepted) becomes a network named
as xCAT names them (10_0_0_0-255_255_0_0); a network already defined (same net and mask)
is left as it is. -d shows the definitions in stanza form and writes nothing.
"""
from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
from collections.abc import Iterator

from xcatd.base.request import Request, Response, XcatError
from xcatd.handler import FLAG, Context, command


def _ip_json(*args: str) -> list[dict]:
    try:
        p = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=30,
                           check=False)
    except FileNotFoundError:
        raise XcatError("the ip command (iproute2) is not installed") from None
    if p.returncode != 0:
        raise XcatError(f"ip -j {' '.join(args)} failed: {p.stderr.strip()}")
    return json.loads(p.stdout or "[]")


def discover() -> list[dict[str, str]]:
    """Networks of this host's interfaces, with the default gateway where it is on one."""
    gateways = {}
    for route in _ip_json("-4", "route", "show"):
        if route.get("dst") == "default" and route.get("gateway"):
            gateways.setdefault(route.get("dev"), route["gateway"])
    found: dict[tuple[str, str], dict[str, str]] = {}
    for link in _ip_json("-4", "addr", "show"):
        if "LOOPBACK" in link.get("flags", []) or link.get("operstate") == "DOWN":
            continue
        for info in link.get("addr_info", []):
            if info.get("family") != "inet":
                continue
            iface = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")
            net, mask = str(iface.network.network_address), str(iface.network.netmask)
            if (net, mask) in found:
                continue
            row = {"netname": f"{net}-{mask}".replace(".", "_"), "net": net, "mask": mask,
                   "mgtifname": link["ifname"], "tftpserver": info["local"]}
            gw = gateways.get(link["ifname"])
            if gw and ipaddress.ip_address(gw) in iface.network:
                row["gateway"] = gw
            found[(net, mask)] = row
    return list(found.values())


@command("makenetworks", writes=True, args={"display": FLAG})
def makenetworks(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    rows = discover()
    existing = {(r["net"], r["mask"]) for r in ctx.db.rows("networks", include_disabled=True)}
    if req.args.get("display"):
        yield Response(data=f"#From {socket.gethostname()}.")
        for row in rows:
            lines = [f"{row['netname']}:", "    objtype=network"]
            lines += [f"    {k}={v}" for k, v in sorted(row.items()) if k != "netname"]
            yield Response(data="\n".join(lines))
        return
    new = {(r["net"], r["mask"]): {k: v for k, v in r.items() if k not in ("net", "mask")}
           for r in rows if (r["net"], r["mask"]) not in existing}
    with ctx.db.begin() as conn:
        if new:
            ctx.db.set_rows(conn, "networks", new)
    for row in rows:
        if (row["net"], row["mask"]) in existing:
            yield Response(warning=f"The network {row['net']}/{row['mask']} is already "
                                   "defined; left as it is.")
