"""nodestat and pping: xCAT's words (``n1: sshd``, ``ping``, ``noping``) for nodes on 127/8.

n1 (127.0.1.11) has a listener on a free port, which is closed on n2 (127.0.1.12): that
port is "sshd" in the tests that ask for it with --ports. n9 is 127.255.255.255, where
nothing answers: no echo reply (broadcasts are ignored) and no TCP. Dead addresses that
stay silent until the timeout live in a network namespace (xcatd.lab.loopnet, root only).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from support.cluster import command, nodes, site

from xcatd.base import reach
from xcatd.hardware import registry
from xcatd.hardware.fake import FakeDriver

pytestmark = pytest.mark.cluster(
    site(dhcpsetup="n"),
    nodes("n1-n3", "nodehm.mgt=fake", r"ipmi.bmc=|\D+(\d+)|10.0.0.($1+0)|", ip="127.0.1"),
    command("nodeadd", "n9", "groups=other", "hosts.ip=127.255.255.255", "nodehm.mgt=fake",
            "ipmi.bmc=10.0.0.9"))


@pytest.fixture
def sshd():
    """A listener on n1's address: its port, closed on every other address."""
    s = socket.socket()
    s.bind(("127.0.1.11", 0))
    s.listen(64)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def fake():
    registry.register("fake", FakeDriver)
    yield registry.driver("fake")
    registry.unregister("fake")


# ---- pping ---------------------------------------------------------------------------------
def test_pping_prints_ping_or_noping_for_each_node(cluster):
    r = cluster.ok("pping", "n1-n3,n9")
    assert sorted(r.lines) == ["n1: ping", "n2: ping", "n3: ping", "n9: noping"]
    assert r.err == ""


def test_pping_of_a_node_without_an_address_is_noping(cluster, monkeypatch):
    from xcatd.plugins import nodestat

    def nowhere(host):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(nodestat, "resolver", nowhere)
    cluster.ok("nodeadd", "n5", "groups=other")
    assert cluster.ok("pping", "n5").lines == ["n5: noping"]


def test_pping_interfaces_come_from_nicips(cluster):
    cluster.ok("chdef", "n1", "nicips.ib0=127.0.2.1", "nictypes.ib0=Infiniband")
    cluster.ok("chdef", "n9", "nicips.ib0=127.255.255.255", "nictypes.ib0=Infiniband")
    assert sorted(cluster.ok("pping", "-i", "ib0", "n1,n9").lines) == [
        "n1-ib0: ping", "n9-ib0: noping"]


@pytest.mark.skipif(shutil.which("fping") is None, reason="fping is not installed")
def test_pping_with_fping_says_the_same(cluster):
    assert sorted(cluster.ok("pping", "-f", "n1,n9").lines) == ["n1: ping", "n9: noping"]


def test_pping_without_a_noderange_prints_its_usage(cluster):
    r = cluster.run("pping")
    assert r.rc == 1
    assert r.out.startswith("Usage: pping [-i|--interface interfaces][-f|--use_fping] noderange")


# ---- nodestat ------------------------------------------------------------------------------
def test_nodestat_names_the_open_applications_else_ping_else_noping(cluster, sshd):
    r = cluster.ok("nodestat", "n1-n3,n9", "--ports", f"sshd={sshd}")
    assert r.lines == ["n1: sshd", "n2: ping", "n3: ping", "n9: noping"]


def test_nodestat_lists_several_open_applications_sorted(cluster, sshd):
    r = cluster.ok("nodestat", "n1,n2", "--ports", f"sshd={sshd},https={sshd}")
    assert r.lines == ["n1: https,sshd", "n2: ping"]


def test_a_node_that_pings_but_runs_nothing_shows_its_deployment_state(cluster, sshd):
    cluster.ok("nodeset", "n2", "boot")
    r = cluster.ok("nodestat", "n1-n3", "--ports", f"sshd={sshd}")
    assert r.lines == ["n1: sshd", "n2: boot", "n3: ping"]


