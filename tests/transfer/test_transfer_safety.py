"""What the security review of xcatexport and xcatimport changed (issue 14), pinned: files of
the base distribution and of the machine never travel, crafted archives are refused whole,
placing survives a kill, --merge keeps this node's identity, set-id bits are dropped, an
archive cannot ask for an expensive scrypt, a user's link does not make root write elsewhere,
and xcatconfig does not make a master key that would orphan sealed values."""
from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import resource
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest
import zstandard
from support.privileges import need_root

from transfer import test_transfer as tt
from transfer.roots import Result, Root
from xcatd.transfer import secretbox
from xcatd.transfer.placing import KEPT_MARK, TEMP_MARK, Placer, as_user, recover
from xcatd.transfer.secretbox import Box, PassphraseError

# the fixtures of the round-trip tests, shared as they are
passfile = tt.passfile
roots = tt.roots
importing = tt.importing
staging_dirs = tt.staging_dirs

#: what the exporting node's osimage img2 names (paths as the tables hold them)
SYNCLIST = "/opt/site/compute.synclist"
SYNCED = ("/etc/passwd", "/etc/xcat/masterkey", "/opt/site/motd")
X_PKGLIST = "/install/custom/netboot/x/compute.pkglist"
OTHER_PKGLIST = "/opt/site/x/other.pkglist"
SUID_POST = "install/postscripts/suidpost"
NEVER = ("files/etc/passwd", "files/etc/xcat/masterkey", "files/etc/xcat/cfgloc")


# ---- the exporting management node -------------------------------------------------------
def populate_safety(a: Root) -> None:
    """A as the round-trip tests make it, plus: an osimage whose synclist names files of the
    base distribution, the master key and a site file, whose postinstall is the database
    location, and whose package lists include files with ../; a set-uid postscript; root's
    ssh key; a group with a value of its own."""
    tt.populate(a)
    (a.root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (a.root / "opt/site/motd").write_text("welcome to A\n")
    (a.root / SYNCLIST.lstrip("/")).write_text("".join(f"{p} -> {p}\n" for p in SYNCED))
    (a.root / X_PKGLIST.lstrip("/")).parent.mkdir(parents=True)
    (a.root / X_PKGLIST.lstrip("/")).write_text("vim\n#INCLUDE:../common/base.pkglist#\n")
    (a.root / "install/custom/netboot/common").mkdir()
    (a.root / "install/custom/netboot/common/base.pkglist").write_text("tmux\n")
    (a.root / OTHER_PKGLIST.lstrip("/")).parent.mkdir(parents=True)
    (a.root / OTHER_PKGLIST.lstrip("/")).write_text("#INCLUDE:../common/other.pkglist#\n")
    (a.root / "opt/site/common").mkdir()
    (a.root / "opt/site/common/other.pkglist").write_text("site-tools\n")
    a.ok("mkdef", "-t", "osimage", "img2", "imagetype=linux", "provmethod=netboot",
         "profile=compute", "osname=Linux", "osvers=rhels8", "osarch=x86_64",
         f"pkglist={X_PKGLIST}", f"otherpkglist={OTHER_PKGLIST}",
         "postinstall=/etc/xcat/cfgloc", f"synclists={SYNCLIST}")
    post = a.root / SUID_POST
    post.write_text("#!/bin/sh\necho set-uid\n")
    post.chmod(0o4755)
    ssh_keys(a, "A")
    a.ok("chtab", "node=compute", "noderes.xcatmaster=10.0.0.1")


def ssh_keys(node: Root, who: str) -> None:
    ssh = node.root / "root/.ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ssh / "id_ed25519"
    key.write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\nkey of {who} {'A' * 40}\n"
                   "-----END OPENSSH PRIVATE KEY-----\n")
    key.chmod(0o600)
    (ssh / "id_ed25519.pub").write_text(f"ssh-ed25519 AAAA{who} root@{who}\n")


class Safety:
    """A, populated once, exported: -p encrypted, -p plain and -f encrypted."""

    def __init__(self, base: Path, passfile: Path) -> None:
        self.node = Root(base / "a")
        populate_safety(self.node)
        pf = ("--passphrase-file", str(passfile))
        self.export = self.node.sh("xcatexport", "-p", str(base / "enc.d"), *pf)
        assert self.export.rc == 0, self.export.err
        self.dir = base / "enc.d"
        self.plain = tt.export(self.node, "-p", base / "plain.d", "--secrets", "plain")
        self.file = tt.export(self.node, "-f", base / "enc.tar.zst", *pf)
        self.manifest = json.loads((self.dir / "manifest.json").read_text())
        self.names = {e["name"] for e in self.manifest["entries"]}


