"""Two management nodes on one machine, each an xcatd under its own root and in its own
network namespace, and BMCs that both reach: the lab for moving a management node
(xcatexport on one, xcatimport on the other). HubLab is the same with any number of xcatd
nodes (xcatd.lab.snlab: a management node and its service nodes).

    hub namespace   bridge br0, 10.79.0.254/16; the BMCs (a pyghmi fleet, ipmi_sim) on the
                    hub's own 127.0.0.1
    MN a            eth0 10.79.0.1/16 in the bridge        MN b   eth0 10.79.0.2/16

Each management node finds the BMCs where a single-host lab puts them, 127.0.0.1:<port>:
a policy rule, looked up before the local table, sends UDP to 127.0.0.1 on the BMCs' ports
through eth0 to the hub (``route_localnet`` lets 127/8 cross the veth); everything else on
127.0.0.1 stays the node's own (its xcatd, its clients). So both nodes talk to the very same
BMCs, and a BMC address never needs remapping, as on a real cluster.

Commands run in a node's namespace with its XCATROOT and HOME: as subprocesses (``run``,
xcatd itself), or in this process (``cli``: the calling thread enters the namespace for the
call, the client goes to that node's xcatd over TLS on 127.0.0.1, or in process with
``bypass=True``). Closing the lab stops every process it started and whatever is left in its
namespaces, by PID, then deletes the namespaces, whatever happened; a lab left by a killed run
is removed by the next one. Needs root and iproute2 (ipmi_sim for ``start_ipmisim``).

    with TwoMN(tmp) as lab:
        fleet = lab.start_fleet(3)
        lab.a.cli("xcatconfig", bypass=True)
        lab.a.start_xcatd()
        lab.a.cli("rpower", "compute", "stat")
"""
from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url

from xcatd.lab import Scene, enter_netns, kill_pid, netns_pids, pid_alive
from xcatd.lab.bmcfleet import Fleet
from xcatd.lab.incli import Result, environ, run_command
from xcatd.lab.ipmisim import IpmiSim
from xcatd.lab.ports import free_port

NS_PREFIX = "pyx2mn-"                 # pyx2mn-<pid>-<k>-{a,b,hub}
NET, PREFIXLEN = "10.79", 16
HUB_IP = f"{NET}.0.254"
ADDRESSES = {"a": f"{NET}.0.1", "b": f"{NET}.0.2"}
BMC_TABLE = "100"                     # the MNs' routing table for the BMCs' ports
XCATD_PORT = 3001                     # each xcatd has its namespace's ports to itself
START_TIMEOUT = 60
_seq = itertools.count()


class TwoMNError(RuntimeError):
    """The lab could not be built or a service would not start; the message says why."""


def usable() -> str | None:
    """Why the lab cannot run here, or None: tests turn the reason into a skip."""
    if os.geteuid() != 0:
        return "the two-management-node lab needs root (network namespaces)"
    if not shutil.which("ip"):
        return "the two-management-node lab needs ip (Debian package iproute2)"
    return None


