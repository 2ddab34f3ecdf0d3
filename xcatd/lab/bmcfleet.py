"""A fleet of simulated BMCs on loopback UDP ports, built on pyghmi's Bmc server class, with
faults on request: BMCs that never answer and BMCs with another password.

Run in its own process (pyghmi's event loop is process-wide):

    with Fleet(count=500, dead=[7], badpass=[9]) as fleet:
        ...  # BMC i answers on 127.0.0.1:fleet.port(i) = fleet.base_port+i as admin/secret

Without a ``base_port`` the fleet takes a block of free consecutive UDP ports
(xcatd.lab.ports.free_port_block) when it starts, and another block if a port of it was
taken before the fleet could bind it.

One fix of pyghmi 1.6.19 lives here, on the server side: its Bmc answers a cipher suite 17
(SHA-256) proposal with suite-3 algorithms, so its own client's login dies in RAKP2
(struct.error). A real BMC that cannot do suite 17 refuses the proposal; this one now does
too (RMCP+ status 0x11), and the client retries with suite 3.

A second fix, for the same socket shared by pyghmi's I/O thread and the thread that answers:
its send helper switches the socket to blocking and its receive helper back to non-blocking,
so a send between the two leaves the receiver blocked in recvfrom and the BMC stops
answering until another packet happens to arrive. Sends here leave the mode alone
(``patch_blocking_toggle``).

Known limit of pyghmi's server, not worked around: it finds a client's session by the
client's address and port, and its session close is a stub, so a client that lost a session
with a simulated BMC cannot open a new one from the same socket.
"""
from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time

from xcatd.lab import stop_process_group
from xcatd.lab.ports import free_port_block

NO_MATCHING_CIPHER = 0x11


class PortTaken(RuntimeError):
    """A shard could not bind a port of its block: another process took it meanwhile."""


def patch_blocking_toggle() -> None:
    import pyghmi.ipmi.private.session as ps
    if getattr(ps._io_sendto, "_pyxcat_fixed", False):
        return

    def io_sendto(sock, packet, sockaddr):
        try:
            sock.sendto(packet, sockaddr)  # UDP on a local socket: never worth blocking for
        except OSError:
            pass

    io_sendto._pyxcat_fixed = True
    ps._io_sendto = io_sendto


def patch_cipher_negotiation() -> None:
    import pyghmi.ipmi.private.serversession as ss
    original = ss.ServerSession.create_open_session_response
    if getattr(original, "_pyxcat_fixed", False):
        return

    def create_open_session_response(self, request):
        # bytes 12 and 20: the proposed authentication and integrity algorithms
        if request[12] != 1 or request[20] != 1:
            self.clientsessionid = request[4:8]
            return bytearray([request[0], NO_MATCHING_CIPHER, 0, 0]) + request[4:8]
        return original(self, request)

    create_open_session_response._pyxcat_fixed = True
    ss.ServerSession.create_open_session_response = create_open_session_response


def serve(base_port: int, count: int, user: str, password: str, dead: set[int],
          badpass: set[int]) -> None:
    import pyghmi.ipmi.bmc as bmc
    import pyghmi.ipmi.private.session as ipmisession
    patch_cipher_negotiation()
    patch_blocking_toggle()

    class SimBmc(bmc.Bmc):
        def __init__(self, authdata, port):
            super().__init__(authdata, port=port, address="127.0.0.1")
            self.power, self.boot = "off", "default"

        def get_power_state(self):
            return self.power

        def power_on(self):
            self.power = "on"

        def power_off(self):
            self.power = "off"

        def power_shutdown(self):
            self.power = "off"

        def power_cycle(self):
            self.power = "on"

        def power_reset(self):
            pass

        def pulse_diag(self):
            pass

        def is_active(self):
            return self.power == "on"

        def get_boot_device(self):
            return self.boot

        def set_boot_device(self, device):
            self.boot = device

    keep = []
    for i in range(count):
        port = base_port + i
        if i in dead:  # bound, never answers: a BMC that is down
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", port))
            keep.append(s)
        else:
            keep.append(SimBmc({user: password + ("-other" if i in badpass else "")}, port))
    print("ready", flush=True)
    while True:
        ipmisession.Session.wait_for_rsp(30)


