"""Golden files for the network services' configuration: dhcpd.conf and Kea's JSON (makedhcp
-n), named.conf and the zones (makedns -n), for one small cluster. Update them with the
command in tests/support/golden.py."""
import re
import shutil
from pathlib import Path

import pytest
from support.golden import check_golden

GOLDEN = Path(__file__).parent / "golden"
SERIAL = (re.compile(r"^(@ \d+ IN SOA \S+ \S+ )\d+ ", re.M), r"\1@SERIAL@ ")

needs_dhcpd = pytest.mark.skipif(not shutil.which("dhcpd"), reason="isc-dhcp-server missing")
needs_kea = pytest.mark.skipif(not shutil.which("kea-dhcp4"), reason="kea-dhcp4 missing")
needs_bind = pytest.mark.skipif(
    not (shutil.which("named-checkzone") and shutil.which("named-checkconf")),
    reason="bind9 (named-checkzone, named-checkconf) missing")


@pytest.fixture
def cluster(mn_sqlite):
    """Two networks (mgt with a gateway and a dynamic range, ib), four nodes with an ib
    address each: n1, n2 boot xnba, n3 grub2, n4 pxelinux. Keys set, not generated."""
    mn = mn_sqlite
    for key, value in (("master", "10.77.0.1"), ("domain", "hpc.example"),
                       ("nameservers", "10.77.0.1"), ("nameserverhost", "mgt")):
        mn.ok("chtab", f"key={key}", f"site.value={value}")
    mn.ok("chtab", "key=omapi", "passwd.username=xcat_key", "passwd.password=c2VjcmV0")
    mn.ok("chtab", "key=dns", "passwd.username=xcat_key",
          "passwd.password=ZG5zLXRzaWcta2V5LWZvci10aGUtZ29sZGVuLXRlc3Q=")
    mn.ok("mkdef", "-t", "network", "-o", "mgt", "net=10.77.0.0", "mask=255.255.255.0",
          "mgtifname=eth1", "gateway=10.77.0.254", "dynamicrange=10.77.0.200-10.77.0.220")
    mn.ok("mkdef", "-t", "network", "-o", "ib", "net=10.78.0.0", "mask=255.255.0.0")
    mn.ok("nodeadd", "n[1-4]", "groups=compute")
    mn.ok("chtab", "node=compute", r"hosts.ip=|\D+(\d+)|10.77.0.($1+10)|",
          r"mac.mac=|\D+(\d+)|52:54:00:00:00:($1+10)|",
          r"nics.nicips=|\D+(\d+)|ib0!10.78.1.($1+10)|", "nics.nichostnamesuffixes=ib0!-ib")
    mn.ok("nodech", "n3", "noderes.netboot=grub2")
    mn.ok("nodech", "n4", "noderes.netboot=pxe")
    return mn


def written(mn, rel):
    return (mn.root / rel).read_text()


@pytest.fixture
def kea(cluster):
    cluster.ok("chtab", "key=dhcpbackend", "site.value=kea")
    cluster.ok("makedhcp", "-n")
    return cluster


@needs_dhcpd
def test_dhcpd_conf_matches_its_golden_file(cluster):
    cluster.ok("makedhcp", "-n")
    check_golden(GOLDEN / "dhcpd.conf", written(cluster, "etc/dhcp/dhcpd.conf"),
                 [(str(cluster.root), "@ROOT@")])


@needs_kea
def test_kea_configuration_matches_its_golden_file(kea):
    check_golden(GOLDEN / "kea-dhcp4.conf", written(kea, "etc/kea/kea-dhcp4.conf"),
                 [(str(kea.root), "@ROOT@")])


@needs_kea
def test_keas_ipxe_chain_script_matches_its_golden_file(kea):
    check_golden(GOLDEN / "kea-boot.ipxe", written(kea, "tftpboot/xcat/xnba/boot.ipxe"))


@needs_bind
def test_named_conf_matches_its_golden_file(cluster):
    cluster.ok("makedns", "-n")
    check_golden(GOLDEN / "named.conf", written(cluster, "etc/named.conf"),
                 [(str(cluster.root), "@ROOT@")])


@needs_bind
@pytest.mark.parametrize("zone", ["hpc.example", "0.77.10.in-addr.arpa", "78.10.in-addr.arpa"])
def test_each_zone_file_matches_its_golden_file(cluster, zone):
    cluster.ok("makedns", "-n")
    check_golden(GOLDEN / f"db.{zone}", written(cluster, f"var/named/db.{zone}"), [SERIAL])
