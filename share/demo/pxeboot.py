"""The demo's first real network boot: copycds, nodeset, rpower, and a VM that PXE-boots.

The same scene as tests/xcatd/test_httpserve.py's end-to-end boot, narrated: a management node
of its own under $XCATROOT/pxelab (a fresh xcatconfig, so the main demo's xcatd is left alone),
install media built here (xorriso around a fake Rocky tree holding Debian's kernel and the test
initrd), the lab's network namespace with a QEMU VM behind an ipmi_sim BMC, and dhcpd and xcatd
started inside it. Every command is a real subprocess, printed before its output as demo.sh
does. The VM's serial console is echoed as it arrives (callback token masked) next to the
node's status, which xcatd moves to installing when the VM fetches its boot script and to
installed when the initrd reports back.

Skips (exit 0, one line saying why) where the lab cannot run: not root, no /dev/net/tun,
QEMU or ipmi_sim missing, no lab assets (`make lab-assets`). Exit 1 when the boot fails.
Everything started here is stopped by PID and the namespace deleted, whatever happens.

    XCATROOT=/tmp/pyxcat-demo PATH=$PWD/.venv/bin:$PATH python3 share/demo/pxeboot.py
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

NODE, MAC, IP = "n1", "52:54:00:77:00:11", "10.77.0.11"
IMG = "rocky9.4-x86_64-install-compute"
BOOT_TIMEOUT = 150  # s; a TCG boot on a busy two-core machine takes ~20
# Secrets never reach the terminal: the token is on the kernel's command line, which the
# kernel prints; passwords are on the command lines this script shows.
_SECRETS = re.compile(r"\b(xcattoken|password)=\S+")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|[\x00-\x08\x0b-\x1f\x7f]")
# The console lines worth showing; the rest of the kernel's log is counted, not printed.
_SHOW = re.compile(r"^iPXE|net0: [0-9a-f:]{17}|Configuring \(net0|^Filename:|^https?://|"
                   r"\] Linux version|\] Command line:|PYXCAT-INITRD:")
HIDDEN_NOTE = 10  # say how many lines were left out when at least this many were


def mask(text: str) -> str:
    """``text`` with the callback token and any password replaced by asterisks."""
    return _SECRETS.sub(lambda m: f"{m.group(1)}=********", text)


def say(text: str) -> None:
    """A narrated step, bold, like demo.sh's ``say``."""
    print(f"\n\033[1m$ {mask(text)}\033[0m", flush=True)


def note(text: str) -> None:
    print(f"  -- {text}", flush=True)


class Demo:
    """The scene's state: the management node's root, its environment, the lab, xcatd."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if k not in ("XCATBYPASS", "XCATHOST")}
        self.env.update(XCATROOT=str(root), HOME=str(root / "home"), XCATBYPASS="1")
        self.lab: Any = None
        self.vm: Any = None
        self.xcatd: subprocess.Popen[Any] | None = None

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Print the command line, run it, print its output; fail the demo on non-zero."""
        say(shlex.join(argv))
        p = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=180)
        for stream, text in ((sys.stdout, p.stdout), (sys.stderr, p.stderr)):
            if text:
                stream.write(mask(text))
                stream.flush()
        if check and p.returncode:
            raise DemoFailed(f"{argv[0]} exited {p.returncode}")
        return p

    def status(self) -> tuple[str, str]:
        """(nodelist.status, chain.currstate) of the node, read from the database."""
        from xcatd.base.paths import Paths
        from xcatd.db.database import Database
        db = Database.open(Paths(self.root))
        st = db.rows("nodelist", keys=[NODE])
        ch = db.rows("chain", keys=[NODE])
        return ((st[0].get("status") or "") if st else "",
                (ch[0].get("currstate") or "") if ch else "")


class DemoFailed(RuntimeError):
    """The scene went wrong after the lab started: the demo says what and exits 1."""


def why_not() -> str | None:
    """Why this machine cannot run the lab, or None."""
    try:
        from xcatd.lab import assets
        from xcatd.lab.vmlab import unavailable
    except ImportError as exc:
        return f"pyxcat is not importable from {sys.executable} ({exc})"
    reason = unavailable()
    if reason:
        return reason
    for tool, package in (("dhcpd", "isc-dhcp-server"), ("xorriso", "xorriso")):
        if not shutil.which(tool):
            return f"the PXE demo needs {tool} (Debian package {package})"
    try:
        assets.kernel()
        assets.modules_dir()
    except assets.AssetsMissing as exc:
        return str(exc)
    for cmd in ("xcatconfig", "xcatd", "copycds", "nodeset", "rpower"):
        if not shutil.which(cmd):
            return f"{cmd} is not on PATH (run from the venv: make demo)"
    return None


