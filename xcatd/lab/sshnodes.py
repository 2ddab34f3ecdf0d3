"""Real OpenSSH nodes for the parallel shell: one network namespace per node, each with its own
sshd, host name, host keys and private /tmp, /var/tmp and /root, all behind a bridge in a
management-node namespace.

The management-node namespace holds a bridge with ``mn_ip`` (10.88.0.1/16); every node is a
namespace with a veth into that bridge and an address from 10.88.0.0/16 (n001 is 10.88.1.1).
Nothing is sent from the host namespace, and the host's own sshd and port 22 are never
touched: commands that talk to the nodes run in the management-node namespace (``mn_run``).

A node is a small holder process (``sleep``) in the node's network namespace and in its own
mount and UTS namespaces: host name = node name; private tmpfs on /tmp, /var/tmp, /root, /run
and /var/log; a private, writable /etc (an overlay on the host's, its changes in the node's
/run: xdcp's MERGE into /etc/passwd); the root file system read-only, so a stray copy never
lands on the host; root's
authorized_keys seeded with the management node root's public key. Its sshd runs in those
namespaces (``-D -e``, ListenAddress the node's address) with the node's own host keys from
``nodekeys.node_host_keys``, so a known_hosts file built from them verifies for real.
Stopping a node's sshd (``stop_sshd``) leaves the node in place: its address refuses
connections and its files stay until ``start_sshd``.

The lab's files (sshd configs, host keys, one log per node) live in a directory under
/var/lib/pyxcat-lab that the nodes' private mounts do not hide. Closing the lab kills every
process it started and every process left in its namespaces by PID, deletes the bridge and
the namespaces by name, then the directory, whatever happened in the body; a lab left by a
killed test run is removed by the next one that starts. Needs root, iproute2, util-linux
(nsenter, unshare) and openssh-server.

    with SshCluster(50, paths) as lab:                    # n001..n050
        kh = tmp / "known_hosts"
        kh.write_text(lab.known_hosts())
        r = lab.mn_run(lab.ssh_argv("n007", "hostname", known_hosts=kh))
        assert r.stdout == "n007\\n"
        lab.node_run("n007", ["cat", "/tmp/copied"])      # inside the node
"""
from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xcatd.base.paths import Paths
from xcatd.lab import Scene, enter_netns, kill_pid, pid_alive
from xcatd.security import nodekeys

SSHD = "/usr/sbin/sshd"
NS_PREFIX = "pyxssh-"                   # pyxssh-<pid>-<lab>-mn, pyxssh-<pid>-<lab>-<node>
LAB_ROOT = Path("/var/lib/pyxcat-lab")  # <LAB_ROOT>/sshnodes-<pid>-<lab>/
BRIDGE = "br0"
NET, PREFIXLEN = "10.88", 16
MN_IP = f"{NET}.0.1"
MAX_NODES = 1000                        # a bridge holds at most 1024 ports
#: what a node gets as private tmpfs (its root file system is read-only)
PRIVATE = {"/tmp": "mode=1777,size=1g", "/var/tmp": "mode=1777,size=1g",
           "/root": "mode=700,size=256m", "/run": "mode=755,size=16m",
           "/var/log": "mode=755,size=64m"}
QUIET_ABOVE = 200                       # more nodes than this: sshd logs errors only
WINDOW = 64                             # nodes starting at once
START_TIMEOUT = 60                      # seconds a node may take to come up
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_REQUIRED = (("ip", "iproute2"), ("bridge", "iproute2"), ("nsenter", "util-linux"),
             ("unshare", "util-linux"), ("mount", "mount"), ("sleep", "coreutils"))
_seq = itertools.count()