def test_nodestat_u_writes_status_and_appstatus_as_xcat_does(cluster, sshd):
    cluster.ok("nodech", "n1", "nodelist.appstatus=gpfs=up")
    cluster.ok("nodestat", "-u", "n1,n2,n9", "--ports", f"sshd={sshd}")
    got = cluster.ok("nodels", "n1,n2,n9", "nodelist.status", "nodelist.appstatus").lines
    assert got == ["n1: nodelist.status: ping", "n1: nodelist.appstatus: gpfs=up,sshd=up",
                   "n2: nodelist.status: ping", "n2: nodelist.appstatus: sshd=down",
                   "n9: nodelist.status: noping", "n9: nodelist.appstatus: "]
    times = cluster.ok("nodels", "n1", "nodelist.statustime").lines[0].split(": ", 1)[1]
    assert time.strptime(times, "%m-%d-%Y %H:%M:%S")  # xCAT's format


def test_nodestat_p_adds_the_power_state_of_the_nodes_that_do_not_ping(cluster, fake, sshd):
    assert cluster.ok("rpower", "n9", "on").lines == ["n9: on"]
    r = cluster.ok("nodestat", "-p", "n1,n9", "--ports", f"sshd={sshd}")
    assert r.lines == ["n1: sshd", "n9: noping(on)"]


def test_nodestat_m_probes_the_applications_of_the_monsetting_table(cluster, sshd):
    for key, value in [("apps", "ssh,myapp,gpfs"), ("ssh", f"port={sshd}"),
                       ("myapp", f"port={sshd},group=nosuch"), ("gpfs", "cmd=/bin/true")]:
        cluster.ok("chtab", f"name=xcatmon,key={key}", f"monsetting.value={value}")
    r = cluster.ok("nodestat", "-m", "n1,n2")
    assert r.lines == ["n1: ssh", "n2: ping"]  # myapp: for group nosuch only
    assert r.err == ("Warning: nodestat: monsetting runs cmd= for gpfs; pyxcat runs no "
                     "monitoring commands: skipped\n")


def test_nodestat_of_a_node_without_an_address_says_so_as_xcat_does(cluster, monkeypatch):
    from xcatd.plugins import nodestat

    def nowhere(host):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(nodestat, "resolver", nowhere)
    cluster.ok("nodeadd", "n5", "groups=other")
    r = cluster.run("nodestat", "n5,n9")
    assert r.rc == 1
    assert r.err == ("n5: Error: Please make sure n5 exists in /etc/hosts or DNS or hosts "
                     "table\n")
    assert r.lines == ["n9: noping"]


@pytest.mark.parametrize("bad", ["sshd=x", "nosuchapp", "0", "=22", "x=70000"])
def test_a_bad_ports_entry_is_an_error_naming_it(cluster_sqlite, bad):
    r = cluster_sqlite.run("nodestat", "n1", "--ports", f"sshd=22,{bad}")
    assert r.rc == 1
    assert f"bad --ports entry '{bad}'" in r.err
    assert r.out == ""


def test_nodestat_without_a_noderange_prints_its_usage(cluster_sqlite):
    r = cluster_sqlite.run("nodestat")
    assert r.rc == 1
    assert r.out.splitlines()[:1] == ["Usage:"]
    assert "-u|--updatedb" in r.out


def test_nodestat_probes_xcats_applications_by_default():
    from xcatd.plugins.nodestat import APP_PORTS, DEFAULT_APPS, NodeState
    assert [(a, APP_PORTS[a]) for a in DEFAULT_APPS] == [
        ("sshd", 22), ("https", 443), ("pbs", 15002), ("xend", 8002), ("rdp", 3389),
        ("msrpc", 135)]
    apps = [(a, APP_PORTS[a]) for a in DEFAULT_APPS]
    assert NodeState.of(apps, reach.Reach("x", echo=True, open={22, 443})).text == "https,sshd"
    assert NodeState.of(apps, reach.Reach("x", closed={22})).text == "ping"
    assert NodeState.of(apps, reach.Reach("x")).text == "noping"