@pytest.fixture(scope="module")
def safety(tmp_path_factory, passfile):
    need_root()
    src = Safety(tmp_path_factory.mktemp("safety"), passfile)
    yield src
    src.node.close()


@pytest.fixture(scope="module")
def imported(safety, tmp_path_factory, passfile):
    """A fresh B, the encrypted directory imported into it."""
    b = Root(tmp_path_factory.mktemp("imported") / "b")
    r = importing(b, safety.dir, passfile=passfile)
    assert r.rc == 0, r.err
    yield b, r
    b.close()


def refused(r: Result, why: str) -> None:
    assert r.rc == 1, r.out
    assert r.err.startswith("Error: ") and why in r.err, r.err
    assert "nothing was imported" in r.err, r.err


# ---- 1: base-distribution and machine files stay home -----------------------------------
def test_base_distribution_and_machine_files_are_not_exported(safety):
    err = safety.export.err
    passwd = safety.node.root / "etc/passwd"
    assert (f"Warning: {passwd} is a file of the base distribution: not exported (the new "
            "machine has its own)") in err.splitlines(), err
    for name in NEVER:
        assert name not in safety.names, name
        assert not (safety.dir / name).exists(), name
    for archive in (safety.plain, safety.file):
        entries = tt.archive_entries(archive)
        assert not set(NEVER) & set(entries)
        assert "files/opt/site/motd" in entries
    assert (safety.dir / "files/opt/site/motd").read_text() == "welcome to A\n"
    assert f"files{SYNCLIST}" in safety.names


def test_site_file_named_by_a_synclist_lands_and_passwd_does_not(imported):
    b, _ = imported
    assert (b.root / "opt/site/motd").read_text() == "welcome to A\n"
    assert not (b.root / "etc/passwd").exists()


# ---- 2: a crafted archive ------------------------------------------------------------------
def add_entry(archive: Path, name: str, data: bytes) -> None:
    """Add a file to a --secrets plain directory archive, in its manifest too (which has no
    MAC in plain mode)."""
    (archive / name).parent.mkdir(parents=True, exist_ok=True)
    (archive / name).write_bytes(data)
    manifest = json.loads((archive / "manifest.json").read_text())
    manifest["entries"].append({"name": name, "size": len(data), "mode": "0644",
                                "sha256": hashlib.sha256(data).hexdigest()})
    (archive / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name, why", [
    ("files/etc/passwd", "a file of the base distribution"),
    ("files/etc/xcat/masterkey", "this machine's own (its database location or master key)"),
    ("files/etc/xcat/cfgloc", "this machine's own (its database location or master key)"),
])
def test_crafted_archive_with_a_forbidden_file_is_refused(safety, roots, name, why):
    archive = Path(shutil.copytree(safety.plain, roots.base / "crafted"))
    add_entry(archive, name, b"evil:x:0:0::/:/bin/sh\n")
    b = roots.new()
    before = b.state()
    r = importing(b, archive)
    refused(r, f"{name} is {why}: not a file xcatimport places")
    assert b.state() == before
    assert not (b.root / "etc/passwd").exists()
    assert not staging_dirs(b)


# ---- 3: includes with ../ -------------------------------------------------------------------
def test_relative_includes_with_dotdot_are_exported_and_land(safety, imported):
    assert "files/install/custom/netboot/common/base.pkglist" in safety.names
    assert "files/opt/site/common/other.pkglist" in safety.names  # only an include names it
    assert not [n for n in safety.names if "/../" in n or "/./" in n]
    b, _ = imported
    assert (b.root / X_PKGLIST.lstrip("/")).read_text() == \
        "vim\n#INCLUDE:../common/base.pkglist#\n"
    assert (b.root / "install/custom/netboot/common/base.pkglist").read_text() == "tmux\n"
    assert (b.root / "opt/site/common/other.pkglist").read_text() == "site-tools\n"


def test_directory_import_leaves_the_archive_as_it_was(safety, roots):
    archive = Path(shutil.copytree(safety.plain, roots.base / "kept.d"))
    # a site directory whose name looks like an import's staging directory (added as
    # xcatexport would have written it)
    add_entry(archive, "files/install/custom/xcatimport.d/site.conf", b"odd directory\n")
    before = tt.archive_entries(archive)
    b = roots.new()
    r = importing(b, archive)
    assert r.rc == 0, r.err
    assert (b.root / "install/custom/xcatimport.d/site.conf").read_bytes() == b"odd directory\n"
    assert tt.archive_entries(archive) == before


