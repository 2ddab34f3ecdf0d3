"""Golden files for the install files `nodeset <node> osimage=<image>` writes into
<root>/install/autoinst: kickstart (RHEL 8 and 9 syntax), Debian preseed, Ubuntu autoinstall.
Update them with the command in tests/support/golden.py."""
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest
from support.cluster import MASTER, mgt_network, nodes, osimage, root_password, site
from support.golden import check_golden

GOLDEN = Path(__file__).parent / "golden"
#: osimage name -> (osvers, kernel and initrd in the copied media)
IMAGES = {"rocky8": ("rocky8.10", "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"),
          "rocky9": ("rocky9.4", "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"),
          "debian12": ("debian12.5", "install.amd/vmlinuz", "install.amd/initrd.gz"),
          "ubuntu24": ("ubuntu24.04", "casper/vmlinuz", "casper/initrd")}
#: a SHA-512 crypt of site's root password: a new salt each run
CRYPT = (re.compile(r"\$6\$[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}"), "@CRYPT@")

#: n1 (MAC 52:54:00:00:00:11, 10.77.0.11) and one install osimage per distribution, each with
#: a copied kernel and initrd; DHCP left alone.
pytestmark = pytest.mark.cluster(
    site(master=MASTER, domain="hpc.example", nameservers=MASTER, timezone="Europe/Paris",
         dhcpsetup="n"),
    root_password(), mgt_network(gateway="10.77.0.254"),
    nodes("n1", "nodetype.arch=x86_64", "hosts.ip=10.77.0.11", "mac.mac=52:54:00:00:00:11"),
    *(osimage(name, osvers, media=(kernel, initrd), kernel=b"BOOT" * 16, initrd=b"BOOT" * 16)
      for name, (osvers, kernel, initrd) in IMAGES.items()))

needs_ksvalidator = pytest.mark.skipif(
    importlib.util.find_spec("pykickstart") is None and not shutil.which("ksvalidator")
    and not Path(sys.executable).with_name("ksvalidator").exists(),
    reason="pykickstart (ksvalidator) missing: nodeset checks every kickstart with it")


def install(mn, image, name="n1"):
    """nodeset n1 osimage=<image>: (the file <name> under install/autoinst, the replacements
    for it: n1's callback token, read from its iPXE script, and the root password's hash)."""
    mn.ok("nodeset", "n1", f"osimage={image}")
    script = (mn.root / "tftpboot/xcat/xnba/nodes/n1").read_text()
    token = re.search(r" xcattoken=(\S+)", script).group(1)
    return (mn.root / "install/autoinst" / name).read_text(), [(token, "@TOKEN@"), CRYPT]


@needs_ksvalidator
def test_kickstart_for_rocky8_matches_its_golden_file(cluster_sqlite):
    check_golden(GOLDEN / "rocky8.ks", *install(cluster_sqlite, "rocky8"))


@needs_ksvalidator
def test_kickstart_for_rocky9_matches_its_golden_file(cluster_sqlite):
    check_golden(GOLDEN / "rocky9.ks", *install(cluster_sqlite, "rocky9"))


def test_preseed_for_debian12_matches_its_golden_file(cluster_sqlite):
    check_golden(GOLDEN / "debian12.preseed", *install(cluster_sqlite, "debian12"))


def test_autoinstall_user_data_for_ubuntu24_matches_its_golden_file(cluster_sqlite):
    check_golden(GOLDEN / "ubuntu24.user-data",
                 *install(cluster_sqlite, "ubuntu24", "n1/user-data"))


def test_autoinstall_meta_data_for_ubuntu24_matches_its_golden_file(cluster_sqlite):
    check_golden(GOLDEN / "ubuntu24.meta-data",
                 *install(cluster_sqlite, "ubuntu24", "n1/meta-data"))
