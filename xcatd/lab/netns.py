"""A two-namespace network lab: a server and a client joined by a veth pair, for live DHCP tests.

Nothing leaves the namespaces: the host namespace only creates and deletes them.  Every process
the lab starts runs in its own session and is killed by PID when the lab closes, whatever
happened in the body; the namespaces are deleted last.  Needs root, iproute2, and for the DHCP
helpers isc-dhcp-server and isc-dhcp-client.

    with Lab() as lab:                       # server side 10.77.N.1/24 and fd77:0:0:N::1/64
        conf = tmp / "dhcpd.conf"            # subnet lab.subnet netmask 255.255.255.0 { ... }
        lab.start_dhcpd(conf, tmp)
        lease = lab.dhclient("52:54:00:00:00:01", user_class="iPXE")
        assert lease and lease["ip"] == f"{lab.prefix}.11"
"""
from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from xcatd.lab import Scene, kill_pid, netns_pids

SERVER, CLIENT = "server", "client"
_seq = itertools.count()


class LabError(RuntimeError):
    pass


class Lab(Scene):
    """Two network namespaces (``server``, ``client``) and a veth pair between them."""

    server_if = "labs0"
    client_if = "labc0"

    def __init__(self, n: int | None = None, workdir: str | os.PathLike[str] | None = None):
        k = next(_seq)
        base = f"pyx{os.getpid()}{k % 100}"  # PIDs have <= 7 digits: <= 13 chars with s/c
        self.ns = {SERVER: base + "s", CLIENT: base + "c"}
        self.n = n if n is not None else 1 + (os.getpid() + k) % 250
        self.prefix = f"10.77.{self.n}"
        self.subnet = f"{self.prefix}.0"
        self.server_ip = f"{self.prefix}.1"
        self.server_ip6 = f"fd77:0:0:{self.n:x}::1"
        self._own_dir = workdir is None
        self.dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="pyxlab-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[Any]] = []
        self._made: list[str] = []

    # ---- lifetime (Scene: setup on enter, close on leaving) -------------------------------
    def setup(self) -> None:
        for ns in self.ns.values():
            _ip("netns", "add", ns)
            self._made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        s, c = self.ns[SERVER], self.ns[CLIENT]
        _ip("-n", s, "link", "add", self.server_if, "type", "veth",
            "peer", "name", self.client_if, "netns", c)
        _ip("-n", s, "addr", "add", f"{self.server_ip}/24", "dev", self.server_if)
        _ip("-n", s, "-6", "addr", "add", f"{self.server_ip6}/64", "dev", self.server_if, "nodad")
        _ip("-n", s, "link", "set", self.server_if, "up")
        _ip("-n", c, "link", "set", self.client_if, "up")

    def close(self) -> None:
        try:
            for p in self.procs:
                if p.poll() is None:  # once reaped, the PID may belong to someone else
                    kill_pid(p.pid)
            for ns in self._made:     # anything left in our namespaces (e.g. forked daemons)
                for pid in netns_pids(ns):
                    kill_pid(pid)
            for p in self.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=5)
        finally:
            for ns in self._made:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
            self._made.clear()
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    # ---- processes ---------------------------------------------------------------------
    def _argv(self, ns: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns.get(ns, ns), *map(str, argv)]

    def run(self, ns: str, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """subprocess.run inside namespace ``ns`` ("server" or "client"); 60 s unless told."""
        kw.setdefault("timeout", 60)
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self._argv(ns, argv), **kw)

    def start(self, ns: str, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        """Popen inside ``ns`` in a new session; killed by PID when the lab closes."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self._argv(ns, argv), start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def set_client_mac(self, mac: str) -> None:
        c = self.ns[CLIENT]
        _ip("-n", c, "link", "set", self.client_if, "down")
        _ip("-n", c, "link", "set", self.client_if, "address", mac)
        _ip("-n", c, "link", "set", self.client_if, "up")

    # ---- DHCP --------------------------------------------------------------------------
    def start_dhcpd(self, conf_path: str | os.PathLike[str], leases_dir: str | os.PathLike[str],
                    wait: float = 15) -> subprocess.Popen[Any]:
        """Serve DHCPv4 with ``conf_path`` on the server side of the veth (never on lo)."""
        leases, pidfile = Path(leases_dir) / "dhcpd.leases", Path(leases_dir) / "dhcpd.pid"
        leases.parent.mkdir(parents=True, exist_ok=True)
        leases.touch()
        pidfile.unlink(missing_ok=True)
        err = self.dir / f"dhcpd{len(self.procs)}.err"
        with open(err, "wb") as fh:
            p = self.start(SERVER, ["dhcpd", "-f", "-d", "-4", "-cf", conf_path, "-lf", leases,
                                    "-pf", pidfile, self.server_if],
                           stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if p.poll() is not None:
                break
            out = self.run(SERVER, ["ss", "-H", "-lun", "sport", "= :67"], timeout=10).stdout
            if out.strip():
                return p
            time.sleep(0.1)
        if p.poll() is None:
            kill_pid(p.pid)
        raise LabError(f"dhcpd did not start (rc={p.poll()}):\n{err.read_text(errors='replace')}")

    def start_kea(self, conf: str | os.PathLike[str], timeout: float = 30) -> subprocess.Popen[Any]:
        """Kea's DHCPv4 server on ``conf`` in the server namespace (pid and lock files in the
        lab's directory, its log in ``kea.log`` there), once it listens on port 67."""
        run = self.dir / "kea-run"
        run.mkdir(exist_ok=True)
        log = self.dir / "kea.log"
        with open(log, "ab") as out:
            p = self.start("server", ["kea-dhcp4", "-c", str(conf)],
                           env={**os.environ, "KEA_PIDFILE_DIR": str(run),
                                "KEA_LOCKFILE_DIR": str(run)},
                           stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while ":67 " not in self.run("server", ["ss", "-lun"]).stdout:
            if p.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"kea-dhcp4 did not start: {log.read_text()[-1500:]}")
            time.sleep(0.2)
        return p

    def dhclient(self, mac: str, user_class: str | None = None,
                 timeout: int = 30) -> dict[str, Any] | None:
        """One DHCPv4 exchange from the client side with ``mac``; the lease or None.

        Returns {"ip", "hostname", "domain", "filename", "next_server", "server_name",
        "reason", "env"} where ``env`` holds every variable dhclient gave its script.  The
        script configures nothing, so the client is killed rather than released (a DHCPRELEASE
        is unicast and the client side has no address to send it from)."""
        self.set_client_mac(mac)
        d = Path(tempfile.mkdtemp(prefix="dhclient-", dir=self.dir))
        script, conf = d / "script.sh", d / "dhclient.conf"
        tmp = f'"{d}/.env$$"'  # written whole, then renamed: never read half-written
        script.write_text(f'#!/bin/sh\nenv -0 > {tmp} && mv {tmp} "{d}/env.$reason"\n')
        script.chmod(0o755)
        lines = [f"timeout {timeout};", "retry 1;", "initial-interval 1;", "reboot 0;",
                 "select-timeout 0;",
                 "request subnet-mask, broadcast-address, routers, domain-name, host-name,"
                 " domain-name-servers, tftp-server-name, bootfile-name;"]
        if user_class is not None:
            lines.append(f'send user-class "{user_class}";')
        conf.write_text("\n".join(lines) + "\n")
        argv = ["dhclient", "-4", "-1", "-d", "-v", "-sf", script, "-lf", d / "leases",
                "-pf", d / "pid", "-cf", conf, self.client_if]
        got: Path | None = None
        deadline = time.monotonic() + timeout + 10
        with open(d / "log", "wb") as log:
            p = self.start(CLIENT, argv, stdout=log, stderr=subprocess.STDOUT)
            try:
                while got is None and p.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.1)
                    got = next((d / f"env.{r}" for r in ("BOUND", "REBOOT", "RENEW")
                                if (d / f"env.{r}").exists()), None)
            finally:
                rc = p.poll()
                if rc is None:
                    kill_pid(p.pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=5)
        if got is None:
            if rc not in (None, 2):  # 2: no lease within the timeout
                log_text = (d / "log").read_text(errors="replace")
                raise LabError(f"dhclient failed (rc={rc}):\n{log_text}")
            return None
        env = dict(kv.split("=", 1) for kv in got.read_text().split("\0") if "=" in kv)
        return {"ip": env.get("new_ip_address"), "hostname": env.get("new_host_name"),
                "domain": env.get("new_domain_name"), "filename": env.get("new_filename"),
                "next_server": env.get("new_next_server"),
                "server_name": env.get("new_server_name"), "reason": env.get("reason"),
                "env": env}


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if r.returncode:
        raise LabError(f"ip {' '.join(args)}: {r.stderr.strip()}")


