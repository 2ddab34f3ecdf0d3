"""Statelite: the litefile rules (each error names its entry), ALL vs group vs image rows,
litetree priority and $table.column substitution, the per-node persistent area, lslite's
output and liteimg on a small fake image root."""
import os
import stat

import pytest
from support.cluster import build, command, mkdef

from xcatd.provision.statelite import (
    TABLE_FILE,
    LiteError,
    LiteFile,
    check_entries,
    lite_sources,
    litefile_entries,
    load_entries,
    node_plan,
    parse_options,
    state_mount,
)

IMAGE = "debian12-x86_64-statelite-compute"
ROOTIMGDIR = "/install/netboot/debian12/x86_64/compute"


def lite(image: str, file: str, options: str = "") -> tuple[str, ...]:
    return ("chtab", f"image={image},file={file}", f"litefile.options={options}")


def tree(priority: str, directory: str, image: str = "") -> tuple[str, ...]:
    return ("chtab", f"priority={priority}", f"litetree.directory={directory}",
            f"litetree.image={image}")


def define_image(mn, name: str = IMAGE, method: str = "statelite", groups: str = ""):
    extra = [f"groups={groups}"] if groups else []
    build(mn, mkdef("osimage", name, "imagetype=linux", f"provmethod={method}",
                    "osvers=debian12", "osarch=x86_64", "profile=compute",
                    f"rootimgdir={ROOTIMGDIR}", *extra))


@pytest.mark.parametrize("text, canon", [
    ("", "tmpfs"), ("tmpfs", "tmpfs"), ("rw", "rw"), ("rw,tmpfs", "tmpfs,rw"),
    ("persistent", "persistent"), ("ro", "ro"), ("con", "con"), ("link", "link"),
    ("ro,link", "link,ro"), ("link, persistent", "link,persistent"), ("con,link", "link,con"),
    ("localdisk", "localdisk"), ("bogus", "bogus"),
])
def test_options_are_spelled_as_xcat_does(text, canon):
    assert parse_options(text) == canon


def E(file, options="tmpfs", image="ALL"):
    return LiteFile(image, file, options)


@pytest.mark.parametrize("entries, names, words", [
    ([E("etc/hosts")], "'ALL etc/hosts tmpfs'", "absolute path"),
    ([E("/etc/../shadow")], "/etc/../shadow", "'..'"),
    ([E("/etc/x", "rwx")], "'ALL /etc/x rwx'", "unknown option 'rwx'"),
    ([E("/etc/ssh/", "con")], "'ALL /etc/ssh/ con'", "cannot be used on a directory"),
    ([E("/etc/ssh/", "link,con")], "/etc/ssh/ link,con", "cannot be used on a directory"),
    ([E("/var/", "persistent"), E("/var/log/", "tmpfs")], "'ALL /var/log/ tmpfs'",
     "must be persistent too"),
    ([E("/opt/", "link"), E("/opt/app.conf", "tmpfs")], "'ALL /opt/app.conf tmpfs'",
     "must have a link option"),
    ([E("/opt/", "tmpfs"), E("/opt/app.conf", "link,ro")], "'ALL /opt/app.conf link,ro'",
     "must have no link option"),
])
def test_each_rule_names_the_bad_entry(entries, names, words):
    errors = check_entries(entries)
    assert len(errors) == 1, errors
    assert names in errors[0] and words in errors[0]


@pytest.mark.parametrize("entries", [
    [E("/etc/hosts"), E("/etc/ssh/", "tmpfs,rw"), E("/etc/motd", "con"), E("/root/", "rw")],
    [E("/var/", "persistent"), E("/var/lib/x", "persistent")],
    [E("/var/", "link,persistent"), E("/var/lib/x", "link,persistent")],
    [E("/opt/", "link"), E("/opt/a", "link,con"), E("/opt/b/", "link,ro")],
    [E("/scratch/", "localdisk"), E("/etc/ro.conf", "ro")],
])
def test_good_lists_pass(entries):
    assert check_entries(entries) == []


