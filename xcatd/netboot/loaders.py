"""Per-node network-boot files: what a node's boot loader finds when it boots from the network.

One file per node and boot loader (noderes.netboot), named the way each loader looks for it:

- ``xnba`` (iPXE): ``<tftpdir>/xcat/xnba/nodes/<node>``, an iPXE script fetched over HTTP;
  xcatd serves it dynamically, so the file is root's alone (mode 0600).
- ``grub2`` / ``grub2-tftp`` / ``grub2-http``: ``<tftpdir>/boot/grub2/<node>``, copied to
  ``grub.cfg-01-<mac>`` and ``grub.cfg-<HEXIP>``, and the ``grub2-<node>`` link to the loader
  that makedhcp hands out (removed for local boot, so the firmware falls through to disk).
- ``pxe`` (pxelinux): ``<tftpdir>/pxelinux.cfg/<node>``, copied to ``01-<mac>`` and
  ``<HEXIP>``.

Every file carries the node's state (chain.currstate) as its first comment, which is what
``nodeset stat`` reads back, as xCAT does. The text comes from ``templates/boot/*.j2``; a site
changes it by putting a file of the same name under its custom template directory
(``<installdir>/custom/templates/boot/``).

>>> t = BootTarget("install rocky9.4-x86_64-compute", "o/vmlinuz", "o/initrd.img", "inst.ks=x")
>>> print(xnba_script(t, "mn", "80"), end="")
#!ipxe
#install rocky9.4-x86_64-compute
kernel http://mn:80/tftpboot/o/vmlinuz initrd=initrd.img inst.ks=x BOOTIF=01-${netX/mac:hexhyp}
initrd --name initrd.img http://mn:80/tftpboot/o/initrd.img
boot
>>> print(pxelinux_config(BootTarget("boot")), end="")
#boot
DEFAULT xCAT
LABEL xCAT
  LOCALBOOT 0
>>> hexip("10.77.0.11")
'0A4D000B'
"""
from __future__ import annotations

import ipaddress
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from xcatd.base.files import write_atomic
from xcatd.base.templating import shipped_environment

XNBA_DIR = "xcat/xnba/nodes"
GRUB2_DIR = "boot/grub2"
PXE_DIR = "pxelinux.cfg"


@dataclass(frozen=True)
class BootTarget:
    """What a node boots next: a kernel of ours (paths relative to the TFTP root), or its
    local disk when ``kernel`` is None. ``state`` is chain.currstate."""

    state: str
    kernel: str | None = None
    initrd: str | None = None
    kcmdline: str = ""

    @property
    def local(self) -> bool:
        return self.kernel is None


@dataclass
class NodeBoot:
    """Where one node's boot files go and how its loader reaches the server."""

    node: str
    netboot: str
    tftpdir: Path
    server: str
    httpport: str
    macs: list[str] = field(default_factory=list)
    ip: str | None = None
    arch: str | None = None


# ---- the files' text: templates/boot/{xnba,grub2,pxelinux}.j2, overridable per site --------
def _text(env: jinja2.Environment | None, name: str, **values) -> str:
    return (env or shipped_environment()).get_template(f"boot/{name}.j2").render(**values)


def xnba_script(t: BootTarget, server: str, port: str,
                env: jinja2.Environment | None = None) -> str:
    """iPXE: kernel and initrd over HTTP from xcatd; local boot is ``exit`` (the firmware
    goes on to the next boot device, the disk)."""
    base = f"http://{server}:{port}/tftpboot/"
    return _text(env, "xnba", state=t.state, local=t.local, server=server, port=port,
                 kernel_url=f"{base}{t.kernel}" if t.kernel else "",
                 initrd_url=f"{base}{t.initrd}" if t.initrd else "",
                 initrd_name=os.path.basename(t.initrd) if t.initrd else "",
                 kcmdline=t.kcmdline.strip())


def grub2_config(t: BootTarget, server: str, port: str, protocol: str = "tftp",
                 env: jinja2.Environment | None = None) -> str:
    """GRUB2: the kernel over TFTP (or HTTP with grub2-http); local boot is ``exit`` back
    to the firmware's boot order."""
    if protocol == "http":
        root, prefix = f"http,{server}:{port}", "/tftpboot/"
    else:
        root, prefix = f"tftp,{server}", "/"
    return _text(env, "grub2", state=t.state, local=t.local, protocol=protocol, root=root,
                 prefix=prefix, kernel=t.kernel or "", initrd=t.initrd or "",
                 kcmdline=t.kcmdline.strip(), server=server, port=port)


def pxelinux_config(t: BootTarget, env: jinja2.Environment | None = None) -> str:
    """pxelinux: the kernel over TFTP, BOOTIF appended (IPAPPEND 2); local boot is
    ``LOCALBOOT 0``."""
    append = " ".join(a for a in (f"initrd={t.initrd}" if t.initrd else "",
                                  t.kcmdline.strip()) if a)
    return _text(env, "pxelinux", state=t.state, local=t.local, kernel=t.kernel or "",
                 initrd=t.initrd or "", kcmdline=t.kcmdline.strip(), append=append)


