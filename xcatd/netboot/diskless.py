"""The diskless boot: the initrd that fetches, checks and boots a packed root image, and the
in-image unit that reports ``booted``.

The contract with nodeset (xcatd.provision.nextboot) is the kernel command line:

    xcat.image=<http URL of the root image>   rootimg.sfs (squashfs, mounted read-only under a
                                              tmpfs overlay) or rootimg.cpio.gz|.cpio.xz|
                                              .tar.gz|.tar.xz (unpacked into tmpfs)
    xcat.sha256=<64 hex>                      of that file; a mismatch is a failed boot
    xcat.node=<node>                          for the console and the reports
    xcatcallback=<URL>                        http://<mn>:<httpport>/xcat/callback/<node>
    xcattoken=<token>                         the node's bearer token (as the install path)
    console=...                               the node's serial console, as for installs
    optional: BOOTIF=01-<mac> (the boot NIC; else the first NIC with a carrier),
              xcat.retries=<n> (image fetch tries, default 5, backoff 1, 2, 4, 8, 16 s),
              xcat.faildelay=<s> (wait before the reboot after a failure, default 30),
              xcat.ramsize=<tmpfs size=, e.g. 2g> (default: half the RAM),
              xcat.fetchtime=<s> (one image fetch try at most, default 600)

What the initrd (templates/netboot/diskless/init) does, each step's line on the console:

    xcat: diskless initrd on <kver> for node <node>
    xcat: up <ip> on <nic>                        DHCP (busybox udhcpc) on the boot NIC
    xcat: fetched <url> (<bytes> bytes)           wget, bounded tries with backoff
    xcat: sha256 verified
    xcat: reported netbooting: HTTP/1.1 200 OK    POST status=netbooting to the callback
    xcat: switch_root into /sbin/init             systemd

and on any failure exactly one line ``xcat: FAILED: <what went wrong: what to fix>``, a POST
of ``status=failed&reason=<that line>`` when the network allows, ``xcat: rebooting in <s> s``
and a forced reboot: never a shell. The token and callback reach the booted system in
``/run/xcat/boot.env`` (mode 0600): the initrd mounts a tmpfs on /run, writes the file and
``mount --move``s /run (with /dev, /proc and /sys) into the new root before switch_root;
systemd keeps an already-mounted /run. The unit ``xcat-booted.service`` (After=
network.target multi-user.target) runs ``/usr/lib/xcat/xcat-booted`` which POSTs
``status=booted`` with the token sent as a header from a file (not on its command line).

Kernel modules come from the image itself (its /lib/modules/<kver>, the kernel genimage put
beside the image): the NIC drivers (``linuximage.netdrivers`` or NETDRIVERS) and loop,
squashfs and overlay (and nfsv4, for statelite, when the kernel has it), each after what it
depends on (modules.dep); modules built into the kernel (modules.builtin) are skipped, a
module that is neither is an error naming it.
Busybox is busybox-static from the management node. Nothing per node goes into the initrd or
the image: one initrd serves every node of the image.

    >>> kernel_cmdline("http://mn/install/netboot/rootimg.sfs", "ab" * 32, "n1",
    ...                "http://mn/xcat/callback/n1", "T", "console=ttyS0").split()[2:]
    ['xcat.node=n1', 'console=ttyS0', 'xcatcallback=http://mn/xcat/callback/n1', 'xcattoken=T']
"""
from __future__ import annotations

import gzip
import importlib.resources
import lzma
import os
import re
import stat
import struct
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

NETDRIVERS = ("virtio_net", "virtio_pci", "e1000", "e1000e", "igb")
FS_MODULES = ("loop", "squashfs", "overlay")
#: for statelite (its NFS mounts): in the initrd when the image's kernel has them
NFS_MODULES = ("nfsv4",)
BUSYBOX_PATHS = ("/bin/busybox", "/usr/bin/busybox")
UNIT = "xcat-booted.service"
REPORTER = "usr/lib/xcat/xcat-booted"
AGENT_UNIT = "xcatagent.service"
#: The node agent in an image: (shipped file, path in the image, mode)
AGENT_FILES = (("xcatagent", "usr/lib/xcat/xcatagent", 0o755),
               ("xcatsync.py", "usr/lib/xcat/xcatsync.py", 0o644),
               ("xcatagent.service", f"etc/systemd/system/{AGENT_UNIT}", 0o644))
_TEMPLATES = "netboot/diskless"


class DisklessError(RuntimeError):
    """The initrd or the in-image unit cannot be made; the message names what is missing."""


def template(name: str) -> str:
    """The text of one shipped file of the diskless boot (templates/netboot/diskless/)."""
    return (importlib.resources.files("xcatd.templates") / _TEMPLATES / name).read_text()