# The holder: sets the node up inside its namespaces, then sleeps, keeping them alive.
# $1 name, $2 address/prefix, $3 MN address, $4 MN MAC, $5 fstab, $6 sleep; $PYX_KEYS the
# authorized_keys text.
_HOLDER = r"""set -e
for f in all default; do echo 1 2>/dev/null >/proc/sys/net/ipv6/conf/$f/disable_ipv6 || :; done
printf '%s\n' "$1" >/proc/sys/kernel/hostname
printf 'link set lo up\naddr add %s dev eth0\nlink set eth0 up\n\
neigh replace %s lladdr %s dev eth0 nud permanent\n' "$2" "$3" "$4" | ip -batch -
mount -a -T "$5"
mkdir /run/etc-up /run/etc-work
mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/etc-up,workdir=/run/etc-work /etc
mount -o remount,bind,ro /
mkdir -m 700 /root/.ssh /run/sshd
umask 077
printf '%s' "$PYX_KEYS" >/root/.ssh/authorized_keys
unset PYX_KEYS
exec "$6" infinity
"""

# Run in the MN namespace: connect to a closed port of every node; "refused" proves the node
# answers through the bridge. Prints the addresses that did not answer.
_PROBE = r"""
import errno, selectors, socket, sys, time
left = set(sys.argv[2:]); deadline = time.monotonic() + float(sys.argv[1])
while left and time.monotonic() < deadline:
    sel = selectors.DefaultSelector(); batch = sorted(left)[:256]
    for ip in batch:
        s = socket.socket(); s.setblocking(False); s.connect_ex((ip, 1))
        sel.register(s, selectors.EVENT_WRITE, ip)
    end = min(deadline, time.monotonic() + 2)
    while sel.get_map() and time.monotonic() < end:
        for key, _ in sel.select(0.2):
            s = key.fileobj
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) in (0, errno.ECONNREFUSED):
                left.discard(key.data)
            sel.unregister(s); s.close()
    for key in list(sel.get_map().values()):
        key.fileobj.close()
print(" ".join(sorted(left)))
"""


class SshLabError(RuntimeError):
    """The lab could not be built or a node's sshd would not start; the message says why
    (with the node's log)."""


def usable() -> str | None:
    """Why the SSH lab cannot run here, or None: tests turn the reason into a skip."""
    if os.geteuid() != 0:
        return "the SSH node lab needs root (network, mount and UTS namespaces)"
    if not os.access(SSHD, os.X_OK):
        return f"the SSH node lab needs {SSHD} (Debian package openssh-server)"
    for tool, package in _REQUIRED:
        if not shutil.which(tool):
            return f"the SSH node lab needs {tool} (Debian package {package})"
    return None


def node_ip(index: int) -> str:
    """The address of the index-th node (0-based): 10.88.1.1 ... 10.88.1.250, 10.88.2.1 ..."""
    return f"{NET}.{1 + index // 250}.{1 + index % 250}"


def _mac(ip: str) -> str:
    a, b, c, d = (int(x) for x in ip.split("."))
    return f"02:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}"


@dataclass
class SshNode:
    """One node: its name, address, network namespace, the PID of its sshd (None while
    stopped) and of the holder process that keeps its namespaces."""

    name: str
    ip: str
    ns: str
    pid: int | None = None
    holder: int | None = None
    dir: Path = field(default=Path(), repr=False)
    index: int = 0

    @property
    def log(self) -> Path:
        """The node's log: the holder's errors, then sshd's."""
        return self.dir / "log"


