"""Small but realistic distribution media for tests: the files copycds and the installers
look at (.treeinfo, .discinfo, .disk/info, dists/*/Release, the network-boot kernel and
initrd, package directories with repository metadata), a few bytes each unless a real kernel
and initrd are given.

    tree = build_tree(tmp / "rocky", "rocky9.4", kernel=vmlinuz, initrd=initrd_img)
    iso = build_iso(tree, tmp / "Rocky-9.4-x86_64-dvd.iso", "Rocky-9-4-x86_64-dvd")
    iso = bootable_iso(tmp)   # the same with the lab's kernel and the test initrd
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from xcatd.provision.media import normalise_arch

RH_RELEASES = {"rocky": ("Rocky Linux", "Rocky"), "alma": ("AlmaLinux", "AlmaLinux"),
               "rhels": ("Red Hat Enterprise Linux", "RHEL"), "rhel": ("Red Hat Enterprise "
                                                                       "Linux", "RHEL")}
DEBIAN_CODENAMES = {"10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie"}
UBUNTU_CODENAMES = {"20.04": ("focal", "Focal Fossa"), "22.04": ("jammy", "Jammy Jellyfish"),
                    "24.04": ("noble", "Noble Numbat")}
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64el", "x86": "i386"}
TIMESTAMP = "1714685530.563374"


def build_tree(dest: Path, distro: str = "rocky9.4", arch: str = "x86_64",
               kernel: Path | None = None, initrd: Path | None = None) -> Path:
    """Write the media tree of ``distro`` (rocky9.4, alma8.10, rhels9.4, debian12.5.0,
    ubuntu24.04.1) for ``arch`` into ``dest`` and return it. ``kernel`` and ``initrd`` are
    copied to where the installer's network boot files live; placeholders otherwise."""
    m = re.fullmatch(r"([a-z]+)(\d+(?:\.\d+)*)", distro)
    if not m:
        raise ValueError(f"not a distribution name: {distro}")
    name, version = m.groups()
    arch = normalise_arch(arch)
    dest.mkdir(parents=True, exist_ok=True)
    if name in RH_RELEASES:
        _rh_tree(dest, name, version, arch, kernel, initrd)
    elif name == "debian":
        _debian_tree(dest, version, arch, kernel, initrd)
    elif name == "ubuntu":
        _ubuntu_tree(dest, version, arch, kernel, initrd)
    else:
        raise ValueError(f"no fake media for {distro}")
    return dest


def build_iso(tree: Path, iso_path: Path, volid: str, *, rock_ridge: bool = True,
              joliet: bool = True) -> Path:
    """An ISO image of ``tree`` made by xorriso (Rock Ridge and Joliet names unless told
    otherwise; without either, plain ISO 9660 level 4 names)."""
    if shutil.which("xorriso") is None:
        raise RuntimeError("xorriso is not installed (make debs installs it)")
    argv = ["xorriso", "-as", "mkisofs", "-V", volid, "-o", str(iso_path)]
    if rock_ridge:
        argv.append("-R")
    else:
        argv.append("--norock")
    if joliet:
        argv.append("-J")
    elif not rock_ridge:
        argv += ["-iso-level", "4"]
    argv.append(str(tree))
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"xorriso failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    return iso_path


# ---- the pieces ----------------------------------------------------------------------------
def _write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)


def _boot_pair(kdest: Path, idest: Path, kernel: Path | None, initrd: Path | None) -> None:
    kdest.parent.mkdir(parents=True, exist_ok=True)
    if kernel is not None:
        shutil.copyfile(kernel, kdest)
    else:
        _write(kdest, b"fake kernel\n")
    if initrd is not None:
        shutil.copyfile(initrd, idest)
    else:
        _write(idest, b"fake initrd\n")


def _rh_tree(dest: Path, name: str, version: str, arch: str, kernel: Path | None,
             initrd: Path | None) -> None:
    release, short = RH_RELEASES[name]
    major = version.split(".")[0]
    _write(dest / ".discinfo", f"{TIMESTAMP}\n{release} {version}\n{arch}\nALL\n")
    variants = ("AppStream", "BaseOS")
    _write(dest / ".treeinfo", f"""[checksums]
images/pxeboot/initrd.img = sha256:0
images/pxeboot/vmlinuz = sha256:0

[general]
arch = {arch}
family = {release}
name = {release} {version}
packagedir = AppStream/Packages
platforms = {arch},xen
repository = AppStream
timestamp = {TIMESTAMP.split('.')[0]}
variant = AppStream
variants = {','.join(variants)}
version = {version}

[header]
type = productmd.treeinfo
version = 1.2

[images-{arch}]
initrd = images/pxeboot/initrd.img
kernel = images/pxeboot/vmlinuz

[release]
name = {release}
short = {short}
version = {version}

[stage2]
mainimage = images/install.img

[tree]
arch = {arch}
build_timestamp = {TIMESTAMP.split('.')[0]}
platforms = {arch},xen
variants = {','.join(variants)}

[variant-AppStream]
id = AppStream
name = AppStream
packages = AppStream/Packages
repository = AppStream
type = variant
uid = AppStream

[variant-BaseOS]
id = BaseOS
name = BaseOS
packages = BaseOS/Packages
repository = BaseOS
type = variant
uid = BaseOS
""")
    _write(dest / "media.repo", f"[InstallMedia]\nname={release} {version}\nmediaid=None\n"
                                "metadata_expire=-1\ngpgcheck=0\ncost=500\n")
    _boot_pair(dest / "images/pxeboot/vmlinuz", dest / "images/pxeboot/initrd.img", kernel,
               initrd)
    _write(dest / "images/install.img", b"fake stage2\n")
    _write(dest / "isolinux/isolinux.cfg", f"label linux\n  menu label ^Install {release} "
                                           f"{version}\n  kernel vmlinuz\n")
    _write(dest / "EFI/BOOT/grub.cfg", f"menuentry 'Install {release} {version}' {{}}\n")
    el = f"el{major}"
    for variant, pkgs in (("BaseOS", ("bash-5.1.8-9", "kernel-5.14.0-427.13.1")),
                          ("AppStream", ("httpd-2.4.57-8", "vim-enhanced-8.2.2637-20"))):
        for pkg in pkgs:
            rpm = f"{pkg}.{el}.{arch}.rpm"
            _write(dest / variant / "Packages" / rpm[0].lower() / rpm, b"fake rpm\n")
        _write(dest / variant / "repodata/repomd.xml",
               '<?xml version="1.0" encoding="UTF-8"?>\n<repomd xmlns="http://linux.duke.edu/'
               'metadata/repo"><revision>1</revision></repomd>\n')
        _write(dest / variant / "repodata/primary.xml.gz", b"\x1f\x8b fake\n")


