"""Service nodes for real: a management node on PostgreSQL and two service nodes, each an
xcatd in its own network namespace (xcatd.lab.snlab), joined with one-time tokens, and BMC
fleets that only the service nodes reach (the management node has no route to them, so an
answer proves the relay). One lab for the module; the tests run in order, each leaving the
leases as the next expects (the order is the story: relay, secrets, a paused service node,
a killed one)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from xcatd.base.paths import Paths
from xcatd.daemon.relay import Part, _Sender, _Tls
from xcatd.lab.snlab import ServiceNodeLab
from xcatd.lab.twomn import pg_socket_url, usable
from xcatd.security.credentials import MASTER_OU, SN_OU, server_files

_why = usable()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or ""), pytest.mark.postgres]

TIMEOUT = 3          # site.snheartbeattimeout in the lab, seconds
RACK1 = ["c1", "c2", "c3"]  # behind sn1 (pool sn1,sn2)
SLOW = "c4"                 # behind sn1, its BMC never answers
RACK2 = ["d1", "d2", "d3"]  # behind sn2 (pool sn2,sn1)
LOCAL = "m1"                # no service node: the management node powers it


@pytest.fixture(scope="module")
def lab(pg_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("snlab")
    url = pg_socket_url(pg_server.new_database(), Path(pg_server.base) / "sock", pg_server.port)
    with ServiceNodeLab(tmp / "lab", url) as lab:
        lab.start(site={"snheartbeattimeout": str(TIMEOUT)})
        f1 = lab.start_fleet(4, reach=["sn1", "sn2"], password="pw-one", dead=[3])
        f2 = lab.start_fleet(3, reach=["sn2", "sn1"], password="pw-two")
        f0 = lab.start_fleet(1, reach=["mn"], password="pw-mn")

        do(lab, "mkdef", "-t", "network", "-o", "labnet", "net=10.79.0.0",
           "mask=255.255.0.0", "mgtifname=eth0")

        def node(name, fleet, i, pool, password, k):
            do(lab, "mkdef", "-t", "node", name, "groups=compute", "mgt=ipmi",
               "bmc=127.0.0.1", f"bmcport={fleet.port(i)}", "bmcusername=admin",
               f"bmcpassword={password}", f"mac=52:54:00:79:0{k}:1{i}", f"ip=10.79.{k}.1{i}",
               *((f"servicenode={pool}",) if pool else ()))

        for i, n in enumerate(RACK1):
            node(n, f1, i, "sn1,sn2", "pw-one", 1)
        node(SLOW, f1, 3, "sn1,sn2", "pw-one", 1)
        for i, n in enumerate(RACK2):
            node(n, f2, i, "sn2,sn1", "pw-two", 2)
        node(LOCAL, f0, 0, None, "pw-mn", 0)
        # DHCP: makedhcp -n on the management node runs there and on each service node
        r = lab.mn.cli("makedhcp", "-n")
        assert r.rc == 0, r.out + r.err
        lab.dhcp = r
        for sn in lab.sns:
            sn.start_dhcpd()
        yield lab


def do(lab, *argv):
    r = lab.mn.cli(*argv, bypass=True)
    assert r.rc == 0, f"{argv}: {r.out}\n{r.err}"
    return r


def lines(r) -> dict[str, str]:
    """node -> its one line (stdout and stderr); a node with two lines fails the test."""
    out: dict[str, str] = {}
    for line in (r.out + r.err).splitlines():
        m = re.match(r"(?:Error: )?([\w-]+): (?:Error: )?(.*)$", line)
        if m and m.group(1) in (*RACK1, SLOW, *RACK2, LOCAL):
            assert m.group(1) not in out, f"two lines for {m.group(1)}:\n{r.out}\n{r.err}"
            out[m.group(1)] = m.group(2)
    return out


def owners(lab) -> dict[str, str]:
    r = do(lab, "tabdump", "nodeowner")
    return {m.group(1): m.group(2) for m in re.finditer(r'^"([^"]+)","([^"]*)"', r.out, re.M)}


def parts(lab, sn: str) -> int:
    return len(lab.relayed_parts(lab.members[sn]))


def wait_for(what, check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_each_node_answers_through_the_service_node_that_serves_it(lab):
    before = {sn: parts(lab, sn) for sn in ("sn1", "sn2")}
    r = lab.mn.cli("rpower", ",".join([*RACK1, *RACK2, LOCAL]), "stat")
    assert r.rc == 0, r.out + r.err
    got = lines(r)
    assert got == {n: "off" for n in (*RACK1, *RACK2, LOCAL)}, r.out + r.err
    # one part per service node, with exactly its nodes
    assert [p["nodes"] for p in lab.relayed_parts(lab.members["sn1"])[before["sn1"]:]] == [3]
    assert [p["nodes"] for p in lab.relayed_parts(lab.members["sn2"])[before["sn2"]:]] == [3]
    assert {n: owners(lab)[n] for n in (*RACK1, *RACK2)} == \
        {**{n: "sn1" for n in RACK1}, **{n: "sn2" for n in RACK2}}


@pytest.fixture(scope="module")
def ssh(lab):
    """Real sshd nodes behind each service node (xcatd.lab.sshnodes): a01-a02 on sn1's
    compute network, b01-b02 on sn2's, each network a bridge only its service node is on.
    The nodes authorize the service node's own root key (made under its root: a service
    node never holds the management node's), and its root's known_hosts has their host keys,
    as makeknownhosts writes it there."""
    from xcatd.lab.sshnodes import MN_IP, SshCluster
    from xcatd.lab.sshnodes import usable as ssh_usable
    why = ssh_usable()
    if why:
        pytest.skip(why)
    clusters = {}
    with contextlib.ExitStack() as stack:
        for sn, names in (("sn1", ["a01", "a02"]), ("sn2", ["b01", "b02"])):
            member = lab.members[sn]
            cluster = stack.enter_context(SshCluster(len(names), Paths(member.root),
                                                     names=names))
            member.attach(cluster.mn_ns, "br0", f"{MN_IP.rsplit('.', 1)[0]}.2/16")
            known = member.root / "root/.ssh/known_hosts"
            known.write_text(cluster.known_hosts())
            for name, ip in cluster.hosts():
                do(lab, "mkdef", "-t", "node", name, "groups=shell", f"ip={ip}",
                   f"servicenode={sn}")
            clusters[sn] = cluster
        yield clusters


def test_xdsh_runs_on_the_nodes_behind_each_service_node(lab, ssh):
    """The management node has no route to either network: sn1 runs the ssh to a01-a02,
    sn2 to b01-b02, with their own keys, and the output comes back through the management
    node as xdsh prints it."""
    before = {sn: parts(lab, sn) for sn in ("sn1", "sn2")}
    r = lab.mn.cli("xdsh", "a01,a02,b01,b02", "hostname")
    assert r.rc == 0, r.out + r.err
    assert sorted(r.out.splitlines()) == ["a01: a01", "a02: a02", "b01: b01", "b02: b02"]
    for sn in ("sn1", "sn2"):
        assert [(p["command"], p["nodes"]) for p in
                lab.relayed_parts(lab.members[sn])[before[sn]:]] == [("xdsh", 2)]
    r = lab.mn.cli("xdsh", "a01", "cat /root/.ssh/authorized_keys")
    sn1_key = (lab.members["sn1"].root / "root/.ssh").glob("id_*.pub")
    assert any(k.read_text().split()[1] in r.out for k in sn1_key), r.out


HELLO = '#!/bin/sh\necho "hello from $NODE"\n'


def test_node_agents_enrol_boot_and_run_updatenode_through_their_service_node(lab):
    """Simulated node agents (xcatd.lab.agentsim) in sn1's namespace, the way nodes on its
    network reach it: they enrol at sn1's HTTP site (their certificates signed by the
    management node on sn1's request: sn1 holds no CA key), fetch their plan and scripts
    from sn1, report booted there, and answer updatenode, which the management node
    relays to sn1, through their long polls on sn1."""
    from xcatd.lab.agentsim import IP_REGEX, Fleet, SimAgent, arm
    sn1, mn = lab.members["sn1"], lab.mn
    shutil.rmtree(sn1.root / "install", ignore_errors=True)
    (sn1.root / "install").symlink_to(mn.root / "install")  # shared, as over NFS
    scripts = mn.root / "install/postscripts"
    scripts.mkdir(parents=True, exist_ok=True)
    (scripts / "hello").write_text(HELLO)
    (scripts / "hello").chmod(0o755)
    nodes = ["s1", "s2", "s3"]
    do(lab, "nodeadd", "s[1-3]", "groups=simagents")
    do(lab, "chtab", "node=simagents", f"hosts.ip={IP_REGEX}", "noderes.servicenode=sn1")
    do(lab, "chtab", "node=simagents", "postscripts.postscripts=hello")
    do(lab, "chtab", "node=xcatdefaults", "postscripts.postscripts=",
       "postscripts.postbootscripts=")
    assert lab.mn.cli("makedhcp", "s1,s2,s3").rc == 0  # (the MN's first request: the leases)
    tokens = arm(Paths(mn.root), nodes)   # what nodeset does for their boot tokens
    before = parts(lab, "sn1")
    out: dict = {}

    async def flow():
        async with Fleet(tokens, "127.0.0.1:80") as fleet:
            await fleet.each(SimAgent.enrol)
            booted = {}

            async def boot(agent):
                booted[agent.node] = await agent.boot()

            await fleet.each(boot)
            await fleet.serve(wait=10)
            out["r"] = await asyncio.to_thread(mn.cli, "updatenode", "simagents", "-P",
                                               "hello", "-t", "120")
            out["errors"], out["booted"] = list(fleet.errors), booted

    def agents():
        with sn1.netns():
            asyncio.run(flow())

    t = threading.Thread(target=agents)
    t.start()
    t.join(timeout=300)
    assert not t.is_alive() and not out.get("errors"), out.get("errors")
    assert out["booted"] == {n: ["hello"] for n in nodes}
    r = out["r"]
    assert r.rc == 0, r.out + r.err
    for n in nodes:
        assert f"{n}: postscript end....: hello exited with code 0" in r.lines, r.out
    assert [p["command"] for p in lab.relayed_parts(sn1)[before:]] == ["updatenode"]
    certs = do(lab, "tabdump", "nodecert").out
    assert all(re.search(rf'^"{n}","[0-9a-f]{{64}}"', certs, re.M) for n in nodes), certs
    status = do(lab, "nodels", "s1,s2,s3", "nodelist.status").lines
    assert status == [f"{n}: booted" for n in nodes]
    audit = do(lab, "tabdump", "auditlog").out
    assert audit.count('"servicenode:sn1","10.79.1.1","servicenode","snsign"') == 3, \
        audit[-1500:]


def hosts_in(conf: Path) -> list[str]:
    return re.findall(r"^\s*host (\S+) \{", conf.read_text(), re.M)


def test_each_server_writes_dhcp_for_the_nodes_it_serves(lab):
    """makedhcp -n: the management node's configuration holds its own node, each service
    node's its own (site.disjointdhcps not 0), and each dhcpd started with it."""
    conf = "etc/dhcp/dhcpd.conf"
    assert hosts_in(lab.mn.root / conf) == [LOCAL]
    assert hosts_in(lab.members["sn1"].root / conf) == [*RACK1, SLOW]
    assert hosts_in(lab.members["sn2"].root / conf) == RACK2
    assert [lab.relayed_parts(lab.members[sn])[0] for sn in ("sn1", "sn2")] == \
        [{"command": "makedhcp", "nodes": 0, "user": "root"}] * 2
    # the running dhcpd of each node's service node knows it (makedhcp -q goes there)
    r = lab.mn.cli("makedhcp", "-q", ",".join([RACK1[0], RACK2[0]]))
    assert r.rc == 0, r.out + r.err
    assert "52:54:00:79:01:10" in r.out and "52:54:00:79:02:10" in r.out, r.out