class SshCluster(Scene):
    """``count`` OpenSSH nodes (``prefix`` + number, zero-padded to the width of ``count``
    and at least 3 digits, or ``names``) behind a bridge in the management-node namespace.

    ``sshd_options`` adds or replaces sshd_config keywords (``{"LogLevel": "DEBUG1"}``; a list
    value repeats the keyword, None removes it). ``workdir`` keeps the lab's files there (not
    removed at close; it must not lie under a directory the nodes mount privately)."""

    def __init__(self, count: int, paths: Paths, *, prefix: str = "n",
                 names: Sequence[str] | None = None,
                 workdir: str | os.PathLike[str] | None = None,
                 sshd_options: dict[str, Any] | None = None) -> None:
        if names is None:
            width = max(3, len(str(count)))
            names = [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]
        elif count != len(names):
            raise ValueError(f"{count} nodes asked for, but {len(names)} names given")
        names = list(names)
        if not 1 <= len(names) <= MAX_NODES:
            raise ValueError(f"an SSH lab holds 1 to {MAX_NODES} nodes, not {len(names)}")
        bad = [n for n in names if not _NAME.fullmatch(n)]
        if bad:
            raise ValueError(f"'{bad[0]}' cannot be a lab node's host name")
        if len(set(names)) != len(names):
            raise ValueError("the node names repeat")
        k = next(_seq)
        self.id = f"{os.getpid()}-{k}"
        self.paths = paths
        self.mn_ns = f"{NS_PREFIX}{self.id}-mn"
        self.mn_ip = MN_IP
        self.subnet = f"{NET}.0.0/{PREFIXLEN}"
        self.nodes = [SshNode(name, node_ip(i), f"{NS_PREFIX}{self.id}-{name}", index=i)
                      for i, name in enumerate(names)]
        self._by_name = {n.name: n for n in self.nodes}
        self._own_dir = workdir is None
        self.dir = Path(workdir) if workdir is not None else LAB_ROOT / f"sshnodes-{self.id}"
        hidden = [p for p in PRIVATE
                  if self.dir.resolve().is_relative_to(Path(p).resolve())]
        if hidden:
            raise ValueError(f"{self.dir}: the nodes mount {hidden[0]} privately and would "
                             "not see the lab's files there")
        for n in self.nodes:
            n.dir = self.dir / "nodes" / n.name
        quiet = len(names) > QUIET_ABOVE
        self.sshd_options = _merge(_defaults(quiet), sshd_options or {})
        self._procs: dict[int, subprocess.Popen[Any]] = {}   # PID -> every process started
        self._sshd: dict[str, subprocess.Popen[Any]] = {}
        self._made = False

    # ---- lifetime --------------------------------------------------------------------------
    def __enter__(self) -> SshCluster:
        reason = usable()
        if reason:
            raise SshLabError(reason)
        return super().__enter__()

    def setup(self) -> None:
        """Build the namespaces and links, start every node and wait until all listen."""
        _remove_stale_labs()
        self._made = True
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._write_files()
        _batch(["ip", "-batch", "-"],
               [f"netns add {ns}" for ns in (self.mn_ns, *(n.ns for n in self.nodes))])
        _run(["ip", "netns", "exec", self.mn_ns, "sh", "-c",
              "for f in all default; do echo 1 >/proc/sys/net/ipv6/conf/$f/disable_ipv6 "
              "2>/dev/null || :; done"])
        lines = ["link set lo up",
                 f"link add {BRIDGE} address {_mac(MN_IP)} type bridge forward_delay 0 "
                 "stp_state 0 mcast_snooping 0",
                 f"addr add {MN_IP}/{PREFIXLEN} dev {BRIDGE}", f"link set {BRIDGE} up"]
        for n in self.nodes:
            port = f"v{n.index}"
            lines += [f"link add {port} type veth peer name eth0 address {_mac(n.ip)} "
                      f"netns {n.ns}",
                      f"link set {port} master {BRIDGE} up",
                      f"neigh replace {n.ip} lladdr {_mac(n.ip)} dev {BRIDGE} nud permanent"]
        _batch(["ip", "-n", self.mn_ns, "-batch", "-"], lines)
        # static forwarding entries: the bridge never floods a first packet to every port
        _batch(["bridge", "-n", self.mn_ns, "-batch", "-"],
               [f"fdb replace {_mac(n.ip)} dev v{n.index} master static" for n in self.nodes])
        self._start_holders()
        self._start_sshds(self.nodes)
        self._probe()

    def close(self) -> None:
        """Kill every process by PID, delete the bridge and namespaces, remove the files."""
        if not self._made:
            return
        names = [self.mn_ns, *(n.ns for n in self.nodes)]
        try:
            # only processes not reaped yet: a reaped one's PID may be someone else's now
            _kill_all([pid for pid, p in self._procs.items() if p.poll() is None], names)
            for p in self._procs.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=5)
        finally:
            try:
                subprocess.run(["ip", "-n", self.mn_ns, "link", "del", BRIDGE],
                               capture_output=True, timeout=60)
            finally:
                try:
                    subprocess.run(["ip", "-force", "-batch", "-"],
                                   input="".join(f"netns del {ns}\n" for ns in names),
                                   capture_output=True, text=True, timeout=300)
                finally:
                    self._made = False
                    for n in self.nodes:
                        n.pid = n.holder = None
                    self._procs.clear()
                    self._sshd.clear()
                    if self._own_dir:
                        shutil.rmtree(self.dir, ignore_errors=True)
                        with contextlib.suppress(OSError):  # the last lab out
                            LAB_ROOT.rmdir()

    # ---- the nodes -------------------------------------------------------------------------
    def node(self, name: str) -> SshNode:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{name} is not a node of this lab") from None

    def hosts(self) -> list[tuple[str, str]]:
        """(name, address) of every node, for the hosts table."""
        return [(n.name, n.ip) for n in self.nodes]

    def known_hosts(self, names: Iterable[str] | None = None) -> str:
        """The management node's known_hosts lines for the nodes (each by name and
        address), from their own host keys."""
        wanted = [self.node(x) for x in names] if names is not None else self.nodes
        return "".join(nodekeys.known_hosts_line(self.paths, n.name, [n.name, n.ip])
                       for n in wanted)

    def ssh_argv(self, name: str, *command: str, known_hosts: str | os.PathLike[str],
                 options: Sequence[str] = ()) -> list[str]:
        """OpenSSH's client as the management node's root to ``name``, strict about host
        keys (``known_hosts``) and ignoring the host's own ssh configuration and keys: run it
        with ``mn_run``."""
        key = nodekeys.root_private_key(self.paths)
        opts = ["BatchMode=yes", "IdentitiesOnly=yes", "IdentityAgent=none",
                "StrictHostKeyChecking=yes", f"UserKnownHostsFile={known_hosts}",
                "GlobalKnownHostsFile=/dev/null", "ConnectTimeout=10", *options]
        return ["ssh", "-F", "/dev/null", "-i", str(key),
                *itertools.chain.from_iterable(("-o", o) for o in opts),
                f"root@{self.node(name).ip}", *command]

    def share_keys(self, paths: Paths) -> None:
        """Give the management node under ``paths`` this lab's root key pair and the nodes'
        host keys, so it reaches the nodes (and checks them) as the lab's own MN does."""
        src = self.paths.under("/root/.ssh")
        dst = paths.under("/root/.ssh")
        dst.mkdir(mode=0o700, parents=True, exist_ok=True)
        for pub in nodekeys.ROOT_KEY_FILES:
            for f in (pub, pub.removesuffix(".pub")):
                if (src / f).is_file():
                    shutil.copy2(src / f, dst / f)
        for n in self.nodes:
            target = nodekeys.hostkey_dir(paths, n.name)
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.copytree(nodekeys.hostkey_dir(self.paths, n.name), target)

    def stop_sshd(self, name: str) -> None:
        """Kill the node's sshd: its address stays, and refuses connections (sessions already
        open go on, as when an admin stops sshd)."""
        n = self.node(name)
        p = self._sshd.pop(name, None)
        if p is not None:
            if p.poll() is None:
                kill_pid(p.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
            if p.returncode is not None:
                self._procs.pop(p.pid, None)
        n.pid = None

    def start_sshd(self, name: str) -> SshNode:
        """Start the node's sshd again (its files are as they were) and wait until it
        listens."""
        n = self.node(name)
        if n.pid is not None and pid_alive(n.pid):
            return n
        self._start_sshds([n])
        return n

    def log(self, name: str) -> str:
        """The node's log (empty when it has none)."""
        try:
            return self.node(name).log.read_text(errors="replace")
        except OSError:
            return ""

    # ---- running things --------------------------------------------------------------------
    def mn_argv(self, argv: Sequence[Any]) -> list[str]:
        """``argv`` as run inside the management-node namespace."""
        return ["ip", "netns", "exec", self.mn_ns, *map(str, argv)]

    def mn_run(self, argv: Sequence[Any], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """subprocess.run inside the management-node namespace (text, output captured, 60 s
        unless told)."""
        return subprocess.run(self.mn_argv(argv), **_run_defaults(kw))

    def mn_popen(self, argv: Sequence[Any], **kw: Any) -> subprocess.Popen[Any]:
        """Popen inside the management-node namespace, in a new session; killed by PID when
        the lab closes."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self.mn_argv(argv), start_new_session=True, **kw)
        self._procs[p.pid] = p
        return p

    @contextlib.contextmanager
    def mn_netns(self) -> Iterator[None]:
        """The calling thread in the management-node namespace for the block, for clients
        that run in process. Sockets opened and threads started inside stay in it."""
        with enter_netns(self.mn_ns):
            yield

    def node_argv(self, name: str, argv: Sequence[Any]) -> list[str]:
        """``argv`` as run inside the node (its network, mounts and host name)."""
        holder = self.node(name).holder
        if holder is None:
            raise SshLabError(f"{name}: the lab is not running")
        return ["nsenter", "-t", str(holder), "-n", "-m", "-u", "--", *map(str, argv)]

    def node_run(self, name: str, argv: Sequence[Any],
                 **kw: Any) -> subprocess.CompletedProcess[Any]:
        """subprocess.run inside the node, e.g. to read a file that xdcp wrote there."""
        return subprocess.run(self.node_argv(name, argv), **_run_defaults(kw))

    # ---- inside ----------------------------------------------------------------------------
    def _write_files(self) -> None:
        keys = nodekeys.root_public_keys(self.paths)
        self._keys = keys
        (self.dir / "fstab").write_text(
            "".join(f"pyxcat-lab {d} tmpfs {o} 0 0\n" for d, o in PRIVATE.items()))
        for n in self.nodes:
            n.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            hostkeys = nodekeys.node_host_keys(self.paths, n.name)
            opts = _merge(self.sshd_options, {"ListenAddress": n.ip, "HostKey": [
                str(n.dir / f"ssh_host_{kind}_key") for kind in hostkeys]})
            for kind, pair in hostkeys.items():
                fd = os.open(n.dir / f"ssh_host_{kind}_key",
                             os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(pair["private"])
            (n.dir / "sshd_config").write_text(_render(opts))

    def _spawn(self, argv: list[str], node: SshNode, env: dict[str, str]) -> subprocess.Popen:
        with open(node.log, "ab") as log:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True, env=env)
        self._procs[p.pid] = p
        return p

    def _start_holders(self) -> None:
        sleep = os.path.realpath(shutil.which("sleep") or "/bin/sleep")
        env = {**_ENV, "PYX_KEYS": self._keys}

        def start(n: SshNode) -> subprocess.Popen[Any]:
            p = self._spawn(["nsenter", f"--net=/run/netns/{n.ns}", "--",
                             "unshare", "--uts", "--mount", "--propagation", "private", "--",
                             "/bin/sh", "-c", _HOLDER, "holder", n.name,
                             f"{n.ip}/{PREFIXLEN}", MN_IP, _mac(MN_IP),
                             str(self.dir / "fstab"), sleep], n, env)
            n.holder = p.pid
            return p

        def ready(n: SshNode, p: subprocess.Popen[Any]) -> bool:
            try:
                return os.readlink(f"/proc/{p.pid}/exe") == sleep  # set up, now holding
            except OSError:
                return False
        self._launch(self.nodes, start, ready, "the node did not come up")

    def _start_sshds(self, nodes: list[SshNode]) -> None:
        """Start the nodes' sshds (many at once) and wait until each listens."""
        port = int(self.sshd_options.get("port", ("Port", ["22"]))[1][0])

        def start(n: SshNode) -> subprocess.Popen[Any]:
            p = self._spawn(["nsenter", "-t", str(n.holder), "-n", "-m", "-u", "--",
                             SSHD, "-D", "-e", "-f", str(n.dir / "sshd_config")], n, _ENV)
            self._sshd[n.name] = p
            n.pid = p.pid
            return p

        def ready(n: SshNode, p: subprocess.Popen[Any]) -> bool:
            return _listens(n.holder, f"{_hex_ip(n.ip)}:{port:04X}")
        self._launch(nodes, start, ready, f"sshd did not listen on port {port}")

    @staticmethod
    def _launch(nodes: list[SshNode], start: Callable[[SshNode], subprocess.Popen[Any]],
                ready: Callable[[SshNode, subprocess.Popen[Any]], bool], failed: str) -> None:
        """start(node) for every node, WINDOW of them in flight at once, until ready(node,
        process); SshLabError with the node's log when one exits or takes too long."""
        queue = list(reversed(nodes))
        flying: dict[str, tuple[SshNode, subprocess.Popen[Any], float]] = {}
        while queue or flying:
            while queue and len(flying) < WINDOW:
                n = queue.pop()
                flying[n.name] = (n, start(n), time.monotonic() + START_TIMEOUT)
            for name, (n, p, deadline) in list(flying.items()):
                if ready(n, p):
                    del flying[name]
                elif p.poll() is not None or time.monotonic() > deadline:
                    why = f"rc={p.returncode}" if p.returncode is not None else "in time"
                    log = n.log.read_text(errors="replace") if n.log.exists() else ""
                    raise SshLabError(f"{name}: {failed} ({why}):\n{_tail(log)}")
            if flying:
                time.sleep(0.005)

    def _probe(self) -> None:
        """Every node answers the management-node namespace through the bridge."""
        r = self.mn_run([sys.executable, "-I", "-c", _PROBE, "30",
                         *(n.ip for n in self.nodes)], timeout=120)
        silent = r.stdout.split()
        if r.returncode or silent:
            raise SshLabError(f"nodes do not answer {self.mn_ip} through the bridge: "
                              f"{' '.join(silent[:10]) or r.stderr.strip()}")


# ---- helpers -------------------------------------------------------------------------------
_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8"}


def _defaults(quiet: bool) -> dict[str, tuple[str, list[str]]]:
    return _merge({}, {
        "Port": "22", "PermitRootLogin": "prohibit-password", "PubkeyAuthentication": "yes",
        "PasswordAuthentication": "no", "KbdInteractiveAuthentication": "no",
        "UsePAM": "no", "StrictModes": "no", "MaxStartups": "1000:30:1000",
        "MaxSessions": "200", "PidFile": "none", "UseDNS": "no", "PrintMotd": "no",
        "PrintLastLog": "no", "X11Forwarding": "no", "AuthorizedKeysFile":
        ".ssh/authorized_keys", "Subsystem": "sftp internal-sftp",
        "LogLevel": "ERROR" if quiet else "INFO"})


def _merge(base: dict[str, tuple[str, list[str]]],
           extra: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    """sshd_config keywords: lower case -> (keyword, values); a list repeats, None removes."""
    out = dict(base)
    for key, value in extra.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key):
            raise ValueError(f"'{key}' is not an sshd_config keyword")
        if value is None:
            out.pop(key.lower(), None)
            continue
        values = [value] if isinstance(value, (str, int)) else list(value)
        if any("\n" in str(v) for v in values):
            raise ValueError(f"the value of {key} holds a newline")
        out[key.lower()] = (key, [str(v) for v in values])
    return out


def _render(opts: dict[str, tuple[str, list[str]]]) -> str:
    # Match blocks last: every keyword after a Match line belongs to it
    items = sorted(opts.items(), key=lambda kv: kv[0] == "match")
    return "".join(f"{key} {v}\n" for _, (key, values) in items for v in values)


def _run_defaults(kw: dict[str, Any]) -> dict[str, Any]:
    kw.setdefault("timeout", 60)
    if "stdout" not in kw and "stderr" not in kw:
        kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("stdin", None if "input" in kw else subprocess.DEVNULL)
    return kw


def _hex_ip(ip: str) -> str:
    """An IPv4 address as /proc/net/tcp prints it."""
    return socket.inet_aton(ip)[::-1].hex().upper()


def _listens(pid: int | None, local: str) -> bool:
    """Whether a socket listens on ``local`` (HEXIP:PORT) in the network namespace of
    ``pid``."""
    try:
        text = Path(f"/proc/{pid}/net/tcp").read_text()
    except OSError:
        return False
    return any(f[1] == local and f[3] == "0A"
               for f in (line.split() for line in text.splitlines()[1:]) if len(f) > 3)


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.splitlines()[-lines:]) or "(no log)"


def _run(argv: list[str]) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if r.returncode:
        raise SshLabError(f"{' '.join(argv[:4])}...: {r.stderr.strip()}")


def _batch(argv: list[str], lines: list[str]) -> None:
    """One iproute2 process for many commands; the error names the failing line."""
    r = subprocess.run(argv, input="".join(f"{x}\n" for x in lines), capture_output=True,
                       text=True, timeout=600)
    if r.returncode:
        raise SshLabError(f"{' '.join(argv)}: {r.stderr.strip()[-2000:]}")


def _namespace_pids(names: Iterable[str]) -> set[int]:
    """Every process in the named network namespaces (one pass over /proc)."""
    inodes = set()
    for ns in names:
        with contextlib.suppress(OSError):
            inodes.add(os.stat(f"/run/netns/{ns}").st_ino)
    found = set()
    if not inodes:
        return found
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry.name}/ns/net").st_ino in inodes:
                    found.add(int(entry.name))
    return found


