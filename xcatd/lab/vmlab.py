"""The virtual provisioning lab: QEMU VMs that network-boot through real DHCP, TFTP and HTTP
services, powered by real BMCs (OpenIPMI's ipmi_sim driving QEMU), all in one network namespace.

The namespace holds a bridge (10.77.0.1/24 and fd77:77::1/64 unless told), radvd (so iPXE does
not wait 13 s for an IPv6 router), a tap per VM, and every process the lab starts: services,
BMCs (on the namespace's own 127.0.0.1), QEMU. Nothing is sent from the host namespace to a
namespace address. Names and ports inside the namespace cannot collide with another lab's, so
only the namespace name is made unique (per process and lab). ``stop()`` kills every process in
the namespace by PID and deletes it, whatever happened; a lab left by a killed test run is
removed by the next lab that starts.

    from xcatd.lab import assets
    from xcatd.lab.initrd import build_initrd
    from xcatd.lab.vmlab import LabUnavailable, VmLab

    with VmLab() as lab:                                 # LabUnavailable: not root, no tun, ...
        www = lab.dir / "www"                            # kernel, initrd, iPXE script:
        build_initrd(www / "initrd.gz")                  #   kernel <url>/vmlinuz console=ttyS0
        (www / "vmlinuz").symlink_to(assets.kernel())    #   xcatcallback=<url> xcattoken=<t>
        (www / "n1.ipxe").write_text(IPXE_SCRIPT)        #   initrd <url>/initrd.gz / boot
        vm = lab.add_vm("n1", "52:54:00:77:00:11")       # tap + ipmi_sim BMC, powered off
                                                         # (firmware="uefi": OVMF's own PXE)
        web = lab.start_http(www)                        # GETs files, records POSTs
        lab.start_dhcpd(conf)                            # your dhcpd.conf for lab.subnet
        lab.ipmitool(vm, "chassis", "power", "on")       # ipmi_sim starts QEMU -> iPXE
        lab.wait_serial(vm, r"PYXCAT-INITRD: up (\\S+)")
        post = web.wait_post("/callback/n1")             # {"path", "headers", "body"}

Run a daemon of your own (xcatd, a second dhcpd) with ``lab.popen(argv)``: it is tracked and
stopped with the lab. ``vm.bmc_addr``/``vm.bmc_port``/``vm.bmc_user``/``vm.bmc_password`` are
what an ipmi table row needs, reachable from inside the namespace only. A complete, working
scene (dhcpd.conf with the iPXE user-class switch included) is ``_pxe_scene`` in
tests/lab/test_vm_lab.py.

Firmware (``add_vm(..., firmware=)``): ``bios`` is SeaBIOS running the NIC's iPXE option ROM
(``-boot n``); ``uefi`` is OVMF with no option ROM, so the firmware's own PXE asks DHCP (option
93 arch 7) and loads a UEFI binary over TFTP; ``uefi-sb`` is OVMF's Secure Boot build with
Microsoft's keys enrolled (q35 with SMM), which loads only signed binaries (shim, then the
GRUB and kernel shim trusts). Each UEFI VM keeps its own copy of the variable store (its NVRAM)
in its directory, across power cycles. tests/provision/test_netboot_lab.py boots each.
"""
from __future__ import annotations

import argparse
import contextlib
import ipaddress
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from xcatd.lab import kill_pid, pid_alive
from xcatd.lab.ipmisim import IpmiSim