def kernel_cmdline(image_url: str, sha256: str, node: str, callback: str, token: str,
                   console: str = "", extra: str = "") -> str:
    """The kernel command line the diskless initrd reads (see the module docstring)."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise DisklessError(f"sha256 {sha256!r} is not 64 lower-case hex digits")
    parts = (f"xcat.image={image_url}", f"xcat.sha256={sha256}", f"xcat.node={node}",
             console, extra, f"xcatcallback={callback}", f"xcattoken={token}")
    return " ".join(p for p in parts if p)


# ---- the image's kernel ------------------------------------------------------------------
def kernel_version(rootimg: Path, kernelver: str | None = None) -> str:
    """``kernelver`` if the image has its modules, else the image's only kernel."""
    mods = _modules_root(rootimg)
    if kernelver:
        if not (mods / kernelver / "modules.dep").is_file():
            raise DisklessError(f"{mods / kernelver}/modules.dep is missing: is kernel "
                                f"{kernelver} installed in the image?")
        return kernelver
    found = sorted(p.parent.name for p in mods.glob("*/modules.dep"))
    if len(found) != 1:
        raise DisklessError(f"{'no' if not found else 'more than one'} kernel in {mods} "
                            f"({', '.join(found) or 'install linux-image-amd64 in the image'}):"
                            " set linuximage.kernelver")
    return found[0]


def kernel_path(rootimg: Path, kver: str) -> Path:
    """The image's own kernel, /boot/vmlinuz-<kver>."""
    path = rootimg / "boot" / f"vmlinuz-{kver}"
    if not path.is_file():
        raise DisklessError(f"{path} is missing: the image's kernel package is incomplete")
    return path


def _modules_root(rootimg: Path) -> Path:
    for cand in (rootimg / "lib" / "modules", rootimg / "usr" / "lib" / "modules"):
        if cand.is_dir():
            return cand
    raise DisklessError(f"{rootimg} has no lib/modules: install a kernel in the image")