def test_image_rows_beat_group_rows_beat_all(mn_sqlite):
    mn = mn_sqlite
    define_image(mn, groups="lite")
    define_image(mn, "other-statelite", groups="lite2")
    for argv in (lite("ALL", "/etc/hosts"), lite("ALL", "/etc/motd", "con"),
                 lite("lite", "/etc/motd", "ro"), lite(IMAGE, "/etc/hosts", "persistent"),
                 lite("other-statelite", "/etc/other"), lite("lite2", "/etc/fstab")):
        mn.ok(*argv)
    got = {e.file: (e.image, e.options) for e in litefile_entries(mn.db, IMAGE)[0]}
    assert got == {"/etc/hosts": (IMAGE, "persistent"), "/etc/motd": ("lite", "ro")}
    other = {e.file for e in litefile_entries(mn.db, "other-statelite")[0]}
    assert other == {"/etc/hosts", "/etc/motd", "/etc/other", "/etc/fstab"}


def test_a_path_listed_twice_at_one_level_is_an_error(mn_sqlite):
    mn = mn_sqlite
    define_image(mn)
    mn.ok(*lite("ALL", "/etc/ssh/"))
    mn.ok(*lite("ALL", "/etc/ssh", "persistent"))
    with pytest.raises(LiteError) as exc:
        load_entries(mn.db, IMAGE)
    assert "/etc/ssh" in str(exc.value) and "already listed" in str(exc.value)


def test_litetree_by_priority_with_node_values(cluster_sqlite):
    mn = cluster_sqlite
    define_image(mn, groups="lite")
    build(mn, command("chdef", "compute", "nfsserver=10.0.0.1"),
          command("chdef", "n2", "nfsserver=10.0.0.2"))
    for argv in (tree("10", "$noderes.nfsserver:/lite/$node"), tree("2", "mn:/statelite/all"),
                 tree("1.5", "mn:/lite/group", "lite"), tree("3", "x:/other", "someimage"),
                 tree("4", "mn:/all", "ALL")):
        mn.ok(*argv)

    class Ctx:
        db = mn.db

    assert lite_sources(Ctx, "n1", IMAGE) == [
        "mn:/lite/group", "mn:/statelite/all", "mn:/all", "10.0.0.1:/lite/n1"]
    assert lite_sources(Ctx, "n2", IMAGE)[-1] == "10.0.0.2:/lite/n2"
    mn.ok(*tree("11", "$noderes.nosuch:/x"))
    with pytest.raises(LiteError, match=r"litetree priority 11: '\$noderes.nosuch'"):
        lite_sources(Ctx, "n1", IMAGE)
    mn.ok("chtab", "-d", "priority=11", "litetree")
    mn.ok(*tree("12", "$noderes.tftpserver:/x"))
    with pytest.raises(LiteError, match=r"noderes\.tftpserver is not set for n1"):
        lite_sources(Ctx, "n1", IMAGE)


def test_persistent_area_per_node(cluster_sqlite):
    mn = cluster_sqlite
    build(mn, command("chdef", "compute", "nfsserver=10.0.0.9"))
    mn.ok("chtab", "node=compute", "statelite.statemnt=$noderes.nfsserver:/state/",
          "statelite.mntopts=soft")
    got = state_mount(mn.db, "n3")
    assert (got.statemnt, got.mntopts, got.location) == (
        "10.0.0.9:/state/", "soft", "10.0.0.9:/state/n3")
    assert state_mount(mn.db, "n20") is None
    mn.ok("chtab", "node=n20", "statelite.statemnt=nocolon")
    with pytest.raises(LiteError, match=r"statelite\.statemnt of n20 is 'nocolon'"):
        state_mount(mn.db, "n20")


