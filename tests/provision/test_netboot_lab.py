"""Network boot through the firmware's own PXE, end to end (issue 16): copycds, nodeset and
rpower through xcatd, and the lab VM boots the test initrd, which reports installed. Five ways
a node boots from the network:

- UEFI (OVMF, no option ROM) -> xcat/xnba.efi (iPXE) over TFTP -> the node's iPXE script
  over HTTP (noderes.netboot=xnba): the most common in the field, so it runs in `make test`;
- BIOS (SeaBIOS + the NIC's iPXE ROM) -> pxelinux.0 -> pxelinux.cfg/01-<mac> (netboot=pxe);
- UEFI -> boot/grub2/grub2-<node> -> GRUB -> boot/grub2/grub.cfg-01-<mac> (netboot=grub2);
- UEFI Secure Boot (Microsoft keys) -> shim -> Debian's signed GRUB -> Debian's signed kernel
  (netboot=grub2), and a kernel with one byte changed is refused;
- UEFI HTTP boot (OVMF's PXE switched off, no TFTP server at all) -> the URL of xcat/xnba.efi
  that the host block gives an "HTTPClient" -> the same iPXE script (netboot=xnba).

TFTP is tftpd-hpa in the lab namespace (site.tftpserver=tftpd-hpa, so xcatd leaves port 69
alone); DHCP is the dhcpd makedhcp configured. Each test prints its power-on-to-callback time
(`pytest -s` or `-rP` shows it; nothing is asserted about it). What the firmware, pxelinux,
GRUB and shim ask for over TFTP was found with the spike in issue 16 (its FACTS).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.cluster import INSTALL_IMAGE

IMG = INSTALL_IMAGE
STATE = "install rocky9.4-x86_64-compute"
MAC, IP = "52:54:00:77:00:11", "10.77.0.11"
#: Power-on to callback took 13-26 s on a quiet 2-core machine (TCG); waits are 3x and more.
BOOT_WAIT = 300


def _place_loaders(mn) -> None:
    """The loaders as an admin gets them: mknb, from Debian's packages (the test management
    node has them already: they are removed first, so mknb's own copies boot)."""
    from xcatd.netboot.bootfiles import FILES
    missing = [f.source for f in FILES if f.source and not Path(f.source).is_file()]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing (Debian packages ipxe pxelinux "
                    "syslinux-common shim-signed grub-efi-amd64-signed)")
    for f in FILES:
        (mn.root / "tftpboot" / f.name).unlink(missing_ok=True)
    placed = mn.ok("mknb", "x86_64").lines
    assert len(placed) == len(FILES) and all(line.endswith("(placed)") for line in placed)


def chain(mn, node):
    row = mn.db.rows("chain", keys=[node])[0]
    return row["currstate"], row["currchain"]


def status(mn, node):
    return mn.db.rows("nodelist", keys=[node])[0]["status"]


def _until(what, probe, timeout):
    deadline = time.monotonic() + timeout
    while not (got := probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return got


def _scene(mn, lab, tmp_path, netboot: str, firmware: str, *, tftp: bool = True,
           vm_args: tuple[str, ...] = ()):
    """The management node with the fake Rocky media copied, n1 defined (``netboot``), its
    VM (``firmware``, QEMU also given ``vm_args``), the loaders, tftpd-hpa (unless not
    ``tftp``: then nothing in the lab answers TFTP), dhcpd and xcatd running in the lab;
    returns (vm, xcatd log)."""
    from xcatd.lab import assets
    from xcatd.lab.fakemedia import bootable_iso
    from xcatd.lab.initrd import InitrdError
    from xcatd.lab.vmlab import LabUnavailable
    try:
        iso = bootable_iso(tmp_path)
    except (assets.AssetsMissing, InitrdError) as exc:
        pytest.skip(str(exc))
    assert "Media copy operation successful" in mn.ok("copycds", str(iso)).out
    for key, value in (("master", lab.server_ip), ("dhcpsetup", "n"),
                       ("dhcpinterfaces", lab.bridge), ("tftpserver", "tftpd-hpa")):
        mn.ok("chtab", f"key={key}", f"site.value={value}")
    mn.ok("chtab", "key=system", "passwd.username=root", "passwd.password=cluster_sqlite")
    mn.ok("mkdef", "-t", "network", "-o", "lab", f"net={lab.subnet.network_address}",
          f"mask={lab.netmask}", f"mgtifname={lab.bridge}")
    try:
        vm = lab.add_vm("n1", MAC, firmware=firmware, extra_args=vm_args)
    except LabUnavailable as exc:  # no OVMF
        pytest.skip(str(exc))
    mn.ok("nodeadd", "n1", "groups=compute", f"hosts.ip={IP}", f"mac.mac={MAC}",
          "nodetype.arch=x86_64", "nodehm.serialport=0", "nodehm.serialspeed=115200",
          f"noderes.netboot={netboot}",
          "nodehm.mgt=ipmi", f"ipmi.bmc={vm.bmc_addr}", f"ipmi.bmcport={vm.bmc_port}",
          f"ipmi.username={vm.bmc_user}", f"ipmi.password={vm.bmc_password}")
    _place_loaders(mn)
    if tftp:
        lab.start_tftpd(mn.root / "tftpboot")
    mn.ok("makedhcp", "-n")
    lab.start_dhcpd(mn.root / "etc/dhcp/dhcpd.conf")
    log = tmp_path / "xcatd.log"
    with open(log, "wb") as fh:
        xcatd = lab.popen([os.path.join(os.path.dirname(sys.executable), "xcatd"), "--listen",
                           lab.server_ip, "--port", "3001"],
                          env={**os.environ, "XCATROOT": str(mn.root)},
                          stdout=fh, stderr=subprocess.STDOUT)
    _until("xcatd's HTTP site", lambda: xcatd.poll() is not None or lab.run(
        ["ss", "-H", "-ltn", "sport", "= :80"]).stdout.strip(), 60)
    assert xcatd.poll() is None, log.read_text()
    return vm, log


def _rpower(mn, state: str) -> subprocess.CompletedProcess:
    """rpower through xcatd (root's unix socket): the BMC is on the namespace's loopback."""
    env = {k: v for k, v in os.environ.items() if k not in ("XCATBYPASS", "XCATHOST")}
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "rpower"), "n1",
                           state], capture_output=True, text=True, timeout=120,
                          env={**env, "XCATROOT": str(mn.root)})


