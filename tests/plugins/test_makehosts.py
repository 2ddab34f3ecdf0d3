"""makehosts: /etc/hosts from hosts, nics and the domain, without disturbing other lines."""
import pytest
from support.cluster import nodes, site

pytestmark = pytest.mark.cluster(nodes("n[1-3]", ip="10.0.0", ib="10.1.0"),
                                 site(domain="hpc.example"))


def hosts(mn):
    return (mn.root / "etc/hosts").read_text().splitlines()


def test_writes_nodes_and_their_nics_with_the_domain(cluster):
    cluster.ok("makehosts")
    assert hosts(cluster) == [
        "10.0.0.11 n1 n1.hpc.example", "10.1.0.11 n1-ib n1-ib.hpc.example",
        "10.0.0.12 n2 n2.hpc.example", "10.1.0.12 n2-ib n2-ib.hpc.example",
        "10.0.0.13 n3 n3.hpc.example", "10.1.0.13 n3-ib n3-ib.hpc.example"]


def test_long_name_first_and_aliases(cluster):
    cluster.ok("nodech", "n1", "hosts.hostnames=login1,gw")
    cluster.ok("makehosts", "-l", "n1")
    assert hosts(cluster)[0] == "10.0.0.11 n1.hpc.example n1 login1 gw"


def test_a_network_domain_beats_the_site_domain(cluster):
    cluster.ok("mkdef", "-t", "network", "-o", "ib", "net=10.1.0.0", "mask=255.255.0.0",
               "domain=ib.example")
    cluster.ok("makehosts", "n1")
    assert "10.1.0.11 n1-ib n1-ib.ib.example" in hosts(cluster)


def test_updates_in_place_and_keeps_every_other_line(cluster):
    path = cluster.root / "etc/hosts"
    path.write_text("127.0.0.1 localhost\n# admin note\n10.0.0.11 n1 old\n192.168.1.5 printer\n")
    cluster.ok("makehosts", "n1")
    assert hosts(cluster) == ["127.0.0.1 localhost", "# admin note",
                              "10.0.0.11 n1 n1.hpc.example", "10.1.0.11 n1-ib n1-ib.hpc.example",
                              "192.168.1.5 printer"]
    cluster.ok("makehosts", "n2")
    assert hosts(cluster)[-2:] == ["10.0.0.12 n2 n2.hpc.example",
                                   "10.1.0.12 n2-ib n2-ib.hpc.example"]
    assert "192.168.1.5 printer" in hosts(cluster)


def test_new_keeps_only_localhost_lines(cluster):
    (cluster.root / "etc/hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
                                            "192.168.1.5 printer\n")
    cluster.ok("makehosts", "-n", "n3")
    assert hosts(cluster) == ["127.0.0.1 localhost", "::1 localhost ip6-localhost",
                              "10.0.0.13 n3 n3.hpc.example", "10.1.0.13 n3-ib n3-ib.hpc.example"]


def test_delete_removes_only_those_nodes(cluster):
    cluster.ok("makehosts")
    cluster.ok("makehosts", "-d", "n2")
    assert not [ln for ln in hosts(cluster) if " n2" in ln]
    assert len(hosts(cluster)) == 4


def test_a_node_without_address_is_named(cluster):
    cluster.ok("nodeadd", "n9", "groups=other")
    r = cluster.run("makehosts")
    assert r.rc == 0 and "No IP address (hosts.ip) for: n9" in r.err


def test_a_bad_address_is_an_error_and_the_file_is_untouched(cluster):
    path = cluster.root / "etc/hosts"
    path.write_text("127.0.0.1 localhost\n")
    cluster.ok("nodech", "n1", "hosts.ip=10.0.0.999")
    r = cluster.run("makehosts")
    assert r.rc == 1 and "10.0.0.999" in r.err
    assert path.read_text() == "127.0.0.1 localhost\n"


# ---- nic attributes set through the object commands ----------------------------------------
def test_nic_aliases_follow_the_interface_name(cluster):
    cluster.ok("chdef", "n1", "nicaliases.ib0=login1-ib ib-login1")
    cluster.ok("makehosts", "n1")
    assert "10.1.0.11 n1-ib n1-ib.hpc.example login1-ib ib-login1" in hosts(cluster)


def test_a_group_regex_per_interface_names_each_members_interface(cluster):
    cluster.ok("chdef", "-t", "group", "-o", "compute", "nicips=",
               r"nicips.eth1=|\D+(\d+)|10.2.0.($1+20)|", "nichostnamesuffixes.eth1=-data",
               r"nicaliases.eth1=|(.*)|($1)-storage|")
    cluster.ok("makehosts")
    assert hosts(cluster) == [
        "10.0.0.11 n1 n1.hpc.example", "10.2.0.21 n1-data n1-data.hpc.example n1-storage",
        "10.0.0.12 n2 n2.hpc.example", "10.2.0.22 n2-data n2-data.hpc.example n2-storage",
        "10.0.0.13 n3 n3.hpc.example", "10.2.0.23 n3-data n3-data.hpc.example n3-storage"]


def test_an_interface_without_suffix_gets_its_name(cluster):
    cluster.ok("chdef", "n2", "nicips.eth2=10.4.0.2")
    cluster.ok("makehosts", "n2")
    assert "10.4.0.2 n2-eth2 n2-eth2.hpc.example" in hosts(cluster)
    assert "10.1.0.12 n2-ib n2-ib.hpc.example" in hosts(cluster)  # the group's ib0 stays


def test_a_name_regex_keeps_the_name_as_text(cluster):
    cluster.ok("chdef", "-t", "group", "-o", "compute", "hostnames=|(.*)|($1).cluster.net|")
    cluster.ok("makehosts", "n1")
    assert hosts(cluster)[0] == "10.0.0.11 n1 n1.hpc.example n1.cluster.net"


def test_otherinterfaces_with_a_leading_dash_are_suffixes_of_the_node_name(cluster):
    cluster.ok("nodech", "n2", "hosts.otherinterfaces=-bmc:10.2.0.12,n2-mgmt:10.3.0.12")
    cluster.ok("makehosts", "n2")
    lines = hosts(cluster)
    assert "10.2.0.12 n2-bmc n2-bmc.hpc.example" in lines
    assert "10.3.0.12 n2-mgmt n2-mgmt.hpc.example" in lines
