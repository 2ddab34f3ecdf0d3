"""makehosts: /etc/hosts (under XCATROOT) from the hosts and nics tables and the domain.

Without -n, entries of the named nodes are replaced where they stand and new ones appended:
every other line of the file is kept as it is. -n rebuilds from scratch keeping the
localhost lines; -d removes the nodes' entries; -l puts the long name first.
"""
from __future__ import annotations

from collections.abc import Iterator

from xcatd.daemon.dispatch import Context, command
from xcatd.base.files import locked, write_atomic
from xcatd.db.netinfo import NodeNet, gather, network_of, networks, valid_ip
from xcatd.base.noderange import NodeRange, natural_key
from xcatd.base.request import Request, Response, XcatError

HOSTS = "/etc/hosts"


def _is_localhost(line: str) -> bool:
    words = line.split()
    return bool(words) and (words[0] in ("127.0.0.1", "::1") or
                            any(w.startswith("localhost") for w in words[1:]))


def entries(nodes: dict[str, NodeNet], domain_of, long_first: bool) -> tuple[
        dict[str, list[str]], list[str]]:
    """{node: [hosts lines]} and the nodes without an address."""
    out: dict[str, list[str]] = {}
    missing: list[str] = []
    for node in sorted(nodes, key=natural_key):
        nn = nodes[node]
        lines = []
        if nn.ip:
            if not valid_ip(nn.ip):
                raise XcatError(f"hosts.ip of {node} is not an address: {nn.ip}")
            lines.append(_line(nn.ip, node, domain_of(nn.ip), long_first, nn.aliases))
        else:
            missing.append(node)
        for _nic, ip, name in nn.nics:
            if not valid_ip(ip):
                raise XcatError(f"nics.nicips of {node} has a bad address: {ip}")
            lines.append(_line(ip, name, domain_of(ip), long_first, []))
        for name, ip in nn.other:
            if not valid_ip(ip):
                raise XcatError(f"hosts.otherinterfaces of {node} has a bad address: {ip}")
            lines.append(_line(ip, name, domain_of(ip), long_first, []))
        if lines:
            out[node] = lines
    return out, missing


def _line(ip: str, name: str, domain: str | None, long_first: bool, aliases: list[str]) -> str:
    names = [name]
    if domain and not name.endswith("." + domain):
        names = [f"{name}.{domain}", name] if long_first else [name, f"{name}.{domain}"]
    return " ".join([ip, *names, *[a for a in aliases if a not in names]])


@command("makehosts", noderange="optional", writes=False)
def makehosts(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    names = nodes.sorted() if nodes is not None else sorted(ctx.all_nodes(), key=natural_key)
    path = ctx.paths.under(HOSTS)
    with locked(path):  # read, change and write as one: concurrent makehosts lose nothing
        yield from _makehosts(req, ctx, names, path)


def _makehosts(req: Request, ctx: Context, names: list[str], path) -> Iterator[Response]:
    a = req.args
    try:
        current = path.read_text().splitlines()
    except FileNotFoundError:
        current = []
    nets = networks(ctx.db)
    site_domain = ctx.site.get("domain")

    def domain_of(ip: str) -> str | None:
        n = network_of(nets, ip)
        return (n.row.get("domain") if n else None) or site_domain

    data = gather(ctx.db, names)
    new, missing = entries(data, domain_of, bool(a.get("longnamefirst")))
    # the names each node owns in the file: its own, its nics', its other interfaces'
    owned = {}
    for node, nn in data.items():
        for name in [node, *[n for _, _, n in nn.nics], *[n for n, _ in nn.other]]:
            owned[name] = node
    if a.get("new"):
        kept = [ln for ln in current if _is_localhost(ln) or ln.startswith("#")]
        body = kept + [ln for node in sorted(new, key=natural_key) for ln in new[node]]
    else:
        body, placed = [], set()
        for ln in current:
            words = ln.split("#", 1)[0].split()
            owner = next((owned[w] for w in words[1:] if w in owned), None) if words else None
            if owner is None:
                body.append(ln)
            elif not a.get("delete") and owner not in placed:
                body.extend(new.get(owner, []))  # replace the node's entries in place
                placed.add(owner)
        if not a.get("delete"):
            for node in sorted(new, key=natural_key):
                if node not in placed:
                    body.extend(new[node])
    text = "\n".join(body) + "\n" if body else ""
    if not path.exists() or path.read_text() != text:
        write_atomic(path, text)
    if missing and not a.get("delete"):
        yield Response(warning="No IP address (hosts.ip) for: " + str(NodeRange(missing)))
