"""makedhcp -n: render, our own checks, dhcpd -t, and only then the live file."""
import shutil

import pytest
from support.cluster import MASTER, MGT_DHCP, NET, OMAPI_KEY, netboot, nodes, site

needs_dhcpd = pytest.mark.skipif(not shutil.which("dhcpd"), reason="isc-dhcp-server missing")
pytestmark = pytest.mark.cluster(
    site(master=MASTER, domain="hpc.example", nameservers=MASTER), OMAPI_KEY, MGT_DHCP,
    nodes("n[1-3]", ip=NET, mac=True), netboot(n3="grub2"))


def conf(mn):
    return (mn.root / "etc/dhcp/dhcpd.conf").read_text()


@needs_dhcpd
def test_the_file_holds_the_omapi_key_so_only_root_reads_it(cluster):
    cluster.ok("makedhcp", "-n")
    assert oct((cluster.root / "etc/dhcp/dhcpd.conf").stat().st_mode & 0o777) == "0o600"


@needs_dhcpd
@pytest.mark.parametrize("change,words", [
    (("nodech", "n2", "mac.mac=52:54:00:00:00:11"), ["52:54:00:00:00:11", "n1,n2"]),
    (("nodech", "n2", "hosts.ip=10.77.0.11"), ["10.77.0.11", "n1,n2"]),
    (("nodech", "n2", "hosts.ip=10.99.0.2"), ["n2", "10.99.0.2", "outside"]),
    (("nodech", "n2", "mac.mac=52:54:00:zz:00:11"), ["n2", "52:54:00:zz:00:11"]),
    (("nodeadd", "n8", "groups=other", "mac.mac=52:54:00:00:00:88"), ["n8", "no IP address"]),
])
def test_our_checks_name_the_nodes_and_leave_the_live_file(cluster, change, words):
    cluster.ok("makedhcp", "-n")
    before = conf(cluster)
    cluster.ok(*change)
    r = cluster.run("makedhcp", "-n")
    assert r.rc == 1, r.err
    assert all(w in r.err for w in words), r.err
    assert conf(cluster) == before


@needs_dhcpd
def test_dhcpd_rejecting_the_file_leaves_the_live_file(cluster):
    cluster.ok("makedhcp", "-n")
    before = conf(cluster)
    custom = cluster.root / "install/custom/templates"
    custom.mkdir(parents=True)
    (custom / "dhcpd.conf.j2").write_text("subnet {{ 1 }} netmask oops {\n")
    r = cluster.run("makedhcp", "-n")
    assert r.rc == 1 and "dhcpd rejected" in r.err and "was not changed" in r.err
    assert conf(cluster) == before


@needs_dhcpd
def test_a_node_without_mac_is_left_out_with_a_warning(cluster):
    cluster.ok("nodeadd", "n9", "groups=other", "hosts.ip=10.77.0.99")
    r = cluster.run("makedhcp", "-n")
    assert r.rc == 0 and "n9" in r.err and "host n9 " not in conf(cluster)


def test_live_changes_without_a_server_say_what_is_missing(cluster):
    cluster.ok("chtab", "key=omapiport", "site.value=1")
    r = cluster.run("makedhcp", "n1")
    assert r.rc == 1 and "Cannot reach dhcpd's OMAPI at 127.0.0.1:1" in r.err
    r = cluster.run("makedhcp", "-n", "n1")
    assert r.rc == 1 and "every node" in r.err
    cluster.ok("chtab", "key=dhcpbackend", "site.value=kea")
    r = cluster.run("makedhcp", "n1")
    assert r.rc == 1 and "run makedhcp -n first" in r.err
    if shutil.which("kea-dhcp4"):
        cluster.ok("makedhcp", "-n")
        r = cluster.run("makedhcp", "n1")
        assert r.rc == 1 and "Cannot reach Kea's control socket" in r.err
