"""Object definition templates (lsdef/mkdef --template, as in xCAT 2.14+), shipped as data in
share/templates/objects/, and mkdef -u for osimages."""
import pytest

from xcatd.db.objects import objtype
from xcatd.db.objtemplates import MANDATORY, OPTIONAL, templates

SHIPPED = ["cec-template", "hmc-template", "onieswitch", "pdu-template",
           "ppc64le-openbmc-template", "ppc64le-template", "ppc64lekvmguest-template",
           "switch-template", "x86_64-template", "x86_64kvmguest-template"]


def test_every_shipped_template_is_a_valid_node_definition():
    found = templates()
    assert sorted(found) == SHIPPED
    node_attrs = set(objtype("node").attrs)
    for t in found.values():
        assert t.objtype == "node"
        assert set(t.attrs) <= node_attrs, t.name
        assert "groups" in t.attrs, t.name
        for v in t.attrs.values():
            assert not v.startswith('"'), t.name


def test_lsdef_template_lists_the_node_templates(mn_sqlite):
    r = mn_sqlite.ok("lsdef", "--template")
    assert r.lines == [f"{name}  (node)" for name in SHIPPED]
    assert mn_sqlite.ok("lsdef", "--template", "-a").lines == r.lines
    assert mn_sqlite.ok("lsdef", "-t", "node", "--template").lines == r.lines


def test_lsdef_template_name_shows_it_whole(mn_sqlite):
    lines = mn_sqlite.ok("lsdef", "--template", "switch-template").lines
    assert lines[0] == "Object name: switch-template"
    assert "    mgt=switch" in lines and "    nodetype=switch" in lines
    assert any(x.startswith("    ip=OPTIONAL:") for x in lines)
    assert lines[1:] == sorted(lines[1:])
    pw = mn_sqlite.ok("lsdef", "--template", "hmc-template", "-i", "password").lines
    assert pw[1].startswith("    password=MANDATORY:")  # text, not a secret to mask


def test_lsdef_template_unknown_is_xcats_error(mn_sqlite):
    r = mn_sqlite.run("lsdef", "--template", "nosuch-template")
    assert r.rc == 1 and r.err == "Error: Could not find nosuch-template in xCAT templates.\n"


def test_mkdef_from_a_template(mn):
    r = mn.ok("mkdef", "-t", "node", "cn1", "--template", "x86_64-template",
              "ip=10.0.0.11", "bmc=10.2.0.11", "netboot=grub2")
    assert r.lines == ["1 object definitions have been created or modified."]
    lines = mn.ok("lsdef", "cn1").lines
    for expected in ("    arch=x86_64", "    bmc=10.2.0.11", "    groups=all", "    mgt=ipmi",
                     "    ip=10.0.0.11", "    netboot=grub2", "    serialspeed=115200"):
        assert expected in lines
    assert not [x for x in lines if MANDATORY in x or OPTIONAL in x or "bmcusername" in x]


def test_mkdef_template_names_a_missing_mandatory_attribute(mn_sqlite):
    r = mn_sqlite.run("mkdef", "cn1", "--template", "x86_64-template", "ip=10.0.0.11")
    assert r.rc == 1 and r.err == 'Error: The attribute "bmc" must be specified!\n'
    assert mn_sqlite.ok("nodels").out == ""


def test_mkdef_template_can_be_an_existing_node(mn_sqlite):
    mn_sqlite.ok("mkdef", "cn1", "--template", "x86_64kvmguest-template", "ip=10.0.0.11",
                 "vmhost=kvm1", "vmnics=br0", "mac=52:54:00:00:00:11")
    mn_sqlite.ok("nodech", "cn1", "nodelist.status=booted")
    mn_sqlite.ok("mkdef", "cn2", "--template", "cn1", "ip=10.0.0.12",
                 "mac=52:54:00:00:00:12")
    one = [x for x in mn_sqlite.ok("lsdef", "cn1").lines[1:] if "status" not in x]
    two = mn_sqlite.ok("lsdef", "cn2").lines[1:]
    assert [x for x in two if "ip=" not in x and "mac=" not in x] == \
        [x for x in one if "ip=" not in x and "mac=" not in x]
    assert "    ip=10.0.0.12" in two and not [x for x in two if "status" in x]


@pytest.mark.parametrize("args, message", [
    (["cn9", "--template", "nosuch"],
     "Error: Could not find nosuch in xCAT templates.\nCould not find the template object "
     "named 'nosuch' of type 'node'.\n"),
    (["cn9", "--template"], "Error: no object definition template specified for mkdef "
                            "--template!\n"),
    (["cn9", "--template", "a,b"], "Error: Only 1 template object definition should be "
                                   "specified for mkdef!\n"),
])
def test_mkdef_template_errors(mn_sqlite, args, message):
    r = mn_sqlite.run("mkdef", *args)
    assert r.rc == 1 and r.err == message


