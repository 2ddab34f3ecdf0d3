"""nodeset: chain semantics, each boot loader's files, stat/next/offline, a failing render that
keeps a node's old files, and DHCP told about the nodes (a real Kea in a namespace)."""
import hashlib
import json
import os
import re
import shutil

import pytest
from support.cluster import GENESIS, INSTALL_IMAGE, install_image, netboot

IMG = INSTALL_IMAGE
STATE = "install rocky9.4-x86_64-compute"
#: Three nodes, one per boot loader; an install osimage with its copied media; genesis.
pytestmark = pytest.mark.cluster(install_image("n[1-3]"), netboot(n2="grub2", n3="pxe"),
                                 GENESIS)


def tftp(mn, rel):
    return mn.root / "tftpboot" / rel


def chain(mn, node):
    rows = mn.db.rows("chain", keys=[node])
    return (rows[0]["currstate"], rows[0]["currchain"]) if rows else (None, None)


def token_in(text):
    return re.search(r"xcattoken=(\S+)", text).group(1)


# ---- osimage ----------------------------------------------------------------------------------
def test_osimage_writes_install_and_boot_files_and_moves_the_chain(cluster):
    r = cluster.ok("nodeset", "n1", f"osimage={IMG}")
    assert r.lines == [f"n1: {STATE}"]
    assert chain(cluster, "n1") == (STATE, "boot")

    script = tftp(cluster, "xcat/xnba/nodes/n1").read_text()
    assert script.startswith(f"#!ipxe\n#{STATE}\n")
    assert f"kernel http://10.77.0.1:80/tftpboot/xcat/osimage/{IMG}/vmlinuz" in script
    assert f"initrd --name initrd.img http://10.77.0.1:80/tftpboot/xcat/osimage/{IMG}/" \
           "initrd.img" in script
    assert "inst.ks=http://10.77.0.1:80/install/autoinst/n1" in script
    assert "xcatcallback=http://10.77.0.1:80/xcat/callback/n1" in script
    assert oct(tftp(cluster, "xcat/xnba/nodes/n1").stat().st_mode & 0o777) == "0o600"

    token = token_in(script)
    auto = cluster.root / "install/autoinst/n1"
    assert oct(auto.stat().st_mode & 0o777) == "0o600"
    assert "rootpw" in auto.read_text()
    # only the token's hash is stored, and the stored command line is without it
    assert cluster.db.rows("bootstate", keys=["n1"])[0]["tokenhash"] == \
        hashlib.sha256(token.encode()).hexdigest()
    bp = cluster.db.rows("bootparams", keys=["n1"])[0]
    assert token not in repr(cluster.db.rows("bootparams")) and "xcattoken" not in bp["kcmdline"]
    assert bp["kernel"] == f"xcat/osimage/{IMG}/vmlinuz"
    nt = cluster.db.rows("nodetype", keys=["n1"])[0]
    assert (nt["provmethod"], nt["os"], nt["profile"]) == (IMG, "rocky9.4", "compute")
    assert cluster.db.rows("noderes", keys=["n1"])[0]["current_osimage"] == IMG
    assert tftp(cluster, f"xcat/osimage/{IMG}/vmlinuz").read_bytes() == b"KERNEL" * 100


def test_an_ipv6_management_address_is_bracketed_in_urls(cluster):
    cluster.ok("nodech", "n1", "noderes.xcatmaster=fd77::1")
    cluster.ok("nodeset", "n1", f"osimage={IMG}")
    script = tftp(cluster, "xcat/xnba/nodes/n1").read_text()
    assert f"kernel http://[fd77::1]:80/tftpboot/xcat/osimage/{IMG}/vmlinuz" in script
    assert "xcatcallback=http://[fd77::1]:80/xcat/callback/n1" in script


def test_each_node_gets_a_fresh_token(cluster):
    cluster.ok("nodeset", "n1", f"osimage={IMG}")
    first = token_in(tftp(cluster, "xcat/xnba/nodes/n1").read_text())
    cluster.ok("nodeset", "n1", f"osimage={IMG}")
    assert token_in(tftp(cluster, "xcat/xnba/nodes/n1").read_text()) != first


