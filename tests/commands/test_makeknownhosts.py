"""makeknownhosts: root's known_hosts on the management node gets one line per host key of
each node (the keys remoteshell installs on it), naming the node, node.domain, its
hosts.hostnames and hosts.ip; a rerun replaces them, -r/-d removes them, every other line
stays byte for byte; OpenSSH (ssh-keygen) and asyncssh (the parallel shell) read the file.

n1-n3 are 10.77.0.11-13 in hpc.example (n1 also answers to login1); n9 has no address.
"""
from __future__ import annotations

import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from support.cluster import command, nodech, nodes, site

from xcatd.base.paths import Paths
from xcatd.base.request import ErrorKind, Request
from xcatd.daemon.pipeline import run_local
from xcatd.security import knownhosts
from xcatd.security.knownhosts import edit
from xcatd.security.nodekeys import known_hosts_path, node_host_keys

pytestmark = pytest.mark.cluster(
    site(domain="hpc.example"), nodes("n[1-3]", ip="10.77.0"),
    nodech("n1", "hosts.hostnames=login1"),
    command("nodeadd", "n9", "groups=other"))

NAMES = {"n1": "n1,n1.hpc.example,login1,10.77.0.11", "n2": "n2,n2.hpc.example,10.77.0.12",
         "n3": "n3,n3.hpc.example,10.77.0.13", "n9": "n9,n9.hpc.example"}
ssh_keygen = pytest.mark.skipif(not shutil.which("ssh-keygen"),
                                reason="ssh-keygen is not installed (openssh-client)")


def kh(mn) -> Path:
    return mn.root / "root/.ssh/known_hosts"


def pub(mn, node: str, kind: str) -> str:
    """The node's public host key as its own .pub file holds it: 'type base64'."""
    text = (mn.root / f"etc/xcat/hostkeys/{node}/ssh_host_{kind}_key.pub").read_text()
    return " ".join(text.split()[:2])


def expected(mn, node: str) -> list[str]:
    return [f"{NAMES[node]} {pub(mn, node, kind)}" for kind in ("ed25519", "ecdsa")]


def lines(mn) -> list[str]:
    return kh(mn).read_text().splitlines()


# ---- the lines -------------------------------------------------------------------------------
def test_each_node_gets_a_line_per_host_key_naming_every_name(cluster):
    r = cluster.run("makeknownhosts", "n1-n3")
    assert (r.rc, r.out, r.err) == (0, "", "")
    assert lines(cluster) == expected(cluster, "n1") + expected(cluster, "n2") + \
        expected(cluster, "n3")
    assert known_hosts_path(cluster.paths) == kh(cluster)


def test_a_node_without_an_address_gets_lines_by_name_and_a_warning(cluster):
    r = cluster.run("makeknownhosts", "n9")
    assert r.rc == 0
    assert r.err == "Warning: No IP address (hosts.ip) for: n9 (their lines carry no address)\n"
    assert lines(cluster) == expected(cluster, "n9")


def test_a_network_domain_beats_the_site_domain(cluster):
    cluster.ok("mkdef", "-t", "network", "-o", "mgt", "net=10.77.0.0", "mask=255.255.255.0",
               "domain=mgt.example")
    cluster.ok("makeknownhosts", "n2")
    assert lines(cluster)[0].split()[0] == "n2,n2.mgt.example,10.77.0.12"


@ssh_keygen
def test_ssh_keygen_finds_the_node_by_each_of_its_names(cluster):
    cluster.ok("makeknownhosts", "n1,n2")
    for name in ("n1", "n1.hpc.example", "login1", "10.77.0.11", "N1"):
        found = subprocess.run(["ssh-keygen", "-F", name, "-f", str(kh(cluster))],
                               capture_output=True, text=True)
        assert found.returncode == 0, name
        assert [ln for ln in found.stdout.splitlines() if not ln.startswith("#")] == \
            expected(cluster, "n1")
    assert subprocess.run(["ssh-keygen", "-F", "n3", "-f", str(kh(cluster))],
                          capture_output=True).returncode == 1


