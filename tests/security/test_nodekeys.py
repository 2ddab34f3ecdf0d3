"""The ssh keys the management node hands its nodes (xcatd.security.nodekeys): each node's
host keys made once and kept (a diskless node that enrols at every boot keeps its identity),
one consistent set when generators race, private keys 0600 in 0700 directories; root's
public keys (an ed25519 pair made when root has none) with the site's own list; known_hosts
lines that ssh-keygen reads."""
from __future__ import annotations

import multiprocessing
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from xcatd.base.paths import Paths
from xcatd.security import nodekeys
from xcatd.security.nodekeys import (
    NodeKeyError,
    hostkey_dir,
    known_hosts_line,
    node_host_keys,
    root_public_keys,
)

SITE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAISiteAdminSiteAdminSiteAdminSiteAd00 admin@site"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def paths(tmp_path):
    return Paths(tmp_path / "root")


def test_a_node_gets_ed25519_and_ecdsa_p256_host_keys(paths):
    keys = node_host_keys(paths, "n1")
    assert list(keys) == ["ed25519", "ecdsa"]
    loaded = {k: serialization.load_ssh_private_key(v["private"].encode(), None)
              for k, v in keys.items()}
    assert isinstance(loaded["ed25519"], ed25519.Ed25519PrivateKey)
    assert isinstance(loaded["ecdsa"], ec.EllipticCurvePrivateKey)
    assert loaded["ecdsa"].curve.name == "secp256r1"
    for kind, key in loaded.items():
        blob = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode()
        assert keys[kind]["public"] == f"{blob} n1"
        assert keys[kind]["private"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")


def test_host_keys_are_kept_private_under_etc_hostkeys(paths):
    node_host_keys(paths, "n1")
    d = paths.etc / "hostkeys" / "n1"
    assert d == hostkey_dir(paths, "n1")
    assert mode(d) == 0o700 and mode(d.parent) == 0o700
    for kind in ("ed25519", "ecdsa"):
        assert mode(d / f"ssh_host_{kind}_key") == 0o600
        assert mode(d / f"ssh_host_{kind}_key.pub") == 0o644


@pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="ssh-keygen is not installed")
def test_openssh_reads_the_private_keys_and_finds_the_same_public_key(paths):
    node_host_keys(paths, "n1")
    d = hostkey_dir(paths, "n1")
    for kind in ("ed25519", "ecdsa"):
        derived = subprocess.run(["ssh-keygen", "-y", "-f", str(d / f"ssh_host_{kind}_key")],
                                 capture_output=True, text=True, check=True).stdout
        assert derived.split()[:2] == (d / f"ssh_host_{kind}_key.pub").read_text().split()[:2]


def test_the_same_node_gets_the_same_keys_every_time_and_another_node_its_own(paths):
    first = node_host_keys(paths, "n1")
    nodekeys._CHECKED.clear()  # as a fresh xcatd would
    assert node_host_keys(paths, "n1") == first
    assert node_host_keys(paths, "n2")["ed25519"] != first["ed25519"]


def test_a_lost_public_key_file_comes_back_from_the_private_key(paths):
    first = node_host_keys(paths, "n1")
    pub = hostkey_dir(paths, "n1") / "ssh_host_ecdsa_key.pub"
    pub.unlink()
    assert node_host_keys(paths, "n1") == first
    assert pub.read_text() == first["ecdsa"]["public"] + "\n"


def test_an_edited_public_key_file_is_never_handed_out(paths):
    first = node_host_keys(paths, "n1")
    pub = hostkey_dir(paths, "n1") / "ssh_host_ed25519_key.pub"
    pub.write_text(node_host_keys(paths, "n2")["ed25519"]["public"] + "\n")
    assert node_host_keys(paths, "n1")["ed25519"]["public"] == first["ed25519"]["public"]


def test_a_damaged_private_key_is_an_error_naming_it_and_is_not_replaced(paths):
    node_host_keys(paths, "n1")
    private = hostkey_dir(paths, "n1") / "ssh_host_ecdsa_key"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n")
    with pytest.raises(NodeKeyError, match=r"ssh_host_ecdsa_key: not an unencrypted OpenSSH"):
        node_host_keys(paths, "n1")
    assert "garbage" in private.read_text()


def test_a_private_key_of_the_wrong_type_is_an_error(paths):
    keys = node_host_keys(paths, "n1")
    (hostkey_dir(paths, "n1") / "ssh_host_ecdsa_key").write_text(keys["ed25519"]["private"])
    with pytest.raises(NodeKeyError, match=r"ssh_host_ecdsa_key: holds a .*, not an ecdsa key"):
        node_host_keys(paths, "n1")


@pytest.mark.parametrize("name", ["../n1", ".", "..", "", "n1/x", "-rf", "n 1"])
def test_a_name_that_is_not_a_plain_node_name_makes_no_directory(paths, name):
    with pytest.raises(NodeKeyError, match="is not a node name"):
        node_host_keys(paths, name)
    assert not (paths.etc / "hostkeys").exists()