def test_the_kernel_is_copied_only_when_it_changed(cluster):
    cluster.ok("nodeset", "n1", f"osimage={IMG}")
    kernel = tftp(cluster, f"xcat/osimage/{IMG}/vmlinuz")
    inode = kernel.stat().st_ino
    cluster.ok("nodeset", "n1,n2", f"osimage={IMG}")
    assert kernel.stat().st_ino == inode
    src = cluster.root / "install/rocky9.4/x86_64/images/pxeboot/vmlinuz"
    src.write_bytes(b"NEWKERNEL")
    cluster.ok("nodeset", "n1", f"osimage={IMG}")
    assert kernel.read_bytes() == b"NEWKERNEL"


def test_grub2_and_pxelinux_nodes_get_files_under_their_loaders_names(cluster):
    r = cluster.ok("nodeset", "n[1-3]", f"osimage={IMG}")
    assert r.lines == [f"n{i}: {STATE}" for i in (1, 2, 3)]
    grub = tftp(cluster, "boot/grub2/n2").read_text()
    assert grub.startswith(f"#{STATE}\n")
    assert "set root=tftp,10.77.0.1" in grub and f"linux /xcat/osimage/{IMG}/vmlinuz" in grub
    assert "xcattoken=" in grub and f"initrd /xcat/osimage/{IMG}/initrd.img" in grub
    for alias in ("grub.cfg-01-52-54-00-00-00-12", "grub.cfg-0A4D000C"):
        assert tftp(cluster, f"boot/grub2/{alias}").read_text() == grub
    assert os.readlink(tftp(cluster, "boot/grub2/grub2-n2")) == "grub2.x86_64"

    pxe = tftp(cluster, "pxelinux.cfg/n3").read_text()
    assert pxe.startswith(f"#{STATE}\nDEFAULT xCAT\n")
    assert f"KERNEL xcat/osimage/{IMG}/vmlinuz" in pxe
    assert f"APPEND initrd=xcat/osimage/{IMG}/initrd.img inst.ks=" in pxe
    for alias in ("01-52-54-00-00-00-13", "0A4D000D"):
        assert tftp(cluster, f"pxelinux.cfg/{alias}").read_text() == pxe


def test_boot_gives_every_loader_a_local_boot_script(cluster):
    cluster.ok("nodeset", "n[1-3]", f"osimage={IMG}")
    r = cluster.ok("nodeset", "n[1-3]", "boot")
    assert r.lines == ["n1: boot", "n2: boot", "n3: boot"]
    assert tftp(cluster, "xcat/xnba/nodes/n1").read_text() == "#!ipxe\n#boot\nexit\n"
    assert tftp(cluster, "boot/grub2/n2").read_text() == "#boot\nset timeout=5\nexit\n"
    assert not tftp(cluster, "boot/grub2/grub2-n2").is_symlink()   # firmware goes to disk
    assert "LOCALBOOT 0" in tftp(cluster, "pxelinux.cfg/01-52-54-00-00-00-13").read_text()
    assert chain(cluster, "n1") == ("boot", "boot")
    assert cluster.db.rows("bootstate", keys=["n1"])[0]["tokenhash"] is None


def test_unchanged_boot_files_are_not_rewritten(cluster):
    cluster.ok("nodeset", "n[1-3]", "boot")
    files = [tftp(cluster, p) for p in ("xcat/xnba/nodes/n1", "boot/grub2/n2",
                                        "pxelinux.cfg/n3", "pxelinux.cfg/0A4D000D")]
    before = [f.stat().st_ino for f in files]
    cluster.ok("nodeset", "n[1-3]", "boot")
    assert [f.stat().st_ino for f in files] == before


def test_stat_reads_back_what_the_boot_files_say(cluster):
    assert cluster.ok("nodeset", "n[1-3]", "stat").lines == [f"n{i}: offline" for i in (1, 2, 3)]
    cluster.ok("nodeset", "n1,n3", f"osimage={IMG}")
    cluster.ok("nodeset", "n2", "boot")
    assert cluster.ok("nodeset", "n[1-3]", "stat").lines == [
        f"n1: {STATE}", "n2: boot", f"n3: {STATE}"]


