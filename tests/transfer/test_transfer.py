"""xcatexport and xcatimport between management nodes under scratch roots (issue 14), each
command run as its console script in a subprocess: the round trip, --secrets plain and
redact, tampered archives, wrong passphrases, a kill -9 during the import, the refusals,
--dry-run, --remap and the certificates, and the usage errors."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import zstandard
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from support.privileges import need_root

from transfer.roots import Root
from xcatd.security.credentials import reissue_server_cert
from xcatd.transfer.exporting import LOG_TABLES
from xcatd.transfer.secretbox import Box

PASSPHRASE = "correct horse battery staple"
#: what the exporting node calls itself (its server certificate holds these)
MNA_NAMES = ["mna", "mna.cluster"]
TEMP_MARK = ".xcatimport."
#: the checkers makedhcp -n and makedns -n run (A has DHCP and DNS configured where they are)
DHCPD = shutil.which("dhcpd") is not None
NAMED = shutil.which("named-checkzone") is not None and shutil.which("named-checkconf") is not None
PKGLIST = "bash\n#INCLUDE:base.pkglist#\n#INCLUDE:/opt/site/common.pkglist#\n"


# ---- the exporting management node ---------------------------------------------------------
def populate(a: Root) -> None:
    """Management node A: nodes with BMC passwords, passwd rows, a policy row naming its
    host, a network, an osimage with a pkglist that includes two files (one outside the
    exported trees), a site template, a postscript, a second user's certificate, DHCP and
    DNS configured, and a server certificate for its names."""
    a.ok("chdef", "-t", "site", "master=10.0.0.1")
    a.ok("nodeadd", "n1-n3", "groups=compute,all", "nodehm.mgt=ipmi",
         r"ipmi.bmc=|\D+(\d+)|10.1.0.($1)|",
         "noderes.xcatmaster=10.0.0.1", r"hosts.ip=|\D+(\d+)|10.0.0.($1+100)|",
         r"mac.mac=|\D+(\d+)|52:54:00:00:00:0($1)|")
    for i in (1, 2, 3):
        a.ok("nodech", f"n{i}", f"ipmi.password=bmcpw{i}")
    a.ok("chtab", "key=system", "passwd.username=root", "passwd.password=rootpw")
    a.ok("chtab", "key=ipmi", "passwd.username=ADMIN", "passwd.password=adminpw")
    a.ok("chtab", "priority=7", "policy.name=bob", "policy.host=mna", "policy.rule=allow")
    a.ok("mkdef", "-t", "network", "net1", "net=10.0.0.0", "mask=255.255.255.0",
         "mgtifname=eth0", "gateway=10.0.0.1", "tftpserver=10.0.0.1",
         "nameservers=10.0.0.1,10.0.0.10")
    netboot = a.root / "install/custom/netboot"
    netboot.mkdir(parents=True)
    (netboot / "compute.pkglist").write_text(PKGLIST)
    (netboot / "base.pkglist").write_text("coreutils\n")
    (a.root / "opt/site").mkdir(parents=True)
    (a.root / "opt/site/common.pkglist").write_text("chrony\n")
    (a.root / "install/custom/install/rh").mkdir(parents=True)
    (a.root / "install/custom/install/rh/compute.tmpl").write_text("# kickstart of A\n")
    post = a.root / "install/postscripts/mypost"
    post.parent.mkdir(parents=True, exist_ok=True)
    post.write_text("#!/bin/sh\necho configured by A\n")
    post.chmod(0o755)
    a.ok("mkdef", "-t", "osimage", "img1", "imagetype=linux", "provmethod=netboot",
         "profile=compute", "osname=Linux", "osvers=rhels8", "osarch=x86_64",
         "pkglist=/install/custom/netboot/compute.pkglist")
    a.ok("xcatclientcert", "bob", "--dir", str(a.base / "bob"))
    reissue_server_cert(a.paths, list(dict.fromkeys(
        [*MNA_NAMES, socket.gethostname(), socket.getfqdn(), "localhost", "10.0.0.1",
         "127.0.0.1", "::1"])))
    a.ok("makehosts")
    if DHCPD:
        a.ok("makedhcp", "-n")
    if NAMED:
        a.ok("makedns", "-n")


def export(a: Root, how: str, target: Path, *args: str) -> Path:
    r = a.sh("xcatexport", how, str(target), *args)
    assert r.rc == 0, r.err
    assert r.out.startswith("Exported ") and r.out.rstrip().endswith(str(target)), r.out
    return target


class Source:
    """A, populated once, exported once in each form."""

    def __init__(self, base: Path, passfile: Path) -> None:
        self.node = Root(base / "a")
        populate(self.node)
        self.dir = export(self.node, "-p", base / "a.d", "--passphrase-file", str(passfile))
        self.file = export(self.node, "-f", base / "a.tar.zst", "--passphrase-file",
                           str(passfile))
        self.tables = sorted_tables(self.node)


@pytest.fixture(scope="module")
def passfile(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("secret") / "passphrase"
    f.write_text(PASSPHRASE + "\n")
    f.chmod(0o600)
    return f


@pytest.fixture(scope="module")
def source(tmp_path_factory, passfile):
    need_root()
    src = Source(tmp_path_factory.mktemp("source"), passfile)
    yield src
    src.node.close()


# ---- importing management nodes ------------------------------------------------------------
class Roots:
    """Fresh management nodes for one test, on one database backend."""

    def __init__(self, base: Path, new_url) -> None:
        self.base = base
        self.new_url = new_url
        self.made: list[Root] = []

    def new(self, name: str = "b") -> Root:
        node = Root(self.base / name, self.new_url())
        self.made.append(node)
        return node

    def close(self) -> None:
        for node in self.made:
            node.close()


@pytest.fixture
def roots(tmp_path):
    """Management nodes on SQLite."""
    need_root()
    made = Roots(tmp_path, lambda: None)
    yield made
    made.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_roots(request, tmp_path):
    """Management nodes on SQLite, then on the session's throwaway PostgreSQL server."""
    need_root()
    if request.param == "sqlite":
        made = Roots(tmp_path, lambda: None)
    else:
        made = Roots(tmp_path, request.getfixturevalue("pg_server").new_database)
    yield made
    made.close()


