"""The virtual provisioning lab: ipmi_sim drives QEMU, a VM PXE-boots the test initrd through
real dhcpd/iPXE/HTTP and calls back, tftpd serves files; all inside a network namespace.
ipmitool, /proc and the serial console are the judges."""
from __future__ import annotations

import gzip
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from xcatd.lab import assets
from xcatd.lab.initrd import MARK, InitrdError, build_initrd
from xcatd.lab.vmlab import NS_PREFIX, VmLab, unavailable

MAC, IP = "52:54:00:77:00:11", "10.77.0.11"


@pytest.fixture
def lab(vmlab):
    return vmlab


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _until(what: str, probe, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


# ---- the initrd and the assets (no root needed) ---------------------------------------------
def _fake_module(d: Path, name: str, depends: str) -> None:
    (d / f"{name}.ko").write_bytes(b"\x7fELF fake\x00license=GPL\x00depends=" + depends.encode()
                                   + b"\x00name=" + name.encode() + b"\x00")


@pytest.mark.skipif(not shutil.which("cpio"), reason="needs cpio to judge the archive")
def test_initrd_is_newc_with_init_busybox_console_and_modules_after_their_dependencies(
        tmp_path):
    mods = tmp_path / "mods"
    mods.mkdir()
    _fake_module(mods, "virtio_net", "virtio,net_failover")
    _fake_module(mods, "net_failover", "failover")
    _fake_module(mods, "failover", "")
    _fake_module(mods, "virtio", "virtio_ring")
    _fake_module(mods, "virtio_ring", "")
    try:
        out = build_initrd(tmp_path / "initrd.gz", mods,
                           extra={"etc/pyxcat.d/50-hook.sh": b"echo hook\n"})
    except InitrdError as exc:  # busybox-static missing
        pytest.skip(str(exc))
    listing = subprocess.run(["cpio", "-itv"], input=gzip.decompress(out.read_bytes()),
                             capture_output=True, check=True).stdout.decode()
    names = {line.split()[-1] if "->" not in line else line.split()[-3]: line
             for line in listing.splitlines()}
    assert names["init"].startswith("-rwxr-xr-x") and " root " in names["init"]
    assert names["dev/console"].startswith("crw") and "5,   1" in names["dev/console"]
    assert "bin/busybox" in names and "etc/pyxcat.d/50-hook.sh" in names
    order = subprocess.run(["cpio", "-i", "--to-stdout", "etc/modules.order"],
                           input=gzip.decompress(out.read_bytes()), capture_output=True,
                           check=True).stdout.decode().split()
    assert sorted(order) == sorted(p.stem for p in mods.glob("*.ko"))
    for mod, dep in [("virtio_net", "virtio"), ("virtio_net", "net_failover"),
                     ("net_failover", "failover"), ("virtio", "virtio_ring")]:
        assert order.index(dep) < order.index(mod), order
    again = build_initrd(tmp_path / "again.gz", mods,
                         extra={"etc/pyxcat.d/50-hook.sh": b"echo hook\n"})
    assert again.read_bytes() == out.read_bytes()  # reproducible, so the cache can reuse it


def test_missing_assets_tell_the_admin_to_run_make_lab_assets(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.ENV, str(tmp_path / "empty"))
    with pytest.raises(assets.AssetsMissing, match="make lab-assets"):
        assets.kernel()
    with pytest.raises(assets.AssetsMissing, match="make lab-assets"):
        assets.modules_dir()


# ---- the lab -------------------------------------------------------------------------------
def test_bmc_power_on_starts_qemu_in_the_namespace_and_power_off_kills_it(lab):
    vm = lab.add_vm("n1", MAC, paused=True)
    assert lab.power_state(vm) == "off" and lab.qemu_pid(vm) is None
    lab.ipmitool(vm, "chassis", "power", "on")
    pid = _until("QEMU to start", lambda: lab.qemu_pid(vm))
    assert lab.power_state(vm) == "on"
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert f"mac={MAC}" in cmdline and "-accel tcg" in cmdline
    where = subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True,
                           text=True).stdout.split()
    assert where == [lab.ns]
    lab.ipmitool(vm, "chassis", "power", "off")
    _until("QEMU to die", lambda: not _alive(pid), 30)
    assert lab.power_state(vm) == "off"