# ---- 4: a directory where the archive has a file -----------------------------------------
def test_directory_in_the_way_of_a_file_changes_nothing(safety, roots, passfile):
    b = roots.new()
    in_the_way = b.root / "install/custom/netboot/compute.pkglist"
    in_the_way.mkdir(parents=True)
    (in_the_way / "keep").write_text("B's\n")
    ca_key = (b.paths.etc / "ca/ca-key.pem").read_bytes()
    before = b.state()
    r = importing(b, safety.dir, passfile=passfile)
    refused(r, f"{in_the_way} is a directory here; the archive has a file there")
    assert b.state() == before
    assert (b.paths.etc / "ca/ca-key.pem").read_bytes() == ca_key
    assert not staging_dirs(b)
    assert not [p for p in b.root.rglob("*") if TEMP_MARK in p.name or KEPT_MARK in p.name]


# ---- 5: a kill between the renames and the commit ------------------------------------------
def _stage(placer: Placer, dest: Path, data: bytes) -> None:
    tmp = placer.temp_for(dest, None, False)
    placer.write(tmp, None, lambda fd: os.write(fd, data))


def _committed_then_killed(d: Path, journal_dir: Path) -> int:
    """A child process places two files (one replacing old.conf, one new in a new
    directory), commits and dies without finishing; its pid."""
    pid = os.fork()
    if pid == 0:  # the child: no pytest cleanup, no return
        code = 1
        try:
            placer = Placer(journal_dir, "import-1")
            _stage(placer, d / "old.conf", b"new content\n")
            _stage(placer, d / "sub/new.conf", b"brand new\n")
            placer.commit()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return pid


@pytest.fixture
def killed(tmp_path):
    d, journal_dir = tmp_path / "files", tmp_path / "journal"
    d.mkdir()
    journal_dir.mkdir()
    (d / "old.conf").write_text("old content\n")
    pid = _committed_then_killed(d, journal_dir)
    journal = journal_dir / f"xcatimport.journal.{pid}"
    assert journal.is_file()
    assert (d / "old.conf").read_text() == "new content\n"  # renamed in before the "kill"
    assert (d / f".old.conf{KEPT_MARK}{pid}").read_text() == "old content\n"
    return d, journal_dir, pid


def _left(d: Path) -> list[str]:
    """The files under ``d`` (directories aside)."""
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if not p.is_dir())


def test_recover_puts_back_what_an_uncommitted_import_replaced(killed):
    d, journal_dir, pid = killed
    asked = []
    said = recover(journal_dir, lambda i: asked.append(i) or False)
    assert asked == ["import-1"]
    assert said == [f"An import killed earlier (pid {pid}) had not committed: the files it "
                    "had replaced were put back"]
    assert (d / "old.conf").read_text() == "old content\n"
    assert _left(d) == ["old.conf"]  # the new file gone, no kept or temporary file
    assert list(journal_dir.iterdir()) == []


def test_recover_keeps_what_a_committed_import_placed(killed):
    d, journal_dir, pid = killed
    said = recover(journal_dir, lambda i: True)
    assert said == [f"An import killed earlier (pid {pid}) had committed: its files were kept"]
    assert (d / "old.conf").read_text() == "new content\n"
    assert (d / "sub/new.conf").read_text() == "brand new\n"
    assert _left(d) == ["old.conf", "sub/new.conf"]
    assert list(journal_dir.iterdir()) == []


def test_recover_leaves_a_living_imports_journal_alone(tmp_path):
    d = tmp_path / "files"
    d.mkdir()
    (d / "old.conf").write_text("old content\n")
    placer = Placer(tmp_path, "import-2")
    _stage(placer, d / "old.conf", b"new content\n")
    placer.commit()
    assert recover(tmp_path, lambda i: pytest.fail("asked about a living import")) == []
    assert placer.journal.is_file()
    placer.finish()
    assert not placer.journal.exists()
    assert _left(d) == ["old.conf"] and (d / "old.conf").read_text() == "new content\n"


def test_abort_after_commit_restores_everything(tmp_path):
    d = tmp_path / "files"
    d.mkdir()
    (d / "old.conf").write_text("old content\n")
    (d / "old.conf").chmod(0o640)
    placer = Placer(tmp_path, "import-3")
    _stage(placer, d / "old.conf", b"new content\n")
    _stage(placer, d / "sub/deeper/new.conf", b"brand new\n")
    placer.commit()
    assert (d / "sub/deeper/new.conf").is_file()
    placer.abort()
    assert (d / "old.conf").read_text() == "old content\n"
    assert (d / "old.conf").stat().st_mode & 0o777 == 0o640
    assert _left(d) == ["old.conf"]  # the new file gone, and the directories made for it
    assert not (d / "sub").exists()
    assert not placer.journal.exists()