def test_racing_threads_end_with_one_set_of_keys(paths):
    results, errors = [], []

    def make():
        try:
            results.append(node_host_keys(paths, "n1"))
        except Exception as exc:  # the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=make) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(r == results[0] for r in results)
    nodekeys._CHECKED.clear()
    assert node_host_keys(paths, "n1") == results[0]


def _make_in_process(root: str, queue) -> None:
    queue.put(node_host_keys(Paths(root), "n1"))


def test_racing_processes_end_with_one_set_of_keys(paths):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_make_in_process, args=(str(paths.root), queue))
             for _ in range(3)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert all(g == got[0] for g in got)
    nodekeys._CHECKED.clear()
    assert node_host_keys(paths, "n1") == got[0]


# ---- known_hosts -------------------------------------------------------------------------------
def test_known_hosts_lines_name_the_node_for_each_of_its_keys(paths):
    text = known_hosts_line(paths, "n1", ["n1", "n1.hpc.example", "10.77.0.11", "n1"])
    keys = node_host_keys(paths, "n1")
    assert text.splitlines() == [
        f"n1,n1.hpc.example,10.77.0.11 {' '.join(keys[k]['public'].split()[:2])}"
        for k in ("ed25519", "ecdsa")]
    assert known_hosts_line(paths, "n1").splitlines()[0].startswith("n1 ssh-ed25519 ")


@pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="ssh-keygen is not installed")
def test_ssh_keygen_finds_the_node_in_the_known_hosts_lines(paths, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text(known_hosts_line(paths, "n1", ["n1", "10.77.0.11"]))
    found = subprocess.run(["ssh-keygen", "-F", "10.77.0.11", "-f", str(kh)],
                           capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout.count("10.77.0.11") >= 3


@pytest.mark.parametrize("name", ["n 1", "a,b", "#n1"])
def test_a_name_that_cannot_stand_in_known_hosts_is_refused(paths, name):
    with pytest.raises(NodeKeyError, match="cannot stand in a known_hosts line"):
        known_hosts_line(paths, "n1", [name])


# ---- root's keys ---------------------------------------------------------------------------------
def test_root_gets_an_ed25519_pair_when_it_has_no_key(paths):
    text = root_public_keys(paths)
    ssh = paths.under("/root/.ssh")
    assert text == (ssh / "id_ed25519.pub").read_text()
    assert text.startswith("ssh-ed25519 AAAA") and text.count("\n") == 1
    assert mode(ssh) == 0o700 and mode(ssh / "id_ed25519") == 0o600
    assert mode(ssh / "id_ed25519.pub") == 0o644
    private = serialization.load_ssh_private_key((ssh / "id_ed25519").read_bytes(), None)
    assert text.split()[1] == private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode().split()[1]
    assert root_public_keys(paths) == text  # made once


def test_roots_existing_keys_are_sent_in_order_and_none_is_made(paths):
    ssh = paths.under("/root/.ssh")
    ssh.mkdir(parents=True)
    rsa_line = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCroot root@mn"
    ecdsa_line = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYroot root@mn"
    (ssh / "id_rsa.pub").write_text(rsa_line + "\n")
    (ssh / "id_ecdsa.pub").write_text(ecdsa_line + "\n")
    assert root_public_keys(paths) == f"{ecdsa_line}\n{rsa_line}\n"
    assert not (ssh / "id_ed25519").exists()


def test_an_ed25519_key_without_its_public_half_gets_it_back_not_replaced(paths):
    root_public_keys(paths)
    ssh = paths.under("/root/.ssh")
    private = (ssh / "id_ed25519").read_bytes()
    text = (ssh / "id_ed25519.pub").read_text()
    (ssh / "id_ed25519.pub").unlink()
    assert root_public_keys(paths).split()[:2] == text.split()[:2]
    assert (ssh / "id_ed25519").read_bytes() == private


def test_the_sites_own_key_list_is_added_once_with_its_options(paths):
    mine = root_public_keys(paths).strip()
    site_list = paths.under("/install/postscripts/_ssh/authorized_keys")
    site_list.parent.mkdir(parents=True)
    site_list.write_text(f"# admins\n{SITE_KEY}\nfrom=\"10.0.0.0/8\",no-pty {SITE_KEY}\n"
                         f"{mine}\n\n")
    assert root_public_keys(paths) == f"{mine}\n{SITE_KEY}\n"
    other = Paths(paths.root)
    custom = paths.root / "srv/install"
    (custom / "postscripts/_ssh").mkdir(parents=True)
    (custom / "postscripts/_ssh/authorized_keys").write_text(
        'from="10.0.0.0/8" ' + SITE_KEY + "\n")
    assert root_public_keys(other, custom).splitlines()[1] == 'from="10.0.0.0/8" ' + SITE_KEY


def test_a_line_that_is_no_key_is_an_error_naming_file_and_line(paths):
    site_list = paths.under("/install/postscripts/_ssh/authorized_keys")
    site_list.parent.mkdir(parents=True)
    site_list.write_text(f"{SITE_KEY}\nnot a key at all\n")
    with pytest.raises(NodeKeyError, match=r"_ssh/authorized_keys, line 2: not an ssh public"):
        root_public_keys(paths)
