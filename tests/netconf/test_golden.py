"""Golden files for the network services' configuration: dhcpd.conf and Kea's JSON (makedhcp
-n), named.conf and the zones (makedns -n), for one small cluster_sqlite. Update them with the
command in tests/support/golden.py."""
import re
import shutil
from pathlib import Path

import pytest
from support.cluster import (
    IB_NET,
    IB_NETWORK,
    MASTER,
    MGT_DHCP,
    NET,
    OMAPI_KEY,
    netboot,
    nodes,
    passwd,
    site,
)
from support.golden import check_golden

GOLDEN = Path(__file__).parent / "golden"
SERIAL = (re.compile(r"^(@ \d+ IN SOA \S+ \S+ )\d+ ", re.M), r"\1@SERIAL@ ")

#: Two networks (mgt with a gateway and a dynamic range, ib), four nodes with an ib address
#: each: n1, n2 boot xnba, n3 grub2, n4 pxelinux. Keys set, not generated.
pytestmark = pytest.mark.cluster(
    site(master=MASTER, domain="hpc.example", nameservers=MASTER, nameserverhost="mgt"),
    OMAPI_KEY, passwd("dns", "xcat_key", "ZG5zLXRzaWcta2V5LWZvci10aGUtZ29sZGVuLXRlc3Q="),
    MGT_DHCP, IB_NETWORK, nodes("n[1-4]", ip=NET, mac=True, ib=IB_NET),
    netboot(n3="grub2", n4="pxe"))

needs_dhcpd = pytest.mark.skipif(not shutil.which("dhcpd"), reason="isc-dhcp-server missing")
needs_kea = pytest.mark.skipif(not shutil.which("kea-dhcp4"), reason="kea-dhcp4 missing")
needs_bind = pytest.mark.skipif(
    not (shutil.which("named-checkzone") and shutil.which("named-checkconf")),
    reason="bind9 (named-checkzone, named-checkconf) missing")


def written(mn, rel):
    return (mn.root / rel).read_text()


@pytest.fixture
def kea(cluster_sqlite):
    cluster_sqlite.ok("chtab", "key=dhcpbackend", "site.value=kea")
    cluster_sqlite.ok("makedhcp", "-n")
    return cluster_sqlite


@needs_dhcpd
def test_dhcpd_conf_matches_its_golden_file(cluster_sqlite):
    cluster_sqlite.ok("makedhcp", "-n")
    check_golden(GOLDEN / "dhcpd.conf", written(cluster_sqlite, "etc/dhcp/dhcpd.conf"),
                 [(str(cluster_sqlite.root), "@ROOT@")])


@needs_kea
def test_kea_configuration_matches_its_golden_file(kea):
    check_golden(GOLDEN / "kea-dhcp4.conf", written(kea, "etc/kea/kea-dhcp4.conf"),
                 [(str(kea.root), "@ROOT@")])


@needs_kea
def test_keas_ipxe_chain_script_matches_its_golden_file(kea):
    check_golden(GOLDEN / "kea-boot.ipxe", written(kea, "tftpboot/xcat/xnba/boot.ipxe"))


@needs_bind
def test_named_conf_matches_its_golden_file(cluster_sqlite):
    cluster_sqlite.ok("makedns", "-n")
    check_golden(GOLDEN / "named.conf", written(cluster_sqlite, "etc/named.conf"),
                 [(str(cluster_sqlite.root), "@ROOT@")])


@needs_bind
@pytest.mark.parametrize("zone", ["hpc.example", "0.77.10.in-addr.arpa", "78.10.in-addr.arpa"])
def test_each_zone_file_matches_its_golden_file(cluster_sqlite, zone):
    cluster_sqlite.ok("makedns", "-n")
    check_golden(GOLDEN / f"db.{zone}", written(cluster_sqlite, f"var/named/db.{zone}"), [SERIAL])