def test_stop_kills_every_process_and_deletes_the_namespace_after_a_failure(tmp_path):
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    lab = VmLab(tmp_path / "lab")
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), lab:
        vm = lab.add_vm("n1", MAC, paused=True)
        lab.ipmitool(vm, "chassis", "power", "on")
        pids.append(_until("QEMU to start", lambda: lab.qemu_pid(vm)))
        pids += [p.pid for p in lab.procs] + [vm.bmc.proc.pid]
        raise RuntimeError("boom")
    assert len(pids) >= 3 and not [p for p in pids if _alive(p)]
    assert lab.ns not in _namespaces().split()


def test_a_lab_left_by_a_dead_test_run_is_removed(tmp_path):
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{NS_PREFIX}{dead.pid}-0"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        with VmLab(tmp_path / "lab"):
            assert stale not in _namespaces().split()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)


def test_tftpd_serves_a_file_to_a_client_in_the_namespace(lab, tmp_path):
    root = tmp_path / "tftpboot"
    (root / "xcat").mkdir(parents=True)
    payload = secrets.token_bytes(3000)  # more than one 512-byte block
    (root / "xcat" / "payload.bin").write_bytes(payload)
    lab.start_tftpd(root)
    assert lab.tftp_get("xcat/payload.bin") == payload
    assert not lab.tftp_get("xcat/absent.bin")


def _pxe_scene(lab, tmp_path, poweroff: bool):
    """dhcpd (iPXE gets an HTTP script, others a TFTP name), the HTTP server with the kernel,
    initrd and script, and VM n1 powered off; returns (vm, web server, callback token)."""
    try:
        kernel = assets.kernel()
        www = tmp_path / "www"
        initrd = build_initrd(www / "initrd.gz")
    except (assets.AssetsMissing, InitrdError) as exc:
        pytest.skip(str(exc))
    (www / "vmlinuz").symlink_to(kernel)
    token, base = secrets.token_hex(16), f"http://{lab.server_ip}:8080"
    (www / "n1.ipxe").write_text(
        "#!ipxe\n"
        f"kernel {base}/vmlinuz console=ttyS0 xcatcallback={base}/callback/n1 "
        f"xcattoken={token}{' xcatpoweroff=1' if poweroff else ''}\n"
        f"initrd {base}/{initrd.name}\n"
        "boot\n")
    conf = tmp_path / "dhcpd.conf"
    conf.write_text(f"""authoritative;
ddns-update-style none;
default-lease-time 600;
subnet {lab.subnet.network_address} netmask {lab.netmask} {{
}}
host n1 {{
  hardware ethernet {MAC};
  fixed-address {IP};
  next-server {lab.server_ip};
  if exists user-class and option user-class = "iPXE" {{
    filename "{base}/n1.ipxe";
  }} else {{
    filename "undionly.kpxe";
  }}
}}
""")
    web = lab.start_http(www, 8080)
    lab.start_dhcpd(conf)
    return lab.add_vm("n1", MAC), web, token


@pytest.mark.lab
def test_first_pxe_boot_runs_the_initrd_which_calls_back_with_its_token(lab, tmp_path):
    vm, web, token = _pxe_scene(lab, tmp_path, poweroff=True)
    lab.ipmitool(vm, "chassis", "power", "on")

    lab.wait_serial(vm, r"Linux version \S+")
    assert lab.wait_serial(vm, rf"^{MARK} up (\S+)").group(1) == IP
    assert lab.wait_serial(vm, rf"^{MARK} reported (.*)$").group(1).strip() == \
        "HTTP/1.0 200 OK"
    post = web.wait_post("/callback/n1", timeout=30)
    assert post["headers"]["authorization"] == f"Bearer {token}"
    assert post["body"] == "status=installed"
    assert [p["path"] for p in web.posts()] == ["/callback/n1"]
    # xcatpoweroff=1: the node powers itself off and its BMC sees it
    lab.wait_serial(vm, rf"^{MARK} poweroff")
    _until("the BMC to report off", lambda: lab.power_state(vm) == "off", 120)


@pytest.mark.lab
def test_bmc_reset_boots_the_same_qemu_from_the_network_again(lab, tmp_path):
    vm, web, _ = _pxe_scene(lab, tmp_path, poweroff=False)
    lab.ipmitool(vm, "chassis", "power", "on")
    lab.wait_serial(vm, rf"^{MARK} idle")
    pid, mark = lab.qemu_pid(vm), lab.serial_mark(vm)
    assert pid and len(web.posts()) == 1
    lab.ipmitool(vm, "chassis", "power", "reset")
    assert lab.wait_serial(vm, rf"^{MARK} up (\S+)", start=mark).group(1) == IP
    lab.wait_serial(vm, rf"^{MARK} reported HTTP/1.0 200", start=mark)
    assert len(web.posts()) == 2 and lab.qemu_pid(vm) == pid