def test_mkdef_template_cannot_be_the_node_made(mn_sqlite):
    mn_sqlite.ok("mkdef", "cn1", "groups=all")
    r = mn_sqlite.run("mkdef", "-f", "cn1", "--template", "cn1")
    assert r.rc == 1 and r.err == ("Error: The template node cannot be the same as the node "
                                   "to create.\n")


def test_a_pdu_from_its_template(mn_sqlite):
    mn_sqlite.ok("mkdef", "pdu1", "--template", "pdu-template", "ip=10.3.0.1")
    assert mn_sqlite.ok("gettab", "node=pdu1", "pdu.pdutype").out == "irpdu\n"
    assert mn_sqlite.ok("nodels", "pdu1", "nodehm.mgt", "hosts.ip").lines == [
        "pdu1: nodehm.mgt: pdu", "pdu1: hosts.ip: 10.3.0.1"]


# ---- mkdef -u -------------------------------------------------------------------------------
def test_mkdef_u_fills_an_install_image(mn):
    mn.ok("mkdef", "img1", "-u", "profile=compute", "provmethod=install", "osvers=rocky9.4",
          "osarch=x86_64")
    assert mn.ok("lsdef", "-t", "osimage", "img1").lines == [
        "Object name: img1", "    imagetype=linux", "    osarch=x86_64",
        "    osdistroname=rocky9.4-x86_64", "    osname=Linux", "    osvers=rocky9.4",
        "    otherpkgdir=/install/post/otherpkgs/rocky9.4/x86_64",
        "    pkgdir=/install/rocky9.4/x86_64", "    profile=compute",
        "    provmethod=install"]


def test_mkdef_u_netboot_and_the_sites_own_files(mn_sqlite):
    custom = mn_sqlite.root / "install/custom/netboot/rh"
    custom.mkdir(parents=True)
    (custom / "compute.rhels9.pkglist").write_text("bash\n")
    mn_sqlite.ok("mkdef", "-t", "osimage", "-o", "img2", "-u", "profile=compute",
                 "provmethod=netboot", "osvers=rocky9.4", "osarch=x86_64")
    lines = mn_sqlite.ok("lsdef", "-t", "osimage", "img2").lines
    assert "    pkglist=/install/custom/netboot/rh/compute.rhels9.pkglist" in lines
    assert "    rootimgdir=/install/netboot/rocky9.4/x86_64/compute" in lines
    assert "    provmethod=netboot" in lines


def test_mkdef_u_takes_the_management_nodes_os_and_arch(mn_sqlite):
    (mn_sqlite.root / "etc/os-release").write_text('ID="debian"\nVERSION_ID="12"\n')
    mn_sqlite.ok("mkdef", "img3", "-u", "profile=compute", "provmethod=install")
    out = mn_sqlite.ok("lsdef", "-t", "osimage", "img3", "-i", "osvers,osarch").lines
    assert out[1] == "    osvers=debian12"
    assert out[2].startswith("    osarch=") and out[2] != "    osarch="


def test_chdef_u_keeps_the_images_own_values(mn_sqlite):
    mn_sqlite.ok("mkdef", "img1", "-u", "profile=compute", "provmethod=install",
                 "osvers=debian12", "osarch=x86_64")
    custom = mn_sqlite.root / "install/custom/install/debian"
    custom.mkdir(parents=True)
    (custom / "compute.debian12.tmpl").write_text("x\n")
    mn_sqlite.ok("chdef", "-t", "osimage", "img1", "-u")
    assert mn_sqlite.ok("lsdef", "-t", "osimage", "img1", "-i", "template,osvers").lines == [
        "Object name: img1", "    template=/install/custom/install/debian/compute.debian12.tmpl",
        "    osvers=debian12"]


@pytest.mark.parametrize("args, message", [
    (["img1", "-u", "profile=compute"], "The profile and provmethod are all need to be "
                                        "specified."),
    (["img1", "-u", "profile=compute", "provmethod=diskless"],
     "The provmethod: diskless is incorrect."),
    (["-t", "node", "img1", "-u", "profile=compute", "provmethod=install"],
     "Option '-u' only work for objtype 'osimage'."),
    (["img1", "-u", "profile=compute", "provmethod=install", "osvers=rocky9", "imagetype=NIM"],
     "The input imagetype:NIM not match linux."),
])
def test_mkdef_u_errors(mn_sqlite, args, message):
    r = mn_sqlite.run("mkdef", *args)
    assert r.rc == 1 and r.err == f"Error: {message}\n"
    assert mn_sqlite.ok("tabdump", "osimage").lines[1:] == []
