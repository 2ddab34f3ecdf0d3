"""The diskless boot (issue 12, part D): the initrd of xcatd.netboot.diskless fetches a
Debian 12 root image over xcatd's HTTP site, checks its sha256, overlays it in RAM and
switch_roots into systemd, whose xcat-booted unit reports ``booted``.

The image is the lab's (xcatd.lab.diskimage: mmdebstrap, cached under the lab cache); it is
packed here the way packimage does (mksquashfs -comp zstd, a manifest.json with the sha256)
and cached with its initrd keyed by everything that goes into them, so a warm run only links
three files. nodeset (provmethod=netboot) writes the node's iPXE script; rpower starts the
VM through its BMC. Fault tests (boots that never get past the image, so they boot the lab
kernel with the product's initrd built from its modules): the image URL answers 404, the
image is corrupt, the HTTP site is down; each ends in ``failed`` with one ``xcat: FAILED:``
line on the console and a reboot. Statelite: persistent files on an NFS server in the lab
survive a reset, tmpfs ones do not, ro ones come from litetree. Times from power-on are
printed (``-rP``), never asserted.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xcatd.netboot import diskless

IMAGE = "debian12-x86_64-netboot-compute"
OSVERS, ARCH, PROFILE = "debian12", "x86_64", "compute"
MAC, IP = "52:54:00:77:00:21", "10.77.0.21"
#: power-on to booted under TCG on a quiet 2-core machine is ~1 minute; waits are 3x+
BOOT_WAIT = 420
FILES = {"kernel": "kernel", "initrd": "initrd-stateless.gz", "rootimg": "rootimg.sfs"}
MEMORY = 1024  # MiB: the squashfs (~115 MB) and the overlay live in RAM


# ---- no VM: the initrd and the in-image unit -----------------------------------------------
def _fake_image(root: Path, kver: str = "6.1.0-9-amd64", deps: dict | None = None) -> Path:
    moddir = root / "lib/modules" / kver
    deps = deps if deps is not None else {
        "kernel/drivers/net/virtio_net.ko": ["kernel/drivers/net/net_failover.ko",
                                             "kernel/net/core/failover.ko"],
        "kernel/drivers/net/net_failover.ko": ["kernel/net/core/failover.ko"],
        "kernel/net/core/failover.ko": [],
        "kernel/drivers/virtio/virtio_pci.ko": [],
        "kernel/fs/squashfs/squashfs.ko": [], "kernel/fs/overlayfs/overlay.ko": [],
        "kernel/drivers/net/ethernet/intel/e1000/e1000.ko": []}
    for path in deps:
        (moddir / path).parent.mkdir(parents=True, exist_ok=True)
        (moddir / path).write_bytes(b"\x7fELF " + path.encode())
    (moddir / "modules.dep").write_text(
        "".join(f"{p}: {' '.join(d)}\n" for p, d in deps.items()))
    (moddir / "modules.builtin").write_text("kernel/drivers/block/loop.ko\n")
    (root / "boot").mkdir()
    (root / "boot" / f"vmlinuz-{kver}").write_bytes(b"kernel")
    return root


def _cpio_names(initrd: Path) -> list[str]:
    import gzip
    data, names, i = gzip.decompress(initrd.read_bytes()), [], 0
    while True:
        size, namesize = int(data[i + 54:i + 62], 16), int(data[i + 94:i + 102], 16)
        name = data[i + 110:i + 110 + namesize - 1].decode()
        if name == "TRAILER!!!":
            return names
        names.append(name)
        i += 110 + namesize
        i += -i % 4
        i += size + (-size % 4)


def test_the_initrd_loads_the_images_own_modules_after_their_dependencies(tmp_path):
    if not any(Path(p).is_file() for p in diskless.BUSYBOX_PATHS):
        pytest.skip("busybox-static is not installed")
    root = _fake_image(tmp_path / "img")
    out = diskless.build_initrd(root, tmp_path / "initrd.gz", netdrivers=["virtio_net",
                                                                          "e1000"])
    names = _cpio_names(out)
    assert {"init", "bin/busybox", "etc/udhcpc.script", "dev/console"} <= set(names)
    order = [n.removeprefix("lib/modules/").removesuffix(".ko") for n in names
             if n.startswith("lib/modules/") and n.endswith(".ko")]
    # loop is built in (modules.builtin): nothing to load
    assert order == ["failover", "net_failover", "virtio_net", "e1000", "squashfs", "overlay"]
    assert diskless.build_initrd(root, tmp_path / "again.gz", netdrivers=["virtio_net",
                                 "e1000"]).read_bytes() == out.read_bytes()  # reproducible


def test_the_nfs_client_goes_in_when_the_kernel_has_it_for_statelite(tmp_path):
    if not any(Path(p).is_file() for p in diskless.BUSYBOX_PATHS):
        pytest.skip("busybox-static is not installed")
    root = _fake_image(tmp_path / "img", deps={
        "kernel/drivers/net/virtio_net.ko": [], "kernel/fs/squashfs/squashfs.ko": [],
        "kernel/fs/overlayfs/overlay.ko": [],
        "kernel/fs/nfs/nfsv4.ko": ["kernel/fs/nfs/nfs.ko", "kernel/net/sunrpc/sunrpc.ko"],
        "kernel/fs/nfs/nfs.ko": ["kernel/net/sunrpc/sunrpc.ko"],
        "kernel/net/sunrpc/sunrpc.ko": []})
    names = _cpio_names(diskless.build_initrd(root, tmp_path / "i.gz", netdrivers=["virtio_net"]))
    order = [n.removeprefix("lib/modules/").removesuffix(".ko") for n in names
             if n.startswith("lib/modules/") and n.endswith(".ko")]
    assert order == ["virtio_net", "squashfs", "overlay", "sunrpc", "nfs", "nfsv4"]


def test_a_module_the_image_lacks_is_an_error_naming_it(tmp_path):
    root = _fake_image(tmp_path / "img")
    with pytest.raises(diskless.DisklessError, match=r"kernel module ixgbe is neither"):
        diskless.build_initrd(root, tmp_path / "initrd.gz", netdrivers=["ixgbe"])
    assert not (tmp_path / "initrd.gz").exists()


def test_an_image_without_a_kernel_or_with_two_says_to_set_kernelver(tmp_path):
    (tmp_path / "empty/lib/modules").mkdir(parents=True)
    with pytest.raises(diskless.DisklessError, match=r"no kernel in .*install linux-image"):
        diskless.kernel_version(tmp_path / "empty")
    root = _fake_image(tmp_path / "img")
    shutil.copytree(root / "lib/modules/6.1.0-9-amd64", root / "lib/modules/6.1.0-10-amd64")
    with pytest.raises(diskless.DisklessError, match=r"more than one kernel .*kernelver"):
        diskless.kernel_version(root)
    assert diskless.kernel_version(root, "6.1.0-10-amd64") == "6.1.0-10-amd64"


def test_install_into_image_enables_the_booted_reporter_and_nothing_per_node(tmp_path):
    """An image without python3 and openssl: the plain booted reporter."""
    root = tmp_path / "img"
    (root / "etc").mkdir(parents=True)
    diskless.install_into_image(root)
    diskless.install_into_image(root)  # again: same result
    link = root / "etc/systemd/system/multi-user.target.wants/xcat-booted.service"
    assert os.readlink(link) == "/etc/systemd/system/xcat-booted.service"
    unit = (root / "etc/systemd/system/xcat-booted.service").read_text()
    assert "ExecStart=/usr/lib/xcat/xcat-booted booted" in unit
    assert "After=network.target multi-user.target" in unit
    assert os.access(root / "usr/lib/xcat/xcat-booted", os.X_OK)
    assert not (root / "usr/lib/xcat/xcatagent").exists()
    assert not list(root.rglob("*.new"))


def test_install_into_image_puts_the_node_agent_in_an_image_that_can_run_it(tmp_path):
    """python3 and openssl in the image: the agent, its sync module and its unit, enabled;
    the booted reporter of an earlier genimage is disabled (each would report)."""
    root = tmp_path / "img"
    (root / "etc").mkdir(parents=True)
    diskless.install_into_image(root)            # before python3 was in the pkglist
    for exe in ("python3", "openssl"):
        (root / "usr/bin").mkdir(parents=True, exist_ok=True)
        (root / "usr/bin" / exe).write_text("")
    diskless.install_into_image(root)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert sorted(p.name for p in wants.iterdir()) == ["xcatagent.service"]
    assert os.readlink(wants / "xcatagent.service") == "/etc/systemd/system/xcatagent.service"
    unit = (root / "etc/systemd/system/xcatagent.service").read_text()
    assert "After=network-online.target multi-user.target" in unit
    assert "TimeoutStartSec=30" in unit
    assert "ExecStart=/usr/bin/python3 /usr/lib/xcat/xcatagent boot" in unit
    assert os.access(root / "usr/lib/xcat/xcatagent", os.X_OK)
    assert (root / "usr/lib/xcat/xcatsync.py").is_file()


def test_install_into_image_refuses_a_symlink_leading_out_of_the_image(tmp_path):
    root, outside = tmp_path / "img", tmp_path / "host-etc"
    (root / "etc").mkdir(parents=True)
    outside.mkdir()
    (root / "etc/systemd").symlink_to(outside)
    with pytest.raises(diskless.DisklessError, match="leads outside the image"):
        diskless.install_into_image(root)
    assert not any(outside.iterdir())


def test_the_kernel_command_line_refuses_a_bad_sha256():
    with pytest.raises(diskless.DisklessError, match="sha256 'abc'"):
        diskless.kernel_cmdline("http://mn/i.sfs", "abc", "n1", "http://mn/cb", "t")


@pytest.mark.parametrize("script", ["init", "udhcpc.script", "xcat-booted"])
def test_the_shipped_boot_scripts_are_valid_shell(script, tmp_path):
    path = tmp_path / script
    path.write_text(diskless.template(script))
    r = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ---- the packed image, cached ---------------------------------------------------------------
def _packed() -> Path:
    """The lab image packed (FILES and manifest.json, as packimage leaves them) under the lab
    cache, keyed by the image's spec and the diskless boot's own files."""
    from xcatd.lab import assets, diskimage
    key = hashlib.sha256(diskimage.spec_hash().encode())
    for name in ("init", "udhcpc.script", "xcat-booted", "xcat-booted.service"):
        key.update(diskless.template(name).encode())
    key.update(Path(diskless.__file__).read_bytes())
    key.update(json.dumps(FILES).encode())
    cache = assets.assets_dir() / "diskless"
    out = cache / f"packed-{key.hexdigest()[:16]}"
    if (out / "manifest.json").is_file():
        return out
    for tool, pkg in (("mksquashfs", "squashfs-tools"), ("mmdebstrap", "mmdebstrap")):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (Debian package {pkg})")
    try:
        diskimage.tarball()
    except diskimage.ImageUnavailable as exc:
        pytest.skip(str(exc))
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "manifest.json").is_file():
            return out
        work = cache / f".pack-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            root = diskimage.unpack(work / "rootimg")
            diskless.install_into_image(root)
            kver = diskless.kernel_version(root)
            shutil.copyfile(diskless.kernel_path(root, kver), work / "kernel")
            diskless.build_initrd(root, work / "initrd-stateless.gz")
            subprocess.run(["mksquashfs", str(root), str(work / "rootimg.sfs"), "-comp", "zstd",
                            "-Xcompression-level", "3", "-noappend", "-quiet"], check=True,
                           capture_output=True, timeout=900)
            shutil.rmtree(root)
            # packimage's manifest (xcatd.provision.packimage), the part nodeset reads
            files = {k: {"file": n, "sha256": _sha256(work / n)} for k, n in FILES.items()}
            (work / "manifest.json").write_text(json.dumps(
                {**files, "kernelver": kver, "spec": diskimage.spec()}, indent=1))
            shutil.rmtree(out, ignore_errors=True)
            os.replace(work, out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return out


def _fault_pack(tmp_path: Path) -> Path:
    """For the fault tests, whose boots never get past the image: the lab kernel, the
    product's diskless initrd built from that kernel's modules (xcatd.lab.assets), and a
    small stand-in root image with its sha256 in the manifest."""
    from xcatd.lab import assets
    try:
        kernel, mods, kver = assets.kernel(), assets.modules_dir(), assets.kernel_version()
    except assets.AssetsMissing as exc:
        pytest.skip(str(exc))
    root, out = tmp_path / "fault-root", tmp_path / "fault-pack"
    moddir = root / "lib/modules" / kver
    moddir.mkdir(parents=True)
    out.mkdir()
    deps = []
    for ko in sorted(mods.glob("*.ko")):
        (moddir / ko.name).symlink_to(ko)
        deps.append(f"{ko.name}: {' '.join(d + '.ko' for d in assets.module_depends(ko))}\n")
    (moddir / "modules.dep").write_text("".join(deps))
    diskless.build_initrd(root, out / FILES["initrd"], kernelver=kver,
                          netdrivers=["virtio_net", "virtio_pci"])
    shutil.copyfile(kernel, out / FILES["kernel"])
    (out / FILES["rootimg"]).write_bytes(os.urandom(1 << 20))
    (out / "manifest.json").write_text(json.dumps(
        {k: {"file": n, "sha256": _sha256(out / n)} for k, n in FILES.items()}))
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _place(packed: Path, mn, initrd: Path | None = None, kernel: Path | None = None) -> Path:
    """The packed image where packimage leaves it (hard links to the cache: never written
    through; a test that changes a file replaces it)."""
    dest = mn.root / "install/netboot" / OSVERS / ARCH / PROFILE
    dest.mkdir(parents=True)
    for name in (*FILES.values(), "manifest.json"):
        try:
            os.link(packed / name, dest / name)
        except OSError:
            shutil.copyfile(packed / name, dest / name)
    if initrd is not None:  # the bare test initrd (and its kernel) instead (comparison)
        manifest = json.loads((dest / "manifest.json").read_text())
        for what, src in (("initrd", initrd), ("kernel", kernel)):
            (dest / FILES[what]).unlink()
            shutil.copyfile(src, dest / FILES[what])
            manifest[what]["sha256"] = _sha256(src)
        (dest / "manifest.json").unlink()
        (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


# ---- the lab scene ---------------------------------------------------------------------------
def _status(mn) -> str | None:
    rows = mn.db.rows("nodelist", keys=["n1"])
    return rows[0].get("status") if rows else None


def _until(what, probe, timeout):
    deadline = time.monotonic() + timeout
    while not (got := probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return got


def _start_xcatd(mn, lab, log: Path):
    with open(log, "ab") as fh:
        xcatd = lab.popen([os.path.join(os.path.dirname(sys.executable), "xcatd"), "--listen",
                           lab.server_ip, "--port", "3001"],
                          env={**os.environ, "XCATROOT": str(mn.root)},
                          stdout=fh, stderr=subprocess.STDOUT)
    _until("xcatd's HTTP site", lambda: xcatd.poll() is not None or lab.run(
        ["ss", "-H", "-ltn", "sport", "= :80"]).stdout.strip(), 60)
    assert xcatd.poll() is None, log.read_text()
    return xcatd


def _scene(mn, lab, tmp_path, addkcmdline: str = "", initrd: Path | None = None,
           kernel: Path | None = None, image: str | None = None, node_attrs: tuple = (),
           method: str = "netboot", packed: Path | None = None):
    """n1 (SeaBIOS + iPXE ROM, xnba) with its BMC, the packed image placed and defined as
    a netboot osimage (or ``image``, built and packed by the test), nodeset done, dhcpd and
    xcatd running; returns (vm, image dir, xcatd, its log)."""
    if packed is not None:
        where = _place(packed, mn)
    elif image is None:
        where = _place(_packed(), mn, initrd, kernel)
    else:
        where = mn.root / "install/netboot" / OSVERS / ARCH / image.rsplit("-", 1)[1]
    for key, value in (("master", lab.server_ip), ("dhcpsetup", "n"),
                       ("dhcpinterfaces", lab.bridge), ("tftpserver", "tftpd-hpa")):
        mn.ok("chtab", f"key={key}", f"site.value={value}")
    mn.ok("mkdef", "-t", "network", "-o", "lab", f"net={lab.subnet.network_address}",
          f"mask={lab.netmask}", f"mgtifname={lab.bridge}")
    if image is None:
        mn.ok("mkdef", "-t", "osimage", "-o", IMAGE, "imagetype=linux", "provmethod=netboot",
              f"osvers={OSVERS}", f"osarch={ARCH}", f"profile={PROFILE}", "osname=Linux",
              *([f"addkcmdline={addkcmdline}"] if addkcmdline else []))
    vm = lab.add_vm("n1", MAC, memory=MEMORY)
    mn.ok("nodeadd", "n1", "groups=compute", f"hosts.ip={IP}", f"mac.mac={MAC}",
          "nodetype.arch=x86_64", "nodehm.serialport=0", "nodehm.serialspeed=115200",
          "noderes.netboot=xnba", "nodehm.mgt=ipmi", f"ipmi.bmc={vm.bmc_addr}",
          f"ipmi.bmcport={vm.bmc_port}", f"ipmi.username={vm.bmc_user}",
          f"ipmi.password={vm.bmc_password}", *node_attrs)
    mn.ok("makedhcp", "-n")
    lab.start_dhcpd(mn.root / "etc/dhcp/dhcpd.conf")
    image = image or IMAGE
    assert mn.ok("nodeset", "n1", f"osimage={image}").lines == [f"n1: {method} {image}"]
    log = tmp_path / "xcatd.log"
    return vm, where, _start_xcatd(mn, lab, log), log


def _rpower(mn, state: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("XCATBYPASS", "XCATHOST")}
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "rpower"), "n1", state],
                       capture_output=True, text=True, timeout=120,
                       env={**env, "XCATROOT": str(mn.root)})
    assert (r.returncode, r.stdout.strip()) == (0, f"n1: {state}"), r.stderr


def _watch(mn, until: str, timeout: float) -> tuple[list[str], float]:
    """The node's statuses as they change, from now until ``until`` (and seconds taken)."""
    seen: list[str] = []
    start = time.monotonic()
    deadline = start + timeout
    while not seen or seen[-1] != until:
        s = _status(mn)
        if s and (not seen or seen[-1] != s):
            seen.append(s)
        assert time.monotonic() < deadline, f"status never became {until}: saw {seen}"
        assert until == "failed" or "failed" not in seen, f"the node failed: saw {seen}"
        time.sleep(0.2)
    return seen, time.monotonic() - start