def test_the_management_node_alone_cannot_reach_the_service_nodes_bmcs(lab):
    """The control of the test above: without the relay the nodes would not answer."""
    r = lab.mn.cli("rpower", LOCAL, "stat")
    assert lines(r) == {LOCAL: "off"}
    routes = lab.mn.run(["ip", "rule", "list"]).stdout
    fleet1 = lab.fleets[0]
    assert f"dport {fleet1.base_port}" not in routes


def test_a_service_node_holds_none_of_the_management_nodes_secrets(lab):
    for sn in lab.sns:
        etc = sn.root / "etc/xcat"
        assert not (etc / "masterkey").exists()
        assert not (etc / "ca/ca-key.pem").exists()
        assert not (etc / "cert/relay-cred.pem").exists()
        cred = server_files(Paths(sn.root)).cred
        mn_cred = server_files(Paths(lab.mn.root)).cred
        assert cred.read_bytes() != mn_cred.read_bytes()
        assert oct(cred.stat().st_mode & 0o777) == "0o600"
        text = cred.read_text()
        for secret in ("pw-one", "pw-two", "pw-mn"):  # nothing relayed was written down
            for f in sn.root.rglob("*"):
                if f.is_file() and f.stat().st_size < 1_000_000:
                    assert secret not in f.read_text(errors="replace"), f
        assert "BEGIN" in text