def build_media(demo: Demo) -> Path:
    """The test initrd and a Rocky 9.4 DVD image holding the lab kernel and that initrd."""
    from xcatd.lab import assets
    from xcatd.lab.fakemedia import build_iso, build_tree
    from xcatd.lab.initrd import build_initrd
    work = demo.root / "media"
    say("build the test initrd (busybox, virtio-net, an /init that calls back) and a Rocky 9.4 "
        "DVD image holding Debian's kernel and it")
    initrd = build_initrd(work / "initrd.img")
    tree = build_tree(work / "tree", "rocky9.4", "x86_64", kernel=assets.kernel(), initrd=initrd)
    iso = build_iso(tree, work / "Rocky-9.4-x86_64-dvd.iso", "Rocky-9-4-x86_64-dvd")
    shutil.rmtree(tree)
    print(f"{iso} ({iso.stat().st_size // 1024} KiB; kernel {assets.kernel_version()})")
    return iso


def start_lab(demo: Demo) -> str | None:
    """The namespace, bridge and the VM with its BMC; a reason to skip when it cannot start."""
    from xcatd.lab.vmlab import LabError, LabUnavailable, VmLab
    lab = VmLab(demo.root / "vmlab")
    say(f"start the VM lab: network namespace {lab.ns}, bridge {lab.bridge} "
        f"{lab.server_ip}/{lab.subnet.prefixlen}, radvd")
    try:
        lab.start()
    except (LabUnavailable, LabError, OSError) as exc:
        return f"the VM lab cannot start here: {str(exc).splitlines()[0]}"
    demo.lab = lab
    demo.vm = lab.add_vm(NODE, MAC)
    vm = demo.vm
    print(f"VM {NODE}: MAC {MAC}, powered off; its BMC (ipmi_sim) on "
          f"{vm.bmc_addr}:{vm.bmc_port} inside the namespace")
    return None


def define(demo: Demo, iso: Path) -> None:
    """copycds, the site, network and node definitions, and the DHCP reservation."""
    lab, vm = demo.lab, demo.vm
    demo.run("copycds", str(iso))
    demo.run("chtab", "key=master", f"site.value={lab.server_ip}")
    demo.run("chtab", "key=dhcpinterfaces", f"site.value={lab.bridge}")
    demo.run("chtab", "key=dhcpsetup", "site.value=n")
    demo.run("chtab", "key=system", "passwd.username=root", "passwd.password=cluster")
    demo.run("mkdef", "-t", "network", "-o", "lab", f"net={lab.subnet.network_address}",
             f"mask={lab.netmask}", f"mgtifname={lab.bridge}")
    demo.run("nodeadd", NODE, "groups=compute,all", f"hosts.ip={IP}", f"mac.mac={MAC}",
             "nodetype.arch=x86_64", "nodehm.serialport=0", "nodehm.serialspeed=115200",
             "nodehm.mgt=ipmi", f"ipmi.bmc={vm.bmc_addr}", f"ipmi.bmcport={vm.bmc_port}",
             f"ipmi.username={vm.bmc_user}", f"ipmi.password={vm.bmc_password}")
    demo.run("makedhcp", "-n")
    conf = demo.root / "etc/dhcp/dhcpd.conf"
    print(re.sub(r"(?m)^", "  ", _host_block(conf.read_text())))


def _host_block(conf: str) -> str:
    m = re.search(rf"(?ms)^host {NODE} .*?^}}", conf)
    return m.group(0) if m else conf[-600:]


def start_services(demo: Demo) -> None:
    """dhcpd and xcatd inside the namespace; afterwards commands go through xcatd."""
    lab = demo.lab
    conf = demo.root / "etc/dhcp/dhcpd.conf"
    say(f"dhcpd -f -cf {conf} {lab.bridge} &    (in the lab namespace)")
    lab.start_dhcpd(conf)
    print("dhcpd listening on udp 67")
    say(f"xcatd --listen {lab.server_ip} --port 3001 &    (in the lab namespace, beside the "
        "BMC; HTTP site on port 80)")
    log = demo.root / "xcatd.log"
    env = {**demo.env}
    env.pop("XCATBYPASS")
    with open(log, "wb") as fh:
        demo.xcatd = lab.popen([shutil.which("xcatd"), "--listen", lab.server_ip,
                                "--port", "3001"], env=env, stdout=fh,
                               stderr=subprocess.STDOUT)
    sock = demo.root / "var/run/xcat/xcatd.sock"
    _until("xcatd's HTTP site and socket", lambda: demo.xcatd.poll() is not None or (
        sock.exists() and lab.run(["ss", "-H", "-ltn", "sport", "= :80"]).stdout.strip()), 60)
    if demo.xcatd.poll() is not None:
        raise DemoFailed(f"xcatd exited {demo.xcatd.returncode}:\n{log.read_text()[-2000:]}")
    print(mask(log.read_text().strip()))
    demo.env = env  # from here on, commands are requests to xcatd over root's unix socket