LAB_IMAGE = "debian12-x86_64-netboot-lab"


def test_genimage_packimage_nodeset_rpower_boot_a_vm_diskless_into_systemd(
        mn_sqlite, vmlab, tmp_path, monkeypatch):
    """As a new user does it: define a Debian 12 netboot osimage by hand (its pkglist and
    postinstall under the site's custom directory), genimage, packimage, nodeset, rpower on;
    the VM boots diskless into systemd, where the node agent (genimage put it in: the image
    has python3 and openssl) enrols and runs the node's postscripts in xCAT's order: the
    stock ones of xcatdefaults (syslog, remoteshell, syncfiles, then otherpkgs), a script
    that succeeds, one that fails and one that hangs, killed at its timeout. The node ends
    ``failed`` naming the two; the event log has every script. Then, on the running node:
    the management node's root key opens ssh (remoteshell), ``updatenode n1 -P hello``
    and ``updatenode n1 -F`` (a synclist with an EXECUTE entry) go through the agent.
    genimage keeps its packages and trees in the lab cache (PYXCAT_IMAGE_CACHE)."""
    from xcatd.lab import assets
    if not shutil.which("mmdebstrap") or not shutil.which("mksquashfs"):
        pytest.skip("needs mmdebstrap and squashfs-tools")
    mn, lab = mn_sqlite, vmlab
    monkeypatch.setenv("PYXCAT_IMAGE_CACHE", str(assets.assets_dir() / "genimage"))
    mn.ok("mkdef", "-t", "osimage", "-o", LAB_IMAGE, "imagetype=linux", "provmethod=netboot",
          f"osvers={OSVERS}", f"osarch={ARCH}", "profile=lab", "osname=Linux",
          *_lab_image_files(mn), "synclists=/install/custom/sync/lab.synclist")
    built = mn.run("genimage", LAB_IMAGE)
    if built.rc and "mirror" in built.err.lower():
        pytest.skip(f"the Debian mirror cannot be reached: {built.err[-300:]}")
    assert built.rc == 0, built.err
    assert mn.ok("packimage", LAB_IMAGE).rc == 0
    scripts = mn.root / "install/postscripts"
    for name, text in (("hello", AGENT_HELLO), ("bad", "#!/bin/sh\necho about to fail\nexit 3\n"),
                       ("hang", "#!/bin/sh\nsleep 3000 &\necho hanging\nexec sleep 3001\n")):
        (scripts / name).write_text(text)
        (scripts / name).chmod(0o755)
    sync = mn.root / "install/custom/sync"
    sync.mkdir(parents=True)
    (sync / "motd").write_text("synced by xcat\n")
    (sync / "post.sh").write_text("#!/bin/sh\necho EXECUTED-$(cat /etc/xcat-motd)\n")
    (sync / "post.sh").chmod(0o755)
    s = "/install/custom/sync"   # paths on the management node are under its XCATROOT
    (sync / "lab.synclist").write_text(
        f"{s}/motd -> /etc/xcat-motd\n{s}/post.sh -> /root/post.sh\nEXECUTE:\n{s}/post.sh\n")
    vm, where, _xcatd, log = _scene(mn, lab, tmp_path, image=LAB_IMAGE, node_attrs=(
        "postscripts.postscripts=hostname,setupntp,confignetwork,hello,bad,hang@8",))
    syslog = tmp_path / "syslog.received"   # the management node's syslog port, in the lab
    listener = lab.popen([sys.executable, "-c", SYSLOG_LISTENER, lab.server_ip,
                          str(syslog)])
    # genimage put the node agent in the image, enabled (a link inside the image)
    assert (where / "rootimg/usr/lib/xcat/xcatagent").is_file()
    assert (where / "rootimg/etc/systemd/system/multi-user.target.wants/xcatagent.service"
            ).is_symlink()
    assert not (where / "rootimg/etc/systemd/system/multi-user.target.wants/"
                "xcat-booted.service").exists()
    _rpower(mn, "on")
    seen, seconds = _watch(mn, "failed", BOOT_WAIT)
    assert seen[-3:] == ["netbooting", "configuring", "failed"], seen
    console = lab.serial_text(vm)
    for line in (r"xcat: sha256 verified", r"xcat: switch_root into /sbin/init",
                 r"Reached target .*Multi-User System", r"xcatagent: enrolled as n1",
                 r"xcatagent: reported failed \(failed: bad, hang\)"):
        assert re.search(line, console), f"{line!r} not on the console:\n{console[-4000:]}"
    events = [(e["script"], e["status"]) for e in mn.db.rows("nodeevents")
              if e["node"] == "n1" and e["script"]]
    assert events == [("syslog", "ok"), ("remoteshell", "ok"), ("syncfiles", "ok"),
                      ("hostname", "ok"), ("setupntp", "ok"), ("confignetwork", "ok"),
                      ("hello", "ok"), ("bad", "failed"), ("hang", "timeout"),
                      ("otherpkgs", "ok")], (events, log.read_text()[-3000:])
    shown = _cli(mn, "nodeevents", "n1")
    assert "n1:     | about to fail" in shown.stdout, shown.stdout
    # remoteshell: the management node's root key and the node's own host key
    key = mn.root / "root/.ssh/id_ed25519"
    known = tmp_path / "known_hosts"
    from xcatd.security import nodekeys
    known.write_text(nodekeys.known_hosts_line(mn.paths, "n1", [IP]) + "\n")
    ssh = lab.run(["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o",
                   "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
                   "-o", "ConnectTimeout=20", f"root@{IP}", "cat /proc/sys/kernel/hostname"],
                  timeout=120)
    assert ssh.returncode == 0, ssh.stderr
    assert ssh.stdout.strip() == "n1"                                     # hostname
    node_sh = ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
               "-o", f"UserKnownHostsFile={known}", f"root@{IP}"]
    ntp = lab.run([*node_sh, "cat /etc/systemd/timesyncd.conf.d/xcat.conf"], timeout=120)
    assert f"NTP={lab.server_ip}" in ntp.stdout.replace(" ", ""), ntp.stdout + ntp.stderr
    lab.run([*node_sh, "logger -t xcattest forwarded-to-the-management-node"], timeout=120)
    _until("the node's syslog line at the management node", lambda: syslog.exists() and
           "forwarded-to-the-management-node" in syslog.read_text(errors="replace"), 60)
    listener.kill()
    listener.wait()
    # updatenode through the agent: a script, then the synclist with its EXECUTE entry
    ran = _cli(mn, "updatenode", "n1", "-P", "hello")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "n1: hello from n1 (master " + lab.server_ip + ", UPDATENODE=1)" in ran.stdout
    # the boot's syncfiles synced both files and ran post.sh; a changed post.sh runs again
    (sync / "post.sh").write_text("#!/bin/sh\necho EXECUTED-AGAIN-$(cat /etc/xcat-motd)\n")
    synced = _cli(mn, "updatenode", "n1", "-F")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "n1: /root/post.sh: EXECUTED-AGAIN-synced by xcat" in synced.stdout, synced.stdout
    assert 'File synchronization has completed for nodes: "n1"' in synced.stdout
    assert mn.db.rows("nodelist", keys=["n1"])[0]["updatestatus"] == "synced"
    # the agent's cost per script, against a bash loop running the same 20 scripts on the
    # same VM (printed, not asserted)
    names = [f"t{i:02d}" for i in range(1, 21)]
    for name in names:
        (scripts / name).write_text("#!/bin/sh\n:\n")
        (scripts / name).chmod(0o755)
    timing = lab.run(["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o",
                      "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
                      f"root@{IP}", AGENT_TIMING.format(scripts=",".join(names))], timeout=300)
    assert timing.returncode == 0, timing.stderr
    agent_s, loop_s = (float(x) for x in timing.stdout.split()[-2:])  # 19 more scripts
    print(f"\nper-script cost on the VM (TCG), 19 more trivial scripts: agent "
          f"{agent_s / 19 * 1000:.1f} ms each, bash loop {loop_s / 19 * 1000:.1f} ms each: "
          f"the agent's overhead {(agent_s - loop_s) / 19 * 1000:.1f} ms per script")
    stamps = {what: re.search(rf"\[\s*([\d.]+)\][^\n]*{what}", console)
              for what in ("Reached target .*Multi-User", "xcatagent: enrolled",
                           "xcatagent: reported failed")}
    print(f"\ngenimage'd diskless image (squashfs "
          f"{(where / 'rootimg.sfs').stat().st_size >> 20} MiB, TCG): power-on to the "
          f"end of its postscripts {seconds:.1f} s; kernel clock: "
          + ", ".join(f"{w.split(':')[-1].strip(' .*')} {m.group(1)} s"
                      for w, m in stamps.items() if m))


