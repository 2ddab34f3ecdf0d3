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
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from xcatd.base.files import write_atomic
from xcatd.base.templating import shipped_environment

#: The boot loaders nodeset writes files for (noderes.netboot); empty means xnba.
NETBOOTS = ("xnba", "grub2", "grub2-tftp", "grub2-http", "pxe")

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


def grub2_protocol(netboot: str) -> str:
    return "http" if netboot == "grub2-http" else "tftp"


def main_path(tftpdir: Path, netboot: str, node: str) -> Path:
    """The node's own file: the one ``nodeset stat`` reads."""
    if netboot == "xnba":
        return tftpdir / XNBA_DIR / node
    if netboot.startswith("grub2"):
        return tftpdir / GRUB2_DIR / node
    if netboot == "pxe":
        return tftpdir / PXE_DIR / node
    raise ValueError(netboot)


def alias_paths(nb: NodeBoot) -> list[Path]:
    """Copies under the names the loader itself looks for (MAC, hex IP)."""
    hx = hexip(nb.ip) if nb.ip else None
    if nb.netboot.startswith("grub2"):
        d = nb.tftpdir / GRUB2_DIR
        names = [f"grub.cfg-01-{dashed(m)}" for m in nb.macs]
        names += [f"grub.cfg-{hx}"] if hx else []
    elif nb.netboot == "pxe":
        d = nb.tftpdir / PXE_DIR
        names = [f"01-{dashed(m)}" for m in nb.macs] + ([hx] if hx else [])
    else:
        return []
    return [d / n for n in names]


def render(nb: NodeBoot, t: BootTarget, env: jinja2.Environment | None = None) -> str:
    """The node's boot file text; ``env`` is the site's template environment (custom
    templates first), the shipped templates when None."""
    if nb.netboot == "xnba":
        return xnba_script(t, nb.server, nb.httpport, env)
    if nb.netboot.startswith("grub2"):
        return grub2_config(t, nb.server, nb.httpport, grub2_protocol(nb.netboot), env)
    if nb.netboot == "pxe":
        return pxelinux_config(t, env)
    raise ValueError(nb.netboot)


def file_mode(netboot: str) -> int:
    """xnba scripts reach the node through xcatd only: root's alone. GRUB2 and pxelinux
    files go out over TFTP, so tftpd must be able to read them."""
    return 0o600 if netboot == "xnba" else 0o644


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
    text = render(nb, t, env)
    mode = file_mode(nb.netboot)
    changed = write_if_changed(main_path(nb.tftpdir, nb.netboot, nb.node), text, mode)
    for p in alias_paths(nb):
        changed = write_if_changed(p, text, mode) or changed
    warnings: list[str] = []
    if nb.netboot.startswith("grub2"):
        changed = _grub2_link(nb, t, warnings) or changed
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
    paths = [main_path(nb.tftpdir, nb.netboot, nb.node), *alias_paths(nb)]
    if nb.netboot.startswith("grub2"):
        paths.append(nb.tftpdir / GRUB2_DIR / f"grub2-{nb.node}")
    gone = False
    for p in paths:
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
        with open(main_path(tftpdir, netboot, node), encoding="utf-8") as fh:
            for _ in range(3):
                line = fh.readline()
                if line.startswith("#") and not line.startswith("#!"):
                    return line[1:].strip()
    except (FileNotFoundError, NotADirectoryError):
        return "offline"
    except (OSError, UnicodeDecodeError):
        pass
    return "unknown"