def test_offline_removes_the_boot_files(cluster):
    cluster.ok("nodeset", "n[1-3]", f"osimage={IMG}")
    assert cluster.ok("nodeset", "n[1-3]", "offline").lines == [
        "n1: offline", "n2: offline", "n3: offline"]
    assert not tftp(cluster, "xcat/xnba/nodes/n1").exists()
    assert not tftp(cluster, "boot/grub2/grub.cfg-01-52-54-00-00-00-12").exists()
    assert not tftp(cluster, "boot/grub2/grub2-n2").is_symlink()
    assert not tftp(cluster, "pxelinux.cfg/0A4D000D").exists()
    assert cluster.ok("nodeset", "n1", "stat").lines == ["n1: offline"]
    assert chain(cluster, "n1")[0] == "offline"


def test_shell_boots_genesis_with_its_destiny(cluster):
    assert cluster.ok("nodeset", "n1", "shell").lines == ["n1: shell"]
    script = tftp(cluster, "xcat/xnba/nodes/n1").read_text()
    assert "tftpboot/xcat/genesis.kernel.x86_64 " in script
    assert "destiny=shell" in script and "xcatd=10.77.0.1:3001" in script
    (cluster.root / "tftpboot/xcat/genesis.kernel.x86_64").unlink()
    r = cluster.run("nodeset", "n1", "runcmd=bmcsetup")
    assert r.rc == 1 and "n1: Error:" in r.err and "genesis.kernel.x86_64" in r.err
    assert chain(cluster, "n1")[0] == "shell"   # unchanged


# ---- chains ------------------------------------------------------------------------------------
def test_a_comma_chain_keeps_the_rest_for_next(cluster):
    assert cluster.ok("nodeset", "n1", f"runcmd=bmcsetup,osimage={IMG}").lines == [
        "n1: runcmd=bmcsetup"]
    assert chain(cluster, "n1") == ("runcmd=bmcsetup", f"osimage={IMG}")
    assert cluster.ok("nodeset", "n1", "next").lines == [f"n1: {STATE}"]
    assert chain(cluster, "n1") == (STATE, "boot")
    assert cluster.ok("nodeset", "n1", "next").lines == ["n1: boot"]
    assert chain(cluster, "n1") == ("boot", "boot")            # the last state sticks
    assert cluster.ok("nodeset", "n1", "next").lines == ["n1: boot"]


def test_next_starts_from_chain_chain_and_needs_one(cluster):
    cluster.ok("chtab", "node=compute", "chain.chain=shell,boot")
    assert cluster.ok("nodeset", "n1", "next").lines == ["n1: shell"]
    assert chain(cluster, "n1") == ("shell", "boot")
    cluster.ok("chtab", "node=compute", "chain.chain=")
    r = cluster.run("nodeset", "n2", "next")
    assert r.rc == 1 and "n2: Error: no chain to move along" in r.err


def test_osimage_alone_uses_the_nodes_provmethod(cluster):
    cluster.ok("nodech", "n1", f"nodetype.provmethod={IMG}")
    r = cluster.run("nodeset", "n1,n2", "osimage")
    assert r.rc == 1 and "nodetype.provmethod for nodes: n2." in r.err
    assert not tftp(cluster, "xcat/xnba/nodes/n1").exists()     # nothing changed
    cluster.ok("nodech", "n2", f"noderes.next_osimage={IMG}")
    assert cluster.ok("nodeset", "n1,n2", "osimage").lines == [f"n1: {STATE}", f"n2: {STATE}"]


@pytest.mark.parametrize("state,words", [
    ("osimage=nosuch", "Cannot find the OS image nosuch on the osimage table."),
    ("dance", "Unknown state dance requested"),
    (f"osimage={IMG},dance", "Unknown state dance requested"),
    ("runcmd=", "runcmd= needs a value"),
    (f"osimage={IMG},osimage=gone", "Cannot find the OS image gone on the osimage table."),
    ("boot,shell,dance", "Unknown state dance requested"),
    ("boot,osimage", "nodetype.provmethod for nodes: n1 n2 n3."),
])
def test_bad_states_and_images_are_named_and_change_nothing(cluster, state, words):
    cluster.ok("nodeset", "n1", "boot")
    before = tftp(cluster, "xcat/xnba/nodes/n1").read_text()
    r = cluster.run("nodeset", "n[1-3]", state)
    assert r.rc == 1 and words in r.err, r.err
    assert tftp(cluster, "xcat/xnba/nodes/n1").read_text() == before
    assert chain(cluster, "n1") == ("boot", None) and chain(cluster, "n2") == (None, None)