NS_PREFIX = "pyxvm-"
BRIDGE = "labbr0"
ROM_DIR = Path("/usr/lib/ipxe/qemu")
ROMS = {"virtio-net-pci": "pxe-virtio.rom", "e1000": "pxe-e1000.rom"}
# ipxe-qemu's virtio ROM declares the modern device id (1af4:1041) and SeaBIOS runs a ROM only
# for a matching device: a transitional virtio-net (1af4:1000) would never PXE-boot.
NIC_PROPS = {"virtio-net-pci": ",disable-legacy=on", "e1000": ""}
BMC_PORT_BASE, VM_PORT_BASE = 6230, 9100  # + VM index, on the namespace's loopback
OVMF_DIR = Path("/usr/share/OVMF")
#: firmware -> (OVMF code, OVMF variable store template); "bios" is SeaBIOS, QEMU's default.
#: The 4M builds; the Secure Boot code needs SMM (q35), its store has Microsoft's keys and SB on.
OVMF = {"uefi": ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
        "uefi-sb": ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd")}
FIRMWARES = ("bios", *OVMF)
# (tool, Debian package): the lab itself; the services check theirs when started.
REQUIRED = (("ip", "iproute2"), ("qemu-system-x86_64", "qemu-system-x86"),
            ("ipmi_sim", "openipmi"), ("ipmitool", "ipmitool"), ("radvd", "radvd"))
_seq = itertools.count()


class LabUnavailable(RuntimeError):
    """This machine cannot run the lab (not root, no /dev/net/tun, a tool missing): a skip."""


class LabError(RuntimeError):
    """Something in the lab failed; the message carries the log that says why."""


def unavailable() -> str | None:
    """Why the lab cannot run here, or None: tests turn the reason into a skip."""
    if os.geteuid() != 0:
        return "the VM lab needs root (network namespaces, tap devices)"
    if not os.path.exists("/dev/net/tun"):
        return "the VM lab needs /dev/net/tun (tap devices)"
    for tool, package in REQUIRED:
        if not shutil.which(tool):
            return f"the VM lab needs {tool} (Debian package {package})"
    if not (ROM_DIR / ROMS["virtio-net-pci"]).is_file():
        return f"the VM lab needs the iPXE ROMs in {ROM_DIR} (Debian package ipxe-qemu)"
    return None


@dataclass
class Vm:
    """One lab VM: its NIC on the bridge, its BMC, and its files (serial log, QEMU log)."""

    name: str
    mac: str
    index: int
    tap: str
    dir: Path
    bmc: IpmiSim
    firmware: str = "bios"

    @property
    def bmc_addr(self) -> str:
        return self.bmc.addr

    @property
    def bmc_port(self) -> int:
        return self.bmc.port

    @property
    def bmc_user(self) -> str:
        return self.bmc.user

    @property
    def bmc_password(self) -> str:
        return self.bmc.password

    @property
    def serial_log(self) -> Path:
        return self.dir / "serial.log"

    @property
    def qemu_log(self) -> Path:
        return self.dir / "qemu.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / "qemu.pid"

    @property
    def vars_file(self) -> Path:
        """The UEFI variable store (NVRAM) of this VM (firmware uefi, uefi-sb)."""
        return self.dir / "OVMF_VARS.fd"


@dataclass
class HttpServer:
    """A file server in the lab that also records every POST (the install callback)."""

    url: str
    port: int
    root: Path
    posts_file: Path
    proc: subprocess.Popen[Any] = field(repr=False)

    def posts(self) -> list[dict[str, Any]]:
        """Every POST so far: {"path", "headers" (lower-case names), "body"}."""
        if not self.posts_file.exists():
            return []
        out = []
        for line in self.posts_file.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a line being written
                out.append(json.loads(line))
        return out

    def wait_post(self, path: str | None = None, timeout: float = 180) -> dict[str, Any]:
        """The first POST to ``path`` (any path if None), waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            for post in self.posts():
                if path is None or post["path"] == path:
                    return post
            if time.monotonic() > deadline:
                raise LabError(f"no POST to {path or 'any path'} on {self.url} in {timeout} s; "
                               f"got {[p['path'] for p in self.posts()]}")
            time.sleep(0.2)


class VmLab:
    """A network namespace with a bridge, radvd, and VMs with BMCs; see the module docstring."""

    def __init__(self, workdir: str | os.PathLike[str] | None = None,
                 subnet: str = "10.77.0.0/24", subnet6: str = "fd77:77::/64",
                 memory: int = 512) -> None:
        self.ns = f"{NS_PREFIX}{os.getpid()}-{next(_seq)}"
        self.bridge = BRIDGE
        self.subnet = ipaddress.IPv4Network(subnet)
        self.subnet6 = ipaddress.IPv6Network(subnet6)
        self.server_ip = str(next(self.subnet.hosts()))
        self.server_ip6 = str(next(self.subnet6.hosts()))
        self.netmask = str(self.subnet.netmask)
        self.memory = memory
        self._own_dir = workdir is None
        self.dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="pyxvmlab-"))
        self.vms: dict[str, Vm] = {}
        self.procs: list[subprocess.Popen[Any]] = []
        self._made_ns = False

    # ---- lifetime ----------------------------------------------------------------------
    def __enter__(self) -> VmLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> VmLab:
        """Create the namespace, bridge and radvd; raises LabUnavailable when it cannot run."""
        reason = unavailable()
        if reason:
            self.stop()  # our temporary directory
            raise LabUnavailable(reason)
        try:
            _remove_stale_labs()
            self.dir.mkdir(parents=True, exist_ok=True)
            _ip("netns", "add", self.ns)
            self._made_ns = True
            self._network()
            self._start_radvd()
        except BaseException:
            self.stop()
            raise
        return self

    def _network(self) -> None:
        n, br = self.ns, self.bridge
        _ip("-n", n, "link", "set", "lo", "up")
        _ip("-n", n, "link", "add", br, "type", "bridge", "forward_delay", "0", "stp_state", "0")
        # A veth pair with one end on the bridge keeps the bridge's carrier up before any VM
        # runs, so radvd and dhcpd see a running interface (no dummy driver on some kernels).
        _ip("-n", n, "link", "add", "labanchor0", "type", "veth", "peer", "name", "labanchor1")
        _ip("-n", n, "link", "set", "labanchor0", "master", br, "up")
        _ip("-n", n, "link", "set", "labanchor1", "up")
        _ip("-n", n, "addr", "add", f"{self.server_ip}/{self.subnet.prefixlen}", "dev", br)
        _ip("-n", n, "-6", "addr", "add", f"{self.server_ip6}/{self.subnet6.prefixlen}",
            "dev", br, "nodad")
        _ip("-n", n, "link", "set", br, "up")

    def stop(self) -> None:
        """Kill every process of the lab and in its namespace by PID, then delete it."""
        try:
            if self._made_ns:
                _kill_namespace(self.ns, [p.pid for p in self.procs if p.poll() is None])
            for vm in self.vms.values():
                with contextlib.suppress(Exception):
                    vm.bmc.stop()  # reaps its Popen (already killed above)
            for p in self.procs:
                if p.poll() is None:
                    kill_pid(p.pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=5)
        finally:
            if self._made_ns:
                subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=30)
                self._made_ns = False
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    # ---- processes in the namespace ----------------------------------------------------
    def wrap(self, argv: list[Any]) -> list[str]:
        """``argv`` as run inside the namespace."""
        return ["ip", "netns", "exec", self.ns, *map(str, argv)]

    def popen(self, argv: list[Any], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in the namespace in its own session; stopped with the lab."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self.wrap(argv), start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def run(self, argv: list[Any], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """subprocess.run inside the namespace (output captured as text, 60 s unless told)."""
        kw.setdefault("timeout", 60)
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(self.wrap(argv), **kw)

    def kill(self, proc: subprocess.Popen[Any]) -> None:
        """Stop one process the lab started (e.g. to restart dhcpd with a new file)."""
        if proc.poll() is None:
            kill_pid(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def _daemon(self, what: str, argv: list[Any], proto: str, port: int,
                wait: float = 30) -> subprocess.Popen[Any]:
        """Start a service and wait until it listens on ``port`` (udp/tcp) in the namespace."""
        log = self.dir / f"{what}-{len(self.procs)}.log"
        with open(log, "wb") as fh:
            p = self.popen(argv, stdout=fh, stderr=subprocess.STDOUT)
        flag = "-lun" if proto == "udp" else "-ltn"
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and p.poll() is None:
            if self.run(["ss", "-H", flag, "sport", f"= :{port}"], timeout=10).stdout.strip():
                return p
            time.sleep(0.1)
        self.kill(p)
        raise LabError(f"{what} did not start listening on {proto} {port} "
                       f"(rc={p.poll()}):\n{log.read_text(errors='replace')[-3000:]}")

    # ---- services ----------------------------------------------------------------------
    def _start_radvd(self) -> None:
        """Router advertisements with no default route: iPXE stops waiting for IPv6 at once."""
        conf, pidfile = self.dir / "radvd.conf", self.dir / "radvd.pid"
        conf.write_text(f"""interface {self.bridge} {{
  AdvSendAdvert on;
  MinRtrAdvInterval 3;
  MaxRtrAdvInterval 10;
  AdvDefaultLifetime 0;
  prefix {self.subnet6} {{ AdvOnLink on; AdvAutonomous on; }};
}};
""")
        conf.chmod(0o644)
        self.run(["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"], check=True)
        log = self.dir / "radvd.log"
        with open(log, "wb") as fh:
            p = self.popen(["radvd", "-n", "-C", conf, "-p", pidfile, "-m", "stderr"],
                           stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not pidfile.exists():
            if p.poll() is not None or time.monotonic() > deadline:
                self.kill(p)
                raise LabError(f"radvd did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)

    def start_dhcpd(self, conf_path: str | os.PathLike[str]) -> subprocess.Popen[Any]:
        """ISC dhcpd with ``conf_path`` on the bridge (it needs a subnet declaration for
        ``lab.subnet``); its lease and pid files live in the lab directory."""
        _need("dhcpd", "isc-dhcp-server")
        d = self.dir / "dhcpd"
        d.mkdir(exist_ok=True)
        leases, pidfile = d / "dhcpd.leases", d / "dhcpd.pid"
        leases.touch()
        pidfile.unlink(missing_ok=True)  # a stale one stops a quick restart
        return self._daemon("dhcpd", ["dhcpd", "-f", "-d", "-4", "-cf", Path(conf_path),
                                      "-lf", leases, "-pf", pidfile, self.bridge], "udp", 67)

    def start_tftpd(self, root_dir: str | os.PathLike[str],
                    user: str = "root") -> subprocess.Popen[Any]:
        """tftpd-hpa serving ``root_dir`` on server_ip:69 (the packaged service not needed).
        It runs as root by default because pytest's temporary directories are 0700."""
        _need("in.tftpd", "tftpd-hpa")
        return self._daemon("tftpd", ["in.tftpd", "--foreground", "--listen", "--address",
                                      f"{self.server_ip}:69", "--user", user, "--secure",
                                      Path(root_dir)], "udp", 69)

    def start_nfs(self, export_dir: str | os.PathLike[str]) -> subprocess.Popen[Any]:
        """An NFSv4 server exporting ``export_dir`` (read-write, root not squashed) on port
        2049 in the namespace, its pseudo path the same as its path (``server_ip:<dir>``).

        It is NFS-Ganesha, a user-space server: the kernel NFS server needs the nfsd
        module, which kernels of CI machines (this one's among them) may not have, and
        kernel nfsd state (exports, /var/lib/nfs) is the host's, not the namespace's."""
        _need("ganesha.nfsd", "nfs-ganesha")
        d = self.dir / "nfs"
        (d / "recovery").mkdir(parents=True, exist_ok=True)
        conf, path = d / "ganesha.conf", Path(export_dir).resolve()
        conf.write_text(f"""NFS_CORE_PARAM {{
    Protocols = 4;
    NFS_Port = 2049;
    Enable_NLM = false;
    Enable_RQUOTA = false;
}}
NFSV4 {{
    Graceless = true;
    RecoveryBackend = fs;
    RecoveryRoot = "{d / 'recovery'}";
}}
EXPORT {{
    Export_Id = 1;
    Path = "{path}";
    Pseudo = "{path}";
    Access_Type = RW;
    Squash = No_Root_Squash;
    Protocols = 4;
    Transports = TCP;
    SecType = sys;
    FSAL {{ Name = VFS; }}
}}
""")
        return self._daemon("nfs", ["ganesha.nfsd", "-F", "-L", "/dev/stderr", "-f", conf,
                                    "-p", d / "ganesha.pid", "-N", "NIV_EVENT"], "tcp", 2049)

    def start_http(self, root_dir: str | os.PathLike[str], port: int = 8080) -> HttpServer:
        """An HTTP server on server_ip:port: GET serves ``root_dir``, POST is recorded."""
        posts = self.dir / f"http-{port}.posts"
        argv = [sys.executable, "-m", "xcatd.lab.vmlab", "http", "--bind", self.server_ip,
                "--port", port, "--root", Path(root_dir), "--posts", posts]
        p = self._daemon(f"http{port}", argv, "tcp", port)
        return HttpServer(f"http://{self.server_ip}:{port}", port, Path(root_dir), posts, p)

    def tftp_get(self, remote: str, server: str | None = None) -> bytes | None:
        """Fetch ``remote`` over TFTP from inside the namespace (busybox's client); None when
        the transfer failed. Compare the content: some clients exit 0 on "not found"."""
        _need("busybox", "busybox-static")
        local = Path(tempfile.mkstemp(prefix="tftp-", dir=self.dir)[1])
        try:
            r = self.run(["busybox", "tftp", "-g", "-r", remote, "-l", local,
                          server or self.server_ip], timeout=60)
            return local.read_bytes() if r.returncode == 0 else None
        finally:
            local.unlink(missing_ok=True)

    # ---- VMs ---------------------------------------------------------------------------
    def add_vm(self, name: str, mac: str, *, nic: str = "virtio-net-pci",
               memory: int | None = None, paused: bool = False,
               extra_args: tuple[str, ...] = (), user: str = "admin",
               password: str = "secret", firmware: str = "bios") -> Vm:
        """A powered-off VM: a tap on the bridge and its ipmi_sim BMC (started and answering).
        ``paused`` (-S) saves CPU where only power matters; ``nic`` is virtio-net-pci or e1000;
        ``firmware`` is bios (SeaBIOS + the NIC's iPXE ROM), uefi (OVMF's own PXE, no option
        ROM) or uefi-sb (OVMF Secure Boot, Microsoft keys; LabUnavailable without ovmf)."""
        if name in self.vms:
            raise LabError(f"VM {name} already exists in this lab")
        if nic not in ROMS:
            raise LabError(f"unknown NIC model {nic}: one of {', '.join(ROMS)}")
        if firmware not in FIRMWARES:
            raise LabError(f"unknown firmware {firmware}: one of {', '.join(FIRMWARES)}")
        for f in OVMF.get(firmware, ()):
            if not (OVMF_DIR / f).is_file():
                raise LabUnavailable(f"firmware {firmware} needs {OVMF_DIR / f} "
                                     "(Debian package ovmf)")
        index = len(self.vms)
        d = self.dir / f"vm-{name}"
        d.mkdir(parents=True, exist_ok=True)
        tap = f"labtap{index}"
        _ip("-n", self.ns, "tuntap", "add", "dev", tap, "mode", "tap")
        _ip("-n", self.ns, "link", "set", tap, "master", self.bridge, "up")
        start = d / "start.sh"
        bmc = IpmiSim(d / "bmc", user, password, BMC_PORT_BASE + index, startcmd=start,
                      vm_port=VM_PORT_BASE + index, wrap=self.wrap([]))
        vm = Vm(name, mac, index, tap, d, bmc, firmware)
        if firmware in OVMF:  # the VM's own NVRAM, kept across power cycles
            shutil.copyfile(OVMF_DIR / OVMF[firmware][1], vm.vars_file)
        start.write_text(self._start_script(vm, nic, memory or self.memory, paused, extra_args))
        start.chmod(0o755)
        vm.serial_log.touch()
        self.vms[name] = vm
        bmc.start(timeout=60)
        return vm

    def _start_script(self, vm: Vm, nic: str, memory: int, paused: bool,
                      extra: tuple[str, ...]) -> str:
        """ipmi_sim's startcmd: exec QEMU, so the BMC's pid for the VM is QEMU's own."""
        q = shlex.quote
        machine: list[str] = []
        firmware: list[str] = []
        boot = ["-boot", "n"]  # SeaBIOS: the NIC's option ROM first
        rom = f"romfile={ROM_DIR / ROMS[nic]}"
        if vm.firmware in OVMF:
            # OVMF drives the NIC itself (VirtioNetDxe) and PXE-boots with its own stack: no
            # option ROM; it ignores -boot and follows bootindex.
            code = OVMF_DIR / OVMF[vm.firmware][0]
            firmware = ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                        "-drive", f"if=pflash,format=raw,unit=1,file={vm.vars_file}"]
            boot, rom = [], "romfile=,bootindex=1"
            if vm.firmware == "uefi-sb":  # the Secure Boot build runs its variable store in SMM
                machine = ["-machine", "q35,smm=on",
                           "-global", "driver=cfi.pflash01,property=secure,value=on"]
        argv = ["qemu-system-x86_64", "-name", vm.name, "-accel", "tcg", *machine,
                "-nodefaults", "-nographic", "-m", str(memory), "-pidfile", str(vm.pid_file),
                *firmware,
                "-chardev", f"file,id=serial0,path={vm.serial_log},append=on",
                "-serial", "chardev:serial0",
                "-netdev", f"tap,id=net0,ifname={vm.tap},script=no,downscript=no",
                "-device", f"{nic},netdev=net0,mac={vm.mac},{rom}{NIC_PROPS[nic]}",
                *boot,
                "-chardev", f"socket,id=ipmi0,host=127.0.0.1,port={vm.bmc.vm_port},reconnect=10",
                "-device", "ipmi-bmc-extern,id=bmc0,chardev=ipmi0",
                "-device", "isa-ipmi-bt,bmc=bmc0", *(["-S"] if paused else []), *extra]
        return ("#!/bin/sh\n# started by ipmi_sim on power on\n"
                f"exec {' '.join(map(q, argv))} >>{q(str(vm.qemu_log))} 2>&1\n")

    def vm(self, name: str) -> Vm:
        return self.vms[name]

    def ipmitool(self, vm: Vm | str, *args: str,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        """ipmitool -I lanplus -C 3 against the VM's BMC, from inside the namespace."""
        return self._vm(vm).bmc.ipmitool(*args, check=check)

    def power_state(self, vm: Vm | str) -> str:
        """"on" or "off", as the BMC says."""
        out = self.ipmitool(vm, "chassis", "power", "status").stdout
        m = re.search(r"Chassis Power is (\w+)", out)
        if not m:
            raise LabError(f"unexpected power status from {self._vm(vm).name}: {out!r}")
        return m.group(1)

    def qemu_pid(self, vm: Vm | str) -> int | None:
        """The running QEMU's pid for this VM, or None when it is not running."""
        try:
            pid = int(self._vm(vm).pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) and "qemu" in _comm(pid) else None

    def serial_text(self, vm: Vm | str, start: int = 0) -> str:
        """The VM's serial console so far (kept across power cycles), from byte ``start``."""
        with open(self._vm(vm).serial_log, "rb") as fh:
            fh.seek(start)
            return fh.read().decode(errors="replace")

    def serial_mark(self, vm: Vm | str) -> int:
        """A position in the serial log: pass it as ``start`` to see only what comes next."""
        return self._vm(vm).serial_log.stat().st_size

    def wait_serial(self, vm: Vm | str, regex: str, timeout: float = 240,
                    start: int = 0) -> re.Match[str]:
        """Wait until the serial console (from byte ``start``) matches ``regex``; the error
        quotes the console's tail and the QEMU log."""
        v = self._vm(vm)
        pattern = re.compile(regex, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = pattern.search(self.serial_text(v, start))
            if m:
                return m
            if time.monotonic() > deadline:
                qemu = v.qemu_log.read_text(errors="replace") if v.qemu_log.exists() else ""
                raise LabError(f"{v.name}: no {regex!r} on the serial console in {timeout} s\n"
                               f"--- serial (tail) ---\n{self.serial_text(v, start)[-3000:]}\n"
                               f"--- qemu log ---\n{qemu[-1500:]}")
            time.sleep(0.2)

    def _vm(self, vm: Vm | str) -> Vm:
        return self.vms[vm] if isinstance(vm, str) else vm


# ---- helpers ---------------------------------------------------------------------------
def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if r.returncode:
        raise LabError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def _need(tool: str, package: str) -> None:
    if not shutil.which(tool):
        raise LabUnavailable(f"{tool} is not installed (Debian package {package})")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _kill_namespace(ns: str, first: list[int], grace: float = 5) -> None:
    """SIGTERM our own processes and everything else living in ``ns``, SIGKILL what stays."""
    def members() -> set[int]:
        r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                           timeout=10)
        return {int(p) for p in r.stdout.split()}
    targets = set(first) | members()
    for pid in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in targets):
        time.sleep(0.05)
    for pid in targets | members():
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _remove_stale_labs() -> None:
    """Delete labs whose creating process is gone (a test run killed before its finalizer)."""
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    for line in r.stdout.splitlines():
        m = re.match(rf"({re.escape(NS_PREFIX)}(\d+)-\d+)\b", line)
        if m and not pid_alive(int(m.group(2))):
            _kill_namespace(m.group(1), [])
            subprocess.run(["ip", "netns", "del", m.group(1)], capture_output=True, timeout=30)


