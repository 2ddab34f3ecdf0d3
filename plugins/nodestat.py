"""nodestat and pping: which nodes are up, and what answers on them.

``pping <noderange> [-i nics] [-f]`` prints ``n1: ping`` or ``n1: noping``, as each node
settles. ``nodestat <noderange> [-u] [-p] [-m] [-f] [--ports LIST]`` probes the application
ports of every node at once (xCAT's sshd, https, pbs, xend, rdp and msrpc by default) and
prints, sorted, the open ones (``n1: sshd``), else what a node that answers is doing
(its agent's word in nodelist.status: ``configuring`` while its postscripts run, else its
nodeset state), else ``ping``, or ``noping``; ``-u`` writes nodelist.status and appstatus
as xCAT does. A node that answers and whose nodelist.status is ``failed`` says why, from
its event log (xcatd.provision.nodeevents): ``n1: failed: postscript 'hang' timeout after
10 s: <its last line of output>``, or ``n1: sshd (failed: ...)`` when it runs
applications; --json has the event as ``lastfailure``. Addresses
come from hosts.ip (or nics.nicips for ``pping -i``), else name resolution; the probing is
xcatd.base.reach (one thread, no process per node).

>>> parse_ports("sshd,db=5432,2222")
[('sshd', 22), ('db', 5432), ('2222', 2222)]
>>> merge_appstatus("sshd=down,gpfs=up", {"sshd": "up", "https": "down"})
'sshd=up,gpfs=up,https=down'
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from xcatd.base import reach
from xcatd.base.noderange import NodeRange, natural_key
from xcatd.base.request import Request, Response, XcatError
from xcatd.db.cluster import Cluster
from xcatd.db.database import split_list
from xcatd.db.netinfo import parse_nic_map
from xcatd.handler import FLAG, TEXT, Context, command
from xcatd.hardware.interfaces import Limits, PowerInterface
from xcatd.hardware.routing import routes
from xcatd.provision import nodeevents
from xcatd.provision.nextboot import now_text, stat

#: xCAT's port for each application name it knows
APP_PORTS = {"ftp": 21, "ssh": 22, "sshd": 22, "https": 443, "pbs": 15002, "pbs_mom": 15002,
             "xend": 8002, "ll": 9616, "loadl": 9616, "loadl_master": 9616,
             "loadleveler": 9616, "gpfs": 1191, "rdp": 3389, "msrpc": 135}
#: What nodestat probes when the monsetting table (-m) names nothing: xCAT's list
DEFAULT_APPS = ("sshd", "https", "pbs", "xend", "rdp", "msrpc")
#: nodeset states that say nothing about a node that answers
NO_STATE = ("", "offline", "unknown")
NO_ADDRESS = "Please make sure {} exists in /etc/hosts or DNS or hosts table"
NO_FPING = "Unable to find fping on system, must install fping package to use {} -f"

#: name -> addresses; tests replace it (no name lookups leave the machine)
resolver: Callable[[str], list[str]] = lambda host: [  # noqa: E731
    ai[4][0] for ai in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)]


# ---- pping ---------------------------------------------------------------------------------
@command("pping", noderange="required", args={"interfaces": TEXT, "fping": FLAG})
def pping(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    names = nodes.sorted() if nodes else []
    nics = split_list(req.args.get("interfaces")) or [None]
    labels: dict[str, list[str]] = {}
    for nic in nics:
        found, missing = addresses(ctx, names, nic)
        for label in missing:  # xCAT's fping: "address not found" is noping
            yield Response(node=label, data="noping", obj={"ping": False})
        for label, addr in found.items():
            labels.setdefault(reach.normal(addr), []).append(label)
    if req.args.get("fping"):
        alive = _fping(list(labels), "pping")
        for addr, ls in labels.items():
            for label in ls:
                yield _pinged(label, addr in alive)
        return
    for item in reach.stream(labels):
        if isinstance(item, str):
            yield Response(warning=item)
            continue
        for label in labels.get(item.address, ()):
            yield _pinged(label, item.alive)


def _pinged(label: str, alive: bool) -> Response:
    return Response(node=label, data="ping" if alive else "noping", obj={"ping": alive})


def _fping(addrs: list[str], cmd: str) -> set[str]:
    try:
        return reach.fping_alive(addrs)
    except FileNotFoundError:
        raise XcatError(NO_FPING.format(cmd)) from None


# ---- nodestat ------------------------------------------------------------------------------
@command("nodestat", noderange="required",
         args={"updatedb": FLAG, "powerstat": FLAG, "usemon": FLAG, "usefping": FLAG,
               "ports": TEXT})
def nodestat(req: Request, ctx: Context, nodes: NodeRange | None) -> Iterator[Response]:
    a = req.args
    names = nodes.sorted() if nodes else []
    warnings: list[str] = []
    if a.get("ports"):
        apps = {n: parse_ports(a["ports"]) for n in names}
    elif a.get("usemon"):
        apps = monsetting_apps(ctx, names, warnings)
    else:
        apps = {n: [(app, APP_PORTS[app]) for app in DEFAULT_APPS] for n in names}
    for w in warnings:
        yield Response(warning=w)
    found, missing = addresses(ctx, names)
    for node in missing:
        yield Response(node=node, error=NO_ADDRESS.format(node), errorcode=1)
    ports = list(dict.fromkeys(p for n in found for _, p in apps[n]))
    echoed: set[str] = set()
    if a.get("usefping"):
        echoed = _fping(list(found.values()), "nodestat")
    probe = reach.Probe(found.values(), ports or [22], icmp=not a.get("usefping"),
                        known_up=echoed)
    results: dict[str, reach.Reach] = {}
    reach.run(probe, lambda r: results.__setitem__(r.address, r))
    if probe.icmp_problem:
        yield Response(warning=probe.icmp_problem)
    states = {n: NodeState.of(apps[n], results[reach.normal(addr)])
              for n, addr in found.items()}
    for n, (word, failure) in agent_states(ctx, [n for n, s in states.items()
                                                 if s.up]).items():
        s = states[n]
        s.failed, s.failure = word == "failed", failure
        if not s.open:
            s.status = word
    quiet = [n for n, s in states.items() if s.up and not s.open]
    for r in stat(ctx, [n for n in quiet if states[n].status == "ping"]):
        if r.node in states and not r.error and (r.data or "") not in NO_STATE:
            states[r.node].status = r.data or ""
    if a.get("powerstat"):
        yield from _power(ctx, states)
    for n in sorted(states, key=natural_key):
        s = states[n]
        obj = {"status": s.status, "appstatus": s.appstatus}
        if s.failure:
            obj["lastfailure"] = s.failure
        yield Response(node=n, data=s.text, obj=obj)
    if a.get("updatedb"):
        update_db(ctx, states)


class NodeState:
    """What nodestat found on one node: ``status`` (ping, noping, a deployment state) and
    each probed application's ``up``/``down`` (xCAT's status and appstatus)."""

    def __init__(self, status: str, apps: dict[str, str]) -> None:
        self.status, self.apps = status, apps
        self.failed = False  # nodelist.status says failed
        self.failure: dict | None = None  # and this event of its log says why

    @classmethod
    def of(cls, apps: list[tuple[str, int]], r: reach.Reach) -> NodeState:
        if not r.alive:
            return cls("noping", {})
        return cls("ping", {app: "up" if port in r.open else "down" for app, port in apps})

    @property
    def up(self) -> bool:
        return not self.status.startswith("noping")

    @property
    def open(self) -> list[str]:
        return sorted(app for app, s in self.apps.items() if s == "up")

    @property
    def appstatus(self) -> str:
        return ",".join(f"{app}={s}" for app, s in self.apps.items())

    @property
    def text(self) -> str:
        """xCAT's line: the open applications of a node that pings, else its status; then
        why a failed node failed."""
        apps = ",".join(self.open)
        if self.status == "ping":
            text = apps or "ping"
        else:
            text = f"{self.status},{apps}" if apps else self.status
        if not self.failed:
            return text
        why = nodeevents.failure_text(self.failure) if self.failure else ""
        if apps:
            return f"{text} (failed: {why})" if why else f"{text} (failed)"
        return f"{text}: {why}" if why else text


#: nodelist.status words of the node agent that nodestat shows for a node that answers
AGENT_WORDS = ("configuring", "failed")


def agent_states(cluster: Cluster, nodes: list[str]
                 ) -> dict[str, tuple[str, dict | None]]:
    """What the node agent of each node that answers last said (xCAT asks its installer on
    port 3001 here): {node: (nodelist.status, the failure event)} for the nodes running
    their postscripts (``configuring``) or ``failed``, the event being the node's latest
    failed, timeout or watchdog one (or None) for a failed node. Two queries at most."""
    if not nodes:
        return {}
    words = {r["node"]: r.get("status") or "" for r in cluster.db.rows("nodelist", keys=nodes)}
    words = {n: w for n, w in words.items() if w in AGENT_WORDS}
    failures = nodeevents.last_failure(cluster, [n for n, w in words.items() if w == "failed"])
    return {n: (w, failures.get(n)) for n, w in words.items()}


def _power(ctx: Context, states: dict[str, NodeState]) -> Iterator[Response]:
    """-p: the power state of the nodes that do not answer, as ``noping(off)``."""
    down = sorted((n for n, s in states.items() if not s.up), key=natural_key)
    if not down:
        return
    found, errors = routes(ctx, down, PowerInterface)
    yield from errors
    limits = Limits.from_site(ctx.site)
    for route in found:
        hw: PowerInterface = route.impl
        for o in hw.power_state(route.targets, limits):
            if o.error:
                yield Response(node=o.node, error=o.error, errorcode=1)
            else:
                states[o.node].status = f"noping({o.value})"


def update_db(cluster: Cluster, states: dict[str, NodeState]) -> None:
    """-u: nodelist.status (its statustime when it changed) and appstatus, merged with the
    applications not probed this time, as xCAT's nodestat writes them."""
    if not states:
        return
    now = now_text()
    old = {r["node"]: r for r in cluster.db.rows("nodelist", keys=states)}
    rows = {}
    for n, s in states.items():
        row = {"appstatus": "" if not s.up else merge_appstatus(
            (old.get(n) or {}).get("appstatus"), s.apps), "appstatustime": now}
        if (old.get(n) or {}).get("status") != s.status:
            row.update(status=s.status, statustime=now)
        rows[(n,)] = row
    with cluster.db.begin() as conn:
        cluster.db.set_rows(conn, "nodelist", rows)