def test_a_later_bare_osimage_may_use_the_image_an_earlier_state_sets(cluster):
    r = cluster.ok("nodeset", "n1", f"osimage={IMG},boot,osimage")
    assert r.lines == [f"n1: {STATE}"]
    assert chain(cluster, "n1") == (STATE, "boot,osimage")


def test_an_osimage_that_is_not_install_netboot_or_statelite_is_refused(cluster):
    cluster.ok("chtab", "imagename=sc", "osimage.provmethod=sysclone",
               "osimage.osvers=rocky9.4", "osimage.osarch=x86_64", "osimage.profile=compute")
    r = cluster.run("nodeset", "n1", "osimage=sc")
    assert r.rc == 1 and "provmethod=sysclone is not supported" in r.err


def test_install_netboot_and_statelite_mean_the_nodes_own_osimage(cluster):
    """xCAT's older words: each node's nodetype.provmethod, which must be that kind of image;
    a node without one gets xCAT's deprecation line, and the others proceed."""
    diskless(cluster)
    cluster.ok("nodech", "n1", f"nodetype.provmethod={IMG}")
    cluster.ok("nodech", "n2", f"nodetype.provmethod={DL}")
    r = cluster.run("nodeset", "n[1-3]", "install")
    assert r.rc == 1 and r.lines == [f"n1: {STATE}"]
    assert f"n2: Error: its osimage {DL} (nodetype.provmethod) is a netboot image, not an " \
           "install one" in r.err
    assert ('n3: Error: The options "install", "netboot", and "statelite" have been '
            'deprecated, use "osimage=<osimage_name>" instead') in r.err
    assert cluster.ok("nodeset", "n2", "netboot").lines == [f"n2: netboot {DL}"]
    assert chain(cluster, "n2") == (f"netboot {DL}", f"osimage={DL}")
    r = cluster.run("nodeset", "n1", "install,dance")   # the rest of the chain is checked
    assert r.rc == 1 and "Unknown state dance requested" in r.err


@pytest.mark.parametrize("argv", [(), ("boot", "shell")])
def test_not_exactly_one_state_is_xcats_invalid_argument_and_usage(cluster, argv):
    r = cluster.run("nodeset", "n1", *argv)
    assert r.rc == 1
    assert r.err.strip() == f"Error: Invalid argument: '{' '.join(argv)}'"
    assert r.out.strip() == ("Usage: nodeset <noderange> [shell|boot|runcmd=bmcsetup|"
                             "osimage[=<imagename>]|offline|shutdown|stat]")


def test_stat_takes_xcats_verbose_flag(cluster):
    cluster.ok("nodeset", "n1", "boot")
    assert cluster.ok("nodeset", "n1", "stat", "-V").lines == ["n1: boot"]


def test_a_netboot_value_xcat_has_for_power_is_a_warning_and_the_rest_proceed(cluster):
    cluster.ok("nodech", "n1", "noderes.netboot=petitboot")
    cluster.ok("nodech", "n3", "noderes.netboot=nosuch")
    r = cluster.run("nodeset", "n[1-3]", f"osimage={IMG}")
    assert r.rc == 1 and r.lines == [f"n2: {STATE}"]
    assert (f"n1: Warning: petitboot might be invalid when provisioning {IMG},valid options: "
            '"xnba,grub2,grub2-tftp,grub2-http,pxe". For more details see the \'netboot\' '
            'description in the output of "tabdump -d noderes".') in r.err, r.err
    assert "n3: Error: noderes.netboot 'nosuch' is not supported" in r.err
    assert chain(cluster, "n1") == (None, None)       # left as it was
    cluster.ok("nodech", "n3", "noderes.netboot=xnba")
    r = cluster.run("nodeset", "n1,n3", "boot")
    assert r.rc == 0 and r.lines == ["n3: boot"] and "n1: Warning: petitboot" in r.err


