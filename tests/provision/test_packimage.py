"""packimage and rmimage on a small fake image tree: every method and compressor, the
exclusion list (checked in the packed file itself), the root password in the image's shadow
(crypted, never in clear), the manifest, an atomic replacement, the per-image lock, rmimage."""
import gzip
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.cluster import build, mkdef, root_password, site

from xcatd.provision.packimage import (
    LOCK_NAME,
    ExList,
    image_lock,
    kept_paths,
    squashfs_excludes,
)

IMAGE = "debian12-x86_64-netboot-compute"
ROOTIMGDIR = "/install/netboot/debian12/x86_64/compute"
CLEAR = "Cl3ar-Root-Pw"
EXLIST = "/install/custom/netboot/debian/compute.exlist"

STATUS = """Package: bash
Status: install ok installed
Architecture: amd64
Version: 5.2.15-2+b2

Package: systemd
Status: install ok installed
Architecture: amd64
Version: 252.22-1~deb12u1

Package: gone
Status: deinstall ok config-files
Version: 1.0
"""


def make_tree(root: Path) -> Path:
    """A published image: rootimg with a few dirs and files, kernel and initrd beside it."""
    destdir = root / ROOTIMGDIR.lstrip("/")
    tree = destdir / "rootimg"
    for d in ("etc", "usr/bin", "usr/share/man/man1", "usr/share/man/man8",
              "usr/share/doc/bash", "var/lib/dpkg", "root", ".statelite"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    (tree / "etc/hostname").write_text("localhost\n")
    shadow = tree / "etc/shadow"
    shadow.write_text("root:*:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\n")
    os.chmod(shadow, 0o640)
    (tree / "usr/bin/bash").write_bytes(b"\x7fELF" + b"x" * 4000)
    os.link(tree / "usr/bin/bash", tree / "usr/bin/rbash")
    (tree / "usr/share/man/man1/ls.1").write_text("ls(1)\n")
    (tree / "usr/share/man/man8/mount.8").write_text("mount(8)\n")
    (tree / "usr/share/doc/bash/README").write_text("readme\n")
    (tree / "usr/share/doc/bash/copyright").write_text("GPL\n")
    (tree / "var/lib/dpkg/status").write_text(STATUS)
    (tree / "root/a file [x]*").write_text("odd name\n")
    (tree / ".statelite/litefile.save").write_text("x\n")
    (destdir / "kernel").write_bytes(b"KERNEL" * 1000)
    (destdir / "initrd-stateless.gz").write_bytes(gzip.compress(b"INITRD" * 1000))
    (destdir / "genimage.json").write_text('{"digest": "d1g35t"}\n')
    (destdir / "rootimg.previous/etc").mkdir(parents=True, exist_ok=True)
    (destdir / "kernel.previous").write_bytes(b"OLD")
    return destdir


def exlist_files(root: Path) -> None:
    d = root / "install/custom/netboot/debian"
    d.mkdir(parents=True, exist_ok=True)
    (d / "docs.exlist").write_text("./usr/share/doc*\n+./usr/share/doc/bash/copyright\n")
    (d / "compute.exlist").write_text(
        "# no manuals but ls's\n./usr/share/man*   # all of them\n+./usr/share/man/man1*\n"
        "#INCLUDE:docs.exlist#\n")


def define(mn):
    exlist_files(mn.root)
    build(mn, root_password(CLEAR), mkdef(
        "osimage", IMAGE, "imagetype=linux", "provmethod=netboot", "osvers=debian12",
        "osarch=x86_64", "profile=compute", f"exlist={EXLIST}"))
    destdir = make_tree(mn.root)
    return mn, destdir


@pytest.fixture
def image(mn_sqlite):
    return define(mn_sqlite)


@pytest.mark.daemon
def test_packimage_and_rmimage_through_xcatd(mn_daemon):
    mn, destdir = define(mn_daemon)
    r = mn.ok("packimage", "-m", "tar", "-c", "zstd", IMAGE)
    assert "archive method:tar" in r.out and CLEAR not in r.out + r.err
    assert "./usr/share/man/man1/ls.1" in listing(destdir / "rootimg.tar.zst")
    mn.ok("rmimage", IMAGE, "--xcatdef")
    assert not (destdir / "rootimg").exists()
    assert mn.run("lsdef", "-t", "osimage", "-o", IMAGE).rc != 0


def listing(path: Path) -> set[str]:
    """The paths in a packed root, as ./relative names."""
    name = path.name
    if name.endswith(".sfs"):
        out = subprocess.run(["unsquashfs", "-lc", "-d", "", str(path)], capture_output=True,
                             text=True, check=True).stdout
        return {"." + line for line in out.splitlines() if line.startswith("/")}
    comp = {"gz": "gzip", "xz": "xz", "zst": "zstd"}[name.rsplit(".", 1)[1]]
    raw = subprocess.run([comp, "-dc", str(path)], capture_output=True, check=True).stdout
    lister = ["cpio", "-t", "--quiet"] if ".cpio." in name else ["tar", "-t", "-f", "-"]
    out = subprocess.run(lister, input=raw, capture_output=True, check=True).stdout.decode()
    return {p.rstrip("/") if p.startswith("./") else "./" + p.rstrip("/")
            for p in out.splitlines() if p not in (".", "./")}


def extract_file(path: Path, member: str, tmp: Path) -> bytes:
    """One file's content from a packed root."""
    if path.name.endswith(".sfs"):
        dest = tmp / "x"
        subprocess.run(["unsquashfs", "-q", "-n", "-d", str(dest), str(path), member],
                       check=True, capture_output=True)
        return (dest / member).read_bytes()
    comp = {"gz": "gzip", "xz": "xz", "zst": "zstd"}[path.name.rsplit(".", 1)[1]]
    raw = subprocess.run([comp, "-dc", str(path)], capture_output=True, check=True).stdout
    dest = tmp / "x"
    dest.mkdir()
    if ".cpio." in path.name:
        subprocess.run(["cpio", "-id", "--quiet", member], input=raw, cwd=dest,
                       check=True, capture_output=True)
    else:
        subprocess.run(["tar", "-x", "-f", "-", f"./{member}"], input=raw, cwd=dest,
                       check=True, capture_output=True)
    return (dest / member).read_bytes()


CASES = [  # method, compress, the file
    (None, None, "rootimg.sfs"),
    ("squashfs", "xz", "rootimg.sfs"),
    ("squashfs", "gzip", "rootimg.sfs"),
    ("cpio", "gzip", "rootimg.cpio.gz"),
    ("cpio", "xz", "rootimg.cpio.xz"),
    ("cpio", "zstd", "rootimg.cpio.zst"),
    ("tar", "gzip", "rootimg.tar.gz"),
    ("tar", "zstd", "rootimg.tar.zst"),
    ("tar", "xz", "rootimg.tar.xz"),
]


@pytest.mark.parametrize("method,compress,filename", CASES)
def test_pack_honours_the_exlist_and_writes_the_manifest(image, tmp_path, method, compress,
                                                          filename):
    mn, destdir = image
    argv = [*(["-m", method] if method else []), *(["-c", compress] if compress else []), IMAGE]
    r = mn.ok("packimage", *argv)
    assert f"Packing contents of {ROOTIMGDIR}/rootimg" in r.out
    out = destdir / filename
    assert out.is_file() and (out.stat().st_mode & 0o777) == 0o644
    names = listing(out)
    # kept
    for p in ("./etc/shadow", "./usr/bin/bash", "./usr/bin/rbash", "./usr/share/man/man1/ls.1",
              "./usr/share/doc/bash/copyright", "./root/a file [x]*", "./var/lib/dpkg/status"):
        assert p in names, (p, sorted(names))
    # excluded: man8 (./usr/share/man*), docs but the copyright, statelite's working copies
    for p in ("./usr/share/man/man8", "./usr/share/man/man8/mount.8",
              "./usr/share/doc/bash/README", "./.statelite", "./.statelite/litefile.save"):
        assert p not in names, p
    # the root password: crypted, not in clear, in the packed root and the tree
    shadow = extract_file(out, "etc/shadow", tmp_path).decode()
    root_line = next(line for line in shadow.splitlines() if line.startswith("root:"))
    assert root_line.split(":")[1].startswith("$6$")
    assert "daemon:*:19700" in shadow
    assert CLEAR not in shadow and CLEAR not in r.out + r.err
    assert ((destdir / "rootimg/etc/shadow").stat().st_mode & 0o777) == 0o640
    # the manifest
    m = json.loads((destdir / "manifest.json").read_text())
    assert m["format"] == 1 and m["imagename"] == IMAGE
    assert m["rootimg"]["file"] == filename
    assert m["rootimg"]["method"] == (method or "squashfs")
    assert m["rootimg"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert m["rootimg"]["size"] == out.stat().st_size
    assert m["kernel"]["sha256"] == hashlib.sha256((destdir / "kernel").read_bytes()).hexdigest()
    assert m["initrd"]["file"] == "initrd-stateless.gz"
    assert m["package_manager"] == "dpkg"
    assert m["packages"] == [{"name": "bash", "version": "5.2.15-2+b2", "arch": "amd64"},
                             {"name": "systemd", "version": "252.22-1~deb12u1",
                              "arch": "amd64"}]
    assert len(m["spec_sha256"]) == 64 and m["genimage_digest"] == "d1g35t"
    assert CLEAR not in (destdir / "manifest.json").read_text()


def test_a_second_pack_replaces_the_first_and_removes_other_formats(image):
    mn, destdir = image
    mn.ok("packimage", "-m", "cpio", "-c", "gzip", IMAGE)
    first = json.loads((destdir / "manifest.json").read_text())
    (destdir / "rootimg/etc/hostname").write_text("changed\n")
    mn.ok("packimage", IMAGE)
    assert not (destdir / "rootimg.cpio.gz").exists()
    second = json.loads((destdir / "manifest.json").read_text())
    assert second["rootimg"]["file"] == "rootimg.sfs"
    assert second["spec_sha256"] == first["spec_sha256"]
    assert not [p for p in destdir.iterdir() if p.name.endswith((".part", ".new"))]


def test_the_spec_hash_follows_the_exlist_content(image):
    mn, destdir = image
    mn.ok("packimage", IMAGE)
    before = json.loads((destdir / "manifest.json").read_text())["spec_sha256"]
    (mn.root / "install/custom/netboot/debian/docs.exlist").write_text("./usr/share/doc*\n")
    mn.ok("packimage", IMAGE)
    after = json.loads((destdir / "manifest.json").read_text())["spec_sha256"]
    assert before != after


def test_a_failed_pack_leaves_the_previous_one(image, monkeypatch):
    mn, destdir = image
    mn.ok("packimage", IMAGE)
    good = (destdir / "rootimg.sfs").read_bytes()
    manifest = (destdir / "manifest.json").read_text()
    bin_dir = mn.root / "fakebin"
    bin_dir.mkdir()
    fake = bin_dir / "mksquashfs"
    fake.write_text("#!/bin/sh\necho 'FATAL ERROR: disk full' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    r = mn.run("packimage", IMAGE)
    assert r.rc == 1 and "mksquashfs failed (exit 1): FATAL ERROR: disk full" in r.err
    assert (destdir / "rootimg.sfs").read_bytes() == good
    assert (destdir / "manifest.json").read_text() == manifest
    assert not [p for p in destdir.iterdir() if p.name.endswith((".part", ".new"))]


@pytest.mark.parametrize("argv,message", [
    (["-m", "zip", IMAGE], "Invalid archive method 'zip' requested"),
    (["-c", "lz4", IMAGE], "Invalid compress method 'lz4' requested"),
    (["nosuchimage"], "Cannot find image 'nosuchimage' from the osimage table."),
    (["-o", "debian12", "-p", "compute"], "-o, -p and -a options are obsoleted"),
    ([], "An image name is required"),
])
def test_bad_input_is_an_error_naming_it(image, argv, message):
    mn, destdir = image
    r = mn.run("packimage", *argv)
    assert r.rc == 1 and message in r.err
    assert not (destdir / "rootimg.sfs").exists()


def test_an_install_image_is_refused(image):
    mn, _ = image
    build(mn, mkdef("osimage", "inst", "imagetype=linux", "provmethod=install",
                    "osvers=debian12", "osarch=x86_64", "profile=compute"))
    r = mn.run("packimage", "inst")
    assert r.rc == 1 and "Make sure osimage.provmethod is 'netboot'" in r.err


def test_a_missing_tree_says_to_run_genimage(image):
    mn, destdir = image
    shutil.rmtree(destdir / "rootimg")
    r = mn.run("packimage", IMAGE)
    assert r.rc == 1 and f"{ROOTIMGDIR}/rootimg does not exist, run genimage" in r.err


def test_a_missing_exlist_include_is_named(image):
    mn, _ = image
    (mn.root / EXLIST.lstrip("/")).write_text("#INCLUDE:nope.exlist#\n")
    r = mn.run("packimage", IMAGE)
    assert r.rc == 1 and "#INCLUDE:nope.exlist#" in r.err and "does not exist" in r.err


def test_pigz_missing_names_the_package(image, monkeypatch):
    mn, _ = image
    if shutil.which("pigz"):
        pytest.skip("pigz is installed here")
    r = mn.run("packimage", "-m", "cpio", "-c", "pigz", IMAGE)
    assert r.rc == 1 and "pigz" in r.err and "Debian package pigz" in r.err


def test_pigz_packs_when_installed(image):
    mn, destdir = image
    if not shutil.which("pigz"):
        pytest.skip("pigz is not installed")
    mn.ok("packimage", "-m", "cpio", "-c", "pigz", IMAGE)
    assert "./usr/bin/bash" in listing(destdir / "rootimg.cpio.gz")


def test_secureroot_locks_root(image, tmp_path):
    mn, destdir = image
    build(mn, site(secureroot="1"))
    mn.ok("packimage", IMAGE)
    shadow = (destdir / "rootimg/etc/shadow").read_text()
    assert shadow.startswith("root:*:")


def test_a_second_command_on_the_image_is_refused_while_one_holds_it(image):
    mn, destdir = image
    with image_lock(destdir, IMAGE, "genimage"):
        r = mn.run("packimage", IMAGE)
        assert r.rc == 1 and "being built, packed or removed" in r.err
        r = mn.run("rmimage", IMAGE)
        assert r.rc == 1 and LOCK_NAME in r.err
    assert not (destdir / "rootimg.sfs").exists()
    assert (destdir / "rootimg").is_dir()


def test_rmimage_removes_the_files_and_with_xcatdef_the_definition(image):
    mn, destdir = image
    mn.ok("packimage", IMAGE)
    r = mn.ok("rmimage", IMAGE)
    assert f"Removing directory {ROOTIMGDIR}/rootimg" in r.out
    assert f"Removing file {ROOTIMGDIR}/rootimg.sfs" in r.out
    assert f"Removing directory {ROOTIMGDIR}/rootimg.previous" in r.out
    assert "Image files have been removed successfully" in r.out
    left = {p.name for p in destdir.iterdir()}
    assert left <= {LOCK_NAME}, left
    assert mn.ok("lsdef", "-t", "osimage", "-o", IMAGE).rc == 0
    make_tree(mn.root)
    mn.ok("rmimage", IMAGE, "--xcatdef")
    assert mn.run("lsdef", "-t", "osimage", "-o", IMAGE).rc != 0


def test_rmimage_refuses_a_directory_outside_installdir(image, tmp_path):
    mn, _ = image
    outside = mn.root / "srv/img"
    (outside / "rootimg/etc").mkdir(parents=True)
    build(mn, mkdef("osimage", "stray", "imagetype=linux", "provmethod=netboot",
                    "osvers=debian12", "osarch=x86_64", "profile=x", "rootimgdir=/srv/img"))
    r = mn.run("rmimage", "stray")
    assert r.rc == 1 and "not under site.installdir" in r.err
    assert (outside / "rootimg/etc").is_dir()


def test_rmimage_by_os_arch_profile_and_missing_directory(image):
    mn, destdir = image
    r = mn.run("rmimage", "-o", "debian12", "-a", "x86_64", "-p", "nosuch")
    assert r.rc == 1 and "Image directory /install/netboot/debian12/x86_64/nosuch does not " \
                         "exist" in r.err
    mn.ok("rmimage", "-o", "debian12", "-a", "x86_64", "-p", "compute")
    assert not (destdir / "rootimg").exists()
    r = mn.run("rmimage", "-o", "debian12", "--xcatdef")
    assert r.rc == 1 and "Missing flag -o, -a or -p" in r.err


# ---- the selection itself, on a tree without a management node -------------------------
def test_kept_paths_keep_the_directories_of_a_reincluded_file(tmp_path):
    t = tmp_path / "t"
    (t / "a/b/c").mkdir(parents=True)
    (t / "a/b/c/keep").write_text("k")
    (t / "a/b/c/drop").write_text("d")
    (t / "a/b/other").write_text("o")
    (t / "z").write_text("z")
    rules = ExList(excludes=("./a*",), includes=("./a/b/c/keep",)).rules()
    assert list(kept_paths(t, rules)) == [b".", b"./a", b"./a/b", b"./a/b/c", b"./a/b/c/keep",
                                          b"./z"]
    assert sorted(squashfs_excludes(t, rules)) == [b"a/b/c/drop", b"a/b/other"]
    # nothing re-included: the directory stands for all it holds
    rules = ExList(excludes=("./a*",)).rules()
    assert squashfs_excludes(t, rules) == [b"a"]
