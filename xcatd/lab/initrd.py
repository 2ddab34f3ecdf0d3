"""A tiny test initrd: busybox-static, the NIC modules, and an /init that reports to a callback.

Built in Python, no root needed: the newc archive is written here (so /dev/console can be a
device node and every file is owned by root without being root), then gzipped. The result is
cached by content hash, so a test session builds it once.

What /init does, with markers on the serial console a test can wait for:

    PYXCAT-INITRD: start <uname -r>
    PYXCAT-INITRD: up <ip>                  eth0 configured by udhcpc (or: dhcp failed)
    PYXCAT-INITRD: reported HTTP/1.0 200 OK (or: reported failed rc=<wget rc>)
    PYXCAT-INITRD: idle                     (or: poweroff, with xcatpoweroff=1)

Kernel parameters it reads: ``xcatcallback=<url>`` and ``xcattoken=<token>`` (both needed for
the report: a POST of ``status=<xcatstatus or installed>`` with ``Authorization: Bearer
<token>``), ``xcatstatus=``, ``xcatpoweroff=1``, ``xcatif=`` (default eth0). Files given in
``extra`` are added to the archive; ``/etc/pyxcat.d/*.sh`` among them are sourced after the
network is up and before the report (DHCP options are in /tmp/dhcp.env), which is how a
diskless or service-node test grows this initrd without a new /init.

    >>> from xcatd.lab.initrd import build_initrd
    >>> build_initrd(tmp / "initrd.gz")     # doctest: +SKIP
    PosixPath('/tmp/.../initrd.gz')
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from xcatd.lab import assets
from xcatd.netboot import diskless

MARK = "PYXCAT-INITRD:"

INIT = r"""#!/bin/sh
# pyxcat test initrd: network up, report to the callback, then wait or power off.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /run /etc
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
say() { echo "PYXCAT-INITRD: $*"; }
arg() {
  for x in $(cat /proc/cmdline); do
    case "$x" in "$1="*) echo "${x#*=}"; return 0 ;; esac
  done
}
say "start $(uname -r)"
for m in $(cat /etc/modules.order); do
  insmod "/lib/modules/$m.ko" || say "insmod $m failed"
done
IFACE=$(arg xcatif); IFACE=${IFACE:-eth0}
i=0
while [ ! -e "/sys/class/net/$IFACE" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
ip link set lo up
ip link set "$IFACE" up
if udhcpc -i "$IFACE" -s /etc/udhcpc.script -q -f -n -t 20 -T 1 && [ -s /tmp/ip ]; then
  say "up $(cat /tmp/ip)"
else
  say "dhcp failed"
fi
for hook in /etc/pyxcat.d/*.sh; do
  [ -f "$hook" ] && . "$hook"
done
CB=$(arg xcatcallback); TOKEN=$(arg xcattoken)
STATUS=$(arg xcatstatus); STATUS=${STATUS:-installed}
if [ -n "$CB" ] && [ -n "$TOKEN" ]; then
  n=0
  while :; do
    wget -S -q -O /tmp/reply --header "Authorization: Bearer $TOKEN" \
      --post-data "status=$STATUS" "$CB" 2>/tmp/wget.err
    rc=$?
    result=$(sed -n 's/^ *\(HTTP\/[0-9.]* [0-9][0-9]*.*\)$/\1/p' /tmp/wget.err | tail -n 1)
    n=$((n + 1))
    if [ -n "$result" ] || [ $n -ge 5 ]; then break; fi
    sleep 2
  done
  say "reported ${result:-failed rc=$rc}"
fi
if [ "$(arg xcatpoweroff)" = 1 ]; then
  say "poweroff"
  sync
  poweroff -f
fi
say "idle"
while :; do sleep 3600; done
"""

UDHCPC = r"""#!/bin/sh
# udhcpc hook: configure the lease on the interface, keep it for /init and its hooks.
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
    for r in $router; do ip route add default via "$r" dev "$interface" && break; done
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    env > /tmp/dhcp.env
    echo "$ip" > /tmp/ip
    ;;
esac
exit 0
"""


class InitrdError(RuntimeError):
    """The initrd cannot be built; the message names what is missing."""


def build_initrd(out: Path, modules: Path | None = None,
                 extra: Mapping[str, bytes | Path] | None = None) -> Path:
    """Write the test initrd (gzip newc) to ``out``: ``modules`` defaults to the lab assets,
    ``extra`` maps archive paths (``etc/pyxcat.d/10-x.sh``) to contents or files."""
    mod_dir = Path(modules) if modules is not None else assets.modules_dir()
    order = assets.load_order(mod_dir)
    if not order:
        raise InitrdError(f"no kernel modules (*.ko) in {mod_dir}: run `make lab-assets`")
    archive = _archive(_busybox(), order, dict(extra or {}))
    cached = _cache_dir() / f"initrd-{hashlib.sha256(archive).hexdigest()[:24]}.gz"
    if not cached.is_file():
        fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".initrd-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(gzip.compress(archive, compresslevel=6, mtime=0))
        os.replace(tmp, cached)  # concurrent builders write the same bytes
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, out)
    return out


def _archive(busybox: Path, order: list[Path], extra: dict[str, bytes | Path]) -> bytes:
    """The uncompressed newc archive: directories first, then files, devices and links."""
    w = diskless.Newc()  # the product's initramfs writer
    for d in ("bin", "dev", "etc", "etc/pyxcat.d", "lib", "lib/modules", "proc", "root", "run",
              "sys", "tmp"):
        w.dir(d)
    w.node("dev/console", stat.S_IFCHR | 0o600, 5, 1)
    w.node("dev/null", stat.S_IFCHR | 0o666, 1, 3)
    w.file("bin/busybox", busybox.read_bytes(), 0o755)
    w.link("bin/sh", "busybox")
    w.file("init", INIT.encode(), 0o755)
    w.file("etc/udhcpc.script", UDHCPC.encode(), 0o755)
    w.file("etc/modules.order", "".join(f"{p.stem}\n" for p in order).encode(), 0o644)
    for p in order:
        w.file(f"lib/modules/{p.stem}.ko", p.read_bytes(), 0o644)
    for name, content in sorted(extra.items()):
        name = name.lstrip("/")
        parent = name.rpartition("/")[0]
        if parent:
            w.dirs(parent)
        data = content.read_bytes() if isinstance(content, Path) else content
        w.file(name, data, 0o755 if name.endswith(".sh") else 0o644)
    return w.finish()


def _busybox() -> Path:
    """busybox-static's binary (the product's check: a dynamic busybox dies in the initrd)."""
    try:
        return diskless.busybox_static()
    except diskless.DisklessError as exc:
        raise InitrdError(str(exc)) from None


def _cache_dir() -> Path:
    d = Path(tempfile.gettempdir()) / f"pyxcat-initrd-{os.geteuid()}"
    d.mkdir(mode=0o700, exist_ok=True)
    return d