def merge_appstatus(old: str | None, new: dict[str, str]) -> str:
    """``old`` (``app=state,...``) with the states in ``new`` replacing or added."""
    merged: dict[str, str] = {}
    for part in split_list(old):
        app, sep, st = part.partition("=")
        if sep:
            merged[app.strip()] = st.strip()
    merged.update(new)
    return ",".join(f"{app}={st}" for app, st in merged.items())


# ---- which ports ---------------------------------------------------------------------------
def port_of(app: str) -> int | None:
    """xCAT's port for an application name, else /etc/services' (tcp)."""
    if app in APP_PORTS:
        return APP_PORTS[app]
    try:
        return socket.getservbyname(app, "tcp")
    except OSError:
        return None


def parse_ports(text: str) -> list[tuple[str, int]]:
    """--ports: ``name=port``, a port number, or an application name, comma-separated."""
    out: list[tuple[str, int]] = []
    for item in split_list(text):
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        port: int | None
        if sep:
            port = int(value) if value.isdigit() else None
        elif name.isdigit():
            port = int(name)
        else:
            port = port_of(name)
        if not name or port is None or not 0 < port < 65536:
            raise XcatError(f"nodestat: bad --ports entry '{item}': give name=port, a port "
                            "number or a known application name (sshd, https, ...)")
        out.append((name, port))
    if not out:
        raise XcatError("nodestat: --ports names no port")
    return out