def _kill_all(pids: Iterable[int], namespaces: list[str], grace: float = 3) -> None:
    """kill_pid for many processes at once: SIGTERM to each process group (or process) and
    to everything in ``namespaces``, SIGKILL to what is left after ``grace`` seconds."""
    def send(pid: int, sig: int) -> None:
        for fn in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                fn(pid, sig)
                return
    ours = {pid for pid in pids if pid_alive(pid)}
    targets = ours | _namespace_pids(namespaces)
    for pid in targets:
        send(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        targets = {pid for pid in targets if pid_alive(pid)}
        if not targets:
            break
        time.sleep(0.05)
    for _ in range(3):  # forked meanwhile (a connection that came in late): no mercy
        targets = {pid for pid in targets | _namespace_pids(namespaces) if pid_alive(pid)}
        if not targets:
            return
        for pid in targets:
            send(pid, signal.SIGKILL)
        time.sleep(0.1)


def _remove_stale_labs() -> None:
    """Delete labs whose creating process is gone (a test run killed before its finalizer)."""
    stale: dict[str, list[str]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/run/netns"):
            m = re.match(rf"{re.escape(NS_PREFIX)}(\d+)-\d+-", entry.name)
            if m and not pid_alive(int(m.group(1))):
                stale.setdefault(m.group(1), []).append(entry.name)
    for names in stale.values():
        _kill_all([], names)
        subprocess.run(["ip", "-force", "-batch", "-"],
                       input="".join(f"netns del {ns}\n" for ns in names),
                       capture_output=True, text=True, timeout=300)
    with contextlib.suppress(OSError):
        for entry in os.scandir(LAB_ROOT):
            m = re.fullmatch(r"sshnodes-(\d+)-\d+", entry.name)
            if m and not pid_alive(int(m.group(1))):
                shutil.rmtree(entry.path, ignore_errors=True)