def module_closure(moddir: Path, wanted: Iterable[str]) -> list[Path]:
    """The .ko files (relative to ``moddir``) for ``wanted``, each after its dependencies,
    from modules.dep; built-in modules are left out."""
    dep: dict[str, tuple[str, list[str]]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, deps = line.partition(":")
        dep[_name(path)] = (path.strip(), deps.split())
    builtin_file = moddir / "modules.builtin"
    builtin = ({_name(p) for p in builtin_file.read_text().split()}
               if builtin_file.is_file() else set())
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in seen:
            return
        if name not in dep:
            if name in builtin:
                return
            raise DisklessError(f"kernel module {name} is neither in {moddir} nor built in "
                                f"(wanted by {trail[-1] if trail else 'the initrd'})")
        if name in trail:
            raise DisklessError(f"module dependency cycle: {' -> '.join(trail + (name,))}")
        for d in reversed(dep[name][1]):  # modules.dep lists the deepest last
            visit(_name(d), trail + (name,))
        seen.add(name)
        order.append(Path(dep[name][0]))

    for name in wanted:
        visit(name.replace("-", "_"), ())
    return order


def optional_modules(moddir: Path) -> list[str]:
    """The NFS_MODULES the image's kernel has (as modules or built in)."""
    text = (moddir / "modules.dep").read_text()
    builtin = moddir / "modules.builtin"
    text += builtin.read_text() if builtin.is_file() else ""
    have = {_name(line.partition(":")[0]) for line in text.splitlines() if line.strip()}
    return [m for m in NFS_MODULES if m in have]


def _name(path: str) -> str:
    return Path(path.strip()).name.split(".ko")[0].replace("-", "_")


def _module_bytes(path: Path) -> bytes:
    """A module as insmod takes it: busybox's insmod does not decompress."""
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.zst"):
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    return data


# ---- the initrd --------------------------------------------------------------------------
def build_initrd(rootimg: Path, out: Path, kernelver: str | None = None,
                 netdrivers: Iterable[str] | None = None, busybox: Path | None = None) -> Path:
    """Write the diskless initrd (gzip newc) for the image at ``rootimg`` to ``out``, atomically;
    returns ``out``. DisklessError names a missing kernel, module or busybox-static."""
    rootimg, out = Path(rootimg), Path(out)
    kver = kernel_version(rootimg, kernelver)
    moddir = _modules_root(rootimg) / kver
    drivers = [d for d in (netdrivers or NETDRIVERS) if d]
    mods = module_closure(moddir, [*drivers, *FS_MODULES, *optional_modules(moddir)])
    w = Newc()
    for d in ("bin", "sbin", "dev", "etc", "lib", "lib/modules", "mnt", "newroot", "proc",
              "root", "run", "sys", "tmp"):
        w.dir(d)
    w.node("dev/console", stat.S_IFCHR | 0o600, 5, 1)
    w.node("dev/null", stat.S_IFCHR | 0o666, 1, 3)
    w.file("bin/busybox", busybox_static(busybox).read_bytes(), 0o755)
    w.link("bin/sh", "busybox")
    w.file("init", template("init").encode(), 0o755)
    w.file("etc/udhcpc.script", template("udhcpc.script").encode(), 0o755)
    w.file("etc/modules.order", "".join(f"{_name(str(m))}\n" for m in mods).encode(), 0o644)
    w.file("etc/kernel-version", f"{kver}\n".encode(), 0o644)
    for m in mods:
        w.file(f"lib/modules/{_name(str(m))}.ko", _module_bytes(moddir / m), 0o644)
    data = gzip.compress(w.finish(), compresslevel=6, mtime=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def busybox_static(given: Path | None = None) -> Path:
    """busybox-static's binary: a dynamically linked busybox dies in the initrd."""
    for cand in ([Path(given)] if given else [Path(p) for p in BUSYBOX_PATHS]):
        if cand.is_file():
            if _is_dynamic(cand):
                raise DisklessError(f"{cand} is dynamically linked: install busybox-static")
            return cand
    raise DisklessError("busybox is not installed: install busybox-static")


def _is_dynamic(elf: Path) -> bool:
    """True when the ELF (64-bit little-endian) has a PT_INTERP program header."""
    with open(elf, "rb") as fh:
        head = fh.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
    return any(struct.unpack_from("<I", table, i * phentsize)[0] == 3 for i in range(phnum))


class Newc:
    """The kernel's initramfs format (cpio newc), written here so every file is root's
    and /dev/console a device without being root; mtime 0, so the same input gives the
    same bytes."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.ino = 1
        self.seen: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
               nlink: int = 1) -> None:
        if name in self.seen:
            raise DisklessError(f"initrd path {name} given twice")
        self.seen.add(name)
        raw = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(raw), 0)
        self.ino += 1
        head = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.parts += [head, raw, b"\0" * (-(len(head) + len(raw)) % 4), data,
                       b"\0" * (-len(data) % 4)]

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, name: str, data: bytes, perm: int) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def link(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def node(self, name: str, mode: int, major: int, minor: int) -> None:
        self._entry(name, mode, rdev=(major, minor))

    def dirs(self, name: str) -> None:
        """``name`` and each parent of it that is not there yet."""
        parts = name.split("/")
        for i in range(1, len(parts) + 1):
            if "/".join(parts[:i]) not in self.seen:
                self.dir("/".join(parts[:i]))

    def finish(self) -> bytes:
        self.ino = 0
        self._entry("TRAILER!!!", 0)
        return b"".join(self.parts)


# ---- in the image ------------------------------------------------------------------------
def install_into_image(rootimg: Path) -> list[Path]:
    """Put what reports the boot into the image and enable it (the multi-user.target.wants
    link systemctl enable would make); returns the paths written. Nothing per node.

    An image with python3 and openssl gets the node agent (AGENT_FILES: it enrols, runs the
    postscripts, reports booted or failed, and serves updatenode); any other image gets the
    plain ``booted`` reporter, and runs no postscripts. Never both: each would report."""
    rootimg = Path(rootimg)
    if not rootimg.is_dir():
        raise DisklessError(f"{rootimg} is not an image root (genimage first)")
    agent = has_agent_runtime(rootimg)
    files = ([(rootimg / dest, _shipped(src), mode) for src, dest, mode in AGENT_FILES]
             if agent else
             [(rootimg / REPORTER, template("xcat-booted"), 0o755),
              (rootimg / "etc/systemd/system" / UNIT, template(UNIT), 0o644)])
    unit = AGENT_UNIT if agent else UNIT
    wants_dir = rootimg / "etc/systemd/system/multi-user.target.wants"
    written = []
    for path, text, mode in files:
        _safe_parent(rootimg, path).mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.new")
        tmp.write_text(text)
        tmp.chmod(mode)
        os.replace(tmp, path)
        written.append(path)
    _safe_parent(rootimg, wants_dir / unit).mkdir(parents=True, exist_ok=True)
    for name in (UNIT, AGENT_UNIT):   # the other one, from an earlier genimage, goes
        link = wants_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
    (wants_dir / unit).symlink_to(f"/etc/systemd/system/{unit}")
    written.append(wants_dir / unit)
    return written


def has_agent_runtime(rootimg: Path) -> bool:
    """Whether the image can run the node agent: python3 and openssl (its key)."""
    return all(any((rootimg / d / exe).exists() for d in ("usr/bin", "bin"))
               for exe in ("python3", "openssl"))


def _shipped(name: str) -> str:
    return (importlib.resources.files("xcatd.postscripts") / name).read_text()


def _safe_parent(rootimg: Path, path: Path) -> Path:
    """``path``'s directory, refused when a symlink in the image would lead it outside."""
    parent = path.parent
    probe = parent
    while not probe.exists() and probe != rootimg:
        probe = probe.parent
    real, root = probe.resolve(), rootimg.resolve()
    if real != root and root not in real.parents:
        raise DisklessError(f"{parent} leads outside the image ({real}): refusing to write")
    return parent