@ssh_keygen
def test_the_lines_verify_the_host_keys_the_node_is_given(cluster, tmp_path):
    """The private keys remoteshell installs (what the node's sshd will show): OpenSSH
    derives their public halves, and their fingerprints are the ones the file trusts."""
    cluster.ok("makeknownhosts", "n1")
    trusted = subprocess.run(["ssh-keygen", "-l", "-F", "10.77.0.11", "-f", str(kh(cluster))],
                             capture_output=True, text=True, check=True).stdout
    trusted_fps = {ln.split()[2] for ln in trusted.splitlines() if not ln.startswith("#")}
    given = node_host_keys(Paths(cluster.root), "n1")   # the remoteshell answer's host_keys
    fps = set()
    for kind, key in given.items():
        private = tmp_path / f"ssh_host_{kind}_key"
        private.write_text(key["private"])
        private.chmod(0o600)
        public = subprocess.run(["ssh-keygen", "-y", "-f", str(private)], capture_output=True,
                                text=True, check=True).stdout
        (tmp_path / f"{kind}.pub").write_text(public)
        shown = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / f"{kind}.pub")],
                               capture_output=True, text=True, check=True).stdout
        fps.add(shown.split()[1])
    assert len(fps) == 2 and fps == trusted_fps


def test_asyncssh_trusts_exactly_the_nodes_keys(cluster):
    asyncssh = pytest.importorskip("asyncssh")
    cluster.ok("makeknownhosts", "n1-n3")
    known = asyncssh.read_known_hosts(str(kh(cluster)))
    keys = known.match("n2", "10.77.0.12", 22)[0]   # by name and by address: each twice
    assert {k.export_public_key().decode().split()[1] for k in keys} == \
        {pub(cluster, "n2", kind).split()[1] for kind in ("ed25519", "ecdsa")}
    assert known.match("n4", "10.77.0.14", 22)[0] == []


# ---- replacing and removing ------------------------------------------------------------------
def test_a_rerun_replaces_the_lines_without_duplicates(cluster):
    cluster.ok("makeknownhosts", "n1-n3")
    first = kh(cluster).read_bytes()
    cluster.ok("makeknownhosts", "n1-n3")
    cluster.ok("makeknownhosts", "n2")
    assert kh(cluster).read_bytes() == first
    cluster.ok("nodech", "n2", "hosts.ip=10.77.0.99")
    cluster.ok("makeknownhosts", "n2")
    text = kh(cluster).read_text()
    assert "10.77.0.12" not in text and text.count("10.77.0.99") == 2
    assert len(lines(cluster)) == 6 and lines(cluster)[2].startswith("n2,n2.hpc.example,"
                                                                     "10.77.0.99 ")


@pytest.mark.parametrize("flag", ["-r", "--remove", "-d", "--delete"])
def test_remove_takes_out_only_those_nodes(cluster, flag):
    cluster.ok("makeknownhosts", "n1-n3")
    r = cluster.run("makeknownhosts", flag, "n2")
    assert (r.rc, r.out, r.err) == (0, "", "")
    assert lines(cluster) == expected(cluster, "n1") + expected(cluster, "n3")
    cluster.ok("makeknownhosts", "-r", "n1,n3")
    assert kh(cluster).read_text() == ""


def test_other_lines_are_kept_byte_for_byte(cluster):
    admin = ("# the admin's notes\n"
             "printer ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPrinterPrinterPrinterPrinterPrinter01\n"
             "n1,10.77.0.11 ssh-rsa AAAAB3NzaOLDKEY\n"
             "\tgw,login1,10.1.1.1  ssh-rsa AAAAB3NzaGW   gateway\r\n"
             "|1|c2FsdA==|aGFzaA== ssh-ed25519 AAAAC3NzaHashed\n"
             "@cert-authority *.hpc.example ssh-ed25519 AAAAC3NzaCA\n"
             "@revoked n3 ssh-rsa AAAAB3NzaREVOKED\n"
             "[n1]:2222 ssh-ed25519 AAAAC3NzaOtherPort\n"
             "\n"
             "n2 ssh-ed25519 AAAAC3NzaN2OLD")
    kh(cluster).parent.mkdir(parents=True)
    kh(cluster).write_bytes(admin.encode() + b"\n# caf\xe9\n")
    cluster.ok("makeknownhosts", "n1,n3")
    assert kh(cluster).read_bytes() == (
        "# the admin's notes\n"
        "printer ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPrinterPrinterPrinterPrinterPrinter01\n"
        + "".join(f"{ln}\n" for ln in expected(cluster, "n1")) +
        "\tgw,10.1.1.1  ssh-rsa AAAAB3NzaGW   gateway\r\n"     # login1 is n1's now
        "|1|c2FsdA==|aGFzaA== ssh-ed25519 AAAAC3NzaHashed\n"
        "@cert-authority *.hpc.example ssh-ed25519 AAAAC3NzaCA\n"
        "@revoked n3 ssh-rsa AAAAB3NzaREVOKED\n"
        "[n1]:2222 ssh-ed25519 AAAAC3NzaOtherPort\n"
        "\n"
        "n2 ssh-ed25519 AAAAC3NzaN2OLD\n"
        "# caf").encode() + b"\xe9\n" + "".join(f"{ln}\n" for ln in expected(cluster, "n3")
                                                ).encode()
    assert (kh(cluster).parent / "known_hosts.backup").read_bytes() == \
        admin.encode() + b"\n# caf\xe9\n"