class ManagementNode:
    """One management node of the lab: its namespace, address, root and HOME (root's client
    certificate is in HOME/.xcat), and its xcatd once started."""

    def __init__(self, lab: HubLab, name: str, address: str, workdir: Path) -> None:
        self.lab, self.name, self.address = lab, name, address
        self.ns = f"{lab.prefix}{name}"
        self.root = workdir / f"root-{name}"
        self.home = workdir / f"home-{name}"
        self.log = workdir / f"xcatd-{name}.log"
        self.xcatd: subprocess.Popen[Any] | None = None

    def env(self, home: str | os.PathLike[str] | None = None) -> dict[str, str]:
        """The environment of a command on this node (XCATROOT, HOME; no XCATBYPASS or
        XCATHOST from the caller)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("XCATBYPASS", "XCATHOST", "XCAT_NODE_PREFIX", "XCAT_NODE_SUFFIX")}
        env.update(XCATROOT=str(self.root), HOME=str(home or self.home))
        return env

    # ---- subprocesses ------------------------------------------------------------------------
    def argv(self, argv: Sequence[Any]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *map(str, argv)]

    def run(self, argv: Sequence[Any], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """subprocess.run in this node's namespace with its environment (120 s unless told)."""
        kw.setdefault("timeout", 120)
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("env", self.env())
        return subprocess.run(self.argv(argv), **kw)

    def start_xcatd(self) -> subprocess.Popen[Any]:
        """xcatd for this node's root in its namespace (all addresses, port 3001), once it
        says it is ready; its log in ``log``."""
        if self.xcatd is not None and self.xcatd.poll() is None:
            raise TwoMNError(f"xcatd of {self.name} is running already")
        exe = Path(sys.executable).with_name("xcatd")  # the console script beside us
        if not exe.exists():
            exe = Path(shutil.which("xcatd") or "xcatd")
        with open(self.log, "a") as log:
            mark = log.tell()
            self.xcatd = self.lab.spawn(self.argv([exe, "--port", XCATD_PORT]), env=self.env(),
                                        stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with open(self.log) as fh:
                fh.seek(mark)
                text = fh.read()
            if "ready on" in text:
                return self.xcatd
            if self.xcatd.poll() is not None:
                break
            time.sleep(0.1)
        self.stop_xcatd()
        raise TwoMNError(f"xcatd of {self.name} did not start:\n{_tail(self.log)}")

    def start_dhcpd(self, interface: str = "eth0") -> subprocess.Popen[Any]:
        """ISC dhcpd in this node's namespace with the configuration makedhcp wrote under
        its root, once it listens; stopped with the lab."""
        conf = self.root / "etc/dhcp/dhcpd.conf"
        state = self.root / "var/lib/dhcp"
        state.mkdir(parents=True, exist_ok=True)
        (state / "dhcpd.leases").touch()
        return self._udp_service("dhcpd", ["dhcpd", "-f", "-d", "-4", "-cf", conf, "-lf",
                                           state / "dhcpd.leases", "-pf",
                                           state / "dhcpd.pid", interface], 67)

    def start_tftpd(self, address: str) -> subprocess.Popen[Any]:
        """tftpd-hpa for this node's TFTP root on address:69 in its namespace, once it
        listens; stopped with the lab."""
        return self._udp_service("tftpd", ["in.tftpd", "--foreground", "--listen",
                                           "--address", f"{address}:69", "--user", "root",
                                           "--secure", self.root / "tftpboot"], 69)

    def _udp_service(self, what: str, argv: list[Any], port: int) -> subprocess.Popen[Any]:
        """``argv`` in this node's namespace, its output in the lab's ``<what>-<node>.log``,
        once something listens on UDP ``port`` there."""
        log = self.lab.dir / f"{what}-{self.name}.log"
        with open(log, "ab") as fh:
            p = self.lab.spawn(self.argv(argv), stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and p.poll() is None:
            if self.run(["ss", "-H", "-lun", "sport", f"= :{port}"]).stdout.strip():
                return p
            time.sleep(0.1)
        raise TwoMNError(f"{what} on {self.name} did not start:\n{_tail(log)}")

    def attach(self, ns: str, bridge: str, address: str) -> None:
        """A second interface for this node, named ``bridge`` like the bridge it joins in
        namespace ``ns`` (another lab's network: a service node's own compute network), with
        ``address`` (CIDR)."""
        _batch(ns, [f"link add v{self.name}x type veth peer name {bridge} netns {self.ns}",
                    f"link set v{self.name}x master {bridge} up"])
        _batch(self.ns, [f"addr add {address} dev {bridge}", f"link set {bridge} up"])

    def stop_xcatd(self) -> None:
        p, self.xcatd = self.xcatd, None
        if p is not None:
            if p.poll() is None:
                kill_pid(p.pid, grace=15)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)

    def restart_xcatd(self) -> subprocess.Popen[Any]:
        self.stop_xcatd()
        return self.start_xcatd()

    # ---- in this process ---------------------------------------------------------------------
    @contextlib.contextmanager
    def netns(self) -> Iterator[None]:
        """The calling thread in this node's namespace for the block."""
        with enter_netns(self.ns):
            yield

    def cli(self, cmd: str, *args: str, home: str | os.PathLike[str] | None = None,
            bypass: bool = False, input: str | None = None) -> Result:
        """A command as its console script runs it, in this process and this node's
        namespace: through this node's xcatd (TLS to 127.0.0.1:3001 with the client
        certificate under ``home``, root's by default) or, with ``bypass``, in process."""
        env = self.env(home)
        if bypass:
            env["XCATBYPASS"] = "1"
        else:
            env["XCATHOST"] = f"127.0.0.1:{XCATD_PORT}"
        with self.netns(), environ(env):
            return run_command(cmd, *args, input=input)


class HubLab(Scene):
    """The hub and one xcatd node per name of ``addresses`` ({name: address in NET}), each in
    its own namespace on the hub's bridge (see the module's description)."""

    def __init__(self, workdir: str | os.PathLike[str], addresses: dict[str, str], *,
                 hub: str | None = None) -> None:
        self.id = f"{os.getpid()}-{next(_seq)}"
        self.prefix = f"{NS_PREFIX}{self.id}-"
        #: the hub's namespace: the lab's own, or one it is given (another lab's, such as
        #: xcatd.lab.vmlab's, which that lab deletes); a member at HUB_IP lives in the hub
        self.hub = hub or f"{self.prefix}hub"
        self._own_hub = hub is None
        self.dir = Path(workdir)
        self.members = {name: ManagementNode(self, name, address, self.dir)
                        for name, address in addresses.items()}
        for m in self.members.values():
            if m.address == HUB_IP:
                m.ns = self.hub
        self.procs: list[subprocess.Popen[Any]] = []
        self.fleets: list[Fleet] = []
        self.bmcs: list[IpmiSim] = []
        self._made: list[str] = []

    @property
    def nodes(self) -> list[ManagementNode]:
        return list(self.members.values())

    @property
    def spokes(self) -> list[ManagementNode]:
        """The members in namespaces of their own, on the hub's bridge."""
        return [m for m in self.nodes if m.ns != self.hub]

    # ---- lifetime ----------------------------------------------------------------------------
    def setup(self) -> None:
        reason = usable()
        if reason:
            raise TwoMNError(reason)
        _remove_stale_labs()
        for d in (self.dir, *(m.root for m in self.nodes), *(m.home for m in self.nodes)):
            d.mkdir(parents=True, exist_ok=True)
        for ns in ([self.hub] if self._own_hub else []) + [m.ns for m in self.spokes]:
            _ip("netns", "add", ns)
            self._made.append(ns)
        for ns in (self.hub, *(m.ns for m in self.spokes)):
            _sysctl(ns, "net.ipv4.conf.all.route_localnet=1")  # 127/8 may cross the veths
        _batch(self.hub, ["link set lo up",
                          "link add br0 type bridge forward_delay 0 stp_state 0",
                          f"addr add {HUB_IP}/{PREFIXLEN} dev br0", "link set br0 up"])
        for m in self.spokes:
            port = f"v{m.name}"
            _batch(self.hub, [f"link add {port} type veth peer name eth0 netns {m.ns}",
                              f"link set {port} master br0 up"])
            # UDP to 127.0.0.1 on the BMCs' ports goes to the hub: the local table is looked
            # up after the rules that say so (bmc_ports adds them)
            _batch(m.ns, ["link set lo up", f"addr add {m.address}/{PREFIXLEN} dev eth0",
                          "link set eth0 up",
                          f"route add 127.0.0.1/32 via {HUB_IP} dev eth0 src {m.address} "
                          f"table {BMC_TABLE}",
                          "rule add pref 1000 lookup local", "rule del pref 0 lookup local"])

    def close(self) -> None:
        try:
            for stop in [m.stop_xcatd for m in self.nodes] + \
                    [f.stop for f in self.fleets] + [b.stop for b in self.bmcs]:
                with contextlib.suppress(Exception):  # what is left is killed below
                    stop()
            for p in self.procs:
                if p.poll() is None:  # once reaped, the PID may be someone else's
                    kill_pid(p.pid)
            for ns in self._made:  # anything left in the namespaces
                for pid in netns_pids(ns):
                    kill_pid(pid)
            for p in self.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=5)
        finally:
            for ns in self._made:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            self._made.clear()
            self.fleets.clear()
            self.bmcs.clear()

    def spawn(self, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        """Popen in a new session; stopped by PID when the lab closes."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    # ---- the BMCs ----------------------------------------------------------------------------
    def bmc_ports(self, first: int, last: int | None = None,
                  reach: Sequence[str] | None = None) -> None:
        """UDP from the nodes named in ``reach`` (default: all) to 127.0.0.1:first..last goes
        to the hub."""
        ports = f"{first}-{last}" if last is not None and last != first else str(first)
        for m in (self.members[n] for n in reach) if reach is not None else self.spokes:
            if m.ns == self.hub:
                continue  # the BMCs are on its own 127.0.0.1
            _ip("-n", m.ns, "rule", "add", "pref", "100", "to", "127.0.0.1", "ipproto", "udp",
                "dport", ports, "lookup", BMC_TABLE)

    def start_fleet(self, count: int, reach: Sequence[str] | None = None, **kw: Any) -> Fleet:
        """A fleet of simulated BMCs (xcatd.lab.bmcfleet) on the hub's 127.0.0.1, reached
        at 127.0.0.1:fleet.port(i) from the nodes named in ``reach`` (default: all)."""
        fleet = Fleet(count=count, **kw)
        with enter_netns(self.hub):  # its ports chosen there, its processes started there
            fleet.start()
        self.fleets.append(fleet)
        self.bmc_ports(fleet.base_port, fleet.base_port + count - 1, reach)
        return fleet

    def start_ipmisim(self, workdir: str | os.PathLike[str], **kw: Any) -> IpmiSim:
        """ipmi_sim (xcatd.lab.ipmisim) on the hub's 127.0.0.1, reached from both
        management nodes at 127.0.0.1:bmc.port; its ipmitool runs in the hub."""
        with enter_netns(self.hub):
            port = free_port(socket.SOCK_DGRAM)
        bmc = IpmiSim(Path(workdir), port=port, wrap=["ip", "netns", "exec", self.hub], **kw)
        self.bmcs.append(bmc)
        bmc.start()
        self.bmc_ports(port)
        return bmc


class TwoMN(HubLab):
    """The hub and management nodes ``a`` and ``b``."""

    def __init__(self, workdir: str | os.PathLike[str]) -> None:
        super().__init__(workdir, ADDRESSES)
        self.a, self.b = self.members["a"], self.members["b"]


# ---- helpers ---------------------------------------------------------------------------------
def pg_socket_url(url: str, socket_dir: str | os.PathLike[str], port: int) -> str:
    """A PostgreSQL URL that reaches the server through its unix socket in ``socket_dir``
    (a namespace does not see the host's 127.0.0.1; a socket file is seen everywhere).

    >>> pg_socket_url("postgresql+psycopg://postgres@127.0.0.1:5433/x", "/run/pg", 5433)
    'postgresql+psycopg://postgres@/x?host=%2Frun%2Fpg&port=5433'
    """
    u = make_url(url)
    return URL.create(u.drivername, u.username, u.password, database=u.database,
                      query={**u.query, "host": str(socket_dir), "port": str(port)}
                      ).render_as_string(hide_password=False)


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if r.returncode:
        raise TwoMNError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def _batch(ns: str, lines: list[str]) -> None:
    r = subprocess.run(["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n",
                       capture_output=True, text=True, timeout=30)
    if r.returncode:
        raise TwoMNError(f"ip -n {ns}: {r.stderr.strip()}")


def _sysctl(ns: str, setting: str) -> None:
    r = subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", setting],
                       capture_output=True, text=True, timeout=30)
    if r.returncode:
        raise TwoMNError(f"sysctl {setting} in {ns}: {r.stderr.strip()}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _remove_stale_labs() -> None:
    """Namespaces of labs whose creating process is gone (a run killed before it closed)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir("/run/netns"):
            m = re.match(rf"{re.escape(NS_PREFIX)}(\d+)-\d+-", entry.name)
            if m and not pid_alive(int(m.group(1))):
                for pid in netns_pids(entry.name):
                    kill_pid(pid)
                subprocess.run(["ip", "netns", "del", entry.name], capture_output=True,
                               timeout=30)
