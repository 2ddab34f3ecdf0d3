"""The boot loaders' own files in the TFTP root: what a node's firmware fetches first, before
any file of the node's own (those are xcatd.netboot.loaders). ``mknb`` (run by xcatconfig)
puts them in place from Debian's packages and checks them; makedhcp hands a node only
loaders that are there (``missing``).

=========================  =============================================  ====================
file under tftpboot/       what it is                                      Debian package
=========================  =============================================  ====================
xcat/xnba.kpxe             iPXE for BIOS PXE ROMs (undionly.kpxe)          ipxe
xcat/xnba.efi              iPXE for UEFI, on the firmware's own network    ipxe
                           driver (snponly.efi)
pxelinux.0, ldlinux.c32    pxelinux and the modules it loads               pxelinux,
(+ libcom32, libutil,                                                      syslinux-common
menu .c32)
boot/grub2/grub2.x86_64    shim, signed by Microsoft's UEFI CA: what      shim-signed
                           grub2-<node> links to
boot/grub2/grubx64.efi     GRUB's network image, signed by Debian: shim    grub-efi-amd64-signed
                           loads it from its own directory
grub/grub.cfg              written here: that image looks in /grub (its    (none)
                           built-in prefix); this sends it on to the
                           node's boot/grub2/grub.cfg-01-<mac>
=========================  =============================================  ====================

Both iPXE images chain to the node's script over HTTP (DHCP hands iPXE clients its URL).
GRUB2 nodes boot shim first whether Secure Boot is on or off: shim then loads the signed
GRUB, which loads the signed Debian kernel, so one ``noderes.netboot=grub2`` serves both.

>>> [f.name for f in FILES if "xnba" in f.loaders]
['xcat/xnba.kpxe', 'xcat/xnba.efi']
>>> sorted({f.package for f in needed(["grub2"]) if f.package})
['grub-efi-amd64-signed', 'shim-signed']
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from xcatd.base.files import write_atomic

#: The architectures mknb places loaders for
ARCHES = ("x86_64",)

PE_X86_64 = 0x8664


@dataclass(frozen=True)
class LoaderFile:
    name: str              # under the TFTP root
    source: str            # the file the Debian package installs
    package: str
    what: str
    #: "efi" (a PE32+ x86-64 image), "elf" (a syslinux module), "raw", or "text" (written
    #: by mknb itself: TEXTS)
    kind: str
    loaders: tuple[str, ...]  # the noderes.netboot values whose nodes DHCP hands it (or needs)

    def problem(self, data: bytes) -> str | None:
        """What is wrong with ``data`` as this file, or None."""
        if self.kind == "text":
            return None
        if len(data) < 512:
            return f"{len(data)} bytes is too small for {self.what}"
        if self.kind == "efi":
            return efi_problem(data)
        if self.kind == "elf" and not data.startswith(b"\x7fELF"):
            return "not an ELF module"
        return None


_IPXE, _PXE, _GRUB = ("xnba", "pxe"), ("pxe",), ("grub2", "grub2-tftp", "grub2-http")
FILES = (
    LoaderFile("xcat/xnba.kpxe", "/usr/lib/ipxe/undionly.kpxe", "ipxe",
               "iPXE for BIOS PXE ROMs", "raw", ("xnba",)),
    LoaderFile("xcat/xnba.efi", "/usr/lib/ipxe/snponly.efi", "ipxe",
               "iPXE for UEFI", "efi", _IPXE),
    LoaderFile("pxelinux.0", "/usr/lib/PXELINUX/pxelinux.0", "pxelinux",
               "pxelinux", "raw", _PXE),
    *(LoaderFile(f"{m}.c32", f"/usr/lib/syslinux/modules/bios/{m}.c32", "syslinux-common",
                 f"the pxelinux module {m}.c32", "elf", _PXE)
      for m in ("ldlinux", "libcom32", "libutil", "menu")),
    LoaderFile("boot/grub2/grub2.x86_64", "/usr/lib/shim/shimx64.efi.signed", "shim-signed",
               "shim (signed)", "efi", _GRUB),
    LoaderFile("boot/grub2/grubx64.efi",
               "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed",
               "grub-efi-amd64-signed", "GRUB's network image (signed)", "efi", _GRUB),
    LoaderFile("grub/grub.cfg", "", "", "GRUB's first configuration", "text", _GRUB),
)

#: The files mknb writes itself. Debian's signed GRUB network image has /grub built in as
#: its prefix and reads $prefix/grub.cfg; nodeset writes each node's file under boot/grub2/
#: by its MAC (as GRUB2 names them: grub.cfg-01-aa-bb-cc-dd-ee-ff), so this goes there.
_MAC = r"\:".join(["([0-9a-f]{1,2})"] * 6)
TEXTS = {"grub/grub.cfg": (
    "# Written by mknb. The signed GRUB reads this first; each node's own file comes next.\n"
    "regexp --set=1:m1 --set=2:m2 --set=3:m3 --set=4:m4 --set=5:m5 --set=6:m6 "
    f"'^{_MAC}$' \"$net_default_mac\"\n"
    'configfile "/boot/grub2/grub.cfg-01-${m1}-${m2}-${m3}-${m4}-${m5}-${m6}"\n')}


def efi_problem(data: bytes) -> str | None:
    """Why ``data`` is no x86-64 UEFI executable (PE32+), or None."""
    if data[:2] != b"MZ":
        return "not a UEFI executable (no MZ header)"
    pe = int.from_bytes(data[0x3C:0x40], "little")
    if data[pe:pe + 4] != b"PE\0\0":
        return "not a UEFI executable (no PE header)"
    machine = int.from_bytes(data[pe + 4:pe + 6], "little")
    if machine != PE_X86_64:
        return f"a UEFI executable for machine 0x{machine:04x}, not x86-64"
    return None


def needed(netboots: Iterable[str]) -> list[LoaderFile]:
    """The loader files nodes booting with these noderes.netboot values are handed or need
    (an empty value is xnba)."""
    wanted = {(n or "xnba").lower() for n in netboots}
    return [f for f in FILES if wanted & set(f.loaders)]


def missing(tftpdir: Path, netboots: Iterable[str]) -> list[LoaderFile]:
    """The loader files those nodes need that are not in ``tftpdir``."""
    return [f for f in needed(netboots) if not (tftpdir / f.name).is_file()]


def missing_message(tftpdir: Path, files: list[LoaderFile], nodes: list[str]) -> str:
    shown = ",".join(nodes[:10]) + (f" and {len(nodes) - 10} more" if len(nodes) > 10 else "")
    packages = sorted({f.package for f in files if f.package})
    where = (f" (Debian package{'s' if len(packages) > 1 else ''} {', '.join(packages)})"
             if packages else "")
    return (f"{', '.join(f.name for f in files)} {'is' if len(files) == 1 else 'are'} not in "
            f"{tftpdir}, and DHCP would hand {'it' if len(files) == 1 else 'them'} to "
            f"{shown}: run mknb x86_64{where}")


@dataclass(frozen=True)
class Placed:
    file: LoaderFile
    changed: bool = False
    error: str | None = None


def place(tftpdir: Path, arch: str = "x86_64", source_root: Path = Path("/")
          ) -> Iterator[Placed]:
    """Put every loader file in ``tftpdir`` (world-readable: TFTP serves it), each checked
    first; one Placed per file, with the error that kept it out (a package not installed,
    a file that is not what it should be). A file already there and the same is left as it
    is. ``source_root``: where the packages' files are (tests)."""
    if arch not in ARCHES:
        raise ValueError(f"mknb: architecture '{arch}' is not supported (use "
                         f"{', '.join(ARCHES)})")
    for f in FILES:
        src = source_root / f.source.lstrip("/")
        try:
            data = TEXTS[f.name].encode() if f.kind == "text" else src.read_bytes()
        except FileNotFoundError:
            yield Placed(f, error=f"{src} is missing: install the Debian package {f.package}")
            continue
        except OSError as exc:
            yield Placed(f, error=f"cannot read {src}: {exc.strerror}")
            continue
        bad = f.problem(data)
        if bad:
            yield Placed(f, error=f"{src}: {bad}")
            continue
        dest = tftpdir / f.name
        if _same(dest, data):
            yield Placed(f)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(dest.parent, 0o755)
        write_atomic(dest, data, mode=0o644)
        yield Placed(f, changed=True)


def _same(dest: Path, data: bytes) -> bool:
    try:
        if dest.is_symlink() or dest.stat().st_size != len(data):
            return False
        with open(dest, "rb") as fh:
            return hashlib.sha256(fh.read()).digest() == hashlib.sha256(data).digest()
    except OSError:
        return False


def copy_tree(placed: Path, tftpdir: Path) -> None:
    """Copy the loader files of one placed tree into another TFTP root: many management
    nodes on one machine (the tests) share one ``place``. Copies, not links: a node's tree
    may be written to."""
    for f in FILES:
        src, dest = placed / f.name, tftpdir / f.name
        if src.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
