"""The boot loaders' own files (xcatd.netboot.bootfiles): mknb and xcatconfig put them in the
TFTP root from Debian's packages, each checked; makedhcp hands a node only loaders that are
there, and every file it may name is there after a fresh xcatconfig."""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from support.cluster import MASTER, MGT_DHCP, NET, nodes, site

from xcatd.netboot.bootfiles import FILES, TEXTS, efi_problem, place
from xcatd.netboot.loaders import LOADERS

needs_dhcpd = pytest.mark.skipif(not shutil.which("dhcpd"), reason="isc-dhcp-server missing")
PACKAGES_MISSING = [f.source for f in FILES if f.source and not Path(f.source).is_file()]
needs_packages = pytest.mark.skipif(bool(PACKAGES_MISSING),
                                    reason=f"loader packages missing: {PACKAGES_MISSING}")


def sources(tmp_path: Path, leave_out: str = "", garbage: str = "") -> Path:
    """A copy of the packages' files under a root of its own, without the ones of package
    ``leave_out``, and with ``garbage``'s file replaced by text."""
    root = tmp_path / "src"
    for f in FILES:
        if f.package == leave_out or not f.source:
            continue
        dest = root / f.source.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if f.name == garbage:
            dest.write_bytes(b"#!/bin/sh\necho not a loader\n" * 40)
        else:
            shutil.copy(f.source, dest)
    return root


@needs_packages
def test_mknb_places_every_loader_world_readable_and_checked(mn_sqlite, tmp_path):
    tftp = mn_sqlite.root / "tftpboot"
    shutil.rmtree(tftp)
    r = mn_sqlite.ok("mknb", "x86_64")
    assert len(r.lines) == len(FILES) and all(line.endswith("(placed)") for line in r.lines)
    for f in FILES:
        data = (tftp / f.name).read_bytes()
        assert data == (TEXTS[f.name].encode() if f.kind == "text"
                        else Path(f.source).read_bytes()), f.name
        assert stat.S_IMODE((tftp / f.name).stat().st_mode) == 0o644, f.name
        assert f.problem(data) is None, f.name
    assert efi_problem((tftp / "boot/grub2/grub2.x86_64").read_bytes()) is None  # shim
    again = mn_sqlite.ok("mknb", "x86_64")
    assert all(line.endswith("(unchanged)") for line in again.lines)


def test_mknb_refuses_an_unknown_architecture_and_no_architecture(mn_sqlite):
    r = mn_sqlite.run("mknb", "ppc64le")
    assert r.rc == 1 and "architecture 'ppc64le' is not supported (use x86_64)" in r.err
    r = mn_sqlite.run("mknb")
    assert r.rc == 1 and "Usage: mknb <arch>" in r.err


@needs_packages
def test_a_missing_package_is_named_and_the_other_loaders_are_placed(tmp_path):
    src = sources(tmp_path, leave_out="shim-signed")
    placed = list(place(tmp_path / "tftp", "x86_64", source_root=src))
    errors = [p.error for p in placed if p.error]
    assert errors == [f"{src}/usr/lib/shim/shimx64.efi.signed is missing: install the Debian "
                      "package shim-signed"]
    assert sum(p.changed for p in placed) == len(FILES) - 1
    assert not (tmp_path / "tftp/boot/grub2/grub2.x86_64").exists()


@needs_packages
def test_a_file_that_is_not_a_loader_is_refused_and_not_placed(tmp_path):
    src = sources(tmp_path, garbage="xcat/xnba.efi")
    bad = [p for p in place(tmp_path / "tftp", "x86_64", source_root=src) if p.error]
    assert [p.file.name for p in bad] == ["xcat/xnba.efi"]
    assert bad[0].error.endswith("not a UEFI executable (no MZ header)")
    assert not (tmp_path / "tftp/xcat/xnba.efi").exists()


def test_efi_check_knows_x86_64_from_another_machine():
    pe = bytearray(b"MZ" + bytes(0x3A) + (0x40).to_bytes(4, "little") + b"PE\0\0"
                   + (0xAA64).to_bytes(2, "little") + bytes(600))
    assert efi_problem(bytes(pe)) == "a UEFI executable for machine 0xaa64, not x86-64"
    pe[0x44:0x46] = (0x8664).to_bytes(2, "little")
    assert efi_problem(bytes(pe)) is None


@needs_packages
def test_a_fresh_xcatconfig_leaves_every_loader_makedhcp_may_name(bare_root):
    r = bare_root.ok("xcatconfig")
    assert f"Placed {len(FILES)} boot loader files" in r.out
    tftp = bare_root.root / "tftpboot"
    for netboot, ld in LOADERS.items():
        boot = ld.dhcp("n1", "10.0.0.1", "80")
        for name in (boot.bios, boot.uefi):
            if name.startswith("boot/grub2/grub2-"):  # nodeset's link to the loader
                name = "boot/grub2/grub2.x86_64"
            assert (tftp / name).is_file(), (netboot, name)
        if isinstance(ld, type(LOADERS["grub2"])):  # shim loads grubx64.efi beside itself,
            assert (tftp / "boot/grub2/grubx64.efi").is_file()  # which reads /grub/grub.cfg
            assert "/boot/grub2/grub.cfg-01-" in (tftp / "grub/grub.cfg").read_text()
        assert os.access(tftp / name, os.R_OK)


@needs_dhcpd
@pytest.mark.cluster(site(master=MASTER), MGT_DHCP, nodes("n[1-2]", ip=NET, mac=True))
@pytest.mark.parametrize("gone, package", [("xcat/xnba.efi", "ipxe"),
                                           ("boot/grub2/grubx64.efi", "grub-efi-amd64-signed")])
def test_makedhcp_refuses_to_hand_out_a_loader_that_is_not_there(cluster, gone, package):
    cluster.ok("nodech", "n2", "noderes.netboot=grub2")
    cluster.ok("makedhcp", "-n")
    live = (cluster.root / "etc/dhcp/dhcpd.conf").read_text()
    (cluster.root / "tftpboot" / gone).unlink()
    r = cluster.run("makedhcp", "-n")
    assert r.rc == 1 and "The DHCP configuration was not changed" in r.err
    node = "n1" if package == "ipxe" else "n2"
    assert (f"{gone} is not in {cluster.root / 'tftpboot'}, and DHCP would hand it to {node}: "
            f"run mknb x86_64 (Debian package {package})") in r.err, r.err
    assert (cluster.root / "etc/dhcp/dhcpd.conf").read_text() == live