DL = "debian12-x86_64-netboot-compute"


def diskless(cluster, packed: bool = True):
    """A netboot osimage, and (``packed``) the files packimage leaves: kernel, initrd, the
    root image and its manifest."""
    cluster.ok("chtab", f"imagename={DL}", "osimage.provmethod=netboot", "osimage.osvers=debian12",
               "osimage.osarch=x86_64", "osimage.profile=compute", "osimage.imagetype=linux")
    where = cluster.root / "install/netboot/debian12/x86_64/compute"
    if packed:
        where.mkdir(parents=True)
        (where / "kernel").write_bytes(b"KERNEL")
        (where / "initrd-stateless.gz").write_bytes(b"INITRD")
        (where / "rootimg.sfs").write_bytes(b"SQUASHFS")
        sha = hashlib.sha256(b"SQUASHFS").hexdigest()
        (where / "manifest.json").write_text(json.dumps({
            "kernel": {"file": "kernel"}, "initrd": {"file": "initrd-stateless.gz"},
            "rootimg": {"file": "rootimg.sfs", "sha256": sha}}))
    return where


def test_a_netboot_image_that_is_not_packed_names_the_commands_to_run(cluster):
    diskless(cluster, packed=False)
    r = cluster.run("nodeset", "n1", f"osimage={DL}")
    assert r.rc == 1 and f"osimage {DL} is not packed" in r.err
    assert f"run genimage {DL} and packimage {DL}" in r.err


def test_a_netboot_image_boots_its_kernel_with_the_image_url_sha256_and_a_token(cluster):
    diskless(cluster)
    assert cluster.ok("nodeset", "n1", f"osimage={DL}").lines == [f"n1: netboot {DL}"]
    script = (cluster.root / "tftpboot/xcat/xnba/nodes/n1").read_text()
    sha = hashlib.sha256(b"SQUASHFS").hexdigest()
    url = "http://10.77.0.1:80/install/netboot/debian12/x86_64/compute/rootimg.sfs"
    assert f"xcat.image={url} xcat.sha256={sha} xcat.node=n1" in script
    assert "xcatcallback=http://10.77.0.1:80/xcat/callback/n1 xcattoken=" in script
    assert f"/tftpboot/xcat/osimage/{DL}/kernel" in script
    assert (cluster.root / f"tftpboot/xcat/osimage/{DL}/initrd-stateless.gz").read_bytes() == \
        b"INITRD"
    assert chain(cluster, "n1") == (f"netboot {DL}", f"osimage={DL}")
    assert cluster.ok("nodeset", "n1", "stat").lines == [f"n1: netboot {DL}"]


def test_a_netboot_manifest_without_a_sha256_is_refused(cluster):
    where = diskless(cluster)
    (where / "manifest.json").write_text(json.dumps({
        "kernel": {"file": "kernel"}, "initrd": {"file": "initrd-stateless.gz"},
        "rootimg": {"file": "rootimg.sfs", "sha256": "x"}}))
    r = cluster.run("nodeset", "n1", f"osimage={DL}")
    assert r.rc == 1 and "holds no sha256" in r.err


def test_missing_media_fails_the_image_nodes_and_keeps_their_state(cluster):
    cluster.ok("nodeset", "n1", "boot")
    shutil.rmtree(cluster.root / "install/rocky9.4")
    r = cluster.run("nodeset", "n1", f"osimage={IMG}")
    assert r.rc == 1 and "n1: Error:" in r.err and "vmlinuz" in r.err and "copycds" in r.err
    assert chain(cluster, "n1")[0] == "boot"


# ---- one node's failure ------------------------------------------------------------------------
def custom_template(mn, first_line):
    """The site's own compute template: the shipped one with ``first_line`` on top."""
    from xcatd.provision.osfamily import shipped_dir
    shipped = (shipped_dir("install") / "rh/compute.rhels9.tmpl").read_text()
    custom = mn.root / "install/custom/install/rh"
    custom.mkdir(parents=True, exist_ok=True)
    (custom / "compute.rhels9.tmpl").write_text(first_line + "\n" + shipped)