class Fleet:
    """The fleet as subprocesses of at most ``per_process`` BMCs each (pyghmi's server loop
    walks every socket and session on each turn, so one process of 1,000 BMCs answers a few
    dozen logins a second; shards of 100 keep up), stopped by PID. ``base_port`` None: a
    free block, chosen at start (``base_port`` is set then)."""

    def __init__(self, base_port: int | None = None, count: int = 1, *, user: str = "admin",
                 password: str = "secret", dead: list[int] = (), badpass: list[int] = (),
                 per_process: int = 100):
        self.base_port, self.count = base_port, count
        self._choose_port = base_port is None
        self.user, self.password = user, password
        self.dead, self.badpass = list(dead), list(badpass)
        self.per_process = per_process
        self.procs: list[subprocess.Popen] = []

    def port(self, i: int) -> int:
        return self.base_port + i

    def start(self, timeout: float = 60) -> Fleet:
        if not self._choose_port:
            return self._start(timeout)
        tries = 3
        while True:
            self.base_port = free_port_block(self.count, socket.SOCK_DGRAM)
            try:
                return self._start(timeout)
            except PortTaken:
                tries -= 1
                if not tries:
                    raise

    def _start(self, timeout: float) -> Fleet:
        try:
            for first in range(0, self.count, self.per_process):
                n = min(self.per_process, self.count - first)
                local = range(first, first + n)
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "xcatd.lab.bmcfleet",
                     "--base-port", str(self.base_port + first), "--count", str(n),
                     "--user", self.user, "--password", self.password,
                     "--dead", json.dumps([i - first for i in self.dead if i in local]),
                     "--badpass", json.dumps([i - first for i in self.badpass if i in local])],
                    stdout=subprocess.PIPE, stderr=self._log(), text=True,
                    start_new_session=True))
            deadline = time.monotonic() + timeout
            for proc in self.procs:
                line = ""
                while time.monotonic() < deadline and "ready" not in line:
                    line = proc.stdout.readline()
                    if not line and proc.poll() is not None:
                        self._errlog.seek(0)
                        err = self._errlog.read()[-1500:]
                        kind = PortTaken if "Address already in use" in err else RuntimeError
                        raise kind(f"the BMC fleet exited: {err}")
                if "ready" not in line:
                    raise RuntimeError("the BMC fleet did not start in time")
        except BaseException:
            self.stop()
            raise
        return self

    def _log(self):
        """The shards' stderr goes to one unread temporary file, never to a pipe: a pipe
        nobody drains fills up with pyghmi's tracebacks and freezes the shard."""
        if getattr(self, "_errlog", None) is None:
            import tempfile
            self._errlog = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in stop)
        return self._errlog

    def errors(self) -> str:
        """What the shards printed on stderr (pyghmi server tracebacks)."""
        if getattr(self, "_errlog", None) is None:
            return ""
        self._errlog.flush()
        self._errlog.seek(0)
        return self._errlog.read()

    def stop(self) -> None:
        for proc in self.procs:
            stop_process_group(proc, grace=0)  # a simulator: nothing to shut down cleanly
            proc.stdout.close()
        self.procs = []
        if getattr(self, "_errlog", None) is not None:
            self._errlog.close()
            self._errlog = None

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base-port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--user", default="admin")
    ap.add_argument("--password", default="secret")
    ap.add_argument("--dead", default="[]")
    ap.add_argument("--badpass", default="[]")
    a = ap.parse_args()
    serve(a.base_port, a.count, a.user, a.password, set(json.loads(a.dead)),
          set(json.loads(a.badpass)))


if __name__ == "__main__":
    main()