def monsetting_apps(cluster: Cluster, names: list[str], warnings: list[str]
                    ) -> dict[str, list[tuple[str, int]]]:
    """-m: the applications the monsetting table names (name=xcatmon, key=apps), each on
    its port and for its groups, sshd always; the default list when it names none."""
    rows = {r["key"]: r.get("value") or "" for r in cluster.db.rows("monsetting")
            if r.get("name") == "xcatmon"}
    listed = split_list(rows.get("apps"))
    if not listed:
        return {n: [(app, APP_PORTS[app]) for app in DEFAULT_APPS] for n in names}
    if "ssh" not in listed and "sshd" not in listed:
        listed.append("sshd")
    groups = cluster.node_groups()
    out: dict[str, list[tuple[str, int]]] = {n: [] for n in names}
    for app in listed:
        settings: dict[str, list[str]] = {}
        for pair in split_list(rows.get(app)):
            k, _, v = pair.partition("=")
            settings.setdefault(k.strip(), []).append(v.strip())
        runs = [k for k in ("cmd", "lcmd", "dcmd") if k in settings]
        if runs:
            warnings.append(f"nodestat: monsetting runs {runs[0]}= for {app}; pyxcat runs no "
                            "monitoring commands: skipped")
            continue
        port = int(settings["port"][0]) if settings.get("port", [""])[0].isdigit() \
            else port_of(app)
        if port is None:
            raise XcatError(f"Cannot find port number for application {app}. Please either "
                            f"specify a port number or a command in monsetting table for "
                            f"{app}.")
        wanted = set(settings.get("group", []))
        for n in names:
            if not wanted or wanted & set(groups.get(n, ())) or n in wanted:
                out[n].append((app, port))
    return out


# ---- where the nodes are -------------------------------------------------------------------
def addresses(cluster: Cluster, names: list[str], nic: str | None = None
              ) -> tuple[dict[str, str], list[str]]:
    """({label: address}, [labels with none]): hosts.ip (nics.nicips for ``nic``; the label
    is then ``node-nic``, as xCAT's pping names it), else the name resolved. One read of the
    tables; names are looked up in parallel."""
    values = cluster.db.resolve(names, {"hosts": ["ip"], "nics": ["nicips"]},
                                groups=cluster.node_groups_if_loaded(names))
    found: dict[str, str] = {}
    lookup: dict[str, str] = {}  # label -> host name to resolve
    for n in names:
        v = values.get(n, {})
        label = f"{n}-{nic}" if nic else n
        given = (parse_nic_map(v.get(("nics", "nicips"))).get(nic) or [None])[0] if nic \
            else v.get(("hosts", "ip"))
        if given and _is_ip(given):
            found[label] = given
        else:
            lookup[label] = given or label
    if lookup:
        with ThreadPoolExecutor(max_workers=min(64, len(lookup))) as pool:
            for label, addr in zip(lookup, pool.map(_first_address, lookup.values())):
                if addr:
                    found[label] = addr
    missing = [label for label in lookup if label not in found]
    return found, missing


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _first_address(host: str) -> str | None:
    """The host's first IPv4 address, else its first address; None when it has none."""
    try:
        addrs = resolver(host)
    except (OSError, UnicodeError):
        return None
    return next((a for a in addrs if ":" not in a), addrs[0] if addrs else None)