# ---- looking at archives and nodes ---------------------------------------------------------
def archive_entries(archive: Path) -> dict[str, bytes]:
    """Every regular entry of an archive (-p directory or -f .tar.zst), manifest included."""
    if archive.is_dir():
        return {p.relative_to(archive).as_posix(): p.read_bytes()
                for p in sorted(archive.rglob("*")) if p.is_file() and not p.is_symlink()}
    out = {}
    with open(archive, "rb") as fh:
        reader = zstandard.ZstdDecompressor().stream_reader(fh)
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for m in tar:
                if m.isfile():
                    out[m.name] = tar.extractfile(m).read()  # type: ignore[union-attr]
    return out


def private_key(data: bytes) -> bool:
    return re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/=]{16,}",
                     data) is not None


def comparable(manifest: dict) -> dict:
    """A manifest without what differs between two exports of the same configuration."""
    m = {k: v for k, v in manifest.items()
         if k not in ("created", "source", "encryption", "mac")}
    m["entries"] = [{k: v for k, v in e.items() if not (k == "sha256" and e.get("sealed"))}
                    for e in manifest["entries"]]
    return m


def sorted_tables(node: Root) -> dict[str, list[str]]:
    """tabdump --show-secrets of every table but the logs: header, then the rows sorted
    (an import writes rows in key order)."""
    dumps = node.tables(skip=LOG_TABLES)
    out = {}
    for t, text in dumps.items():
        lines = text.splitlines()
        out[t] = lines[:1] + sorted(lines[1:])
    return out


def temp_files(node: Root) -> list[str]:
    return sorted(str(p) for top in (node.root, node.home) for p in top.rglob(f"*{TEMP_MARK}*"))


def staging_dirs(node: Root) -> list[Path]:
    return sorted(node.paths.var_lib.glob("xcatimport.*"))