# ---- 6: a passphrase for an archive in clear -------------------------------------------------
def test_passphrase_for_an_unencrypted_archive_is_refused(safety, roots, passfile):
    b = roots.new()
    before = b.state()
    r = importing(b, safety.plain, passfile=passfile)
    refused(r, "a passphrase was given but the archive's secrets are not encrypted (it says "
               "--secrets plain)")
    assert b.state() == before


# ---- 7: set-id bits --------------------------------------------------------------------------
def test_set_id_bits_are_dropped(safety, imported):
    entry = next(e for e in safety.manifest["entries"] if e["name"] == f"files/{SUID_POST}")
    assert entry["mode"] == "4755"  # exported as it is
    b, _ = imported
    post = b.root / SUID_POST
    assert post.read_text() == "#!/bin/sh\necho set-uid\n"
    assert post.stat().st_mode & 0o7777 == 0o755


# ---- 8: --merge keeps this node's identity -------------------------------------------------
IDENTITY_FILES = ("etc/xcat/ca/ca.pem", "etc/xcat/ca/ca-key.pem", "root/.ssh/id_ed25519",
                  "root/.ssh/id_ed25519.pub")


def test_merge_keeps_this_nodes_identity_and_site(safety, roots, passfile):
    b = roots.new()
    b.ok("nodeadd", "n7-n8", "groups=rack7")
    b.ok("chdef", "-t", "site", "master=10.0.0.5")
    ssh_keys(b, "B")
    mine = {f: (b.root / f).read_bytes() for f in IDENTITY_FILES}
    client = (b.home / ".xcat/client-cred.pem").read_bytes()
    r = importing(b, safety.dir, "--merge", passfile=passfile)
    assert r.rc == 0, r.err
    assert tt.nodes(b) == ["n1", "n2", "n3", "n7", "n8"]  # the merge happened
    for f, data in mine.items():
        assert (b.root / f).read_bytes() == data, f"{f} was replaced by the archive's"
    assert (b.home / ".xcat/client-cred.pem").read_bytes() == client
    assert tt.value(b, "key=master", "site.value") == "10.0.0.5"
    assert tt.issued_by(tt.load_cert(b.paths.etc / "cert/server-cred.pem"), tt.ca_of(b))
    assert (b.root / "opt/site/motd").read_text() == "welcome to A\n"


def test_merge_refuses_a_group_defined_differently_on_both_sides(safety, roots, passfile):
    b = roots.new()
    b.ok("nodeadd", "n7", "groups=compute")
    b.ok("chtab", "node=compute", "noderes.xcatmaster=10.0.0.9")
    before = b.state()
    r = importing(b, safety.dir, "--merge", passfile=passfile)
    refused(r, "1 objects are defined here and in the archive with different values "
               "(group compute): --merge only adds")
    assert b.state() == before


# ---- 9: no new master key over sealed values -------------------------------------------------
def test_xcatconfig_makes_no_master_key_when_sealed_values_exist(roots):
    b = roots.new()
    key = b.paths.etc / "masterkey"
    key.unlink()  # nothing sealed yet: a new key is harmless, and made
    b.sh("xcatconfig")  # (its rc says whether the boot loaders are installed)
    assert key.is_file()
    b.close()  # (the next command reads the new key)
    b.ok("chtab", "key=system", "passwd.username=root", "passwd.password=rootpw")
    con = sqlite3.connect(b.paths.db_url().split(":///", 1)[1])
    try:
        stored = con.execute("SELECT password FROM passwd").fetchall()
    finally:
        con.close()
    assert stored and stored[0][0].startswith("{xenc1}"), stored  # sealed
    key.unlink()
    b.close()
    r = b.sh("xcatconfig")
    assert r.rc == 1
    assert f"Error: xcatconfig failed: the master key {key} is missing but the database " \
           "holds secrets sealed under one" in r.err, r.err
    assert not key.exists()
    assert not list(key.parent.glob(".masterkey.*"))