@pytest.mark.parametrize("first_line,words", [
    ('{% if node == "n2" %}{{ nosuchvariable }}{% endif %}', "compute.rhels9.tmpl:1"),
    ('{% if node == "n2" %}bogus_kickstart_command{% endif %}', "kickstart rejected"),
])
def test_a_node_whose_install_file_fails_keeps_its_old_files_and_chain(cluster, first_line,
                                                                       words):
    cluster.ok("nodeset", "n1,n2", "boot")
    old = tftp(cluster, "boot/grub2/n2").read_text()
    custom_template(cluster, first_line)
    r = cluster.run("nodeset", "n1,n2", f"osimage={IMG}")
    assert r.rc == 1
    assert r.lines == [f"n1: {STATE}"]
    assert re.search(rf"^n2: Error: .*{words}", r.err, re.M), r.err
    assert tftp(cluster, "boot/grub2/n2").read_text() == old
    assert chain(cluster, "n2")[0] == "boot"
    assert not (cluster.root / "install/autoinst/n2").exists()
    assert chain(cluster, "n1")[0] == STATE



def test_a_site_boot_template_overrides_the_shipped_one(cluster):
    """templates/boot/xnba.j2 is the shipped iPXE script; the site's custom template
    directory wins, as for every generated file."""
    custom = cluster.root / "install/custom/templates/boot"
    custom.mkdir(parents=True)
    (custom / "xnba.j2").write_text("#!ipxe\n#{{ state }}\necho site script for {{ server }}\n"
                                    "{% if local %}exit{% else %}chain {{ kernel_url }}"
                                    "{% endif %}\n")
    cluster.ok("nodeset", "n1", f"osimage={IMG}")
    script = tftp(cluster, "xcat/xnba/nodes/n1").read_text()
    assert script.startswith(f"#!ipxe\n#{STATE}\necho site script for 10.77.0.1\nchain http")
    assert cluster.ok("nodeset", "n1", "stat").lines == [f"n1: {STATE}"]


def test_a_broken_site_boot_template_is_an_error_naming_file_and_line(cluster):
    cluster.ok("nodeset", "n1", "boot")
    old = tftp(cluster, "xcat/xnba/nodes/n1").read_text()
    custom = cluster.root / "install/custom/templates/boot"
    custom.mkdir(parents=True)
    (custom / "xnba.j2").write_text("#!ipxe\n#{{ state }}\n{% if local %}exit\n")
    r = cluster.run("nodeset", "n1", f"osimage={IMG}")
    assert r.rc == 1
    assert re.search(r"^n1: Error: boot file template: .*xnba\.j2:\d+: ", r.err, re.M), r.err
    assert tftp(cluster, "xcat/xnba/nodes/n1").read_text() == old
    assert chain(cluster, "n1")[0] == "boot"

BOOTFILE = {"n1": "xcat/xnba/nodes/n1", "n2": "boot/grub2/n2", "n3": "pxelinux.cfg/n3"}


def installed_state(mn, node):
    """What a node has from its last nodeset: install file, boot file, token hash, chain."""
    return ((mn.root / f"install/autoinst/{node}").read_text(),
            tftp(mn, BOOTFILE[node]).read_text(),
            mn.db.rows("bootstate", keys=[node])[0]["tokenhash"], chain(mn, node))


def files_under(mn, *trees):
    return {str(p.relative_to(mn.root)): (os.readlink(p) if p.is_symlink() else p.read_bytes(),
                                         p.lstat().st_mode)
            for t in trees for p in (mn.root / t).rglob("*") if not p.is_dir()}


def leftovers(mn):
    return sorted(p.name for p in (mn.root / "install/autoinst").iterdir()
                  if p.name.startswith("."))