@pytest.mark.parametrize("table", [
    # (file, fresh lines, owned names) -> result
    ("a,n1 K1\n", {}, {"n1": "n1"}, "a K1\n"),
    ("n1,a K1\n", {}, {"n1": "n1"}, ""),
    ("N1.Hpc.Example K1\n", {}, {"n1.hpc.example": "n1"}, ""),
    ("n10 K\nn1 K\n", {"n1": "n1 NEW\n"}, {"n1": "n1"}, "n10 K\nn1 NEW\n"),
    ("n1 A\nx K\nn1 B\n", {"n1": "n1 NEW\n"}, {"n1": "n1"}, "n1 NEW\nx K\n"),
    ("n1,n2 K\n", {"n1": "n1 N1\n", "n2": "n2 N2\n"}, {"n1": "n1", "n2": "n2"},
     "n1 N1\nn2 N2\n"),
    ("*.x,!n1 K\n", {}, {"n1": "n1"}, "*.x,!n1 K\n"),
    ("x K", {"n1": "n1 A\n"}, {}, "x K\nn1 A\n"),                 # no newline at its end
    ("", {"n2": "n2 B\n", "n10": "n10 C\n", "n1": "n1 A\n"}, {},
     "n1 A\nn2 B\nn10 C\n"),
])
def test_edit_rules(table):
    text, fresh, owner, result = table
    assert edit(text, fresh, owner) == result


# ---- the file --------------------------------------------------------------------------------
def test_a_new_file_is_0644_and_an_existing_one_keeps_its_mode(cluster):
    cluster.ok("makeknownhosts", "n1")
    assert stat.S_IMODE(kh(cluster).stat().st_mode) == 0o644
    assert stat.S_IMODE(kh(cluster).parent.stat().st_mode) == 0o700
    kh(cluster).chmod(0o600)
    cluster.ok("makeknownhosts", "n2")
    assert stat.S_IMODE(kh(cluster).stat().st_mode) == 0o600
    assert not [p.name for p in kh(cluster).parent.iterdir() if p.name.endswith(".new")]


def test_verbose_names_each_node_and_the_file(cluster):
    r = cluster.ok("makeknownhosts", "-V", "n1,n2")
    assert r.lines == [f"n1: {NAMES['n1']}: 2 keys", f"n2: {NAMES['n2']}: 2 keys",
                       f"{kh(cluster)}: 4 lines"]
    r = cluster.ok("makeknownhosts", "n2", "--verbose", "-r")
    assert r.lines == [f"n2: removed from {kh(cluster)}",
                       f"{kh(cluster)}: 2 lines (the previous one is known_hosts.backup)"]


# ---- errors ----------------------------------------------------------------------------------
def test_an_unknown_node_is_an_error_and_the_file_is_untouched(cluster):
    kh(cluster).parent.mkdir(parents=True)
    kh(cluster).write_text("n1 ssh-rsa OLD\n")
    r = cluster.run("makeknownhosts", "n1,n99")
    assert r.rc == 1
    assert r.err == "Error: Invalid nodes and/or groups in noderange: n99\n"
    assert kh(cluster).read_text() == "n1 ssh-rsa OLD\n"
    assert not (kh(cluster).parent / "known_hosts.backup").exists()


def test_a_missing_noderange_is_xcats_error(cluster):
    r = cluster.run("makeknownhosts", "-r")
    assert (r.rc, r.err) == (1, "Error: The Noderange is missing.\n")


def test_help_is_a_usage(cluster):
    r = cluster.run("makeknownhosts", "-h")
    assert r.rc == 0 and r.out.startswith("Usage: makeknownhosts")


