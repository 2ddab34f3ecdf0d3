"""OpenIPMI's ipmi_sim as a real BMC on 127.0.0.1, for tests.

Chassis mode (no VM needed): power is driven by a chassis-control script that keeps the state
in a file; ipmi_sim calls it for `get power`, `set power 0|1` and `set boot`. Stopped by PID.

    with IpmiSim(tmp_path) as bmc:
        bmc.ipmitool("chassis", "power", "on")

VM mode (``startcmd`` and ``vm_port`` given): power on runs ``startcmd``, which must ``exec``
QEMU so ipmi_sim tracks QEMU's pid; QEMU connects back to ``vm_port`` (ipmi-bmc-extern) and
power off kills it. Boot-device commands fail in this mode. ``wrap`` prefixes every command
(ipmi_sim and ipmitool), e.g. ``["ip", "netns", "exec", NS]`` to run both in a namespace;
xcatd.lab.vmlab builds on this.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from xcatd.lab import stop_process_group
from xcatd.lab.ports import free_port

EMU = """mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
"""

CHASSIS = """#!/bin/sh
# ipmi_sim chassis control: <dev> get power | set power 0|1 | set boot <dev>
case "$2 $3" in
  "get power") if [ -f "{state}" ]; then echo "power:$(cat "{state}")"; else echo "power:0"; fi ;;
  "set power") echo "$4" > "{state}" ;;
  "set boot") echo "$4" > "{boot}" ;;
esac
"""


class IpmiSim:
    def __init__(self, workdir: Path, user: str = "admin", password: str = "secret",
                 port: int | None = None, *, startcmd: str | Path | None = None,
                 vm_port: int | None = None, addr: str = "127.0.0.1",
                 wrap: Sequence[str] = (), emu_extra: str = "") -> None:
        if (startcmd is None) != (vm_port is None):
            raise ValueError("VM mode needs both startcmd and vm_port")
        self.dir = Path(workdir)
        self.user, self.password = user, password
        self.addr = addr
        self.port = port or free_port(socket.SOCK_DGRAM)
        self.startcmd, self.vm_port = startcmd, vm_port
        self.wrap = list(wrap)
        self.emu_extra = emu_extra  # more ipmi_sim commands (FRU, SDRs, SEL)
        self.proc: subprocess.Popen | None = None

    @property
    def power_file(self) -> Path:
        return self.dir / "power"

    def start(self, timeout: float = 20) -> IpmiSim:
        if not shutil.which("ipmi_sim"):
            raise RuntimeError("ipmi_sim is not installed (Debian package openipmi)")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "state").mkdir(exist_ok=True)
        (self.dir / "bmc.emu").write_text(EMU + self.emu_extra)
        conf = self.dir / "lan.conf"
        conf.write_text(self.lan_conf())
        conf.chmod(0o600)  # holds the BMC password
        with open(self.dir / "ipmi_sim.log", "w") as log:
            self.proc = subprocess.Popen(
                [*self.wrap, "ipmi_sim", "-c", str(conf), "-f", str(self.dir / "bmc.emu"),
                 "-s", str(self.dir / "state"), "-n"], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ipmi_sim exited: "
                                   + (self.dir / "ipmi_sim.log").read_text()[-1000:])
            if self.ipmitool("chassis", "power", "status", check=False).returncode == 0:
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("ipmi_sim did not answer in time")

    def lan_conf(self) -> str:
        """ipmi_sim's configuration: one LAN channel on addr:port, one admin user, and either
        the chassis-control script or the VM serial line with its start command."""
        if self.startcmd is None:
            script = self.dir / "chassis.sh"
            script.write_text(CHASSIS.format(state=self.power_file, boot=self.dir / "boot"))
            script.chmod(0o755)
            power = f'  chassis_control "{script} 0x20"\n'
        else:
            power = (f"  serial 15 127.0.0.1 {self.vm_port} codec VM\n"
                     f'  startcmd "{self.startcmd}"\n'
                     "  startnow false\n  poweroff_wait 3\n  kill_wait 3\n")
        return f"""name "sim{self.port}"
set_working_mc 0x20
  startlan 1
    addr {self.addr} {self.port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
{power}user 2 true "{self.user}" "{self.password}" admin 10 none md2 md5 straight
"""

    def ipmitool(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """ipmitool against this BMC: the independent judge in tests (-C 3 avoids a 10 s
        cipher-suite probe per call; the password goes by environment, not argv)."""
        p = subprocess.run([*self.wrap, "ipmitool", "-I", "lanplus", "-C", "3", "-H", self.addr,
                            "-p", str(self.port), "-U", self.user, "-E", *args],
                           env={**os.environ, "IPMI_PASSWORD": self.password},
                           capture_output=True, text=True, timeout=30, check=False)
        if check and p.returncode != 0:
            raise RuntimeError(f"ipmitool {' '.join(args)}: {p.stderr.strip()}")
        return p

    def stop(self) -> None:
        stop_process_group(self.proc)
        self.proc = None

    def __enter__(self) -> IpmiSim:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