# ---- the lab's HTTP server (run inside the namespace by start_http) ------------------------
class _Handler(SimpleHTTPRequestHandler):
    posts: Path
    lock = threading.Lock()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace")
        record = {"path": self.path, "body": body,
                  "headers": {k.lower(): v for k, v in self.headers.items()}}
        with self.lock, open(self.posts, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        reply = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


def _serve_http(bind: str, port: int, root: Path, posts: Path) -> None:
    """Serve ``root`` and append each POST to ``posts`` (JSON lines) until killed."""
    posts.touch(mode=0o600)  # the records hold callback tokens

    class Handler(_Handler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(root), **kw)
    Handler.posts = posts
    ThreadingHTTPServer((bind, port), Handler).serve_forever()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the lab's own processes: ``python -m xcatd.lab.vmlab http ...``."""
    ap = argparse.ArgumentParser(prog="python -m xcatd.lab.vmlab")
    sub = ap.add_subparsers(dest="cmd", required=True)
    http = sub.add_parser("http", help="serve files, record POSTs")
    http.add_argument("--bind", required=True)
    http.add_argument("--port", type=int, required=True)
    http.add_argument("--root", type=Path, required=True)
    http.add_argument("--posts", type=Path, required=True)
    args = ap.parse_args(argv)
    _serve_http(args.bind, args.port, args.root, args.posts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