#: (noderes.netboot, VM firmware, what the console shows on the way); OVMF's own PXE says
#: ">>Start PXE over IPv4", shim "Fetching Netboot Image <its directory>/grubx64.efi".
UEFI_PXE, SHIM = r">>Start PXE over IPv4", r"Fetching Netboot Image boot/grub2/grubx64\.efi"
PATHS = [
    pytest.param("xnba", "uefi", (UEFI_PXE, r"iPXE .*Open Source Network Boot Firmware"),
                 id="uefi-pxe-xnba"),
    # (SeaBIOS's console puts cursor moves inside pxelinux's longer lines: its banner only)
    pytest.param("pxe", "bios", (r"PXELINUX \d+\.\d+ PXE",),
                 id="bios-pxelinux", marks=pytest.mark.lab),
    pytest.param("grub2", "uefi", (UEFI_PXE, SHIM, r"Welcome to GRUB"), id="uefi-grub2",
                 marks=pytest.mark.lab),
    pytest.param("grub2", "uefi-sb", (UEFI_PXE, SHIM, r"EFI stub: UEFI Secure Boot is enabled"),
                 id="uefi-secureboot-grub2", marks=pytest.mark.lab),
]


@pytest.mark.parametrize(("netboot", "firmware", "seen"), PATHS)
def test_the_firmware_network_boots_the_node_which_reports_installed(
        mn_sqlite, vmlab, tmp_path, netboot, firmware, seen):
    """nodeset, rpower on through xcatd, and the VM's firmware PXE-boots (UEFI: OVMF's own
    PXE, no option ROM) through the node's loader to the initrd, which reports installed with
    its token."""
    from xcatd.lab.initrd import MARK
    mn, lab = mn_sqlite, vmlab
    vm, log = _scene(mn, lab, tmp_path, netboot, firmware)
    assert mn.ok("nodeset", "n1", f"osimage={IMG}").lines == [f"n1: {STATE}"]

    start = time.monotonic()
    rpower = _rpower(mn, "on")
    assert (rpower.returncode, rpower.stdout.strip()) == (0, "n1: on"), rpower.stderr
    assert lab.wait_serial(vm, rf"^{MARK} up (\S+)", timeout=BOOT_WAIT).group(1) == IP
    reported = lab.wait_serial(vm, rf"^{MARK} reported (.*)$", timeout=60).group(1).strip()
    seconds = time.monotonic() - start
    assert re.fullmatch(r"HTTP/1\.[01] 200 OK", reported), log.read_text()
    for regex in seen:  # the path the test is about was taken
        lab.wait_serial(vm, regex, timeout=10)
    assert chain(mn, "n1") == ("boot", "boot") and status(mn, "n1") == "installed"
    print(f"\n{netboot} on {firmware}: power-on to callback {seconds:.1f} s")


#: OVMF's fw_cfg knobs (OvmfPkg RUNTIME_CONFIG.md): no PXE boot options at all, so the first
#: network boot option is "UEFI HTTPv4".
NO_PXE = ("-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no",
          "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no")