#: a syslog receiver (UDP 514 at the address given) that appends what it gets to a file
SYSLOG_LISTENER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 514))
with open(sys.argv[2], "ab", buffering=0) as out:
    while True:
        out.write(s.recv(65536) + b"\\n")
"""
#: on the node: one run to fetch the scripts; then the agent running 1 and 20 scripts and a
#: bash loop running the same; the marginal cost per script of each (its fixed costs, python's
#: start and the plan's fetch, cancel out)
AGENT_TIMING = (
    "A='python3 /usr/lib/xcat/xcatagent run --mode updatenode --scripts'; "
    "$A {scripts} >/dev/null; "
    "t0=$(date +%s.%N); $A t01 >/dev/null; t1=$(date +%s.%N); $A {scripts} >/dev/null; "
    "t2=$(date +%s.%N); bash -c 'cd /xcatpost; ./t01 </dev/null'; t3=$(date +%s.%N); "
    "bash -c 'cd /xcatpost; for s in $(echo {scripts} | tr , \" \"); do ./$s </dev/null; done'; "
    "t4=$(date +%s.%N); "
    "python3 -c \"print(($t2-$t1)-($t1-$t0), ($t4-$t3)-($t3-$t2))\"")
AGENT_HELLO = '#!/bin/sh\necho "hello from $NODE (master $MASTER, UPDATENODE=$UPDATENODE)"\n'


def _cli(mn, *argv: str) -> subprocess.CompletedProcess:
    """A command through the xcatd the test started (its unix socket), as an admin runs it."""
    env = {k: v for k, v in os.environ.items() if k not in ("XCATBYPASS", "XCATHOST")}
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), argv[0]), *argv[1:]],
                          capture_output=True, text=True, timeout=300,
                          env={**env, "XCATROOT": str(mn.root)})


LITE_IMAGE = "debian12-x86_64-statelite-lab"
#: a unit added to the image: each boot appends its boot id to a persistent file and to a
#: tmpfs one, tries to write the ro one, and prints what it found on the console
PROBE = """#!/bin/sh
id=$(cat /proc/sys/kernel/random/boot_id)
echo "$id" >> /var/lib/lite/boots.log
echo "$id" >> /etc/lite-tmpfs.log
if echo x >> /etc/lite-ro.conf 2>/dev/null; then ro=writable; else ro=read-only; fi
echo "LITEPROBE persistent=$(wc -l < /var/lib/lite/boots.log) \
tmpfs=$(wc -l < /etc/lite-tmpfs.log) seed=$(cat /var/lib/lite/seed) \
ro=$ro:$(cat /etc/lite-ro.conf) mounts=$(grep -c ' nfs4 ' /proc/mounts)" > /dev/console
"""
PROBE_UNIT = """[Unit]
Description=statelite probe (test)
After=local-fs.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/lite-probe
[Install]
WantedBy=multi-user.target
"""


def _lab_image_files(mn) -> list[str]:
    """The lab image's pkglist and postinstall under the site's custom directory (the same
    spec as the genimage test's: genimage restores the tree from the cache)."""
    from xcatd.lab import diskimage
    custom = mn.root / "install/custom/netboot/debian"
    custom.mkdir(parents=True, exist_ok=True)
    (custom / "lab.pkglist").write_text(
        "\n".join(diskimage.PACKAGES + diskimage.AGENT_PACKAGES) + "\n")
    post = custom / "lab.postinstall"  # the lab image's customisation, as a postinstall
    post.write_text("#!/bin/sh\nset -e\n" + "\n".join(diskimage.CUSTOMIZE) + "\n")
    post.chmod(0o755)
    return ["pkglist=/install/custom/netboot/debian/lab.pkglist",
            "postinstall=/install/custom/netboot/debian/lab.postinstall"]


def test_statelite_keeps_persistent_files_across_a_reset_and_shows_litetree_ro_files(
        mn_sqlite, vmlab, tmp_path, monkeypatch):
    """A statelite osimage (the lab image): litefile says /var/lib/lite/ is persistent,
    /etc/lite-tmpfs.log tmpfs and /etc/lite-ro.conf ro; litetree and statelite.statemnt
    ($noderes.nfsserver) are on an NFS server in the lab's namespace. genimage, liteimg,
    nodeset, rpower on: the probe unit sees one boot in both files and the litetree copy,
    read-only. rpower reset: the persistent file has both boots (and is on the server),
    the tmpfs one only the new one."""
    from xcatd.lab import assets
    if not shutil.which("mmdebstrap") or not shutil.which("mksquashfs"):
        pytest.skip("needs mmdebstrap and squashfs-tools")
    if not shutil.which("ganesha.nfsd"):
        pytest.skip("needs nfs-ganesha and nfs-ganesha-vfs (make test installs them)")
    mn, lab = mn_sqlite, vmlab
    monkeypatch.setenv("PYXCAT_IMAGE_CACHE", str(assets.assets_dir() / "genimage"))
    mn.ok("mkdef", "-t", "osimage", "-o", LITE_IMAGE, "imagetype=linux", "provmethod=statelite",
          f"osvers={OSVERS}", f"osarch={ARCH}", "profile=lab", "osname=Linux",
          *_lab_image_files(mn))
    built = mn.run("genimage", LITE_IMAGE)
    if built.rc and "mirror" in built.err.lower():
        pytest.skip(f"the Debian mirror cannot be reached: {built.err[-300:]}")
    assert built.rc == 0, built.err
    where = mn.root / "install/netboot" / OSVERS / ARCH / "lab"
    root = where / "rootimg"
    (root / "usr/local/sbin/lite-probe").write_text(PROBE)
    (root / "usr/local/sbin/lite-probe").chmod(0o755)
    (root / "etc/systemd/system/lite-probe.service").write_text(PROBE_UNIT)
    (root / "etc/systemd/system/multi-user.target.wants/lite-probe.service").symlink_to(
        "/etc/systemd/system/lite-probe.service")
    (root / "var/lib/lite").mkdir()
    (root / "var/lib/lite/seed").write_text("from-the-image\n")
    (root / "etc/lite-ro.conf").write_text("from-the-image\n")
    export = tmp_path / "nfs"
    (export / "litetree/etc").mkdir(parents=True)
    (export / "state").mkdir()
    (export / "litetree/etc/lite-ro.conf").write_text("from-litetree\n")
    for path, opts in (("/var/lib/lite/", "persistent"), ("/etc/lite-tmpfs.log", "tmpfs"),
                       ("/etc/lite-ro.conf", "ro")):
        mn.ok("chtab", f"image={LITE_IMAGE},file={path}", f"litefile.options={opts}")
    mn.ok("chtab", "priority=1", f"litetree.directory={lab.server_ip}:{export}/litetree",
          f"litetree.image={LITE_IMAGE}")
    mn.ok("chtab", "node=n1", f"statelite.statemnt=$noderes.nfsserver:{export}/state")
    out = mn.ok("liteimg", LITE_IMAGE).out
    assert "3 litefile entries written" in out and "rootimg.sfs" in out, out
    lab.start_nfs(export)
    vm, _where, _xcatd, _log = _scene(mn, lab, tmp_path, image=LITE_IMAGE, method="statelite",
                                      node_attrs=(f"noderes.nfsserver={lab.server_ip}",))
    _rpower(mn, "on")
    first = lab.wait_serial(vm, r"LITEPROBE (.*)$", timeout=BOOT_WAIT)
    assert first.group(1).split() == [
        "persistent=1", "tmpfs=1", "seed=from-the-image", "ro=read-only:from-litetree",
        "mounts=4"], lab.serial_text(vm)[-4000:]  # the two NFS mounts and the two binds
    _until("booted", lambda: _status(mn) == "booted", BOOT_WAIT)
    console = lab.serial_text(vm)
    assert re.search(r"xcat: statelite: 3 files placed, persistent on "
                     r"/\.statelite/persistent/n1", console), console[-4000:]
    mark = lab.serial_mark(vm)
    _rpower(mn, "reset")
    second = lab.wait_serial(vm, r"LITEPROBE (.*)$", timeout=BOOT_WAIT, start=mark)
    assert second.group(1).split()[:4] == [
        "persistent=2", "tmpfs=1", "seed=from-the-image", "ro=read-only:from-litetree"], \
        lab.serial_text(vm, mark)[-4000:]
    # the node's persistent files are on the NFS server, under <statemnt>/<node>
    boots = (export / "state/n1/var/lib/lite/boots.log").read_text().split()
    assert len(boots) == 2 and boots[0] != boots[1]
    assert (export / "state/n1/var/lib/lite/seed").read_text() == "from-the-image\n"
    assert (export / "litetree/etc/lite-ro.conf").read_text() == "from-litetree\n"
    _until("booted after the reset", lambda: _status(mn) == "booted", BOOT_WAIT)
    assert "FAILED" not in lab.serial_text(vm)


@pytest.mark.lab
def test_a_diskless_node_boots_the_image_into_systemd_and_reports_booted(mn_sqlite, vmlab,
                                                                           tmp_path):
    """nodeset osimage=<netboot image>, rpower on: iPXE, our initrd fetches and verifies the
    squashfs, overlays it, switch_roots; systemd reaches multi-user and xcat-booted reports.
    The status goes netbooting -> booted."""
    mn, lab = mn_sqlite, vmlab
    vm, where, _xcatd, _log = _scene(mn, lab, tmp_path)
    _rpower(mn, "on")
    seen, seconds = _watch(mn, "booted", BOOT_WAIT)
    assert seen[-2:] == ["netbooting", "booted"], seen
    console = lab.serial_text(vm)
    for line in (r"xcat: diskless initrd on \S+ for node n1", rf"xcat: up {IP} on eth0",
                 r"xcat: sha256 verified", r"xcat: reported netbooting: HTTP/1\.[01] 200",
                 r"xcat: switch_root into /sbin/init", r"Reached target .*Multi-User System",
                 r"xcat: reported booted for n1: HTTP 200"):
        assert re.search(line, console), f"{line!r} not on the console:\n{console[-4000:]}"
    assert "FAILED" not in console
    assert mn.db.rows("chain", keys=["n1"])[0]["currstate"] == f"netboot {IMAGE}"
    print(f"\ndiskless (squashfs {(where / 'rootimg.sfs').stat().st_size >> 20} MiB, "
          f"TCG): power-on to booted {seconds:.1f} s")


@pytest.mark.lab
def test_a_bare_kernel_and_initrd_that_only_reports_for_comparison(mn_sqlite, vmlab,
                                                                    tmp_path):
    """The same path with the lab's test initrd, which reports and does nothing else: the
    floor the diskless boot is compared with (times printed)."""
    from xcatd.lab import assets
    from xcatd.lab.initrd import MARK, InitrdError, build_initrd
    try:
        bare, kernel = build_initrd(tmp_path / "bare.gz"), assets.kernel()
    except (assets.AssetsMissing, InitrdError) as exc:
        pytest.skip(str(exc))
    mn, lab = mn_sqlite, vmlab
    _vm, _where, _xcatd, _log = _scene(mn, lab, tmp_path, "xcatstatus=booted", initrd=bare,
                                        kernel=kernel)
    _rpower(mn, "on")
    _seen, seconds = _watch(mn, "booted", BOOT_WAIT)
    assert MARK in lab.serial_text("n1")
    print(f"\nbare kernel+initrd: power-on to booted {seconds:.1f} s")


# ---- faults: each ends in failed, bounded, with one line on the console ----------------------
FAILDELAY = 6
FAULT_ARGS = f"xcat.faildelay={FAILDELAY} xcat.retries=3"


def _failed(mn, lab, vm, why: str) -> float:
    """Wait for the FAILED line, status failed, then the reboot; returns seconds from now
    (just after power-on) to status failed."""
    start = time.monotonic()
    line = lab.wait_serial(vm, r"^xcat: FAILED: (.*)$", timeout=BOOT_WAIT).group(1)
    assert re.search(why, line), line
    _seen, _ = _watch(mn, "failed", 120)
    seconds = time.monotonic() - start
    console = lab.serial_text(vm)
    assert console.count("xcat: FAILED:") == 1
    assert re.search(r"xcat: reported failed: HTTP/1\.[01] 200", console), console[-3000:]
    mark = console.index(f"xcat: rebooting in {FAILDELAY} s")
    lab.wait_serial(vm, r"iPXE", timeout=FAILDELAY * 6 + 60, start=mark)  # rebooted
    return seconds


def test_an_image_url_that_answers_404_ends_in_failed(mn_sqlite, vmlab, tmp_path):
    mn, lab = mn_sqlite, vmlab
    vm, where, _xcatd, _log = _scene(mn, lab, tmp_path, FAULT_ARGS,
                                     packed=_fault_pack(tmp_path))
    (where / "rootimg.sfs").unlink()  # after nodeset: the URL answers 404
    _rpower(mn, "on")
    # _failed asserts the FAILED line, the failed report and the reboot
    seconds = _failed(mn, lab, vm, r"rootimg\.sfs: .*404.* after 3 tries: check packimage")
    assert _status(mn) == "failed"
    assert mn.db.rows("chain", keys=["n1"])[0]["currstate"] == "boot"  # no endless netboot
    print(f"\n404: power-on to failed {seconds:.1f} s")


def test_a_corrupt_image_fails_its_sha256_check(mn_sqlite, vmlab, tmp_path):
    mn, lab = mn_sqlite, vmlab
    vm, where, _xcatd, _log = _scene(mn, lab, tmp_path, FAULT_ARGS,
                                     packed=_fault_pack(tmp_path))
    sfs = where / "rootimg.sfs"
    data = bytearray(sfs.read_bytes())
    data[len(data) // 2] ^= 0xFF
    sfs.unlink()  # a new file: never write through the link to the cache
    sfs.write_bytes(bytes(data))
    _rpower(mn, "on")
    seconds = _failed(mn, lab, vm, r"sha256 [0-9a-f]{64} is not xcat\.sha256 .*run packimage")
    assert "switch_root" not in lab.serial_text(vm)
    print(f"\ncorrupt image: power-on to failed {seconds:.1f} s")


def test_the_http_site_down_ends_in_failed_once_it_is_back(mn_sqlite, vmlab, tmp_path):
    """xcatd stops once the initrd runs: every image try is refused, the FAILED line shows;
    xcatd comes back within the reboot deadline and the initrd's report of failed lands."""
    mn, lab = mn_sqlite, vmlab
    vm, _where, xcatd, log = _scene(mn, lab, tmp_path, "xcat.faildelay=60 xcat.retries=3",
                                    packed=_fault_pack(tmp_path))
    _rpower(mn, "on")
    lab.wait_serial(vm, r"xcat: diskless initrd on", timeout=BOOT_WAIT)
    lab.kill(xcatd)
    line = lab.wait_serial(vm, r"^xcat: FAILED: (.*)$", timeout=180).group(1)
    assert re.search(r"rootimg\.sfs: .*(refused|can't connect).* after 3 tries", line), line
    _start_xcatd(mn, lab, log)
    _watch(mn, "failed", 90)
    lab.wait_serial(vm, r"xcat: reported failed: HTTP/1\.[01] 200", timeout=60)
