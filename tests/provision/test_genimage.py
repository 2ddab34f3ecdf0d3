"""genimage: real image builds (Debian 12 with mmdebstrap from the Debian mirror, the RHEL
family with dnf from a local repository of tiny RPMs made here), the per-image lock, a failed
build leaving the published image as it was, postinstall scripts' argv and environment, and
the atomic publish with its previous generation.

The Debian builds keep their downloaded packages and finished trees in the lab cache
(.cache/lab/genimage, keyed by the spec's digest), so a second run takes seconds."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from xcatd.lab.assets import assets_dir
from xcatd.provision.imagebuild import (
    CACHE_ENV,
    LOCK_NAME,
    ImageSpec,
    mmdebstrap_argv,
    publish,
)
from xcatd.provision.pkglist import PkgPass

POSTINSTALL = """#!/bin/sh
set -e
echo "$@" > "$1/postinstall.argv"
env | grep '^IMG_' | sort > "$1/postinstall.env"
"""


def _define(mn, name: str, osimage: dict, linux: dict) -> None:
    with mn.db.begin() as conn:
        mn.db.set_rows(conn, "osimage", {(name,): {"imagetype": "linux",
                                                   "provmethod": "netboot", **osimage}})
        mn.db.set_rows(conn, "linuximage", {(name,): linux})


def _file(mn, path: str, text: str, mode: int = 0o644) -> str:
    p = mn.paths.under(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    p.chmod(mode)
    return path


# ---- pure parts ---------------------------------------------------------------------------
def test_mmdebstrap_runs_later_passes_removals_and_postinstall_as_hooks():
    spec = ImageSpec("i", "debian12", "x86_64", "compute", Path("/r"),
                     passes=(PkgPass(("busybox",), ("nano",)), PkgPass(("hello",), ())),
                     postinstall=(Path("/s/post one"),))
    argv = mmdebstrap_argv(spec, Path("/b/rootimg"))
    hooks = [a for a in argv if a.startswith("--customize-hook=") and "@@" not in a]
    assert "--include=busybox" in argv
    assert "remove --purge nano" in hooks[0]
    assert "install --no-install-recommends hello" in hooks[1]
    assert hooks[2] == "--customize-hook='/s/post one' \"$1\" debian12 x86_64 compute"
    assert argv[-3:] == ["bookworm", "/b/rootimg", "http://deb.debian.org/debian"]


def test_digest_follows_the_lists_and_the_scripts(tmp_path):
    script = tmp_path / "post"
    script.write_text("a")
    base = dict(name="i", osvers="debian12", arch="x86_64", profile="p", rootimgdir=tmp_path,
                passes=(PkgPass(("a",), ()),), postinstall=(script,))
    one = ImageSpec(**base).digest()
    assert ImageSpec(**{**base, "passes": (PkgPass(("b",), ()),)}).digest() != one
    script.write_text("b")
    assert ImageSpec(**base).digest() != one


def test_publish_keeps_one_previous_generation(tmp_path):
    imgdir = tmp_path / "img"
    imgdir.mkdir()
    for gen in ("1", "2", "3"):
        build = imgdir / f".build-{gen}"
        (build / "rootimg").mkdir(parents=True)
        (build / "rootimg" / "gen").write_text(gen)
        (build / "kernel").write_text(f"k{gen}")
        publish(build, imgdir)
        shutil.rmtree(build)
    assert (imgdir / "rootimg" / "gen").read_text() == "3"
    assert (imgdir / "rootimg.previous" / "gen").read_text() == "2"
    assert (imgdir / "kernel").read_text() == "k3"
    assert (imgdir / "kernel.previous").read_text() == "k2"
    assert not list(imgdir.glob(".trash-*"))


# ---- the command ----------------------------------------------------------------------------
def test_unknown_image_is_an_error_naming_it(mn_sqlite):
    r = mn_sqlite.run("genimage", "nosuch-image")
    assert r.rc != 0 and "osimage nosuch-image is not defined" in r.err


def test_install_image_is_refused(mn_sqlite):
    _define(mn_sqlite, "deb-install", {"provmethod": "install", "osvers": "debian12",
                                       "osarch": "x86_64", "profile": "compute"}, {})
    r = mn_sqlite.run("genimage", "deb-install")
    assert r.rc != 0 and "genimage builds netboot and statelite images" in r.err


def test_missing_include_is_an_error_naming_it(mn_sqlite):
    pl = _file(mn_sqlite, "/install/custom/netboot/x.pkglist", "#INCLUDE:gone.pkglist#\n")
    _define(mn_sqlite, "img", {"osvers": "debian12", "osarch": "x86_64", "profile": "compute"},
            {"pkglist": pl})
    r = mn_sqlite.run("genimage", "img")
    assert r.rc != 0 and "gone.pkglist not found" in r.err


def test_second_genimage_of_the_same_image_is_refused(mn_sqlite):
    pl = _file(mn_sqlite, "/install/custom/netboot/x.pkglist", "busybox\n")
    _define(mn_sqlite, "img", {"osvers": "debian12", "osarch": "x86_64", "profile": "compute"},
            {"pkglist": pl, "rootimgdir": "/install/netboot/img"})
    imgdir = mn_sqlite.paths.under("/install/netboot/img")
    imgdir.mkdir(parents=True)
    with open(imgdir / LOCK_NAME, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        r = mn_sqlite.run("genimage", "img")
    assert r.rc != 0
    assert "being built by another genimage (pid 4242)" in r.err
    assert not list(imgdir.glob(".build-*"))


def test_o_a_p_defines_the_image_and_k_n_are_written_back(mn_sqlite):
    # a group name: Debian has none, so the build stops before it starts
    _file(mn_sqlite, "/install/custom/netboot/debian/compute.debian12.pkglist", "@core\n")
    r = mn_sqlite.run("genimage", "-o", "debian12", "-a", "amd64", "-p", "compute",
                      "-n", "virtio_net,e1000", "-k", "6.1.0-99-amd64")
    assert r.rc != 0 and "@core: debian12 has no package groups" in r.err
    rows = mn_sqlite.db.rows("linuximage", keys=["debian12-x86_64-netboot-compute"])
    assert rows and rows[0]["netdrivers"] == "virtio_net,e1000"
    assert rows[0]["kernelver"] == "6.1.0-99-amd64"
    assert rows[0]["rootimgdir"] == "/install/netboot/debian12/x86_64/compute"
    os_rows = mn_sqlite.db.rows("osimage", keys=["debian12-x86_64-netboot-compute"])
    assert os_rows[0]["osarch"] == "x86_64" and os_rows[0]["provmethod"] == "netboot"


# ---- RHEL family: dnf from a local repository ----------------------------------------------
RPM_SPEC = """Name: {name}
Version: 1.0
Release: 1
Summary: {name}
License: MIT
BuildArch: noarch
{requires}
%description
A tiny package for the genimage tests.
%install
mkdir -p %{{buildroot}}/usr/share/{name}
echo {name} > %{{buildroot}}/usr/share/{name}/{name}.txt
%files
/usr/share/{name}/{name}.txt
"""


@pytest.fixture(scope="module")
def rpm_repo(tmp_path_factory):
    missing = [t for t in ("dnf", "rpmbuild", "createrepo_c") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian packages dnf, rpm, "
                    "createrepo-c)")
    work = tmp_path_factory.mktemp("rpms")
    repo = work / "repo"
    repo.mkdir()
    for name, requires in (("tinya", ""), ("tinyb", "Requires: tinya"), ("tinyc", "")):
        spec = work / f"{name}.spec"
        spec.write_text(RPM_SPEC.format(name=name, requires=requires))
        subprocess.run(["rpmbuild", "-bb", "--define", f"_topdir {work / 'top'}", str(spec)],
                       check=True, capture_output=True)
    for rpm in (work / "top" / "RPMS" / "noarch").glob("*.rpm"):
        shutil.copy(rpm, repo)
    subprocess.run(["createrepo_c", "-q", str(repo)], check=True, capture_output=True)
    return repo


def _rhel_image(mn, repo: Path, pkglist: str, name: str = "rocky9.4-x86_64-netboot-tiny"):
    # the copycds tree: install/rocky9.4/x86_64 with BaseOS/ holding the repository
    tree = mn.paths.under("/install/rocky9.4/x86_64")
    tree.mkdir(parents=True, exist_ok=True)
    if not (tree / "BaseOS").exists():
        shutil.copytree(repo, tree / "BaseOS")
    pl = _file(mn, "/install/custom/netboot/rh/tiny.pkglist", pkglist)
    post = _file(mn, "/install/custom/netboot/rh/tiny.postinstall", POSTINSTALL, 0o755)
    _define(mn, name, {"osvers": "rocky9.4", "osarch": "x86_64", "profile": "tiny"},
            {"pkglist": pl, "postinstall": post})
    return mn.paths.under("/install/netboot/rocky9.4/x86_64/tiny")


def test_rhel_image_from_a_local_repository_pass_by_pass(mn_sqlite, rpm_repo):
    imgdir = _rhel_image(mn_sqlite, rpm_repo,
                         "tinyb\ntinyc\n#NEW_INSTALL_LIST#\n-tinyc\n")
    r = mn_sqlite.ok("genimage", "rocky9.4-x86_64-netboot-tiny")
    root = imgdir / "rootimg"
    assert (root / "usr/share/tinya/tinya.txt").is_file()  # pulled in by tinyb
    assert (root / "usr/share/tinyb/tinyb.txt").is_file()
    assert not (root / "usr/share/tinyc/tinyc.txt").exists()  # removed by pass 2
    assert "pkglist pass 1: 2 packages" in r.out
    assert "pkglist pass 2 removals" in r.out
    assert "the image has no kernel" in r.err
    # postinstall: argv and IMG_* as xCAT passes them
    argv = (root / "postinstall.argv").read_text().split()
    # the script is given the tree being built (aside, under .build-*), then published
    assert argv[1:] == ["rocky9.4", "x86_64", "tiny"]
    assert argv[0].startswith(f"{imgdir}/.build-") and argv[0].endswith("/rootimg")
    env = dict(line.split("=", 1) for line in
               (root / "postinstall.env").read_text().splitlines())
    assert env["IMG_NAME"] == "rocky9.4-x86_64-netboot-tiny"
    assert env["IMG_OSVER"] == "rocky9.4" and env["IMG_PROFILE"] == "tiny"
    assert env["IMG_ROOTIMGDIR"] == "/install/netboot/rocky9.4/x86_64/tiny"
    assert env["IMG_PKGDIR"] == "/install/rocky9.4/x86_64"
    assert env["IMG_PKGLIST"] == "/install/custom/netboot/rh/tiny.pkglist"
    assert (imgdir / "genimage.log").is_file() and (imgdir / "genimage.json").is_file()
    assert not list(imgdir.glob(".build-*"))


def test_failed_build_leaves_the_published_image_untouched(mn_sqlite, rpm_repo):
    imgdir = _rhel_image(mn_sqlite, rpm_repo, "tinya\n")
    mn_sqlite.ok("genimage", "rocky9.4-x86_64-netboot-tiny")
    before = sorted(p.name for p in (imgdir / "rootimg" / "usr/share").iterdir())
    _file(mn_sqlite, "/install/custom/netboot/rh/tiny.pkglist",
          "tinyc\n#NEW_INSTALL_LIST#\nno-such-package\n")
    r = mn_sqlite.run("genimage", "rocky9.4-x86_64-netboot-tiny")
    assert r.rc != 0
    assert "stage 'pkglist pass 2: 1 packages' failed" in r.err
    assert "the published image is unchanged" in r.err and "genimage.log" in r.err
    assert sorted(p.name for p in (imgdir / "rootimg" / "usr/share").iterdir()) == before
    assert not (imgdir / "rootimg.previous").exists()
    assert not list(imgdir.glob(".build-*"))
    assert "no-such-package" in (imgdir / "genimage.log").read_text()


def test_failing_postinstall_fails_the_build(mn_sqlite, rpm_repo):
    imgdir = _rhel_image(mn_sqlite, rpm_repo, "tinya\n")
    _file(mn_sqlite, "/install/custom/netboot/rh/tiny.postinstall", "#!/bin/sh\nexit 3\n",
          0o755)
    r = mn_sqlite.run("genimage", "rocky9.4-x86_64-netboot-tiny")
    assert r.rc != 0 and "stage 'postinstall tiny.postinstall' failed (exit status 3)" in r.err
    assert not (imgdir / "rootimg").exists()


# ---- Debian 12: mmdebstrap from the Debian mirror ---------------------------------------------
def _need_mmdebstrap():
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap is not installed (Debian package mmdebstrap)")
    if os.geteuid() != 0:
        pytest.skip("mmdebstrap --mode=root needs root")


@pytest.fixture
def image_cache(monkeypatch):
    cache = assets_dir() / "genimage"
    cache.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv(CACHE_ENV, str(cache))
    return cache


def test_debian12_busybox_image_is_built_and_rebuilt_from_the_cache(mn_sqlite, image_cache):
    _need_mmdebstrap()
    mn = mn_sqlite
    pl = _file(mn, "/install/custom/netboot/debian/tiny.pkglist", "busybox\n")
    post = _file(mn, "/install/custom/netboot/debian/tiny.postinstall", POSTINSTALL, 0o755)
    _define(mn, "debian12-x86_64-netboot-tiny",
            {"osvers": "debian12", "osarch": "x86_64", "profile": "tiny"},
            {"pkglist": pl, "postinstall": post, "pkgdir": "http://deb.debian.org/debian"})
    mn.ok("genimage", "debian12-x86_64-netboot-tiny")
    imgdir = mn.paths.under("/install/netboot/debian12/x86_64/tiny")
    root = imgdir / "rootimg"
    assert (root / "bin/busybox").is_file()
    assert "bookworm" in (root / "etc/os-release").read_text() or \
        (root / "etc/debian_version").read_text().startswith("12")
    argv = (root / "postinstall.argv").read_text().split()
    # the script is given the tree being built (aside, under .build-*), then published
    assert argv[1:] == ["debian12", "x86_64", "tiny"]
    # (a tree restored from the cache was built under another run's root)
    assert "/.build-" in argv[0] and argv[0].endswith("/rootimg")
    assert "IMG_NAME=debian12-x86_64-netboot-tiny" in (root / "postinstall.env").read_text()
    assert not list((root / "var/cache/apt/archives").glob("*.deb"))  # the .debs stay cached
    r = mn.ok("genimage", "debian12-x86_64-netboot-tiny")  # the same spec: from the cache
    assert "from the cache" in r.out
    assert (imgdir / "rootimg.previous" / "bin/busybox").is_file()
    assert (imgdir / "rootimg" / "bin/busybox").is_file()
    # nothing mounted is left behind (the build ran in its own mount namespace)
    assert str(imgdir) not in Path("/proc/self/mountinfo").read_text()


@pytest.mark.lab
def test_debian12_compute_image_with_kernel(mn_sqlite, image_cache):
    """The shipped compute pkglist (systemd, a DHCP client, the kernel): the kernel is put
    beside the image."""
    _need_mmdebstrap()
    _define(mn_sqlite, "debian12-x86_64-netboot-compute",
            {"osvers": "debian12", "osarch": "x86_64", "profile": "compute"},
            {"pkgdir": "http://deb.debian.org/debian"})
    mn_sqlite.ok("genimage", "debian12-x86_64-netboot-compute")
    imgdir = mn_sqlite.paths.under("/install/netboot/debian12/x86_64/compute")
    assert (imgdir / "rootimg/lib/systemd/systemd").exists()
    assert (imgdir / "kernel").read_bytes()[0x202:0x206] == b"HdrS"  # a bzImage
    if (imgdir / "initrd-stateless.gz").exists():  # D's initrd builder is installed
        assert (imgdir / "initrd-stateless.gz").read_bytes()[:2] == b"\x1f\x8b"