# ---- names ------------------------------------------------------------------------------------
def hexip(ip: str) -> str | None:
    """pxelinux's and GRUB2's name for an IPv4 address: 10.77.0.11 -> 0A4D000B."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    return f"{int(addr):08X}" if addr.version == 4 else None


def dashed(mac: str) -> str:
    return mac.lower().replace(":", "-")


# ---- the boot loaders -------------------------------------------------------------------------
@dataclass(frozen=True)
class DhcpBoot:
    """What DHCP hands a node that boots with this loader: the first-stage file for BIOS and
    for UEFI firmware, and for iPXE (user class "iPXE") a script URL, or None."""

    bios: str
    uefi: str
    ipxe: str | None = None


class BootLoader(ABC):
    """One way of booting from the network (noderes.netboot): where a node's file goes and
    under which other names the loader looks for it, what it says, what DHCP hands out, and
    who parses the kernel command line (installfiles quotes for it)."""

    #: "ipxe", "grub" or "pxelinux": the parser of the kernel command line
    cmdline: str = ""
    #: the node's files go out over TFTP (world-readable) or only through xcatd (root's)
    mode: int = 0o644

    @abstractmethod
    def main_path(self, tftpdir: Path, node: str) -> Path:
        """The node's own file: the one ``nodeset stat`` reads."""

    def alias_paths(self, nb: NodeBoot) -> list[Path]:
        """Copies under the names the loader itself looks for (MAC, hex IP)."""
        return []

    def extra_paths(self, nb: NodeBoot) -> list[Path]:
        """Other files nodeset writes or removes for the node (links)."""
        return []

    @abstractmethod
    def render(self, nb: NodeBoot, t: BootTarget, env: jinja2.Environment | None = None
               ) -> str:
        """The node's boot file text (``env``: the site's templates first)."""

    @abstractmethod
    def dhcp(self, node: str, server: str, port: str) -> DhcpBoot:
        """The boot files DHCP hands the node."""

    def finish(self, nb: NodeBoot, t: BootTarget, warnings: list[str]) -> bool:
        """Anything beyond the files (GRUB2's per-node link); True if something changed."""
        return False


class Xnba(BootLoader):
    """iPXE (xCAT's xnba): a per-node script served over HTTP by xcatd."""

    cmdline = "ipxe"
    mode = 0o600

    def main_path(self, tftpdir: Path, node: str) -> Path:
        return tftpdir / XNBA_DIR / node

    def render(self, nb: NodeBoot, t: BootTarget, env: jinja2.Environment | None = None
               ) -> str:
        return xnba_script(t, nb.server, nb.httpport, env)

    def dhcp(self, node: str, server: str, port: str) -> DhcpBoot:
        return DhcpBoot("xcat/xnba.kpxe", "xcat/xnba.efi",
                        f"http://{server}:{port}/tftpboot/{XNBA_DIR}/{node}")


class Grub2(BootLoader):
    """GRUB2: a per-node config over TFTP (grub2, grub2-tftp) or HTTP (grub2-http), copied
    to grub.cfg-01-<mac> and grub.cfg-<HEXIP>, and the grub2-<node> link to the loader."""

    cmdline = "grub"

    def __init__(self, protocol: str = "tftp") -> None:
        self.protocol = protocol

    def main_path(self, tftpdir: Path, node: str) -> Path:
        return tftpdir / GRUB2_DIR / node

    def alias_paths(self, nb: NodeBoot) -> list[Path]:
        hx = hexip(nb.ip) if nb.ip else None
        names = [f"grub.cfg-01-{dashed(m)}" for m in nb.macs] + ([f"grub.cfg-{hx}"] if hx else [])
        return [nb.tftpdir / GRUB2_DIR / n for n in names]

    def extra_paths(self, nb: NodeBoot) -> list[Path]:
        return [nb.tftpdir / GRUB2_DIR / f"grub2-{nb.node}"]

    def render(self, nb: NodeBoot, t: BootTarget, env: jinja2.Environment | None = None
               ) -> str:
        return grub2_config(t, nb.server, nb.httpport, self.protocol, env)

    def dhcp(self, node: str, server: str, port: str) -> DhcpBoot:
        return DhcpBoot(f"{GRUB2_DIR}/grub2-{node}", f"{GRUB2_DIR}/grub2-{node}")

    def finish(self, nb: NodeBoot, t: BootTarget, warnings: list[str]) -> bool:
        return _grub2_link(nb, t, warnings)


class Pxelinux(BootLoader):
    """pxelinux (netboot=pxe): a per-node config over TFTP, copied to 01-<mac> and <HEXIP>."""

    cmdline = "pxelinux"

    def main_path(self, tftpdir: Path, node: str) -> Path:
        return tftpdir / PXE_DIR / node

    def alias_paths(self, nb: NodeBoot) -> list[Path]:
        hx = hexip(nb.ip) if nb.ip else None
        names = [f"01-{dashed(m)}" for m in nb.macs] + ([hx] if hx else [])
        return [nb.tftpdir / PXE_DIR / n for n in names]

    def render(self, nb: NodeBoot, t: BootTarget, env: jinja2.Environment | None = None
               ) -> str:
        return pxelinux_config(t, env)

    def dhcp(self, node: str, server: str, port: str) -> DhcpBoot:
        return DhcpBoot("pxelinux.0", "xcat/xnba.efi")