def test_a_service_nodes_role_cannot_change_policy_or_read_passwords(lab):
    url = (lab.members["sn1"].root / "etc/xcat/cfgloc").read_text().strip()
    assert "xcatsn_sn1" in url
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            passwords = [r[0] for r in conn.execute(sa.text(
                "SELECT password FROM ipmi WHERE password IS NOT NULL"))]
            assert passwords and all(p.startswith("{xenc1}") for p in passwords)
            assert not any(p in ("pw-one", "pw-two", "pw-mn") for p in passwords)
        for stmt in ("UPDATE policy SET rule = 'allow'",
                     "INSERT INTO policy (priority, name, rule) VALUES ('0.1', 'sn1', 'allow')",
                     "UPDATE ipmi SET password = 'x'", "UPDATE passwd SET password = 'x'",
                     "UPDATE site SET value = 'x' WHERE key = 'master'"):
            with engine.connect() as conn, pytest.raises(sa.exc.ProgrammingError,
                                                        match="permission denied"):
                conn.execute(sa.text(stmt))
    finally:
        engine.dispose()


def test_a_service_nodes_certificate_is_refused_what_policy_does_not_allow(lab, tmp_path):
    home = tmp_path / "snhome"
    (home / ".xcat").mkdir(parents=True)
    sn1 = Paths(lab.members["sn1"].root)
    shutil.copy(server_files(sn1).cred, home / ".xcat/client-cred.pem")
    shutil.copy(server_files(sn1).ca, home / ".xcat/ca.pem")
    r = lab.mn.cli("chdef", "-t", "policy", "-o", "0.5", "name=sn1", "rule=allow", home=home)
    assert r.rc == 1 and "Permission denied for request" in r.err, r.out + r.err
    r = lab.mn.cli("tabdump", "policy", bypass=True)
    assert '"0.5"' not in r.out
    wait_for("the audit row (xcatd's writer records it)", lambda: re.search(
        r'"servicenode:sn1",[^\n]*"servicenode","chdef"[^\n]*"Denied"',
        do(lab, "tabdump", "auditlog").out))