# ---- the probe -----------------------------------------------------------------------------
def test_without_icmp_a_node_is_up_when_it_answers_tcp(monkeypatch, sshd):
    def no_icmp(family):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(reach, "open_icmp", no_icmp)
    got, why = reach.probe(["127.0.1.11", "127.0.1.12", "127.255.255.255"])
    assert {a: r.alive for a, r in got.items()} == {
        "127.0.1.11": True, "127.0.1.12": True, "127.255.255.255": False}
    assert why.startswith("ICMP echo needs root (CAP_NET_RAW) or this process's group in "
                          "net.ipv4.ping_group_range")
    items = list(reach.stream(["127.0.1.11"]))
    assert items[0] == why and items[1].alive


def test_the_probe_tells_open_from_refused_ports(sshd):
    got, _ = reach.probe(["127.0.1.11", "127.0.1.12"], [sshd])
    assert (got["127.0.1.11"].open, got["127.0.1.12"].closed) == ({sshd}, {sshd})


# ---- dead nodes that stay silent: a network namespace (root) -------------------------------
def _lab():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    from xcatd.lab.loopnet import LoopNet
    return LoopNet()


PROBE = """
import json, sys, time
from xcatd.base import reach
from xcatd.lab.loopnet import dead, live
addrs = [live(i) for i in range(50)] + [dead(i) for i in range(50)]
t = time.monotonic()
got, why = reach.probe(addrs, [22], timeout=1.0)
print(json.dumps({"up": sorted(a for a, r in got.items() if r.alive), "why": why,
                  "seconds": time.monotonic() - t}))
"""


def test_silent_addresses_are_down_and_live_ones_up_in_one_bounded_run():
    from xcatd.lab.loopnet import live
    with _lab() as net:
        r = net.run([sys.executable, "-c", PROBE], check=True)
    out = json.loads(r.stdout)
    assert out["up"] == sorted(live(i) for i in range(50))
    assert out["why"] is None


UNPRIVILEGED = """
import socket, subprocess
from xcatd.base import reach
from xcatd.lab.loopnet import dead, live
subprocess.run(["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"], check=True)
sock, raw = reach.open_icmp(socket.AF_INET)
sock.close()
got, why = reach.probe([live(1), live(2), dead(1)], timeout=0.5)
print(raw, sorted(a for a, r in got.items() if r.echo), why)
"""


def test_the_unprivileged_icmp_socket_is_used_where_ping_group_range_allows_it():
    """net.ipv4.ping_group_range belongs to the namespace: inside, root's group is let in,
    and the datagram socket (the kernel's ping socket) is the one used."""
    from xcatd.lab.loopnet import live
    with _lab() as net:
        r = net.run([sys.executable, "-c", UNPRIVILEGED], check=True)
    assert r.stdout.split(None, 1) == ["False", f"{sorted([live(1), live(2)])} None\n"]


def test_nodestat_and_pping_say_noping_for_a_silent_node(cluster_sqlite):
    """The console scripts, run in process (XCATBYPASS) inside the namespace: n2 is an
    address that never answers."""
    from xcatd.lab.loopnet import dead, live
    mn = cluster_sqlite
    mn.ok("nodech", "n1", f"hosts.ip={live(0)}")
    mn.ok("nodech", "n2", f"hosts.ip={dead(0)}")
    env = {**os.environ, "XCATROOT": str(mn.root), "XCATBYPASS": "1"}
    bindir = os.path.dirname(sys.executable)
    with _lab() as net:
        ns = net.run([os.path.join(bindir, "nodestat"), "n1,n2"], env=env)
        pp = net.run([os.path.join(bindir, "pping"), "n1,n2"], env=env)
    assert (ns.returncode, ns.stdout, ns.stderr) == (0, "n1: ping\nn2: noping\n", "")
    assert (pp.returncode, sorted(pp.stdout.splitlines())) == (0, ["n1: ping", "n2: noping"])


def test_subprocess_module_is_used_only_for_fping():
    """No process per node: the probe spawns nothing (fping is -f's, one process)."""
    calls = []
    real = subprocess.Popen

    class Spy(real):
        def __init__(self, *a, **kw):
            calls.append(a)
            super().__init__(*a, **kw)
    subprocess.Popen = Spy
    try:
        reach.probe([f"127.0.3.{i}" for i in range(1, 200)], [22])
    finally:
        subprocess.Popen = real
    assert calls == []