def boot(demo: Demo) -> None:
    """nodeset, rpower on, and the boot as the console and the status tell it."""
    demo.run("nodeset", NODE, f"osimage={IMG}")
    demo.run("nodeset", NODE, "stat")
    start = demo.lab.serial_mark(demo.vm)
    t0 = time.monotonic()
    demo.run("rpower", NODE, "on")
    say(f"watch {NODE}'s serial console and nodelist.status   (the callback token masked)")
    watch(demo, start, t0)
    demo.run("nodeset", NODE, "stat")
    demo.run("nodels", NODE, "nodelist.status")
    demo.run("rpower", NODE, "off")


def watch(demo: Demo, start: int, t0: float) -> None:
    """Echo the interesting console lines and status changes until the initrd has reported
    and the node is installed; DemoFailed on a failed report or after BOOT_TIMEOUT."""
    vm = demo.vm
    pos, partial, hidden, seen = start, "", 0, ("", "")
    reported = None
    deadline = t0 + BOOT_TIMEOUT
    while True:
        with open(vm.serial_log, "rb") as fh:
            fh.seek(pos)
            chunk = fh.read()
        pos += len(chunk)
        lines = (partial + chunk.decode(errors="replace")).split("\n")
        partial = lines.pop()
        for raw in lines:
            line = _console_line(raw)
            if not line:
                continue
            if not _SHOW.search(line):
                hidden += 1
                continue
            if hidden >= HIDDEN_NOTE:
                print(f"  {NODE} console | ... ({hidden} more lines)")
            hidden = 0
            print(f"  {NODE} console | {mask(line)[:200]}", flush=True)
            m = re.search(r"PYXCAT-INITRD: reported (.*)", line)
            if m:
                reported = m.group(1).strip()
        now = demo.status()
        if now != seen:
            seen = now
            print(f"  {NODE} status  | nodelist.status={now[0] or '-'} chain.currstate="
                  f"{now[1] or '-'}   ({time.monotonic() - t0:.1f} s after rpower on)",
                  flush=True)
        if reported is not None:
            if not re.match(r"HTTP/1\.[01] 200\b", reported):
                raise DemoFailed(f"the initrd's report was answered: {reported}")
            if seen[0] == "installed":
                return
        if time.monotonic() > deadline:
            raise DemoFailed(f"no report from {NODE} in {BOOT_TIMEOUT} s "
                             f"(console: {vm.serial_log}, xcatd: {demo.root / 'xcatd.log'})")
        time.sleep(0.2)


def _console_line(raw: str) -> str:
    """What a terminal shows of one serial line: the last carriage-return overwrite, without
    escape sequences."""
    parts = [p for p in raw.split("\r") if p.strip()]
    return _ANSI.sub("", parts[-1]).strip() if parts else ""


def _until(what: str, probe: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out waiting for {what}")
        time.sleep(0.2)


def stop(demo: Demo) -> None:
    """xcatd by its PID, then the lab: every process in the namespace and the namespace."""
    if demo.lab is None:
        return
    if demo.xcatd is not None:
        demo.lab.kill(demo.xcatd)
    demo.lab.stop()
    print(f"\nlab stopped: xcatd, dhcpd, the BMC and QEMU ended, namespace {demo.lab.ns} "
          "deleted", flush=True)


def main() -> int:
    """Run the scene; 0 when it worked or was skipped, 1 when the boot failed."""
    print("\n\033[1m== The first real PXE boot: a VM installs from copycds'd media ==\033[0m")
    reason = why_not()
    if reason:
        print(f"skipping the PXE boot demo: {reason}")
        return 0
    top = os.environ.get("XCATROOT")
    if not top:
        print("skipping the PXE boot demo: XCATROOT is not set")
        return 0
    root = Path(top) / "pxelab"
    shutil.rmtree(root, ignore_errors=True)
    (root / "home").mkdir(parents=True)
    demo = Demo(root)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the lab
    from xcatd.lab.initrd import InitrdError
    t0 = time.monotonic()
    try:
        demo.run("xcatconfig")
        try:
            iso = build_media(demo)
        except InitrdError as exc:  # busybox-static missing
            print(f"skipping the PXE boot demo: {exc}")
            return 0
        skip = start_lab(demo)
        if skip:
            print(f"skipping the PXE boot demo: {skip}")
            return 0
        define(demo, iso)
        start_services(demo)
        boot(demo)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:  # DemoFailed, LabError, xorriso
        print(f"\nthe PXE boot demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        stop(demo)
    print(f"PXE boot demo done in {time.monotonic() - t0:.0f} s (management node: {root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
