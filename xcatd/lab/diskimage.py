"""A Debian 12 root tree for the diskless lab tests, built with mmdebstrap and cached.

genimage is the product's way to build an image; this is the lab's small stand-in so the
diskless boot (xcatd.netboot.diskless) can be tested on its own: mmdebstrap writes a tarball
of bookworm with systemd, udev, systemd-networkd (DHCP on every Ethernet link), curl and the
kernel (linux-image-amd64), kept under the lab cache keyed by everything that goes into it.
A second run only unpacks it (seconds). Concurrent test workers build it once (a file lock).

    >>> from xcatd.lab import diskimage
    >>> tree = diskimage.unpack(tmp / "rootimg")        # doctest: +SKIP

What the image carries is generic: no host name (DHCP gives it), an empty machine-id
(systemd makes one per boot), no keys; per-node data comes from the management node at boot.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from xcatd.lab import assets

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
VARIANT = "apt"
PACKAGES = ("systemd-sysv", "udev", "curl", "iproute2", "kmod", "linux-image-amd64")
#: What the node agent needs (python3, openssl for its key) and what the stock postscripts
#: configure (sshd for remoteshell, rsyslog for syslog, timesyncd for setupntp): in the
#: images genimage builds in the lab, not in the prebuilt one
AGENT_PACKAGES = ("python3", "openssl", "openssh-server", "rsyslog", "systemd-timesyncd")
#: No initramfs-tools run when the kernel is installed (the diskless initrd is ours), no
#: documentation, manual pages or translations in the image.
DPKG_OPTS = ("path-exclude=/etc/kernel/postinst.d/initramfs-tools",
             "path-exclude=/usr/share/doc/*", "path-exclude=/usr/share/man/*",
             "path-exclude=/usr/share/locale/*", "path-include=/usr/share/locale/locale.alias")
#: DHCP on every Ethernet link, whatever its name: nothing per node in the image.
NETWORK = """[Match]
Type=ether

[Network]
DHCP=ipv4
KeepConfiguration=yes
"""
TRIM = ("sound", "drivers/gpu", "drivers/media", "drivers/net/wireless", "drivers/infiniband",
        "drivers/staging", "drivers/iio", "drivers/usb", "drivers/hid", "drivers/hwmon",
        "drivers/bluetooth", "drivers/isdn", "drivers/mtd", "net/wireless", "net/mac80211",
        "net/bluetooth")
CUSTOMIZE = (
    "rm -f \"$1/etc/hostname\" \"$1/etc/resolv.conf\"",
    ": > \"$1/etc/machine-id\"",
    "mkdir -p \"$1/etc/systemd/network\"",
    "printf '%s' '" + NETWORK + "' > \"$1/etc/systemd/network/50-dhcp.network\"",
    "chroot \"$1\" systemctl enable systemd-networkd.service",
    "echo 'root:*' | chroot \"$1\" chpasswd -e",
    "rm -rf \"$1/var/cache/apt/archives\"/*.deb \"$1/var/lib/apt/lists\"/*_Packages",
    # an exlist for a VM: no sound, graphics, wireless, media or USB drivers (~230 MB)
    "for k in \"$1\"/usr/lib/modules/*; do (cd \"$k/kernel\" && rm -rf " + " ".join(TRIM)
    + ") && chroot \"$1\" depmod -a \"${k##*/}\"; done",
)


class ImageUnavailable(RuntimeError):
    """The image cannot be built here (no mmdebstrap, no mirror); the test skips on it."""


def spec() -> dict:
    """Everything that decides the image's content: its cache key is this spec's hash."""
    return {"suite": SUITE, "mirror": MIRROR, "variant": VARIANT, "packages": list(PACKAGES),
            "dpkgopts": list(DPKG_OPTS), "customize": list(CUSTOMIZE)}


def spec_hash() -> str:
    return hashlib.sha256(json.dumps(spec(), sort_keys=True).encode()).hexdigest()[:16]


def tarball(log: Path | None = None) -> Path:
    """The cached tarball of the image, built first when it is not there (~1-2 minutes)."""
    cache = assets.assets_dir() / "diskless"
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"debian12-{spec_hash()}.tar"
    if out.is_file():
        return out
    if not shutil.which("mmdebstrap"):
        raise ImageUnavailable("mmdebstrap is not installed (Debian package mmdebstrap)")
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():  # another worker built it meanwhile
            return out
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=".build-", suffix=".tar")
        os.close(fd)
        argv = ["mmdebstrap", f"--variant={VARIANT}", "--mode=root", "--format=tar",
                f"--include={','.join(PACKAGES)}",
                *(f"--dpkgopt={o}" for o in DPKG_OPTS),
                *(f"--customize-hook={h}" for h in CUSTOMIZE),
                SUITE, tmp, MIRROR]
        logf = log or cache / f"debian12-{spec_hash()}.log"
        with open(logf, "wb") as fh:
            p = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, check=False,
                               timeout=1800)
        if p.returncode:
            Path(tmp).unlink(missing_ok=True)
            tail = logf.read_text(errors="replace")[-2000:]
            raise ImageUnavailable(f"mmdebstrap failed ({p.returncode}), see {logf}:\n{tail}")
        os.replace(tmp, out)
    return out


def unpack(dest: Path) -> Path:
    """The image's root tree at ``dest`` (made fresh), from the cached tarball."""
    tar = tarball()
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-C", str(dest), "--numeric-owner", "-xpf", str(tar)], check=True,
                   capture_output=True, timeout=600)
    return dest


if __name__ == "__main__":  # warm the cache: python -m xcatd.lab.diskimage
    print(tarball())