def _debian_tree(dest: Path, version: str, arch: str, kernel: Path | None,
                 initrd: Path | None) -> None:
    major = version.split(".")[0]
    codename = DEBIAN_CODENAMES.get(major, "sid")
    darch = DEB_ARCH.get(arch, arch)
    _write(dest / ".disk/info", f'Debian GNU/Linux {version} "{codename.capitalize()}" - '
                                f"Official {darch} DVD Binary-1 20240210-11:28\n")
    _write(dest / ".disk/base_installable", "")
    _write(dest / ".disk/cd_type", "dvd\n")
    _write(dest / f"dists/{codename}/Release",
           f"Origin: Debian\nLabel: Debian\nSuite: stable\nVersion: "
           f"{'.'.join(version.split('.')[:2])}\nCodename: {codename}\nDate: Sat, 10 Feb 2024 "
           f"10:00:00 UTC\nArchitectures: {darch}\nComponents: main contrib non-free-firmware\n"
           "Description: Debian x.y Released 10 February 2024\n")
    _write(dest / f"dists/{codename}/main/binary-{darch}/Packages.gz", b"\x1f\x8b fake\n")
    (dest / "dists/stable").symlink_to(codename)
    (dest / "debian").symlink_to(".")  # real Debian media carry this loop
    idir = {"x86_64": "install.amd", "aarch64": "install.a64"}.get(arch, "install")
    _boot_pair(dest / idir / "vmlinuz", dest / idir / "initrd.gz", kernel, initrd)
    _write(dest / "pool/main/b/base-files" / f"base-files_12.4+deb12u5_{darch}.deb",
           b"fake deb\n")
    _write(dest / "md5sum.txt", "00000000000000000000000000000000  ./README.txt\n")
    _write(dest / "README.txt", f"Debian GNU/Linux {version}\n")


def _ubuntu_tree(dest: Path, version: str, arch: str, kernel: Path | None,
                 initrd: Path | None) -> None:
    series = ".".join(version.split(".")[:2])
    codename, pretty = UBUNTU_CODENAMES.get(series, ("devel", "Devel"))
    darch = DEB_ARCH.get(arch, arch)
    lts = " LTS" if series.endswith(".04") and int(series.split(".")[0]) % 2 == 0 else ""
    _write(dest / ".disk/info", f'Ubuntu-Server {version}{lts} "{pretty}" - Release {darch} '
                                "(20240827)\n")
    _write(dest / "README.diskdefines", f"#define DISKNAME  Ubuntu-Server {version}{lts}\n"
                                        f"#define ARCH  {darch}\n#define DISKNUM  1\n"
                                        "#define TOTALNUM  0\n")
    _boot_pair(dest / "casper/vmlinuz", dest / "casper/initrd", kernel, initrd)
    _write(dest / "casper/ubuntu-server-minimal.squashfs", b"fake squashfs\n")
    _write(dest / "casper/install-sources.yaml", "- default: true\n  id: ubuntu-server\n")
    _write(dest / f"dists/{codename}/Release",
           f"Origin: Ubuntu\nLabel: Ubuntu\nSuite: {codename}\nVersion: {series}\n"
           f"Codename: {codename}\nArchitectures: {darch}\nComponents: main restricted\n")
    (dest / "dists/stable").symlink_to(codename)
    (dest / "ubuntu").symlink_to(".")
    _write(dest / "pool/main/b/base-files" / f"base-files_13ubuntu10_{darch}.deb", b"fake\n")
    _write(dest / "boot/grub/grub.cfg", 'menuentry "Try or Install Ubuntu Server" {}\n')


def bootable_iso(workdir: Path) -> Path:
    """A Rocky 9.4 DVD image whose network-boot kernel and initrd really boot a lab VM (the
    lab's kernel and the test initrd, xcatd.lab.initrd), built under ``workdir``: what a
    boot test copies with copycds. AssetsMissing or InitrdError when they cannot be made
    here (tests skip, saying why)."""
    from xcatd.lab import assets
    from xcatd.lab.initrd import build_initrd
    initrd = build_initrd(workdir / "initrd.img")
    tree = build_tree(workdir / "media", "rocky9.4", "x86_64", kernel=assets.kernel(),
                      initrd=initrd)
    return build_iso(tree, workdir / "Rocky-9.4-x86_64-dvd.iso", "Rocky-9-4-x86_64-dvd")