def test_the_node_plan_resolves_servers_and_lists_parents_first(cluster_sqlite):
    mn = cluster_sqlite
    define_image(mn)
    build(mn, command("chdef", "compute", "nfsserver=10.0.0.9"),
          command("chdef", "n2", "ip=10.0.0.2"))
    for argv in (lite("ALL", "/etc/ssh/", "persistent"),
                 lite("ALL", "/etc/ssh/sshd_config", "persistent"), lite(IMAGE, "/etc/motd", "con"),
                 tree("2", "$noderes.nfsserver:/lite/$node", IMAGE), tree("1", "n2:/lite/all"),
                 tree("3", "/bare")):
        mn.ok(*argv)
    mn.ok("chtab", "node=compute", "statelite.statemnt=$noderes.nfsserver:/state",
          "statelite.mntopts=vers=4.2, soft")
    assert node_plan(mn.db, "n3", IMAGE, "192.0.2.1").splitlines() == [
        f"# statelite of n3 ({IMAGE})", "state 10.0.0.9 /state n3 vers=4.2,soft",
        "tree 10.0.0.2 /lite/all -",           # a node's name: its hosts.ip
        "tree 10.0.0.9 /lite/n3 -", "tree 192.0.2.1 /bare -",   # no server: the node's MN
        "file con /etc/motd", "file persistent /etc/ssh/", "file persistent /etc/ssh/sshd_config"]
    mn.ok(*tree("4", "nosuchhost.invalid:/x"))
    with pytest.raises(LiteError, match=r"litetree priority 4 .*cannot resolve the server "
                                        r"'nosuchhost\.invalid'"):
        node_plan(mn.db, "n3", IMAGE, "192.0.2.1")
    mn.ok("chtab", "-d", "priority=4", "litetree")
    mn.ok(*tree("5", "mn:relative/path"))
    with pytest.raises(LiteError, match=r"litetree priority 5 is 'mn:relative/path': the path "
                                        "must be absolute"):
        node_plan(mn.db, "n3", IMAGE, "192.0.2.1")
    mn.ok("chtab", "-d", "priority=5", "litetree")
    mn.ok("chtab", "-d", "node=compute", "statelite")
    with pytest.raises(LiteError, match=r"has persistent litefile entries, but n3 has no "
                                        r"statelite\.statemnt"):
        node_plan(mn.db, "n3", IMAGE, "192.0.2.1")
    mn.ok(*lite("ALL", "/etc/my file"))
    with pytest.raises(LiteError, match=r"'ALL /etc/my file tmpfs': the path must not hold "
                                        "white space"):
        node_plan(mn.db, "n3", IMAGE, "192.0.2.1")


def test_lslite_for_an_image_and_for_nodes(cluster_sqlite):
    mn = cluster_sqlite
    define_image(mn)
    build(mn, command("chdef", "n1", "provmethod=" + IMAGE),
          command("chdef", "n1", "nfsserver=10.0.0.1"))
    mn.ok("chtab", "node=n1", "statelite.statemnt=10.0.0.1:/state")
    mn.ok(*lite("ALL", "/etc/adjtime", "tmpfs,rw"))
    mn.ok(*lite("ALL", "/var/lib/data/", "persistent"))
    mn.ok(*tree("1", "MN:/etc"))
    mn.ok(*tree("2", "$noderes.nfsserver:/etc"))
    r = mn.ok("lslite", "-i", IMAGE)
    assert r.out.splitlines() == ["tmpfs,rw      /etc/adjtime",
                                  "persistent    /var/lib/data/"]
    r = mn.ok("lslite", "n1")
    assert r.out.splitlines() == [
        ">>>Node: n1", "", f"Osimage: {IMAGE}", "",
        "Persistent directory (statelite table):", "\t10.0.0.1:/state", "",
        "Litefiles (litefile table):", "\ttmpfs,rw      /etc/adjtime",
        "\tpersistent    /var/lib/data/", "",
        "Litetree path (litetree table):", "\t1,MN:/etc", "\t2,10.0.0.1:/etc", ""]
    r = mn.run("lslite", "n2")
    assert r.rc == 1 and "n2: Error: no statelite osimage" in r.err
    r = mn.run("lslite", "-i", "nosuchimage")
    assert r.rc == 1 and "nosuchimage" in r.err
    assert mn.run("lslite").rc == 1