def test_a_pattern_among_a_nodes_names_fails_that_node_alone(cluster):
    """An alias '*' would make n1's key good for every host: refused, n1's lines stay."""
    kh(cluster).parent.mkdir(parents=True)
    kh(cluster).write_text("n1 ssh-rsa OLD\n")
    cluster.ok("nodech", "n1", "hosts.hostnames=*")
    r = cluster.run("makeknownhosts", "n1,n2")
    assert r.rc == 1
    assert r.err == ("n1: Error: '*' cannot stand in a known_hosts line (a host name or "
                     "address: letters, digits and . _ : % - only)\n")
    assert lines(cluster) == ["n1 ssh-rsa OLD"] + expected(cluster, "n2")


def test_a_bad_address_fails_that_node_alone(cluster):
    cluster.ok("nodech", "n3", "hosts.ip=10.77.0.300")
    r = cluster.run("makeknownhosts", "n2,n3")
    assert r.rc == 1 and r.err == "n3: Error: hosts.ip is not an address: 10.77.0.300\n"
    assert lines(cluster) == expected(cluster, "n2")


def test_a_broken_host_key_fails_that_node_alone_naming_the_file(cluster):
    cluster.ok("makeknownhosts", "n2")
    broken = cluster.root / "etc/xcat/hostkeys/n2/ssh_host_ecdsa_key"
    broken.write_text("not a key\n")
    r = cluster.run("makeknownhosts", "n1,n2")
    assert r.rc == 1
    assert r.err.startswith(f"n2: Error: {broken}: not an unencrypted OpenSSH private key")
    assert "not a key" not in r.err
    assert lines(cluster) == expected(cluster, "n2") + expected(cluster, "n1")


def test_only_root_may_run_it(cluster_sqlite):
    cluster_sqlite.ok("mkdef", "-t", "policy", "-o", "7", "name=alice",
                      "commands=makeknownhosts", "rule=allow")
    out = list(run_local(Request("makeknownhosts", "n1"), cluster_sqlite.paths, user="alice"))
    assert [(o.kind, o.error) for o in out] == [
        (ErrorKind.DENIED, "makeknownhosts reads and writes files on the management node as "
                           "root: only root may run it")]
    assert not kh(cluster_sqlite).exists()


# ---- scale and concurrency ---------------------------------------------------------------------
@pytest.mark.cluster(site(domain="hpc.example"), command("nodeadd", "c[1-2000]", "groups=big"),
                     command("chtab", "node=big", r"hosts.ip=|\D+(\d+)|10.80.($1/256).($1%256)|"))
def test_two_thousand_nodes_in_one_read_and_one_write(cluster_sqlite):
    mn = cluster_sqlite
    kh(mn).parent.mkdir(parents=True)
    kh(mn).write_text("# kept\n")
    mn.ok("makeknownhosts", "big")
    got = lines(mn)
    assert len(got) == 1 + 4000 and got[0] == "# kept"
    assert got[1].startswith("c1,c1.hpc.example,10.80.0.1 ssh-ed25519 ")
    assert got[-1].startswith("c2000,c2000.hpc.example,10.80.7.208 ecdsa-sha2-nistp256 ")
    assert len({ln.split()[2] for ln in got[1:]}) == 4000      # each node its own keys
    mn.ok("makeknownhosts", "big")
    assert lines(mn) == got
    mn.ok("makeknownhosts", "-r", "c[1001-2000]")
    assert lines(mn) == got[:2001]


def test_concurrent_runs_lose_nothing_of_each_other(tmp_path, monkeypatch):
    """Eight writers, each adding its own node, with a slow edit between the read and the
    write: every node's line is in the file at the end."""
    slow = knownhosts.edit

    def edit_slowly(*a):
        threading.Event().wait(0.02)
        return slow(*a)

    monkeypatch.setattr(knownhosts, "edit", edit_slowly)
    path = tmp_path / "root/.ssh/known_hosts"
    start = threading.Barrier(8)

    def writer(i: int) -> None:
        start.wait()
        for round_ in range(3):
            node = f"n{i}-{round_}"
            knownhosts.update(path, {node: f"{node} ssh-ed25519 K{i}\n"}, {node: node})

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(path.read_text().splitlines()) == sorted(
        f"n{i}-{r} ssh-ed25519 K{i}" for i in range(8) for r in range(3))