# ---- 10: an archive asking scrypt for too much ---------------------------------------------
def test_expensive_scrypt_is_refused_before_it_is_paid(safety, roots, passfile):
    archive = Path(shutil.copytree(safety.dir, roots.base / "costly"))
    manifest = json.loads((archive / "manifest.json").read_text())
    manifest["encryption"]["n"] = 2 ** 22  # 128 * n * r = 4 GiB
    (archive / "manifest.json").write_text(json.dumps(manifest))
    b = roots.new()
    before = b.state()
    # under a 2 GiB address space a 4 GiB scrypt could not even start: were it tried, the
    # import would fail with another message
    limit = 2 << 30
    p = subprocess.run(
        b.popen_args("xcatimport", "-p", str(archive), "--passphrase-file", str(passfile)),
        env=b.env, cwd=b.base, capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    refused(Result(p.returncode, p.stdout, p.stderr),
            "the archive's encryption parameters are not understood (a scrypt cost beyond "
            "what this machine will pay)")
    assert b.state() == before


def test_box_refuses_an_expensive_scrypt_without_deriving(monkeypatch):
    params = Box.new(b"pass").params()

    def never(*args, **kwargs):
        raise AssertionError("scrypt was run")

    monkeypatch.setattr(secretbox, "Scrypt", never)
    for cost in ({"n": 2 ** 22}, {"n": 2 ** 15, "r": 1024}, {"p": 64}):
        with pytest.raises(PassphraseError, match="scrypt cost"):
            Box.from_params(b"pass", {**params, **cost})


# ---- 11: a user's link into root's files -----------------------------------------------------
@pytest.fixture
def homes():
    """A world-traversable scratch directory: a home owned by nobody, and a directory of
    root's (0755) that nobody may not write."""
    need_root()
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody on this machine")
    base = Path(tempfile.mkdtemp(prefix="pyxcat-homes-", dir="/tmp"))
    try:
        base.chmod(0o755)
        home = base / "home"
        home.mkdir()
        os.chown(home, pw.pw_uid, pw.pw_gid)
        roots_dir = base / "roots"
        roots_dir.mkdir(mode=0o755)
        yield (pw.pw_uid, pw.pw_gid), base, home, roots_dir
    finally:
        shutil.rmtree(base)


def test_a_users_link_to_a_directory_of_roots_is_not_written_through(homes, tmp_path):
    owner, _, home, roots_dir = homes
    with as_user(owner):
        assert (os.geteuid(), os.getegid()) == owner
    assert (os.geteuid(), os.getegid()) == (0, 0)

    # the user's own directory: made and written as the user
    placer = Placer(tmp_path, "import-4")
    own = home / "own/.xcat/client-cred.pem"
    tmp = placer.temp_for(own, owner, True)
    placer.write(tmp, owner, lambda fd: os.write(fd, b"cert\n"))
    placer.commit()
    placer.finish()
    st = own.stat()
    assert own.read_bytes() == b"cert\n" and (st.st_uid, st.st_gid) == owner

    # a link the user planted, to root's directory
    (home / ".xcat").symlink_to(roots_dir)
    placer = Placer(tmp_path, "import-5")
    with pytest.raises(PermissionError):
        tmp = placer.temp_for(home / ".xcat/client-cred.pem", owner, True)
        placer.write(tmp, owner, lambda fd: os.write(fd, b"cert\n"))
    assert (os.geteuid(), os.getegid()) == (0, 0)
    placer.abort()
    assert list(roots_dir.iterdir()) == []
    assert (os.geteuid(), os.getegid()) == (0, 0)


# ---- 12: a damaged compressed stream ----------------------------------------------------------
def _damaged(archive: Path, out: Path, start: float) -> int:
    """A copy of ``archive`` with one byte flipped at or after ``start`` (a fraction of its
    length) where the zstd decoder notices; the offset."""
    data = archive.read_bytes()
    for i in range(int(len(data) * start), len(data) - 8):
        bad = bytearray(data)
        bad[i] ^= 0x01
        try:
            zstandard.ZstdDecompressor().decompressobj().decompress(bytes(bad))
        except zstandard.ZstdError:
            out.write_bytes(bytes(bad))
            return i
    pytest.fail("no byte of the compressed stream is checked by the decoder")


DAMAGED = re.compile(r"is damaged or incomplete at (.+?) \(")


def test_damaged_compressed_stream_is_refused(safety, roots, passfile):
    archive = roots.base / "damaged.tar.zst"
    _damaged(safety.file, archive, 0.5)
    b = roots.new()
    before = b.state()
    r = importing(b, archive, passfile=passfile)
    refused(r, f"Error: {archive} is damaged")
    assert b.state() == before
    assert not staging_dirs(b)


def test_damaged_compressed_stream_names_an_entry_of_the_archive(safety, roots, passfile):
    archive = roots.base / "damaged.tar.zst"
    _damaged(safety.file, archive, 0.75)
    b = roots.new()
    r = importing(b, archive, passfile=passfile)
    assert r.rc == 1
    if "its zstd checksum does not match" in r.err:  # the frame's checksum, at its end
        return
    m = DAMAGED.search(r.err)
    assert m, r.err
    assert m.group(1) in safety.names, r.err
