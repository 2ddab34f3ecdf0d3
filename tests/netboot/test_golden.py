"""Golden files for the boot files nodeset writes under <root>/tftpboot, per boot loader
(noderes.netboot xnba, grub2, pxe), for an install state and for the local-boot state.
Update them with the command in tests/support/golden.py."""
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest
from support.cluster import INSTALL_IMAGE, install_image, netboot, site
from support.golden import check_golden

GOLDEN = Path(__file__).parent / "golden"
IMAGE = INSTALL_IMAGE
#: loader -> (the node that boots with it, its boot file under tftpboot)
LOADERS = {"xnba": ("n1", "xcat/xnba/nodes/n1"), "grub2": ("n2", "boot/grub2/n2"),
           "pxelinux": ("n3", "pxelinux.cfg/n3")}

#: n1 boots xnba, n2 grub2, n3 pxelinux; an install osimage with a copied kernel and initrd;
#: DHCP left alone.
pytestmark = pytest.mark.cluster(
    site(domain="hpc.example"),
    install_image("n[1-3]", kernel=b"KERNEL" * 16, initrd=b"INITRD" * 16),
    netboot(n2="grub2", n3="pxe"))

needs_ksvalidator = pytest.mark.skipif(
    importlib.util.find_spec("pykickstart") is None and not shutil.which("ksvalidator")
    and not Path(sys.executable).with_name("ksvalidator").exists(),
    reason="pykickstart (ksvalidator) missing: nodeset checks every kickstart with it")


def boot_file(mn, loader):
    return (mn.root / "tftpboot" / LOADERS[loader][1]).read_text()


@needs_ksvalidator
@pytest.mark.parametrize("loader", list(LOADERS))
def test_each_loaders_install_boot_file_matches_its_golden_file(cluster_sqlite, loader):
    node = LOADERS[loader][0]
    cluster_sqlite.ok("nodeset", node, f"osimage={IMAGE}")
    text = boot_file(cluster_sqlite, loader)
    token = re.search(r" xcattoken=(\S+)", text).group(1)  # a new one each nodeset
    check_golden(GOLDEN / f"{loader}-install", text, [(token, "@TOKEN@")])


@pytest.mark.parametrize("loader", list(LOADERS))
def test_each_loaders_local_boot_file_matches_its_golden_file(cluster_sqlite, loader):
    cluster_sqlite.ok("nodeset", LOADERS[loader][0], "boot")
    check_golden(GOLDEN / f"{loader}-boot", boot_file(cluster_sqlite, loader))