@pytest.mark.lab
def test_uefi_http_boot_loads_xnba_over_http_and_the_node_reports_installed(
        mn_sqlite, vmlab, tmp_path):
    """UEFI HTTP boot (OVMF with its PXE switched off, and no TFTP server in the lab): OVMF
    asks DHCP as an HTTPClient, the host block answers with xnba.efi's URL on xcatd's HTTP site,
    iPXE gets the node's script, and the initrd reports installed."""
    from xcatd.lab.initrd import MARK
    mn, lab = mn_sqlite, vmlab
    vm, log = _scene(mn, lab, tmp_path, "xnba", "uefi", tftp=False, vm_args=NO_PXE)
    assert mn.ok("nodeset", "n1", f"osimage={IMG}").lines == [f"n1: {STATE}"]

    start = time.monotonic()
    rpower = _rpower(mn, "on")
    assert (rpower.returncode, rpower.stdout.strip()) == (0, "n1: on"), rpower.stderr
    assert lab.wait_serial(vm, rf"^{MARK} up (\S+)", timeout=BOOT_WAIT).group(1) == IP
    reported = lab.wait_serial(vm, rf"^{MARK} reported (.*)$", timeout=60).group(1).strip()
    seconds = time.monotonic() - start
    assert re.fullmatch(r"HTTP/1\.[01] 200 OK", reported), log.read_text()
    console = lab.serial_text(vm)
    url = rf"http://{re.escape(lab.server_ip)}:80/tftpboot/xcat/xnba\.efi"
    for regex in (r">>Start HTTP Boot over IPv4", rf"URI: {url}\s",
                  r"iPXE .*Open Source Network Boot Firmware"):
        assert re.search(regex, console), f"{regex!r} not on the console:\n{console[-3000:]}"
    assert "Start PXE over" not in console
    assert chain(mn, "n1") == ("boot", "boot") and status(mn, "n1") == "installed"
    print(f"\nxnba on uefi, HTTP boot: power-on to callback {seconds:.1f} s")


@pytest.mark.lab
def test_secure_boot_refuses_a_kernel_whose_signature_no_longer_matches(mn_sqlite, vmlab,
                                                                        tmp_path):
    """The same Secure Boot path with one byte of the installer kernel changed after nodeset:
    shim's verifier in GRUB refuses it, the kernel never starts, nothing reports."""
    mn, lab = mn_sqlite, vmlab
    vm, _log = _scene(mn, lab, tmp_path, "grub2", "uefi-sb")
    assert mn.ok("nodeset", "n1", f"osimage={IMG}").lines == [f"n1: {STATE}"]
    kernel = mn.root / "tftpboot" / mn.db.rows("bootparams", keys=["n1"])[0]["kernel"]
    data = bytearray(kernel.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the signed image
    kernel.unlink()  # a new file: never write through to the copy's source
    kernel.write_bytes(bytes(data))

    start = time.monotonic()
    rpower = _rpower(mn, "on")
    assert (rpower.returncode, rpower.stdout.strip()) == (0, "n1: on"), rpower.stderr
    lab.wait_serial(vm, r"error: bad shim signature", timeout=BOOT_WAIT)
    print(f"\ntampered kernel refused {time.monotonic() - start:.1f} s after power-on")
    time.sleep(3)
    console = lab.serial_text(vm)
    assert "Linux version" not in console and "PYXCAT-INITRD" not in console
    assert chain(mn, "n1")[0] == STATE and status(mn, "n1") != "installed"


def test_lab_vms_start_seabios_with_the_ipxe_rom_or_ovmf_with_their_own_nvram(vmlab):
    """What add_vm(firmware=) gives QEMU (the VMs stay off): SeaBIOS with the NIC's iPXE ROM
    as before; OVMF with no option ROM, PXE first, and a variable store of the VM's own;
    Secure Boot on q35 with SMM and Microsoft's keys."""
    from xcatd.lab.vmlab import OVMF, OVMF_DIR, LabError
    if not all((OVMF_DIR / f).is_file() for files in OVMF.values() for f in files):
        pytest.skip(f"OVMF is not in {OVMF_DIR} (Debian package ovmf)")
    lab = vmlab
    bios, uefi, sb = (lab.add_vm(f"n{i}", f"52:54:00:77:00:{i:02x}", paused=True, firmware=fw)
                      for i, fw in enumerate(("bios", "uefi", "uefi-sb"), 1))
    script = {vm.firmware: (vm.dir / "start.sh").read_text() for vm in (bios, uefi, sb)}
    assert "romfile=/usr/lib/ipxe/qemu/pxe-virtio.rom" in script["bios"]
    assert "-boot n" in script["bios"] and "pflash" not in script["bios"]
    for fw in ("uefi", "uefi-sb"):
        assert "romfile=,bootindex=1" in script[fw] and "-boot" not in script[fw]
    assert f"file={OVMF_DIR}/OVMF_CODE_4M.fd " in script["uefi"]
    assert f"file={OVMF_DIR}/OVMF_CODE_4M.secboot.fd " in script["uefi-sb"]
    assert "q35,smm=on" in script["uefi-sb"] and "smm" not in script["uefi"]
    for vm, template in ((uefi, "OVMF_VARS_4M.fd"), (sb, "OVMF_VARS_4M.ms.fd")):
        assert f"file={vm.vars_file}" in script[vm.firmware]
        assert vm.vars_file.read_bytes() == (OVMF_DIR / template).read_bytes()
    with pytest.raises(LabError, match="unknown firmware efi"):
        lab.add_vm("n4", "52:54:00:77:00:04", paused=True, firmware="efi")
