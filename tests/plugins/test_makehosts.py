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
