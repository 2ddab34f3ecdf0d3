"""copycds: fake distribution media (trees and xorriso-made ISOs) copied into a management
node, in process on SQLite and PostgreSQL and through xcatd."""
import os
import shutil
import time

import pytest

from xcatd.base.request import XcatError
from xcatd.lab.fakemedia import build_iso, build_tree
from xcatd.provision.media import IsoMedia, identify, inside_tree, open_media
from xcatd.provision.osfamily import boot_files
from xcatd.security.credentials import issue_client_cert

needs_xorriso = pytest.mark.skipif(not shutil.which("xorriso"), reason="xorriso missing")
pytestmark = needs_xorriso


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Trees and ISOs of each distribution, built once; tests never write to them."""
    base = tmp_path_factory.mktemp("media")
    big = base / "big-initrd"
    big.write_bytes(os.urandom(3 << 20))  # large enough to cut an ISO inside it
    out = {}
    for distro in ("rocky9.4", "alma8.10", "rhels9.4", "debian12.5.0", "ubuntu24.04.1"):
        tree = build_tree(base / f"tree-{distro}", distro)
        out[distro] = tree
        out[distro + ".iso"] = build_iso(tree, base / f"{distro}.iso", distro.upper())
    out["rocky-big.iso"] = build_iso(build_tree(base / "tree-rocky-big", "rocky9.4",
                                                initrd=big), base / "rocky-big.iso", "ROCKY")
    unknown = base / "tree-unknown"
    (unknown / "stuff").mkdir(parents=True)
    (unknown / "stuff/readme.txt").write_text("not a distribution\n")
    out["unknown"] = unknown
    out["unknown.iso"] = build_iso(unknown, base / "unknown.iso", "UNKNOWN")
    garbage = base / "garbage.iso"
    garbage.write_bytes(os.urandom(200_000))
    out["garbage.iso"] = garbage
    return out


def rows(mn, table):
    return {r[next(iter(r))]: r for r in mn.db.rows(table)}


def install(mn, *parts):
    return mn.root.joinpath("install", *parts)


def tree_state(path):
    """Every path under ``path`` with its content (files) or target (links)."""
    out = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_bytes()
        else:
            out[rel] = "dir"
    return out


def leftovers(mn):
    return [p for p in mn.root.joinpath("install").rglob(".*copycds-*")]


def custom_templates(mn):
    """Install and netboot templates in the site's custom directory (xCAT's lookup order puts
    it first), so the test does not depend on which templates the toolkit ships."""
    inst = install(mn, "custom/install/rh")
    net = install(mn, "custom/netboot/rh")
    inst.mkdir(parents=True)
    net.mkdir(parents=True)
    (inst / "testprof.rhels9.tmpl").write_text("# kickstart\n")
    (inst / "testprof.rhels9.pkglist").write_text("bash\n")
    (net / "testprof.rhels9.pkglist").write_text("bash\n")
    (net / "testprof.rhels9.exlist").write_text("./usr/share/man*\n")
    return inst, net


# ---- copying and recording ---------------------------------------------------------------
@pytest.mark.parametrize("distro,arch", [("rocky9.4", "x86_64"), ("alma8.10", "x86_64"),
                                         ("debian12.5.0", "x86_64"),
                                         ("ubuntu24.04.1", "x86_64")])
def test_an_iso_is_copied_and_recorded(mn, media, distro, arch):
    r = mn.ok("copycds", str(media[distro + ".iso"]))
    assert r.lines == [f"Copying media to /install/{distro}/{arch}",
                       "Media copy operation successful"]
    dest = install(mn, distro, arch)
    for rel in boot_files(distro, arch):
        assert (dest / rel).read_bytes() == (media[distro] / rel).read_bytes()
    assert oct(dest.stat().st_mode & 0o777) == "0o755"
    assert {oct(p.lstat().st_mode & 0o777) for p in dest.rglob("*")
            if not p.is_symlink()} == {"0o755", "0o644"}
    assert all(oct(p.stat().st_mode & 0o777) == "0o644" for p in dest.rglob("*")
               if p.is_file() and not p.is_symlink())
    row = rows(mn, "osdistro")[f"{distro}-{arch}"]
    base, major, minor = {"rocky9.4": ("rocky", "9", "4"), "alma8.10": ("alma", "8", "10"),
                          "debian12.5.0": ("debian", "12", "5"),
                          "ubuntu24.04.1": ("ubuntu", "24", "04")}[distro]
    assert (row["basename"], row["majorversion"], row["minorversion"], row["arch"],
            row["type"], row["dirpaths"]) == (base, major, minor, arch, "Linux",
                                              f"/install/{distro}/{arch}")
    assert not leftovers(mn)


def test_a_directory_source_is_copied_with_its_links(mn, media):
    r = mn.ok("copycds", str(media["debian12.5.0"]))
    assert r.lines[-1] == "Media copy operation successful" and r.err == ""
    dest = install(mn, "debian12.5.0", "x86_64")
    assert tree_state(dest) == {**tree_state(media["debian12.5.0"]),
                                ".fingerprint": (dest / ".fingerprint").read_bytes()}
    assert os.readlink(dest / "debian") == "." and os.readlink(dest / "dists/stable") == \
        "bookworm"


def test_osimages_for_the_profiles_with_templates_and_a_rerun_changes_nothing(mn, media):
    custom_templates(mn)
    first = mn.ok("copycds", str(media["rocky9.4.iso"]))
    osimages, linux = rows(mn, "osimage"), rows(mn, "linuximage")
    inst, net = "rocky9.4-x86_64-install-testprof", "rocky9.4-x86_64-netboot-testprof"
    for name, method in ((inst, "install"), (net, "netboot")):
        o = osimages[name]
        assert (o["provmethod"], o["profile"], o["osvers"], o["osarch"], o["osname"],
                o["imagetype"], o["osdistroname"]) == (method, "testprof", "rocky9.4",
                                                       "x86_64", "Linux", "linux",
                                                       "rocky9.4-x86_64")
    # files of the site's custom directory as the management node names them
    custom = "/install/custom"
    assert linux[inst]["template"] == f"{custom}/install/rh/testprof.rhels9.tmpl"
    assert linux[inst]["pkglist"] == f"{custom}/install/rh/testprof.rhels9.pkglist"
    assert linux[net]["pkglist"] == f"{custom}/netboot/rh/testprof.rhels9.pkglist"
    assert linux[net]["exlist"] == f"{custom}/netboot/rh/testprof.rhels9.exlist"
    assert mn.paths.under(linux[inst]["template"]).read_text() == "# kickstart\n"
    assert linux[net]["rootimgdir"] == "/install/netboot/rocky9.4/x86_64/testprof"
    for name in (inst, net):
        assert linux[name]["pkgdir"] == "/install/rocky9.4/x86_64"
        assert linux[name]["otherpkgdir"] == "/install/post/otherpkgs/rocky9.4/x86_64"
    assert "template" not in {k for k, v in linux[net].items() if v}
    # shipped files are never recorded: their path moves with the Python installation
    for row in linux.values():
        for col in ("template", "pkglist", "otherpkglist", "exlist", "postinstall"):
            assert row[col] is None or row[col].startswith("/install/custom/"), row
    before = {t: rows(mn, t) for t in ("osdistro", "osimage", "linuximage")}
    again = mn.ok("copycds", str(media["rocky9.4.iso"]))
    assert again.lines == first.lines and again.err == ""
    assert {t: rows(mn, t) for t in before} == before


def test_an_osimage_an_admin_changed_is_kept(mn, media):
    custom_templates(mn)
    mn.ok("copycds", str(media["rocky9.4.iso"]))
    name = "rocky9.4-x86_64-install-testprof"
    mn.ok("chdef", "-t", "osimage", "-o", name, "pkglist=/root/my.pkglist",
          "postscripts=mine")
    mn.ok("chtab", "-d", f"imagename={name}", "linuximage")  # half an image: filled in
    mn.ok("chtab", f"imagename={name}", "linuximage.pkglist=/root/my.pkglist")
    r = mn.ok("copycds", str(media["rocky9.4.iso"]))
    assert name in r.err and "linuximage.pkglist" in r.err and "kept" in r.err
    li = rows(mn, "linuximage")[name]
    assert li["pkglist"] == "/root/my.pkglist"
    assert li["template"].endswith("testprof.rhels9.tmpl")  # the missing part is filled in
    assert rows(mn, "osimage")[name]["postscripts"] == "mine"


def test_noosimage_records_the_distribution_only(mn, media):
    custom_templates(mn)
    mn.ok("copycds", "-o", str(media["rocky9.4.iso"]))
    assert "rocky9.4-x86_64" in rows(mn, "osdistro")
    assert rows(mn, "osimage") == {} and rows(mn, "linuximage") == {}



def test_a_statelite_osimage_beside_each_netboot_one_sharing_its_files(mn, media):
    custom_templates(mn)
    mn.ok("copycds", str(media["rocky9.4.iso"]))
    osimages, linux = rows(mn, "osimage"), rows(mn, "linuximage")
    net, lite = "rocky9.4-x86_64-netboot-testprof", "rocky9.4-x86_64-statelite-testprof"
    assert osimages[lite]["provmethod"] == "statelite"
    assert {k: v for k, v in osimages[lite].items() if k not in ("imagename", "provmethod")} \
        == {k: v for k, v in osimages[net].items() if k not in ("imagename", "provmethod")}
    assert osimages[lite]["rootfstype"] is None  # as xCAT: nodeset's default until set
    assert {k: v for k, v in linux[lite].items() if k != "imagename"} == \
        {k: v for k, v in linux[net].items() if k != "imagename"}
    assert linux[lite]["rootimgdir"] == "/install/netboot/rocky9.4/x86_64/testprof"
    assert linux[lite]["pkglist"] == "/install/custom/netboot/rh/testprof.rhels9.pkglist"
    # only the netboot package list makes netboot and statelite images
    assert "rocky9.4-x86_64-statelite-testprof" in mn.ok("lsdef", "-t", "osimage").out
    assert not any(n.startswith("rocky9.4-x86_64-install-") and o["provmethod"] != "install"
                   for n, o in osimages.items())


def test_the_shipped_debian_compute_profile_gives_netboot_and_statelite_images(mn_sqlite,
                                                                              media):
    mn = mn_sqlite
    mn.ok("copycds", str(media["debian12.5.0.iso"]))
    osimages, linux = rows(mn, "osimage"), rows(mn, "linuximage")
    for method in ("netboot", "statelite"):
        name = f"debian12.5.0-x86_64-{method}-compute"
        assert (osimages[name]["provmethod"], osimages[name]["profile"]) == (method, "compute")
        li = linux[name]
        assert li["rootimgdir"] == "/install/netboot/debian12.5.0/x86_64/compute"
        assert li["pkgdir"] == "/install/debian12.5.0/x86_64"
        # shipped files stay out of the table: genimage finds them itself
        assert (li["pkglist"], li["exlist"], li["postinstall"]) == (None, None, None)


def test_mkdef_takes_the_diskless_linuximage_attributes(mn):
    attrs = {"pkglist": "/install/custom/netboot/debian/a.pkglist,/install/custom/b.pkglist",
             "otherpkglist": "/install/custom/netboot/debian/compute.otherpkgs.pkglist",
             "otherpkgdir": "/install/post/otherpkgs/debian12/x86_64",
             "pkgdir": "http://deb.debian.org/debian",
             "exlist": "/install/custom/netboot/debian/compute.exlist",
             "postinstall": "/install/custom/netboot/debian/compute.postinstall",
             "rootimgdir": "/install/netboot/debian12/x86_64/mine",
             "kernelver": "6.1.0-26-amd64", "netdrivers": "virtio_net,e1000",
             "permission": "755"}
    image = {"rootfstype": "ramdisk", "synclists": "/install/custom/netboot/sync.synclist",
             "postscripts": "syslog,remoteshell", "postbootscripts": "mine"}
    mn.ok("mkdef", "-t", "osimage", "-o", "debian12-x86_64-netboot-mine", "imagetype=linux",
          "provmethod=netboot", "profile=mine", "osvers=debian12", "osarch=x86_64",
          *(f"{k}={v}" for k, v in {**attrs, **image}.items()))
    li = rows(mn, "linuximage")["debian12-x86_64-netboot-mine"]
    assert {k: li[k] for k in attrs} == attrs
    o = rows(mn, "osimage")["debian12-x86_64-netboot-mine"]
    assert {k: o[k] for k in image} == image
    out = mn.ok("lsdef", "-t", "osimage", "-o", "debian12-x86_64-netboot-mine").out
    for k, v in {**attrs, **image}.items():
        assert f"    {k}={v}" in out.splitlines(), k

# ---- names, architectures, inspection -----------------------------------------------------
def test_name_and_arch_options_override_and_check_the_media(mn, media):
    r = mn.ok("copycds", "-n", "rhels9.4", "-a", "x86_64", str(media["rocky9.4.iso"]))
    assert r.lines[0] == "Copying media to /install/rhels9.4/x86_64"
    assert install(mn, "rhels9.4/x86_64/images/pxeboot/vmlinuz").is_file()
    assert "rhels9.4-x86_64" in rows(mn, "osdistro")
    r = mn.run("copycds", "-a", "aarch64", str(media["alma8.10.iso"]))
    assert r.rc == 1 and "Requested distribution architecture aarch64, but media is " \
        "x86_64" in r.err
    assert not install(mn, "alma8.10").exists()
    # media that says nothing: -n names it, -a must give the architecture
    r = mn.run("copycds", "-n", "rocky9.4", str(media["unknown"]))
    assert r.rc == 1 and "give it with -a" in r.err and not install(mn, "rocky9.4").exists()
    # a RHEL-family name takes media that says nothing, as xCAT's anaconda plugin does
    r = mn.ok("copycds", "--name=rocky9.4", "-a", "amd64", str(media["unknown"]))
    assert r.lines[0] == "Copying media to /install/rocky9.4/x86_64"
    assert install(mn, "rocky9.4/x86_64/stuff/readme.txt").is_file()


UNIDENTIFIED = "Error: copycds could not identify the ISO supplied, you may wish to try -n <osver>"


@pytest.mark.parametrize("name,key,why", [
    ("aix", "rocky9.4.iso", "-n aix is not a distribution copycds can copy"),
    ("aix7.2", "unknown", "-n aix7.2 is not a distribution copycds can copy"),
    ("sles15.5", "rocky9.4.iso", "-n sles15.5 is not a distribution copycds can copy"),
    ("custom1.0", "unknown", "-n custom1.0 is not a distribution copycds can copy"),
    ("debian12.5", "rocky9.4.iso", "holds rocky9.4, not debian12.5"),
    ("rocky9.4", "debian12.5.0.iso", "holds debian12.5.0, not rocky9.4"),
    ("ubuntu24.04", "debian12.5.0", "holds debian12.5.0, not ubuntu24.04"),
    ("debian12.5", "unknown", "is not debian media"),
])
def test_a_name_copycds_cannot_handle_or_not_the_medias_is_refused(mn, media, name, key,
                                                                   why):
    """xCAT: each OS plugin takes only names of its own family and media it recognises;
    when none answers, copycds says it could not identify the ISO, exit 1, nothing
    copied."""
    before = tree_state(install(mn))
    r = mn.run("copycds", "-n", name, "-a", "x86_64", str(media[key]))
    assert r.rc == 1 and r.out == "", r.out
    assert r.err.startswith(UNIDENTIFIED) and why in r.err and str(media[key]) in r.err, r.err
    assert len(r.err.splitlines()) == 1
    assert rows(mn, "osdistro") == {} and rows(mn, "osimage") == {}
    assert tree_state(install(mn)) == before and not leftovers(mn)


def test_inspection_says_what_the_media_is_and_copies_nothing(mn, media):
    iso = str(media["rhels9.4.iso"])
    r = mn.ok("copycds", "-i", iso)
    assert r.lines == [f"OS Image:{iso}", "DISTNAME:rhels9.4", "ARCH:x86_64", "DISCNO:ALL"]
    r = mn.ok("copycds", "-i", "-n", "rocky9.4", str(media["ubuntu24.04.1.iso"]))
    assert r.lines[1:] == ["DISTNAME:ubuntu24.04.1", "ARCH:x86_64", "DISCNO:1"]
    assert "--name is ignored" in r.err
    r = mn.run("copycds", "-i", str(media["unknown.iso"]))
    assert r.rc == 1 and "could not identify" in r.err
    copied = [p for p in install(mn).glob("*/*") if p.parent.name != "postscripts"]
    assert not copied and rows(mn, "osdistro") == {}  # (xcatconfig ships postscripts/)


# ---- what must fail, and leave everything as it was -----------------------------------------
@pytest.mark.parametrize("key,words", [
    ("unknown.iso", ["could not identify the ISO supplied", "unknown.iso", "-n <osver>"]),
    ("unknown", ["could not identify the ISO supplied", "tree-unknown"]),
    ("garbage.iso", ["garbage.iso", "not a readable ISO 9660 image"]),
])
def test_media_that_cannot_be_used_is_an_error_naming_it(mn, media, key, words):
    before = tree_state(mn.root)
    r = mn.run("copycds", str(media[key]))
    assert r.rc == 1 and all(w in r.err for w in words), r.err
    assert r.out == "" and rows(mn, "osdistro") == {} and rows(mn, "osimage") == {}
    assert {k for k in tree_state(mn.root) if "/install/" in f"/{k}"} == \
        {k for k in before if "/install/" in f"/{k}"}


def test_a_missing_source_is_named(mn, tmp_path):
    r = mn.run("copycds", str(tmp_path / "nope.iso"))
    assert r.rc == 1 and "unable to find/read" in r.err and "nope.iso" in r.err


def test_a_truncated_iso_leaves_the_previous_tree(mn, media, tmp_path):
    mn.ok("copycds", str(media["rocky-big.iso"]))
    dest = install(mn, "rocky9.4", "x86_64")
    before = tree_state(dest)
    cut = tmp_path / "cut.iso"
    data = media["rocky-big.iso"].read_bytes()
    cut.write_bytes(data[: len(data) - (2 << 20)])
    r = mn.run("copycds", str(cut))
    assert r.rc == 1 and "cut.iso" in r.err and "truncated" in r.err, r.err
    assert "Media copy operation successful" not in r.out
    assert tree_state(dest) == before and not leftovers(mn)


def test_a_copy_that_fails_half_way_leaves_no_half_tree(mn_sqlite, media, tmp_path,
                                                        monkeypatch):
    """The file data ends early while copying (the early size check is switched off to get
    there): the temporary tree goes, the previous tree stays."""
    mn = mn_sqlite
    mn.ok("copycds", str(media["rocky-big.iso"]))
    dest = install(mn, "rocky9.4", "x86_64")
    before = tree_state(dest)
    cut = tmp_path / "cut.iso"
    data = media["rocky-big.iso"].read_bytes()
    cut.write_bytes(data[: len(data) - (1 << 20)])
    monkeypatch.setattr(IsoMedia, "_check_size", lambda self: None)
    # the cut also took .treeinfo (xorriso puts the dot files last): name the media
    r = mn.run("copycds", "-n", "rocky9.4", "-a", "x86_64", str(cut))
    assert r.rc == 1 and "truncated or damaged" in r.err and "of its" in r.err, r.err
    assert tree_state(dest) == before and not leftovers(mn)


def test_nonoverwrite_stops_when_this_disc_is_in_already(mn, media):
    mn.ok("copycds", str(media["alma8.10.iso"]))
    marker = install(mn, "alma8.10/x86_64/images/pxeboot/vmlinuz")
    inode = marker.stat().st_ino
    r = mn.ok("copycds", "-w", str(media["alma8.10.iso"]))
    assert r.lines == ["The disc iso has already been copied in!"]
    assert marker.stat().st_ino == inode  # not copied again
    mn.ok("copycds", str(media["alma8.10.iso"]))
    assert marker.stat().st_ino != inode  # without -w it is


def test_a_later_disc_of_a_set_adds_to_the_first(mn_sqlite, media, tmp_path):
    mn = mn_sqlite
    disc2 = tmp_path / "disc2"
    (disc2 / ".disk").mkdir(parents=True)
    info = (media["debian12.5.0"] / ".disk/info").read_text()
    (disc2 / ".disk/info").write_text(info.replace("Binary-1", "Binary-2"))
    (disc2 / "pool/main/z").mkdir(parents=True)
    (disc2 / "pool/main/z/zsh_5.9-4_amd64.deb").write_bytes(b"disc two\n")
    mn.ok("copycds", str(media["debian12.5.0.iso"]))
    dest = install(mn, "debian12.5.0", "x86_64")
    first = tree_state(dest)
    r = mn.ok("copycds", str(disc2))
    assert r.lines[0] == "Copying media to /install/debian12.5.0/x86_64"
    after = tree_state(dest)
    assert after["pool/main/z/zsh_5.9-4_amd64.deb"] == b"disc two\n"
    assert all(after[k] == v for k, v in first.items() if k not in (".disk/info",
                                                                    ".fingerprint"))
    assert len((dest / ".fingerprint").read_text().strip(",").split(",")) == 2
    again = mn.ok("copycds", "-w", str(media["debian12.5.0.iso"]))
    assert again.lines == ["The disc iso has already been copied in!"]


def test_the_temporary_tree_of_a_copy_that_died_is_removed(mn_sqlite, media):
    stale = install(mn_sqlite, "rocky9.4", ".x86_64.copycds-dead")
    (stale / "images").mkdir(parents=True)
    mn_sqlite.ok("copycds", str(media["rocky9.4.iso"]))
    assert not stale.exists() and install(mn_sqlite, "rocky9.4/x86_64/.treeinfo").is_file()


def test_a_path_option_copies_there_and_links_the_default(mn, media):
    r = mn.ok("copycds", "-p", "/install/mirrors/rocky", str(media["rocky9.4.iso"]))
    assert r.lines[0] == "Copying media to /install/mirrors/rocky"
    assert install(mn, "rocky9.4/x86_64/images/pxeboot/vmlinuz").is_file()  # via the link
    assert rows(mn, "osdistro")["rocky9.4-x86_64"]["dirpaths"] == "/install/mirrors/rocky"
    r = mn.ok("copycds", "-p", "/srv/rocky", str(media["rocky9.4.iso"]))
    assert "not a subdirectory under /install" in r.err
    assert rows(mn, "osdistro")["rocky9.4-x86_64"]["dirpaths"] == \
        "/install/mirrors/rocky,/srv/rocky"


def test_a_directory_copycds_did_not_make_is_never_replaced(mn, media):
    keep = mn.root / "srv/data"
    keep.mkdir(parents=True)
    (keep / "precious").write_text("mine\n")
    r = mn.run("copycds", "-p", "/srv/data", str(media["rocky9.4.iso"]))
    assert r.rc == 1 and "not replacing it" in r.err and "Copying" not in r.out
    assert (keep / "precious").read_text() == "mine\n" and len(list(keep.iterdir())) == 1
    assert rows(mn, "osdistro") == {}


@pytest.mark.parametrize("make", ["file", "link to a file", "fifo"])
def test_a_path_option_naming_something_not_a_directory_is_refused(mn, media, make):
    """-p /etc/passwd (under the test's root) must not swap the file for the media tree."""
    etc = mn.root / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/bash\n")
    target = etc / ("passwd" if make == "file" else "target")
    if make == "link to a file":
        target.symlink_to("passwd")
    elif make == "fifo":
        os.mkfifo(target)
    before = tree_state(etc), tree_state(install(mn))
    mode = target.lstat().st_mode
    path = "/" + str(target.relative_to(mn.root))
    r = mn.run("copycds", "-p", path, str(media["rocky9.4.iso"]))
    assert r.rc == 1 and str(target) in r.err and "not a directory" in r.err, r.err
    assert "Copying" not in r.out
    assert (etc / "passwd").read_text() == "root:x:0:0::/root:/bin/bash\n"
    assert target.lstat().st_mode == mode
    assert (tree_state(etc), tree_state(install(mn))) == before
    assert not list(etc.glob(".*")) and rows(mn, "osdistro") == {}


def test_the_default_link_a_path_option_made_is_replaced_by_a_copy_there(mn_sqlite, media):
    mn = mn_sqlite
    mn.ok("copycds", "-p", "/install/mirrors/rocky", str(media["rocky9.4.iso"]))
    default = install(mn, "rocky9.4", "x86_64")
    assert default.is_symlink()
    mn.ok("copycds", str(media["rocky9.4.iso"]))
    assert not default.is_symlink() and (default / ".treeinfo").is_file()
    assert install(mn, "mirrors/rocky/.treeinfo").is_file()  # the -p copy stays


def test_a_link_out_of_the_media_is_not_copied(mn_sqlite, media, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(media["rocky9.4"], tree, symlinks=True)
    (tree / "evil").symlink_to("/etc")
    (tree / "images/up").symlink_to("../../..")
    r = mn_sqlite.ok("copycds", str(tree))
    assert "evil -> /etc" in r.err and "images/up -> ../../.." in r.err
    dest = install(mn_sqlite, "rocky9.4", "x86_64")
    assert not os.path.lexists(dest / "evil") and not os.path.lexists(dest / "images/up")


def escapes(dest):
    """Links in ``dest`` whose real target lies outside it."""
    real = os.path.realpath(dest)
    return [str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_symlink()
            and not (os.path.realpath(p) + "/").startswith(real + "/")]


def chain_tree(base, media_tree, hops=15):
    """Media whose link ``y`` looks inside by its words but leaves the tree: every pass
    through ``x/deep/l2`` (a link back to the top) makes three of the '..' that follow climb
    above the tree, to /etc in the end."""
    tree = base / "chain"
    shutil.copytree(media_tree, tree, symlinks=True)
    (tree / "x/deep").mkdir(parents=True)
    (tree / "x/deep/l2").symlink_to("../..")
    (tree / "y").symlink_to("x/deep/l2/" * hops + "../" * (3 * hops) + "etc")
    (tree / "z").symlink_to("x/deep/l2/images")  # through a link, and inside: kept
    assert os.path.realpath(tree / "y") == "/etc"
    return tree


@pytest.mark.parametrize("kind", ["directory", "iso"])
def test_a_link_that_leaves_the_media_through_another_link_is_not_copied(
        mn_sqlite, media, tmp_path, kind):
    tree = chain_tree(tmp_path, media["rocky9.4"])
    source = tree if kind == "directory" else build_iso(tree, tmp_path / "chain.iso", "CHAIN")
    r = mn_sqlite.ok("copycds", str(source))
    assert r.lines[-1] == "Media copy operation successful"
    assert "link y -> x/deep/l2/x/deep/l2/" in r.err and "points outside the media" in r.err
    dest = install(mn_sqlite, "rocky9.4", "x86_64")
    assert not os.path.lexists(dest / "y") and escapes(dest) == []
    assert os.readlink(dest / "x/deep/l2") == "../.."
    assert (dest / "z/pxeboot/vmlinuz").read_bytes() == b"fake kernel\n"
    assert "link z " not in r.err and "link x/deep/l2 " not in r.err


def test_links_of_a_merged_tree_are_checked_where_they_really_lead(mn_sqlite, media,
                                                                   tmp_path):
    """A later disc's link is harmless on its own media but leaves the tree through a link
    the first copy holds (a tree an older copycds made, or an admin planted): the copy
    resolves every link in the finished tree and drops those that leave it."""
    mn = mn_sqlite
    mn.ok("copycds", str(media["debian12.5.0.iso"]))
    dest = install(mn, "debian12.5.0", "x86_64")
    (dest / "x/deep").mkdir(parents=True)
    (dest / "x/deep/l2").symlink_to("../..")
    (dest / "old").symlink_to("/etc")
    disc2 = tmp_path / "disc2"
    (disc2 / ".disk").mkdir(parents=True)
    info = (media["debian12.5.0"] / ".disk/info").read_text()
    (disc2 / ".disk/info").write_text(info.replace("Binary-1", "Binary-2"))
    (disc2 / "y").symlink_to("x/deep/l2/" * 15 + "../" * 45 + "etc")
    r = mn.ok("copycds", str(disc2))
    assert r.lines[-1] == "Media copy operation successful"
    assert "link y -> x/deep/l2/" in r.err and "points outside the media" in r.err
    assert "/install/debian12.5.0/x86_64: link old -> /etc of the previous copy" in r.err
    assert not os.path.lexists(dest / "y") and not os.path.lexists(dest / "old")
    assert escapes(dest) == [] and os.readlink(dest / "debian") == "."


def test_a_relative_path_is_made_full_by_the_command(mn, media, monkeypatch):
    monkeypatch.chdir(media["ubuntu24.04.1.iso"].parent)
    r = mn.ok("copycds", "-i", "ubuntu24.04.1.iso")
    assert r.lines[0] == f"OS Image:{media['ubuntu24.04.1.iso']}"


def test_through_xcatd_only_root_may_copy(mn_daemon, media, tmp_path, monkeypatch):
    mn_daemon.ok("chtab", "priority=5", "policy.name=bob", "policy.commands=copycds",
                 "policy.rule=allow")
    home = tmp_path / "home-bob"
    issue_client_cert(mn_daemon.paths, "bob", home / ".xcat")
    monkeypatch.setenv("HOME", str(home))
    deadline = time.monotonic() + 30
    while True:  # the daemon may take a moment to see the new policy row
        r = mn_daemon.run("copycds", str(media["rocky9.4.iso"]))
        if "only root" in r.err or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.rc == 1 and "only root" in r.err, r.err
    assert not install(mn_daemon, "rocky9.4").exists()
    assert rows(mn_daemon, "osdistro") == {}


# ---- the media module ---------------------------------------------------------------------
@pytest.mark.parametrize("rock_ridge,joliet,kind", [(True, True, "rr_path"),
                                                    (False, True, "joliet_path"),
                                                    (False, False, "iso_path")])
def test_names_come_from_rock_ridge_then_joliet_then_iso9660(media, tmp_path, rock_ridge,
                                                             joliet, kind):
    iso = build_iso(media["rocky9.4"], tmp_path / "x.iso", "X", rock_ridge=rock_ridge,
                    joliet=joliet)
    with open_media(str(iso)) as m:
        assert m.kind == kind
        assert identify(m).osvers == "rocky9.4"
        assert m.get("images/pxeboot/vmlinuz").kind == "file"


@pytest.mark.parametrize("osvers,arch,kernel,initrd", [
    ("rocky9.4", "x86_64", "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"),
    ("alma8.10", "aarch64", "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"),
    ("rhels9.4", "x86_64", "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"),
    ("debian12.5.0", "x86_64", "install.amd/vmlinuz", "install.amd/initrd.gz"),
    ("debian12.5.0", "arm64", "install.a64/vmlinuz", "install.a64/initrd.gz"),
    ("ubuntu24.04.1", "x86_64", "casper/vmlinuz", "casper/initrd"),
])
def test_boot_files(osvers, arch, kernel, initrd):
    assert boot_files(osvers, arch) == (kernel, initrd)


def test_boot_files_of_an_unknown_os_name_it():
    with pytest.raises(XcatError, match=r"sles15\.5"):
        boot_files("sles15.5", "x86_64")


@pytest.mark.parametrize("distro,arch", [("rocky9.4", "aarch64"), ("debian12.5.0", "arm64"),
                                         ("ubuntu24.04.1", "arm64"), ("alma8.10", "x86_64")])
def test_fake_trees_carry_their_boot_files_and_are_recognised(tmp_path, distro, arch):
    tree = build_tree(tmp_path / "t", distro, arch)
    with open_media(str(tree)) as m:
        d = identify(m)
    assert (d.osvers, d.arch) == (distro, {"arm64": "aarch64"}.get(arch, arch))
    assert all((tree / rel).is_file() for rel in boot_files(distro, arch))


def test_inside_tree_is_a_regular_file_really_inside(tmp_path):
    tree = tmp_path / "tree"
    (tree / "images/pxeboot").mkdir(parents=True)
    (tree / "images/pxeboot/vmlinuz").write_bytes(b"k")
    (tmp_path / "secret").write_text("s")
    (tree / "up").symlink_to("..")
    (tree / "file-link").symlink_to("images/pxeboot/vmlinuz")
    (tree / "dir-link").symlink_to("images")
    (tree / "back").symlink_to(".")
    os.mkfifo(tree / "fifo")
    (tmp_path / "via-link").symlink_to(tree)  # a tree reached through a link (-p's default)
    (tmp_path / "other").mkdir()
    (tmp_path / "other/f").write_text("f")
    (tree / "out").symlink_to(tmp_path / "other")
    cases = [
        (tree / "images/pxeboot/vmlinuz", tree, True),
        (tree / "dir-link/pxeboot/vmlinuz", tree, True),  # a link inside the tree, to it
        (tree / "back/images/pxeboot/vmlinuz", tree, True),
        (tmp_path / "via-link/images/pxeboot/vmlinuz", tmp_path / "via-link", True),
        (tree / "images/pxeboot/vmlinuz", tmp_path / "via-link", True),
        (tree / "file-link", tree, False),  # the file itself is a link
        (tree / "up/secret", tree, False),
        (tree / "images/../../secret", tree, False),
        (tree / "out/f", tree, False),
        (tree / "images/pxeboot", tree, False),  # a directory
        (tree, tree, False),
        (tree / "fifo", tree, False),
        (tree / "missing", tree, False),
        (tree / "images/pxeboot/vmlinuz/x", tree, False),
        (tmp_path / "secret", tree, False),
        (tree / "images/pxeboot/vmlinuz", tmp_path / "no-such-tree", False),
        (tree / "images/pxeboot/vmlinuz", tree / "images/pxeboot/vmlinuz", False),
    ]
    assert [(str(p.relative_to(tmp_path)), inside_tree(p, t)) for p, t, _ in cases] == \
        [(str(p.relative_to(tmp_path)), want) for p, t, want in cases]