def relay_direct(lab, sn: str, leases: dict[str, int]):
    """A part sent to ``sn`` as the management node sends one (its relay certificate, from
    its namespace); what came back."""
    out: queue.Queue = queue.Queue()
    from xcatd.base.request import Request
    body = {"request": Request("rpower", ",".join(leases), {"action": "stat"}).to_dict(),
            "leases": leases, "lent": {}, "keepalive": 1}
    part = Part(sn, leases, lab.members[sn].address, 3001)
    with lab.mn.netns():
        _Sender(_Tls(Paths(lab.mn.root)), part, lambda: body, 10, out).run()
    got = []
    while not out.empty():
        got.append(out.get())
    return got


def test_a_paused_service_node_loses_its_nodes_and_is_fenced_when_it_resumes(lab):
    epochs_before = do(lab, "tabdump", "nodeowner").out
    old = {n: int(re.search(rf'^"{n}","sn1","(\d+)"', epochs_before, re.M).group(1))
           for n in RACK1}
    do(lab, "chtab", "key=snautofailover", "site.value=yes")
    sn1 = lab.members["sn1"]
    os.kill(sn1.xcatd.pid, signal.SIGSTOP)
    try:
        time.sleep(TIMEOUT + 1.5)
        before = parts(lab, "sn2")
        r = lab.mn.cli("rpower", ",".join(RACK1), "stat")
        assert lines(r) == {n: "off" for n in RACK1}, r.out + r.err
        assert "sn1 silent past site.snheartbeattimeout: c[1-3] moved to sn2" in r.err
        # sn2 first writes their DHCP entries (they have no boot state), then answers
        assert [(p["command"], p["nodes"]) for p in lab.relayed_parts(
            lab.members["sn2"])[before:]] == [("makedhcp", 3), ("rpower", 3)]
        assert {n: owners(lab)[n] for n in RACK1} == {n: "sn2" for n in RACK1}
        q = lab.mn.cli("makedhcp", "-q", RACK1[0])  # sn2's running dhcpd has it now
        assert q.rc == 0 and "52:54:00:79:01:10" in q.out, q.out + q.err
        pools = do(lab, "lsdef", ",".join(RACK1), "-i", "servicenode").out
        assert pools.count("servicenode=sn2,sn1") == len(RACK1), pools
    finally:
        os.kill(sn1.xcatd.pid, signal.SIGCONT)
        do(lab, "chtab", "key=snautofailover", "site.value=no")
    # sn1 comes back with the leases it had: it refuses to act on them
    got = relay_direct(lab, "sn1", old)
    refused = {r.node: r.error for kind, _p, r, *_ in got if kind == "r"}
    assert set(refused) == set(RACK1), got
    assert all("sn1 no longer serves" in e and "its owner is sn2" in e
               for e in refused.values()), refused
    # and snmove gives them back
    wait_for("sn1's heartbeat", lambda: "sn1" in _alive(lab))
    before = parts(lab, "sn1")
    r = do(lab, "snmove", ",".join(RACK1), "-d", "sn1", "-D", lab.members["sn1"].address)
    assert {n: owners(lab)[n] for n in RACK1} == {n: "sn1" for n in RACK1}, r.out
    assert [p["command"] for p in lab.relayed_parts(sn1)[before:]] == ["makedhcp"]
    # sn2, up, forgot them first (makedhcp -d for the nodes it let go of)
    assert lab.relayed_parts(lab.members["sn2"])[-1] == \
        {"command": "makedhcp", "nodes": len(RACK1), "user": "root"}
    wait_for("sn1's heartbeat", lambda: "sn1" in _alive(lab))
    before = parts(lab, "sn1")
    r = lab.mn.cli("rpower", ",".join(RACK1), "stat")
    assert lines(r) == {n: "off" for n in RACK1}, r.out + r.err
    assert parts(lab, "sn1") == before + 1