def fake_root(mn):
    root = mn.root / ROOTIMGDIR.lstrip("/") / "rootimg"
    for d in ("etc/ssh", "usr/lib/app", "var/lib/data", "root/.ssh"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    (root / "etc/ssh/sshd_config").write_text("PermitRootLogin no\n")
    (root / "root/.ssh/authorized_keys").write_text("ssh-ed25519 AAAA test\n")
    os.chmod(root / "root/.ssh", 0o700)
    os.chmod(root / "root/.ssh/authorized_keys", 0o600)
    if os.geteuid() == 0:
        os.chown(root / "etc/ssh", 0, 4321)
        os.chown(root / "etc/ssh/sshd_config", 1234, 1234)
    (root / "usr/lib/app/app.conf").write_text("conf\n")
    os.symlink("usr/lib", root / "lib")            # merged /usr: /lib/app is /usr/lib/app
    os.symlink("/etc/hosts", root / "etc/hosts.link")
    return root


def test_liteimg_writes_the_list_and_the_defaults(mn_sqlite):
    mn = mn_sqlite
    define_image(mn)
    root = fake_root(mn)
    for argv in (lite("ALL", "/etc/hosts"), lite("ALL", "/root/.ssh/", "persistent"),
                 lite("ALL", "/lib/app/app.conf", "ro"), lite(IMAGE, "/etc/ssh/", "rw"),
                 lite("ALL", "/etc/hosts.link"), lite("ALL", "/etc/notthere", "tmpfs")):
        mn.ok(*argv)
    r = mn.ok("liteimg", IMAGE)
    assert "6 litefile entries" in r.out and "/etc/notthere is not in the image" in r.err
    assert "/lib/app/app.conf is ro, but the litetree table has no directory" in r.err
    lines = (root / TABLE_FILE).read_text().splitlines()
    assert lines == ["ALL /etc/hosts tmpfs", "ALL /etc/hosts.link tmpfs",
                     "ALL /etc/notthere tmpfs", f"{IMAGE} /etc/ssh/ rw",
                     "ALL /lib/app/app.conf ro", "ALL /root/.ssh/ persistent"]
    d = root / ".default"
    assert (d / "etc/hosts").read_text() == "127.0.0.1 localhost\n"
    assert (d / "etc/ssh/sshd_config").read_text() == "PermitRootLogin no\n"
    assert (d / "lib/app/app.conf").read_text() == "conf\n"
    assert os.readlink(d / "etc/hosts.link") == "/etc/hosts"   # the link itself, not followed
    assert stat.S_IMODE((d / "root/.ssh").stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "root/.ssh/authorized_keys").stat().st_mode) == 0o600
    assert not (d / "etc/notthere").exists()
    if os.geteuid() == 0:  # owners are kept (only root can give a file away)
        assert (d / "etc/ssh/sshd_config").stat().st_uid == 1234
        assert (d / "etc/ssh").stat().st_gid == 4321
    assert (root / "etc/hosts").read_text() == "127.0.0.1 localhost\n"  # the image is untouched
    # a rerun replaces the defaults: a dropped entry leaves no copy behind
    mn.ok("chtab", "-d", "image=ALL,file=/etc/hosts", "litefile")
    mn.ok(*tree("1", "mn:/lite"))
    r = mn.ok("liteimg", IMAGE)
    assert "litetree" not in r.err
    assert not (d / "etc/hosts").exists() and (d / "etc/ssh/sshd_config").exists()
    assert not (root / ".default.new").exists() and not (root / ".default.old").exists()


def test_liteimg_refuses_a_bad_list_and_writes_nothing(mn_sqlite):
    mn = mn_sqlite
    define_image(mn)
    root = fake_root(mn)
    mn.ok(*lite("ALL", "/etc/ssh/", "con"))
    mn.ok(*lite("ALL", "etc/hosts"))
    r = mn.run("liteimg", IMAGE)
    assert r.rc == 1
    assert "'ALL /etc/ssh/ con'" in r.err and "'ALL etc/hosts tmpfs'" in r.err
    assert not (root / ".default").exists() and not (root / TABLE_FILE).exists()


def test_liteimg_refuses_what_is_not_a_statelite_image(mn_sqlite):
    mn = mn_sqlite
    define_image(mn, "debian12-x86_64-netboot-compute", method="netboot")
    r = mn.run("liteimg", "debian12-x86_64-netboot-compute")
    assert r.rc == 1 and "is not a statelite image" in r.err
    r = mn.run("liteimg", "nosuch")
    assert r.rc == 1 and "Cannot find image 'nosuch'" in r.err
    define_image(mn)
    r = mn.run("liteimg", IMAGE)
    assert r.rc == 1 and "rootimg does not exist, run genimage" in r.err
    assert mn.run("liteimg").rc == 1


@pytest.mark.daemon
def test_liteimg_and_lslite_through_xcatd(mn_daemon):
    mn = mn_daemon
    define_image(mn)
    root = fake_root(mn)
    mn.ok(*lite("ALL", "/etc/hosts"))
    mn.ok("liteimg", IMAGE)
    assert (root / ".default/etc/hosts").exists()
    assert mn.ok("lslite", "-i", IMAGE).out == "tmpfs         /etc/hosts\n"