#: noderes.netboot -> its loader; an empty netboot means xnba
LOADERS: dict[str, BootLoader] = {"xnba": Xnba(), "grub2": Grub2("tftp"),
                                  "grub2-tftp": Grub2("tftp"), "grub2-http": Grub2("http"),
                                  "pxe": Pxelinux()}
#: The boot loaders nodeset writes files for (noderes.netboot).
NETBOOTS = tuple(LOADERS)


class UnknownLoader(ValueError):
    def __init__(self, netboot: str) -> None:
        super().__init__(f"noderes.netboot '{netboot}' is not supported (use "
                         f"{', '.join(NETBOOTS)})")


def loader(netboot: str | None) -> BootLoader:
    """The loader for a noderes.netboot value (empty: xnba); UnknownLoader names it."""
    name = (netboot or "xnba").lower()
    try:
        return LOADERS[name]
    except KeyError:
        raise UnknownLoader(name) from None


def main_path(tftpdir: Path, netboot: str, node: str) -> Path:
    """The node's own file: the one ``nodeset stat`` reads."""
    return loader(netboot).main_path(tftpdir, node)


def boot_paths(nb: NodeBoot) -> list[Path]:
    """Every boot file nodeset may write or remove for the node."""
    ld = loader(nb.netboot)
    return [ld.main_path(nb.tftpdir, nb.node), *ld.alias_paths(nb), *ld.extra_paths(nb)]


def render(nb: NodeBoot, t: BootTarget, env: jinja2.Environment | None = None) -> str:
    """The node's boot file text; ``env`` is the site's template environment (custom
    templates first), the shipped templates when None."""
    return loader(nb.netboot).render(nb, t, env)


# ---- writing ----------------------------------------------------------------------------------
def write_if_changed(path: Path, text: str, mode: int) -> bool:
    """Replace ``path`` atomically unless it holds ``text`` with ``mode`` already. The
    caller holds the node's lock, so there is one writer per file."""
    try:
        st = path.lstat()
        if (st.st_mode & 0o7777) == mode and st.st_size == len(text.encode()) and \
                not path.is_symlink() and path.read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    write_atomic(path, text, mode=mode)
    return True


def write_node(nb: NodeBoot, t: BootTarget, env: jinja2.Environment | None = None
               ) -> tuple[bool, list[str]]:
    """Write the node's boot files for ``t``; returns (anything changed, warnings)."""
    ld = loader(nb.netboot)
    text = ld.render(nb, t, env)
    changed = write_if_changed(ld.main_path(nb.tftpdir, nb.node), text, ld.mode)
    for p in ld.alias_paths(nb):
        changed = write_if_changed(p, text, ld.mode) or changed
    warnings: list[str] = []
    changed = ld.finish(nb, t, warnings) or changed
    return changed, warnings


def _grub2_link(nb: NodeBoot, t: BootTarget, warnings: list[str]) -> bool:
    """makedhcp hands grub2 nodes ``boot/grub2/grub2-<node>``: a link to the loader for an
    OS boot, no file at all for local boot (the firmware then boots the disk)."""
    link = nb.tftpdir / GRUB2_DIR / f"grub2-{nb.node}"
    if t.local:
        if link.is_symlink() or link.exists():
            link.unlink()
            return True
        return False
    arch = "ppc" if (nb.arch or "").startswith("ppc64") else (nb.arch or "x86_64")
    target = f"grub2.{arch}"
    if not (nb.tftpdir / GRUB2_DIR / target).exists():
        warnings.append(f"{nb.tftpdir / GRUB2_DIR / target} is missing: the node cannot load "
                        "GRUB2 until it is there")
    if link.is_symlink() and os.readlink(link) == target:
        return False
    tmp = link.with_name(f".{link.name}.new")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    return True


def remove_node(nb: NodeBoot) -> bool:
    """Remove every boot file of the node (nodeset offline); True if any was there."""
    gone = False
    for p in boot_paths(nb):
        try:
            p.unlink()
            gone = True
        except FileNotFoundError:
            pass
    return gone


def read_state(tftpdir: Path, netboot: str, node: str) -> str:
    """The state a node's boot file describes (its first comment), or ``offline`` when it
    has none: xCAT's ``nodeset stat``."""
    try:
        with open(loader(netboot).main_path(tftpdir, node), encoding="utf-8") as fh:
            for _ in range(3):
                line = fh.readline()
                if line.startswith("#") and not line.startswith("#!"):
                    return line[1:].strip()
    except (FileNotFoundError, NotADirectoryError):
        return "offline"
    except (OSError, UnicodeDecodeError):
        pass
    return "unknown"