def _alive(lab) -> set[str]:
    from xcatd.db import servicenodes
    from xcatd.db.database import Database
    return servicenodes.alive(Database.open(Paths(lab.mn.root)))


def test_a_killed_service_node_loses_no_node_silently_and_retry_runs_them_on_the_next(lab):
    sn1 = lab.members["sn1"]
    before = parts(lab, "sn1")
    result = {}
    nodes = ",".join([*RACK1, SLOW])
    t = threading.Thread(target=lambda: result.update(r=lab.mn.cli("rpower", nodes, "stat")))
    t.start()
    wait_for("sn1 to start its part", lambda: parts(lab, "sn1") > before)
    time.sleep(0.5)  # the quick BMCs answer; the slow one keeps sn1 busy
    os.kill(sn1.xcatd.pid, signal.SIGKILL)
    t.join(timeout=120)
    assert not t.is_alive(), "rpower hung after its service node was killed"
    r = result["r"]
    got = lines(r)
    assert set(got) == {*RACK1, SLOW}, r.out + r.err
    assert got[SLOW].startswith("lost: sn1 stopped answering"), got
    assert r.rc == 1
    for n in RACK1:
        assert got[n] == "off" or got[n].startswith("lost: sn1"), got

    # no retry: each node says it could not be sent, at once
    r = lab.mn.cli("rpower", ",".join(RACK1), "stat")
    got = lines(r)
    assert set(got) == set(RACK1) and r.rc == 1
    assert all(v.startswith("Unable to dispatch hierarchical sub-command to sn1:3001: ")
               for v in got.values()), got

    # --retry: the next service node in the pool takes them, as snmove would move them
    before2 = parts(lab, "sn2")
    r = lab.mn.cli("rpower", ",".join(RACK1), "stat", "--retry")
    got = lines(r)
    assert {n: got[n] for n in RACK1} == {n: "off" for n in RACK1}, r.out + r.err
    assert "node(s) moved to sn2" in r.out + r.err
    # sn2 wrote their DHCP entries (the nodes have no boot state), then ran them
    assert [p["command"] for p in lab.relayed_parts(lab.members["sn2"])[before2:]] == \
        ["makedhcp", "rpower"]
    assert {n: owners(lab)[n] for n in RACK1} == {n: "sn2" for n in RACK1}
    assert r.rc == 0


def test_the_relay_path_takes_only_the_management_nodes_relay_certificate(lab, tmp_path):
    """sn2's own certificate (a service node's role) cannot send it a part, and the relay
    certificate opens nothing else."""
    import http.client
    import ssl

    from xcatd.security.credentials import certificate_ou, relay_files  # noqa: F401
    sn2 = Paths(lab.members["sn2"].root)
    ctx = ssl.create_default_context(cafile=str(server_files(sn2).ca))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(server_files(sn2).cred))
    with lab.members["sn2"].netns():
        conn = http.client.HTTPSConnection("127.0.0.1", 3001, context=ctx, timeout=10)
        conn.request("POST", "/v1/relay", b"{}", {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 403, resp.read()
        conn.close()
    mn = Paths(lab.mn.root)
    ctx = ssl.create_default_context(cafile=str(relay_files(mn).ca))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(relay_files(mn).cred))
    with lab.mn.netns():
        conn = http.client.HTTPSConnection("127.0.0.1", 3001, context=ctx, timeout=10)
        conn.request("POST", "/v1/request", b'{"request": {"command": "tabdump"}}',
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 403, resp.read()
        conn.close()
    assert MASTER_OU != SN_OU
