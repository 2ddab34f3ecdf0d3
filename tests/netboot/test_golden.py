"""Golden files for the boot files nodeset writes under <root>/tftpboot, per boot loader
(noderes.netboot xnba, grub2, pxe), for an install state and for the local-boot state.
Update them with the command in tests/support/golden.py."""
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest
from support.golden import check_golden

GOLDEN = Path(__file__).parent / "golden"
IMAGE = "rocky9.4-x86_64-install-compute"
#: loader -> (the node that boots with it, its boot file under tftpboot)
LOADERS = {"xnba": ("n1", "xcat/xnba/nodes/n1"), "grub2": ("n2", "boot/grub2/n2"),
           "pxelinux": ("n3", "pxelinux.cfg/n3")}

needs_ksvalidator = pytest.mark.skipif(
    importlib.util.find_spec("pykickstart") is None and not shutil.which("ksvalidator")
    and not Path(sys.executable).with_name("ksvalidator").exists(),
    reason="pykickstart (ksvalidator) missing: nodeset checks every kickstart with it")


@pytest.fixture
def cluster(mn_sqlite):
    """n1 boots xnba, n2 grub2, n3 pxelinux; an install osimage with a copied kernel and
    initrd; DHCP left alone."""
    mn = mn_sqlite
    for key, value in (("master", "10.77.0.1"), ("domain", "hpc.example"),
                       ("dhcpsetup", "n")):
        mn.ok("chtab", f"key={key}", f"site.value={value}")
    mn.ok("chtab", "key=system", "passwd.username=root", "passwd.password=cluster")
    mn.ok("chtab", f"imagename={IMAGE}", "osimage.provmethod=install",
          "osimage.osvers=rocky9.4", "osimage.osarch=x86_64", "osimage.profile=compute",
          "osimage.imagetype=linux")
    mn.ok("nodeadd", "n[1-3]", "groups=compute", "nodetype.arch=x86_64")
    mn.ok("chtab", "node=compute", r"hosts.ip=|\D+(\d+)|10.77.0.($1+10)|",
          r"mac.mac=|\D+(\d+)|52:54:00:00:00:($1+10)|")
    mn.ok("nodech", "n2", "noderes.netboot=grub2")
    mn.ok("nodech", "n3", "noderes.netboot=pxe")
    pxeboot = mn.root / "install/rocky9.4/x86_64/images/pxeboot"
    pxeboot.mkdir(parents=True)
    (pxeboot / "vmlinuz").write_bytes(b"KERNEL" * 16)
    (pxeboot / "initrd.img").write_bytes(b"INITRD" * 16)
    return mn


def boot_file(mn, loader):
    return (mn.root / "tftpboot" / LOADERS[loader][1]).read_text()


@needs_ksvalidator
@pytest.mark.parametrize("loader", list(LOADERS))
def test_each_loaders_install_boot_file_matches_its_golden_file(cluster, loader):
    node = LOADERS[loader][0]
    cluster.ok("nodeset", node, f"osimage={IMAGE}")
    text = boot_file(cluster, loader)
    token = re.search(r" xcattoken=(\S+)", text).group(1)  # a new one each nodeset
    check_golden(GOLDEN / f"{loader}-install", text, [(token, "@TOKEN@")])


@pytest.mark.parametrize("loader", list(LOADERS))
def test_each_loaders_local_boot_file_matches_its_golden_file(cluster, loader):
    cluster.ok("nodeset", LOADERS[loader][0], "boot")
    check_golden(GOLDEN / f"{loader}-boot", boot_file(cluster, loader))