def test_a_node_whose_boot_file_cannot_be_written_keeps_its_install_file_and_token(cluster):
    """n3's MAC-named pxelinux file cannot be written (a directory is in its way) after its
    own file was: n3 gets its old boot file back and keeps its install file, token and
    chain, so its next install's report is still accepted; n1 and n2 go on."""
    cluster.ok("nodeset", "n[1-3]", f"osimage={IMG}")
    before = {n: installed_state(cluster, n) for n in ("n1", "n2", "n3")}
    token = token_in(before["n3"][1])
    assert token in before["n3"][0]
    alias = tftp(cluster, "pxelinux.cfg/01-52-54-00-00-00-13")
    alias.unlink()
    alias.mkdir()
    r = cluster.run("nodeset", "n[1-3]", f"osimage={IMG}")
    assert r.rc == 1 and r.lines == [f"n1: {STATE}", f"n2: {STATE}"]
    assert re.search(r"^n3: Error: cannot write its boot files: .*01-52-54-00-00-00-13", r.err,
                     re.M), r.err
    assert installed_state(cluster, "n3") == before["n3"]
    assert before["n3"][2] == hashlib.sha256(token.encode()).hexdigest()
    for n in ("n1", "n2"):
        after = installed_state(cluster, n)
        assert after[0] != before[n][0] and after[2] != before[n][2]
        assert token_in(after[1]) in after[0]
        assert after[2] == hashlib.sha256(token_in(after[1]).encode()).hexdigest()
    assert leftovers(cluster) == []


def test_a_failed_commit_puts_every_nodes_files_back(cluster_sqlite):
    """The database refuses the run (a trigger stands in for a full disk): no node may be
    left with an install file whose token the database does not know."""
    mn = cluster_sqlite
    mn.ok("nodeset", "n[1-3]", f"osimage={IMG}")
    before = {n: installed_state(mn, n) for n in ("n1", "n2", "n3")}
    files = files_under(mn, "install/autoinst", "tftpboot/xcat/xnba", "tftpboot/boot",
                        "tftpboot/pxelinux.cfg")
    with mn.db.begin() as conn:
        for when in ("INSERT", "UPDATE"):
            conn.exec_driver_sql(f"CREATE TRIGGER full_{when} BEFORE {when} ON bootstate "
                                 "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    r = mn.run("nodeset", "n[1-3]", f"osimage={IMG}")
    assert r.rc == 1 and r.lines == [], r.err
    assert {n: installed_state(mn, n) for n in ("n1", "n2", "n3")} == before
    assert files_under(mn, "install/autoinst", "tftpboot/xcat/xnba", "tftpboot/boot",
                       "tftpboot/pxelinux.cfg") == files
    assert leftovers(mn) == []


def second_image(mn, image="rocky9.3-x86_64-install-compute"):
    mn.ok("chtab", f"imagename={image}", "osimage.provmethod=install",
          "osimage.osvers=rocky9.3", "osimage.osarch=x86_64", "osimage.profile=compute",
          "osimage.imagetype=linux")
    pxeboot = mn.root / "install/rocky9.3/x86_64/images/pxeboot"
    pxeboot.mkdir(parents=True)
    (pxeboot / "vmlinuz").write_bytes(b"KERNEL93")
    (pxeboot / "initrd.img").write_bytes(b"INITRD93")
    return image


@pytest.mark.parametrize("plant", ["file-link", "dir-link", "inside-link"])
def test_a_kernel_that_is_a_link_or_leads_outside_the_tree_is_not_copied(cluster, plant):
    """A crafted ISO must not make nodeset copy a management-node file (/etc/shadow) into
    the world-readable TFTP tree: that image's nodes fail, naming the file; the others go
    on."""
    shadow = cluster.root / "shadow"
    shadow.write_text("root:$6$SECRET")
    pxeboot = cluster.root / "install/rocky9.4/x86_64/images/pxeboot"
    if plant == "file-link":
        (pxeboot / "vmlinuz").unlink()
        (pxeboot / "vmlinuz").symlink_to(shadow)
    elif plant == "dir-link":
        elsewhere = cluster.root / "elsewhere"
        elsewhere.mkdir()
        shutil.copy(shadow, elsewhere / "vmlinuz")
        shutil.copy(pxeboot / "initrd.img", elsewhere / "initrd.img")
        shutil.rmtree(pxeboot)
        pxeboot.symlink_to(elsewhere)
    else:
        (pxeboot / "vmlinuz").rename(pxeboot / "vmlinuz-real")
        (pxeboot / "vmlinuz").symlink_to("vmlinuz-real")
    other = second_image(cluster)
    cluster.ok("nodech", "n1", f"nodetype.provmethod={IMG}")
    cluster.ok("nodech", "n2", f"nodetype.provmethod={other}")
    r = cluster.run("nodeset", "n1,n2", "osimage")
    assert r.rc == 1 and r.lines == ["n2: install rocky9.3-x86_64-compute"]
    assert re.search(rf"^n1: Error: osimage {IMG}: \S*/images/pxeboot/vmlinuz is a symlink "
                     "or lies outside", r.err, re.M), r.err
    assert not tftp(cluster, f"xcat/osimage/{IMG}/vmlinuz").exists()
    assert "SECRET" not in "".join(p.read_text(errors="replace") for p in
                                   tftp(cluster, "").rglob("*") if p.is_file())
    assert chain(cluster, "n1") == (None, None)
    assert tftp(cluster, f"xcat/osimage/{other}/vmlinuz").read_bytes() == b"KERNEL93"


def test_writes_take_the_nodes_locks_and_stat_does_not(cluster):
    from xcatd.base.request import Request
    from xcatd.handler import registry
    spec = registry()["nodeset"]
    assert spec.writes(Request("nodeset", "n1", {"state": "boot"}))
    assert not spec.writes(Request("nodeset", "n1", {"state": "stat"}))


# ---- DHCP ----------------------------------------------------------------------------------------
@pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(p) for p in (
    "ip", "ss", "kea-dhcp4", "dhclient")), reason="needs root, iproute2, Kea and dhclient")
