"""makedns against a real named on 127.0.0.1: -n, dynamic updates with TSIG, bad input."""
import os
import shutil

import dns.resolver
import pytest
from support.cluster import (
    IB_NET,
    IB_NETWORK,
    MASTER,
    NET,
    mgt_network,
    nodes,
    site,
    site_free_port,
    site_value,
)

from xcatd.lab.bind import Named

pytestmark = [
    pytest.mark.skipif(not shutil.which("named") or os.geteuid() != 0,
                       reason="needs bind9 (named) and root"),
    pytest.mark.cluster(site(domain="hpc.example", master=MASTER), site_free_port("dnsport"),
                        site(dnslisten="127.0.0.1", nameserverhost="mgt"), mgt_network(),
                        IB_NETWORK, nodes("n[1-3]", ip=NET, ib=IB_NET))]


def dns_port(mn) -> int:
    """Where the test's named listens: the free port site.dnsport got."""
    return int(site_value(mn, "dnsport"))


def resolver(port):
    r = dns.resolver.Resolver(configure=False)
    r.nameservers, r.port = ["127.0.0.1"], port
    return r


def a(port, name):
    try:
        return [str(x) for x in resolver(port).resolve(name, "A")]
    except dns.resolver.NXDOMAIN:
        return []


def ptr(port, ip):
    try:
        return [str(x) for x in resolver(port).resolve_address(ip)]
    except dns.resolver.NXDOMAIN:
        return []


def test_rebuild_then_updates_are_served(cluster):
    r = cluster.ok("makedns", "-n")
    assert "Wrote 3 zones" in r.out
    with Named(cluster.root / "etc/named.conf", dns_port(cluster)):
        p = dns_port(cluster)
        assert a(p, "n2.hpc.example") == ["10.77.0.12"]
        assert a(p, "n2-ib.hpc.example") == ["10.78.1.12"]
        assert ptr(p, "10.77.0.13") == ["n3.hpc.example."]
        assert ptr(p, "10.78.1.11") == ["n1-ib.hpc.example."]
        cluster.ok("nodeadd", "n7", "groups=compute")
        assert "Updated 2 host records in 3 zones" in cluster.ok("makedns", "n7").out
        assert a(p, "n7.hpc.example") == ["10.77.0.17"]
        assert ptr(p, "10.78.1.17") == ["n7-ib.hpc.example."]
        cluster.ok("nodech", "n7", "hosts.ip=10.77.0.70")
        cluster.ok("makedns", "n7")
        assert a(p, "n7.hpc.example") == ["10.77.0.70"]
        cluster.ok("makedns", "-d", "n7")
        assert a(p, "n7.hpc.example") == [] and ptr(p, "10.77.0.70") == []
        assert a(p, "n1.hpc.example") == ["10.77.0.11"]   # others untouched


def test_an_update_with_the_wrong_key_is_refused(cluster):
    cluster.ok("makedns", "-n")
    with Named(cluster.root / "etc/named.conf", dns_port(cluster)):
        cluster.ok("chtab", "key=dns", "passwd.password=d3JvbmdrZXl3cm9uZ2tleXdyb25na2V5MTIzNA==")
        r = cluster.run("makedns", "n1")
        assert r.rc == 1 and "DNS update of" in r.err


def test_bad_input_leaves_the_live_files(cluster):
    cluster.ok("makedns", "-n")
    zone = cluster.root / "var/named/db.hpc.example"
    before = zone.read_text()
    cluster.ok("nodech", "n2", "hosts.ip=10.99.0.2")
    r = cluster.run("makedns", "-n")
    assert r.rc == 1 and "n2: 10.99.0.2" in r.err
    assert zone.read_text() == before
    cluster.ok("nodech", "n2", "hosts.ip=10.77.0.12")
    cluster.ok("chtab", "key=forwarders", "site.value=not-an-address")
    r = cluster.run("makedns", "-n")
    assert r.rc == 1 and "named-checkconf rejected" in r.err
    assert zone.read_text() == before


def test_no_domain_is_a_clear_error(cluster):
    cluster.ok("chtab", "-d", "key=domain", "site")
    r = cluster.run("makedns", "-n")
    assert r.rc == 1 and "site.domain" in r.err


def test_thousands_of_nodes_update_in_chunks_and_the_serial_grows(cluster):
    import dns.message
    import dns.query
    cluster.ok("mkdef", "-t", "network", "-o", "big", "net=10.80.0.0", "mask=255.255.0.0")
    cluster.ok("makedns", "-n")
    with Named(cluster.root / "etc/named.conf", dns_port(cluster)):
        def serial():
            q = dns.message.make_query("hpc.example", "SOA")
            return dns.query.udp(q, "127.0.0.1", port=dns_port(cluster),
                                 timeout=5).answer[0][0].serial
        s1 = serial()
        cluster.ok("nodeadd", "b[1-2500]", "groups=big")
        cluster.ok("chtab", "node=big",
                   r"hosts.ip=|\D+(\d+)|10.80.(($1-1)/250).(($1-1)%250+1)|")
        r = cluster.ok("makedns", "b[1-2500]")      # one message would pass 64 KiB
        assert "Updated 2500 host records in 2 zones" in r.out
        assert a(dns_port(cluster), "b2500.hpc.example") == ["10.80.9.250"]
        assert ptr(dns_port(cluster), "10.80.0.1") == ["b1.hpc.example."]
        assert serial() > s1 > 1