def flip(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def rows(node: Root, table: str) -> list[str]:
    return node.ok("tabdump", "--show-secrets", table).lines[1:]


def nodes(node: Root) -> list[str]:
    return node.ok("nodels").lines


def load_cert(path: Path) -> x509.Certificate:
    """The certificate of a PEM file (a cred file holds the key too)."""
    data = path.read_bytes()
    begin = data.index(b"-----BEGIN CERTIFICATE-----")
    return x509.load_pem_x509_certificate(data[begin:])


def ca_of(node: Root) -> x509.Certificate:
    return load_cert(node.paths.etc / "ca/ca.pem")


def spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def importing(node: Root, archive: Path, *args: str, passfile: Path | None = None):
    how = "-p" if archive.is_dir() else "-f"
    extra = ["--passphrase-file", str(passfile)] if passfile else []
    return node.sh("xcatimport", how, str(archive), *extra, *args)


# ---- 1, 2: the round trip ------------------------------------------------------------------
@pytest.mark.parametrize("how", ["-f", "-p"])
def test_round_trip_gives_the_same_archive_tables_and_files(any_roots, how, passfile):
    a = any_roots.new("a")
    populate(a)
    first = export(a, how, a.base.parent / f"first{how}", "--passphrase-file", str(passfile))
    assert first.stat().st_mode & 0o777 == (0o600 if how == "-f" else 0o700)
    b = any_roots.new("b")
    r = importing(b, first, passfile=passfile)
    assert r.rc == 0, r.err
    assert f"Imported {8 + DHCPD + NAMED} new, 1 changed and 0 removed objects" in r.out
    assert "Regenerated: makehosts" in r.lines
    assert ("Regenerated: makedhcp -n" in r.lines) == DHCPD
    assert ("Regenerated: makedns -n" in r.lines) == NAMED
    second = export(b, how, b.base.parent / f"second{how}", "--passphrase-file",
                    str(passfile))

    e1, e2 = archive_entries(first), archive_entries(second)
    m1, m2 = json.loads(e1.pop("manifest.json")), json.loads(e2.pop("manifest.json"))
    assert comparable(m1) == comparable(m2)
    assert set(e1) == set(e2) == {e["name"] for e in m1["entries"] if not e.get("link")}
    sealed = [e["name"] for e in m1["entries"] if e.get("sealed")]
    assert {"secrets.json", "files/etc/xcat/ca/ca-key.pem",
            "files/etc/xcat/cert/server-cred.pem", "homes/root/.xcat/client-cred.pem"
            } <= set(sealed)
    box1 = Box.from_params(PASSPHRASE.encode(), m1["encryption"])
    box2 = Box.from_params(PASSPHRASE.encode(), m2["encryption"])
    for name in sealed:
        assert box1.open_bytes(name, e1[name]) == box2.open_bytes(name, e2[name]), name
    for name in set(e1) - set(sealed):  # what is not sealed is the same, byte for byte
        assert e1[name] == e2[name], name
    # no secret in clear anywhere in the archive
    for name, data in [*e1.items(), ("manifest.json", json.dumps(m1).encode())]:
        for secret in (b"rootpw", b"adminpw", b"bmcpw"):
            assert secret not in data, f"{secret!r} in clear in {name}"
        assert not private_key(data), f"a private key in clear in {name}"
    opened = json.loads(box1.open_bytes("secrets.json", e1["secrets.json"]))
    assert ["system", "root", "password", "rootpw"] in opened["passwd"]

    assert sorted_tables(b) == sorted_tables(a)
    assert b.ok("nodels", "--show-secrets", "n2", "bmc", "bmcpassword").lines == [
        "n2: bmc: 10.1.0.2", "n2: bmcpassword: bmcpw2"]
    assert (b.root / "install/custom/netboot/compute.pkglist").read_text() == PKGLIST
    assert (b.root / "install/custom/netboot/base.pkglist").read_text() == "coreutils\n"
    assert (b.root / "opt/site/common.pkglist").read_text() == "chrony\n"
    assert (b.root / "install/custom/install/rh/compute.tmpl").read_text() == \
        "# kickstart of A\n"
    post = b.root / "install/postscripts/mypost"
    assert post.read_text() == "#!/bin/sh\necho configured by A\n"
    assert post.stat().st_mode & 0o777 == 0o755
    assert (b.paths.etc / "ca/ca-key.pem").read_bytes() == \
        (a.paths.etc / "ca/ca-key.pem").read_bytes()
    assert (b.paths.etc / "masterkey").read_bytes() != (a.paths.etc / "masterkey").read_bytes()
    assert issued_by(load_cert(b.home / ".xcat/client-cred.pem"), ca_of(a))


@pytest.fixture(scope="module")
def plain(source, tmp_path_factory):
    """A's export with --secrets plain, and what xcatexport said."""
    target = tmp_path_factory.mktemp("plain") / "a.d"
    r = source.node.sh("xcatexport", "-p", str(target), "--secrets", "plain")
    assert r.rc == 0, r.err
    return target, r


def test_secrets_plain_warns_and_keeps_them_in_clear(source, plain, roots):
    archive, r = plain
    assert r.err.startswith("Warning: --secrets plain: ")
    assert r.out.rstrip().endswith(f"secrets in clear) to {archive}")
    entries = archive_entries(archive)
    manifest = json.loads(entries["manifest.json"])
    assert "encryption" not in manifest and "mac" not in manifest
    assert manifest["secrets"] == "plain"
    assert not any(e.get("sealed") for e in manifest["entries"])
    assert private_key(entries["files/etc/xcat/ca/ca-key.pem"])
    assert ["system", "root", "password", "rootpw"] in json.loads(entries["secrets.json"])["passwd"]
    b = roots.new()
    r = importing(b, archive)  # no passphrase needed
    assert r.rc == 0, r.err
    assert sorted_tables(b) == source.tables


def test_newer_format_is_refused_naming_the_versions(plain, roots):
    archive = Path(shutil.copytree(plain[0], roots.base / "future"))
    manifest = json.loads((archive / "manifest.json").read_text())
    manifest["format"] = 2
    (archive / "manifest.json").write_text(json.dumps(manifest))  # no MAC in plain mode
    b = roots.new()
    before = b.state()
    r = importing(b, archive)
    assert r.rc == 1
    assert "the archive's format 2 is newer than this pyxcat reads (format 1)" in r.err
    assert b.state() == before


@pytest.fixture(scope="module")
def redacted(source, tmp_path_factory):
    """A's export with --secrets redact."""
    return export(source.node, "-p", tmp_path_factory.mktemp("redact") / "a.d", "--secrets",
                  "redact")


def test_secrets_redact_leaves_them_out(redacted, roots):
    entries = archive_entries(redacted)
    manifest = json.loads(entries.pop("manifest.json"))
    assert "secrets.json" not in entries
    names = set(entries)
    for private in ("files/etc/xcat/ca/ca-key.pem", "files/etc/xcat/cert/server-cred.pem",
                    "homes/root/.xcat/client-cred.pem"):
        assert private not in names
        assert private in manifest["redacted"]
    assert "secrets.json" in manifest["redacted"]
    for name, data in entries.items():
        assert not private_key(data) and b"rootpw" not in data, name
    assert not any(e.get("secret") for e in manifest["entries"])
    b = roots.new()
    r = importing(b, redacted)
    assert r.rc == 0, r.err
    assert "Warning: the archive was exported with --secrets redact" in r.err
    passwd = rows(b, "passwd")
    assert '"system","root",,,,,' in passwd and '"ipmi","ADMIN",,,,,' in passwd
    # (the omapi and dns keys, left out too, are made anew by makedhcp and makedns)
    assert [row.split(",")[6] for row in rows(b, "ipmi")] == ["", "", ""]
    assert nodes(b) == ["n1", "n2", "n3"]


def test_redact_import_keeps_a_ca_that_matches_its_key(redacted, roots):
    b = roots.new()
    assert importing(b, redacted).rc == 0
    ca = ca_of(b)
    key = serialization.load_pem_private_key((b.paths.etc / "ca/ca-key.pem").read_bytes(), None)
    assert spki(key.public_key()) == spki(ca.public_key())
    assert issued_by(load_cert(b.paths.etc / "cert/server-cred.pem"), ca)
    assert issued_by(load_cert(b.home / ".xcat/client-cred.pem"), ca)


# ---- 3: tampered archives ------------------------------------------------------------------
TAMPERED = {
    "table": "tables/nodelist.csv",
    "sealed": "secrets.json",
    "file": "files/install/custom/netboot/compute.pkglist",
}


@pytest.mark.parametrize("what", [*TAMPERED, "manifest", "added", "removed"])
def test_changed_directory_archive_fails_naming_the_entry(source, roots, passfile, what):
    archive = Path(shutil.copytree(source.dir, roots.base / "tampered"))
    if what == "added":
        (archive / "files/etc/xcat/planted").write_text("not exported\n")
        why = "files/etc/xcat/planted is in the archive but not in its manifest"
    elif what == "removed":
        (archive / TAMPERED["file"]).unlink()
        why = f"{TAMPERED['file']} is in the manifest but not in the archive"
    elif what == "manifest":
        text = (archive / "manifest.json").read_bytes()
        i = text.index(b'"created": "') + len(b'"created": "') + 3  # a digit of the year
        flip(archive / "manifest.json", i)
        why = "manifest.json was changed after the export"
    else:
        flip(archive / TAMPERED[what])
        why = f"{TAMPERED[what]}: its sha256 or size does not match the manifest"
    b = roots.new()
    before = b.state()
    r = importing(b, archive, passfile=passfile)
    assert r.rc == 1
    assert r.err.startswith("Error: ") and why in r.err, r.err
    assert "nothing was imported" in r.err
    assert b.state() == before
    assert not staging_dirs(b)


@pytest.mark.skipif(shutil.which("zstd") is None, reason="needs the zstd program")
@pytest.mark.parametrize("what", ["sealed", "file"])
def test_flipped_byte_in_a_tar_zst_member_fails_naming_it(source, roots, passfile, what):
    tar = roots.base / "a.tar"
    subprocess.run(["zstd", "-q", "-d", str(source.file), "-o", str(tar)], check=True)
    with tarfile.open(tar) as t:
        member = t.getmember(TAMPERED[what])
    flip(tar, member.offset_data + member.size // 2)
    archive = roots.base / "tampered.tar.zst"
    subprocess.run(["zstd", "-q", "--rm", str(tar), "-o", str(archive)], check=True)
    b = roots.new()
    before = b.state()
    r = importing(b, archive, passfile=passfile)
    assert r.rc == 1
    assert f"{TAMPERED[what]}: its sha256 or size does not match the manifest" in r.err, r.err
    assert b.state() == before
    assert not staging_dirs(b)


# ---- 4: passphrases -----------------------------------------------------------------------
def test_wrong_passphrase_changes_nothing(source, roots):
    wrong = roots.base / "wrong"
    wrong.write_text("not the passphrase\n")
    wrong.chmod(0o600)
    b = roots.new()
    before = b.state()
    r = importing(b, source.file, passfile=wrong)
    assert r.rc == 1
    assert "wrong passphrase" in r.err and "nothing was imported" in r.err
    assert b.state() == before


def test_passphrase_file_readable_by_others_is_refused(source, roots, passfile):
    loose = roots.base / "loose"
    loose.write_text(PASSPHRASE + "\n")
    loose.chmod(0o644)
    b = roots.new()
    before = b.state()
    r = importing(b, source.dir, passfile=loose)
    assert r.rc == 1
    assert f"--passphrase-file {loose}: {loose} is readable by others (mode 0644)" in r.err
    assert b.state() == before
    target = roots.base / "never.tar.zst"
    r = source.node.sh("xcatexport", "-f", str(target), "--passphrase-file", str(loose))
    assert r.rc == 1 and "(mode 0644)" in r.err
    assert not target.exists()
    assert not list(roots.base.glob(".never.tar.zst.*"))


# ---- 5: kill -9 during the import ----------------------------------------------------------
BIG = 5000


@pytest.fixture(scope="module")
def big(tmp_path_factory, passfile):
    """A management node with many nodes, exported: its import writes tables for a while."""
    need_root()
    base = tmp_path_factory.mktemp("big")
    a = Root(base / "a")
    a.ok("nodeadd", f"n1-n{BIG}", "groups=compute,all", "nodehm.mgt=ipmi",
         r"ipmi.bmc=|\D+(\d+)|bmc($1)|", "ipmi.password=bmcpw", "noderes.xcatmaster=10.0.0.1",
         r"hosts.ip=|\D+(\d+)|10.100.(($1-1)/250).(($1-1)%250+1)|",
         r"mac.mac=|\D+(\d+)|52:54:00:00:(($1-1)/256):(($1-1)%256)|",
         "nodetype.os=rhels8", "nodetype.arch=x86_64")
    archive = export(a, "-f", base / "big.tar.zst", "--passphrase-file", str(passfile))
    ipmi = a.ok("tabdump", "--show-secrets", "ipmi").out
    a.close()
    return archive, ipmi


def writing_tables(node: Root) -> bool:
    """Whether another process holds a write transaction open on the node's database (it
    has written rows it has not committed)."""
    url = node.paths.db_url()
    if url.startswith("sqlite"):
        con = sqlite3.connect(url.split(":///", 1)[1], timeout=0, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            return "locked" in str(exc)
        finally:
            con.close()  # a transaction we got is rolled back
        return False
    import psycopg
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as conn:
        n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                         "current_database() AND backend_xid IS NOT NULL AND "
                         "pid <> pg_backend_pid()").fetchone()[0]
    return bool(n)


def test_kill_during_import_leaves_the_tables_and_a_second_import_finishes(
        any_roots, big, passfile):
    archive, ipmi = big
    b = any_roots.new()
    tables, files = b.state()
    p = subprocess.Popen(b.popen_args("xcatimport", "-f", str(archive), "--passphrase-file",
                                      str(passfile)),
                         env=b.env, cwd=b.base, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 100
        while p.poll() is None and time.monotonic() < deadline:
            # files staged beside their destinations (renamed only just before the commit)
            # and rows written in an open transaction: the import is writing tables
            if temp_files(b) and writing_tables(b):
                os.kill(p.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if p.poll() is None and p.returncode is None:
            p.kill()
        _, err = p.communicate()
    assert p.returncode == -signal.SIGKILL, \
        f"the import ended ({p.returncode}) before it was seen writing tables: {err}"
    left = temp_files(b)
    assert left, "killed after the files were renamed: the commit may have happened"
    assert b.state()[0] == tables
    now = b.files()
    assert {k: v for k, v in now.items()
            if TEMP_MARK not in k and not k.startswith("var/lib/xcat/xcatimport.")} == files

    r = b.sh("xcatimport", "-f", str(archive), "--passphrase-file", str(passfile))
    assert r.rc == 0, r.err
    assert f"Imported {BIG} new" in r.out
    assert temp_files(b) == [] and staging_dirs(b) == []
    assert sorted(rows(b, "ipmi")) == sorted(ipmi.splitlines()[1:])


# ---- 6: nodes on both sides ---------------------------------------------------------------
def test_default_mode_refuses_a_node_with_nodes(source, roots, passfile):
    b = roots.new()
    b.ok("nodeadd", "n7-n8", "groups=all")
    before = b.state()
    r = importing(b, source.dir, passfile=passfile)
    assert r.rc == 1
    assert "this management node already has 2 nodes (n7, n8): give --merge" in r.err
    assert "--replace" in r.err
    assert b.state() == before


def test_merge_refuses_a_node_defined_on_both_sides(source, roots, passfile):
    b = roots.new()
    b.ok("nodeadd", "n3-n4", "groups=all")
    before = b.state()
    r = importing(b, source.dir, "--merge", passfile=passfile)
    assert r.rc == 1
    assert "1 of the archive's nodes are defined here already (n3)" in r.err
    assert b.state() == before


def test_merge_adds_the_archives_nodes_beside_these(source, roots, passfile):
    b = roots.new()
    b.ok("nodeadd", "n7-n8", "groups=rack7", "nodehm.mgt=kvm")
    r = importing(b, source.dir, "--merge", passfile=passfile)
    assert r.rc == 0, r.err
    assert nodes(b) == ["n1", "n2", "n3", "n7", "n8"]
    assert b.ok("nodels", "n7", "nodehm.mgt", "groups").lines == [
        "n7: nodehm.mgt: kvm", "n7: groups: rack7"]
    assert b.ok("nodels", "--show-secrets", "n1", "bmc", "bmcpassword").lines == [
        "n1: bmc: 10.1.0.1", "n1: bmcpassword: bmcpw1"]


def test_replace_makes_this_node_the_archives(source, roots, passfile):
    b = roots.new()
    b.ok("nodeadd", "n7-n8", "groups=rack7")
    r = importing(b, source.dir, "--replace", passfile=passfile)
    assert r.rc == 0, r.err
    assert "2 removed objects" in r.out
    assert nodes(b) == ["n1", "n2", "n3"]
    assert sorted_tables(b) == source.tables


# ---- 7: --dry-run --------------------------------------------------------------------------
def test_dry_run_shows_each_object_and_changes_nothing(source, roots, passfile):
    b = roots.new()
    before = b.state()
    r = importing(b, source.file, "--dry-run", "--remap", "10.0.0.1=10.0.0.2",
                  passfile=passfile)
    assert r.rc == 0, r.err
    for line in ("node n1: new", "node n3: new", "policy 7: new", "osimage img1: new",
                 "network 10.0.0.0,255.255.255.0: new",
                 "site master: changed (127.0.0.1 -> 10.0.0.2)",
                 f"file {b.root}/install/custom/netboot/compute.pkglist: new"):
        assert line in r.lines, r.out
    assert r.lines[-1].startswith("Would import: ")
    assert r.lines[-1].endswith("Nothing was changed (--dry-run).")
    assert b.state() == before


def test_dry_run_replace_shows_changed_and_removed_nodes(source, roots, passfile):
    b = roots.new()
    b.ok("nodeadd", "n1,n7", "groups=rack7")
    before = b.state()
    r = importing(b, source.dir, "--dry-run", "--replace", passfile=passfile)
    assert r.rc == 0, r.err
    changed = [line for line in r.lines if line.startswith("node n1: changed (")]
    assert changed and "nodelist.groups" in changed[0], r.out
    assert "node n7: removed" in r.lines and "node n2: new" in r.lines
    assert b.state() == before


# ---- 8, 9: --remap and certificates --------------------------------------------------------
@pytest.fixture(scope="module")
def remapped(source, tmp_path_factory, passfile):
    """B, imported from A with A's address and name remapped."""
    b = Root(tmp_path_factory.mktemp("remapped") / "b")
    r = importing(b, source.file, "--remap", "10.0.0.1=10.0.0.2", "--remap", "mna=mnb",
                  passfile=passfile)
    assert r.rc == 0, r.err
    yield b, r
    b.close()


def value(node: Root, key: str, column: str) -> str:
    return node.ok("gettab", key, column).out.strip()


def test_remap_rewrites_the_old_names_and_addresses(remapped):
    b, r = remapped
    assert "Remapped 10.0.0.1 -> 10.0.0.2 in " in r.out and "Remapped mna -> mnb in " in r.out
    assert value(b, "key=master", "site.value") == "10.0.0.2"
    net = b.ok("lsdef", "-t", "network", "net1", "-i",
               "gateway,tftpserver,nameservers", "-c").lines
    assert net == ["net1: gateway=10.0.0.2", "net1: tftpserver=10.0.0.2",
                   "net1: nameservers=10.0.0.2,10.0.0.10"]
    assert b.ok("nodels", "all", "noderes.xcatmaster").lines == [
        f"n{i}: 10.0.0.2" for i in (1, 2, 3)]
    assert b.ok("nodels", "all", "hosts.ip").lines == [  # 10.0.0.1 in 10.0.0.10x: kept
        f"n{i}: 10.0.0.10{i}" for i in (1, 2, 3)]
    assert value(b, "priority=7", "policy.host") == "mnb"


def test_remap_reissues_the_server_certificate_for_the_new_names(remapped, source):
    b, r = remapped
    assert any(line.startswith("Reissued the server certificate for mnb") for line in r.lines)
    cert = load_cert(b.paths.etc / "cert/server-cred.pem")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    assert {"mnb", "mnb.cluster"} <= set(dns) and "10.0.0.2" in ips
    assert not {"mna", "mna.cluster"} & set(dns) and "10.0.0.1" not in ips
    assert (b.paths.etc / "ca/ca.pem").read_bytes() == \
        (source.node.paths.etc / "ca/ca.pem").read_bytes()
    assert issued_by(cert, ca_of(b))


@pytest.mark.parametrize("spec, why", [
    ("10.0.0.1=mnb", "--remap 10.0.0.1=mnb: an address maps to an address of the same family"),
    ("10.0.0.1=fd00::2", "an address maps to an address of the same family"),
    ("mna", "--remap mna: write old=new"),
    ("mna=mna", "--remap mna=mna: the old and new values are the same"),
    ("mna=a/b", "--remap mna=a/b: not a host name or domain"),
])
def test_bad_remap_is_refused(source, roots, passfile, spec, why):
    b = roots.new()
    before = b.state()
    r = importing(b, source.dir, "--remap", spec, passfile=passfile)
    assert r.rc == 1
    assert r.err.startswith("Error: ") and why in r.err
    assert b.state() == before


def test_second_users_certificate_verifies_on_the_importing_node(remapped, source, roots):
    b, _ = remapped
    bob = load_cert(source.node.base / "bob/client-cred.pem")
    assert issued_by(bob, ca_of(b))
    assert issued_by(load_cert(b.home / ".xcat/client-cred.pem"), ca_of(b))
    assert not issued_by(bob, ca_of(roots.new("other")))  # another CA does not accept it


# ---- 10: usage -----------------------------------------------------------------------------
@pytest.mark.parametrize("cmd, args, why", [
    ("xcatexport", [], "Error: give one of -p <directory> or -f <file.tar.zst>"),
    ("xcatexport", ["-p", "{d}/x", "-f", "{d}/x.tar.zst"],
     "Error: give one of -p <directory> or -f <file.tar.zst>"),
    ("xcatexport", ["-p", "{d}/x", "--secrets", "redact", "--passphrase-file", "{pf}"],
     "Error: --passphrase-file goes with --secrets encrypt, not --secrets redact"),
    ("xcatexport", ["-p", "{d}/x"], "Error: the archive's secrets need a passphrase: give "
     "--passphrase-file FILE"),
    ("xcatexport", ["-p", "{d}/x", "--secrets", "clear"],
     "Error: Invalid value for '--secrets': 'clear' is not one of"),
    ("xcatimport", [], "Error: give one of -p <directory> or -f <file>"),
    ("xcatimport", ["-p", "{d}/x", "-f", "{d}/y"], "Error: give one of -p <directory> or "
     "-f <file>"),
    ("xcatimport", ["-p", "{d}", "--merge", "--replace"],
     "Error: --merge and --replace exclude each other"),
    ("xcatimport", ["-p", "{d}/missing"], "Error: -p {d}/missing: not a directory"),
    ("xcatimport", ["-f", "{d}/missing.tar.zst"], "Error: -f {d}/missing.tar.zst: no such file"),
    ("xcatimport", ["-p", "{d}"], "Error: {d} has no manifest.json"),
])
def test_usage_errors(roots, passfile, cmd, args, why):
    b = roots.new()
    d = roots.base / "work"
    d.mkdir()
    fill = {"d": str(d), "pf": str(passfile)}
    r = b.sh(cmd, *[a.format(**fill) for a in args])
    assert r.rc == 1
    assert why.format(**fill) in r.err, r.err
    assert list(d.iterdir()) == []  # nothing written


@pytest.mark.parametrize("cmd", ["xcatexport", "xcatimport"])
def test_not_root_is_refused(roots, monkeypatch, cmd):
    b = roots.new()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    r = b.run(cmd, "-p", str(roots.base / "x"))
    assert r.rc == 1
    assert r.err.startswith(f"Error: {cmd} is for root")


def test_manifest_hashes_and_sizes_are_of_the_stored_bytes(source):
    """Every entry, sealed ones too (their hash is of the sealed bytes, checked before the
    passphrase is known)."""
    entries = archive_entries(source.dir)
    manifest = json.loads(entries["manifest.json"])
    for e in manifest["entries"]:
        if e.get("link"):
            continue
        assert hashlib.sha256(entries[e["name"]]).hexdigest() == e["sha256"], e["name"]
        assert len(entries[e["name"]]) == e["size"]