def test_the_dhcp_server_learns_the_nodes_nodeset_set(cluster_sqlite, tmp_path):
    from xcatd.lab.netns import Lab
    mn = cluster_sqlite
    with Lab(workdir=tmp_path / "lab") as lab:
        p = lab.prefix
        mn.ok("chtab", "key=dhcpsetup", "site.value=y")
        mn.ok("chtab", "key=dhcpbackend", "site.value=kea")
        mn.ok("chtab", "key=master", f"site.value={lab.server_ip}")
        mn.ok("mkdef", "-t", "network", "-o", "lab", f"net={lab.subnet}",
              "mask=255.255.255.0", f"mgtifname={lab.server_if}")
        mn.ok("chtab", "node=compute", rf"hosts.ip=|\D+(\d+)|{p}.($1+10)|")
        mn.ok("nodeadd", "n4", "groups=other", f"hosts.ip={p}.14",
              "mac.mac=52:54:00:00:00:14", "nodetype.arch=x86_64")
        mn.ok("makedhcp", "-n")
        mn.ok("nodeadd", "n5", "groups=other", f"hosts.ip={p}.15",   # after makedhcp -n
              "mac.mac=52:54:00:00:00:15", "nodetype.arch=x86_64")
        lab.start_kea(mn.root / "etc/kea/kea-dhcp4.conf")
        assert lab.dhclient("52:54:00:00:00:15", timeout=3) is None

        r = mn.ok("nodeset", "n5", f"osimage={IMG}")
        assert r.lines == [f"n5: {STATE}"]
        got = lab.dhclient("52:54:00:00:00:15", user_class="iPXE")
        assert (got["ip"], got["hostname"]) == (f"{p}.15", "n5")
        assert got["filename"] == f"http://{lab.server_ip}:80/tftpboot/xcat/xnba/boot.ipxe"

        mn.ok("nodeset", "n5", "offline")                     # makedhcp -d, as in xCAT
        assert lab.dhclient("52:54:00:00:00:15", timeout=3) is None
        assert lab.dhclient("52:54:00:00:00:14")["ip"] == f"{p}.14"   # the others stay


def test_nodeset_speaks_up_when_the_dhcp_server_is_unreachable(cluster):
    cluster.ok("chtab", "key=dhcpsetup", "site.value=y")
    cluster.ok("chtab", "key=omapiport", "site.value=1")
    cluster.ok("mkdef", "-t", "network", "-o", "mgt", "net=10.77.0.0", "mask=255.255.255.0")
    r = cluster.run("nodeset", "n1", "boot")
    assert r.rc == 1 and r.lines == ["n1: boot"]
    assert "Cannot reach dhcpd's OMAPI at 127.0.0.1:1" in r.err
