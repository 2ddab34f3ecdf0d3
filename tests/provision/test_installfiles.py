"""Install files (kickstart, preseed, autoinstall): rendered for a fixture cluster_sqlite in bulk,
checked by the real validators (ksvalidator, debconf-set-selections, YAML), per-node values,
the root password, custom templates and the errors that name the bad part."""
import logging
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from support.cluster import (
    MASTER,
    NET,
    mgt_network,
    nodech,
    nodes,
    osimage,
    root_password,
    site,
)

with warnings.catch_warnings():  # deprecated in 3.11, the reference for $6$ hashes here
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

from xcatd.base.request import XcatError
from xcatd.provision import installfiles, installformats
from xcatd.provision.installfiles import (
    Rendered,
    install_kcmdline,
    render_install_files,
    validate,
    validate_rendered,
)

CLEAR = "Sup3r-Secret-Pw"
KSVALIDATOR = str(Path(sys.executable).with_name("ksvalidator"))
DEBCONF = shutil.which("debconf-set-selections")
IMAGES = {  # osimage name -> (osvers, kind, ksvalidator version)
    "rocky8": ("rocky8.10", "kickstart", "RHEL8"),
    "alma9": ("alma9.4", "kickstart", "RHEL9"),
    "rhels9": ("rhels9.4", "kickstart", "RHEL9"),
    "deb12": ("debian12.5", "preseed", None),
    "noble": ("ubuntu24.04", "autoinstall", None),
}


pytestmark = pytest.mark.cluster(
    site(master=MASTER, domain="hpc.example", nameservers="<xcatmaster>,10.77.0.2",
         timezone="Europe/Paris", httpport="8080"),
    root_password(CLEAR), mgt_network(gateway="10.77.0.254"),
    nodes("n[1-3]", ip=NET, mac=True), nodech("n2", "noderes.installnic=ens3"),
    *(osimage(name, osvers) for name, (osvers, _, _) in IMAGES.items()))


def callbacks(nodes):
    return {n: {"callback_url": f"http://10.77.0.1:8080/xcat/installed/{n}",
                "callback_token": f"tok-{n}-0123456789"} for n in nodes}


def render(mn, image, nodes=("n1", "n2", "n3"), extra=None):
    return render_install_files(mn.db, mn.paths, mn.db.site(), list(nodes), image,
                                callbacks(nodes) if extra is None else extra)


def ksvalidator(path, version):
    p = subprocess.run([KSVALIDATOR, "-v", version, str(path)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def check_with_real_tools(tmp_path, image, rendered):
    """Every file through the program that reads it for real."""
    _, kind, version = IMAGES[image]
    for node, files in rendered.files.items():
        for name, text in files.items():
            path = tmp_path / name.replace("/", "_")
            path.write_text(text)
            if kind == "kickstart":
                ksvalidator(path, version)
            elif kind == "preseed" and DEBCONF:
                p = subprocess.run([DEBCONF, "--checkonly", str(path)], capture_output=True,
                                   text=True)
                assert p.returncode == 0 and not p.stderr, p.stderr
            elif kind == "autoinstall":
                doc = yaml.safe_load(text)
                if name.endswith("user-data"):
                    assert text.startswith("#cloud-config\n")
                    assert doc["autoinstall"]["version"] == 1
                    assert doc["autoinstall"]["user-data"]["hostname"] == node
                else:
                    assert doc == {"instance-id": f"pyxcat-{node}", "local-hostname": node}
            validate(kind, text)


# ---- every kind, through its real validator ---------------------------------------------------
@pytest.mark.parametrize("static", [False, True], ids=["dhcp", "static"])
@pytest.mark.parametrize("image", list(IMAGES))
def test_every_kind_passes_its_real_validator(cluster_sqlite, tmp_path, image, static):
    if static:
        cluster_sqlite.ok("chtab", "key=managedaddressmode", "site.value=static")
    r = render(cluster_sqlite, image)
    assert r.kind == IMAGES[image][1] and not r.errors
    assert sorted(r.files) == ["n1", "n2", "n3"]
    check_with_real_tools(tmp_path, image, r)
    assert validate_rendered(r) == {}


def test_file_layout_per_kind(cluster_sqlite):
    assert render(cluster_sqlite, "alma9").files["n1"].keys() == {"n1"}
    assert render(cluster_sqlite, "deb12").files["n1"].keys() == {"n1"}
    assert render(cluster_sqlite, "noble").files["n1"].keys() == {"n1/user-data", "n1/meta-data"}


# ---- per-node values ----------------------------------------------------------------------
def test_kickstart_carries_each_nodes_own_values(cluster_sqlite):
    r = render(cluster_sqlite, "alma9")
    n1, n2 = r.files["n1"]["n1"], r.files["n2"]["n2"]
    assert "--device=52:54:00:00:00:11 --hostname=n1.hpc.example" in n1
    assert "--device=ens3 --hostname=n2.hpc.example" in n2  # noderes.installnic wins
    assert "url --url=http://10.77.0.1:8080/install/alma9.4/x86_64/BaseOS" in n1
    assert "--baseurl=http://10.77.0.1:8080/install/alma9.4/x86_64/AppStream" in n1
    assert "timezone Europe/Paris --utc" in n1 and "timesource --ntp-server=10.77.0.1" in n1
    assert ("-H 'Authorization: Bearer tok-n1-0123456789' -d status=installed "
            "http://10.77.0.1:8080/xcat/installed/n1") in n1
    assert "tok-n1-" not in n2 and "tok-n2-0123456789" in n2
    assert "@^minimal-environment" in n1  # the shipped pkglist beside the template
    assert r.boot["n2"]["kcmdline"] == (
        "inst.ks=http://10.77.0.1:8080/install/autoinst/n2 "
        "inst.repo=http://10.77.0.1:8080/install/alma9.4/x86_64 ip=ens3:dhcp")
    assert r.boot["n1"]["nic"] == "52:54:00:00:00:11"


def test_rhel8_kickstart_uses_rhel8_syntax(cluster_sqlite):
    text = render(cluster_sqlite, "rocky8").files["n1"]["n1"]
    assert text.startswith("#version=RHEL8\n")
    assert "timezone Europe/Paris --utc --ntpservers=10.77.0.1" in text
    assert "timesource" not in text


def test_static_addresses_come_from_hosts_and_networks(cluster_sqlite):
    cluster_sqlite.ok("chtab", "key=managedaddressmode", "site.value=static")
    ks = render(cluster_sqlite, "rhels9").files["n3"]["n3"]
    assert ("network --bootproto=static --device=52:54:00:00:00:13 --ip=10.77.0.13 "
            "--netmask=255.255.255.0 --gateway=10.77.0.254 "
            "--nameserver=10.77.0.1,10.77.0.2 --hostname=n3.hpc.example") in ks
    ud = yaml.safe_load(render(cluster_sqlite, "noble").files["n3"]["n3/user-data"])
    eth = ud["autoinstall"]["network"]["ethernets"]["install"]
    assert eth["match"] == {"macaddress": "52:54:00:00:00:13"}
    assert eth["addresses"] == ["10.77.0.13/24"]
    assert eth["routes"] == [{"to": "default", "via": "10.77.0.254"}]
    assert eth["nameservers"]["addresses"] == ["10.77.0.1", "10.77.0.2"]


def test_preseed_values_and_wget_fallback(cluster_sqlite):
    r = render(cluster_sqlite, "deb12")
    n1, n2 = r.files["n1"]["n1"], r.files["n2"]["n2"]
    assert "d-i netcfg/choose_interface select auto" in n1
    assert "d-i netcfg/choose_interface select ens3" in n2
    assert "d-i netcfg/hostname string n1\n" in n1
    assert "d-i netcfg/get_domain string hpc.example" in n1
    assert "d-i mirror/http/hostname string 10.77.0.1:8080" in n1
    assert "d-i mirror/http/directory string /install/debian12.5/x86_64" in n1
    assert "d-i mirror/suite string bookworm" in n1
    assert "d-i time/zone string Europe/Paris" in n1
    assert "in-target curl -fsS" in n1 and "--post-data=status=installed" in n1
    assert "--header='Authorization: Bearer tok-n1-0123456789'" in n1
    assert r.boot["n2"]["kcmdline"] == (
        "auto=true priority=critical url=http://10.77.0.1:8080/install/autoinst/n2 "
        "interface=ens3 hostname=n2")


def test_autoinstall_values(cluster_sqlite):
    r = render(cluster_sqlite, "noble")
    ud = yaml.safe_load(r.files["n2"]["n2/user-data"])["autoinstall"]
    assert ud["network"]["ethernets"]["install"] == {"match": {"name": "ens3"}, "dhcp4": True}
    assert ud["apt"]["primary"] == [{"arches": ["default"],
                                     "uri": "http://10.77.0.1:8080/install/ubuntu24.04/x86_64"}]
    assert ud["timezone"] == "Europe/Paris" and ud["user-data"]["fqdn"] == "n2.hpc.example"
    assert ud["late-commands"][-1] == (
        "curl -fsS --retry 10 --retry-delay 6 --connect-timeout 10 -X POST "
        "-H 'Authorization: Bearer tok-n2-0123456789' -d status=installed "
        "http://10.77.0.1:8080/xcat/installed/n2")
    assert r.boot["n1"]["file_url"] == "http://10.77.0.1:8080/install/autoinst/n1/"


def test_regex_values_on_groups_give_each_node_its_own(cluster_sqlite):
    cluster_sqlite.ok("nodeadd", "r2n[7-8]", "groups=rack")
    cluster_sqlite.ok("chtab", "node=rack", r"hosts.ip=|r(\d+)n(\d+)|10.77.($1).($2+100)|",
                      r"noderes.xcatmaster=|r(\d+)n\d+|10.77.($1).1|")
    cluster_sqlite.ok("mkdef", "-t", "network", "-o", "rack2", "net=10.77.2.0",
                      "mask=255.255.255.0", "domain=r2.hpc.example")
    r = render(cluster_sqlite, "alma9", ["r2n7", "r2n8"])
    assert not r.errors
    text = r.files["r2n8"]["r2n8"]
    assert "--hostname=r2n8.r2.hpc.example" in text  # networks.domain beats site.domain
    assert "url --url=http://10.77.2.1:8080/install/alma9.4/x86_64/BaseOS" in text
    assert r.boot["r2n7"]["repo_url"] == "http://10.77.2.1:8080/install/alma9.4/x86_64"
    assert "--device=link" in text  # neither a MAC nor an install NIC


# ---- the root password ---------------------------------------------------------------------
def every_text(r):
    return [t for files in r.files.values() for t in files.values()] + list(r.errors.values())


def test_password_is_crypted_once_and_never_in_clear(cluster_sqlite, caplog, monkeypatch):
    calls = []
    real = installfiles.crypt_password
    monkeypatch.setattr(installfiles, "crypt_password",
                        lambda *a: calls.append(1) or real(*a))
    caplog.set_level(logging.DEBUG)
    cluster_sqlite.ok("nodeadd", "n9", "groups=other")  # no address: an error entry
    for image in IMAGES:
        r = render(cluster_sqlite, image, ["n1", "n2", "n3", "n9"])
        texts = every_text(r) + [str(r.boot)]
        assert all(CLEAR not in t for t in texts)
        hashed = {line.split()[-1].strip('"') for t in texts for line in t.splitlines()
                  if "$6$" in line}
        assert len(hashed) == 1
        (h,) = hashed
        assert crypt.crypt(CLEAR, h) == h  # a SHA-512 crypt of the stored password
    assert len(calls) == len(IMAGES)
    assert CLEAR not in caplog.text


def test_a_stored_crypted_password_is_used_as_it_is(cluster_sqlite):
    stored = crypt.crypt("other", "$6$saltsalt$")
    cluster_sqlite.ok("chtab", "key=system", "passwd.username=root", f"passwd.password={stored}")
    assert f"rootpw --iscrypted {stored}\n" in render(cluster_sqlite, "alma9").files["n1"]["n1"]


def test_openssl_crypts_when_python_has_no_crypt(cluster_sqlite, monkeypatch):
    monkeypatch.setattr(installfiles, "_crypt_stdlib", lambda value, prefix: None)
    text = render(cluster_sqlite, "deb12").files["n1"]["n1"]
    (line,) = [ln for ln in text.splitlines() if "root-password-crypted" in ln]
    h = line.split()[-1]
    assert h.startswith("$6$") and crypt.crypt(CLEAR, h) == h and CLEAR not in text


def test_no_root_password_is_an_error_for_the_call(cluster_sqlite):
    cluster_sqlite.ok("chtab", "-d", "key=system", "passwd")
    with pytest.raises(XcatError, match="passwd key=system username=root"):
        render(cluster_sqlite, "alma9")


# ---- templates: the site's wins, errors name file and line ----------------------------------
def custom(mn, platform, name, text):
    d = mn.root / "install/custom/install" / platform
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(text)
    return d / name


def test_custom_template_wins_over_the_shipped_one(cluster_sqlite):
    custom(cluster_sqlite, "rh", "compute.rhels9.tmpl", "#version=RHEL9\n# custom {{ fqdn }}\n")
    assert render(cluster_sqlite, "alma9").files["n1"]["n1"] == \
        "#version=RHEL9\n# custom n1.hpc.example\n"
    # for Ubuntu a version-specific custom file beats the shipped compute.ubuntu.tmpl
    custom(cluster_sqlite, "ubuntu", "compute.ubuntu24.04.tmpl", "#cloud-config\n# mine\n")
    assert render(cluster_sqlite, "noble").files["n1"]["n1/user-data"] == "#cloud-config\n# mine\n"


def test_linuximage_template_names_the_file(cluster_sqlite):
    path = cluster_sqlite.root / "opt/mine.tmpl"
    path.parent.mkdir(parents=True)
    path.write_text("{{ node }} {{ ip }}\n")
    cluster_sqlite.ok("chdef", "-t", "osimage", "-o", "alma9", "template=/opt/mine.tmpl")
    assert render(cluster_sqlite, "alma9").files["n2"]["n2"] == "n2 10.77.0.12\n"
    cluster_sqlite.ok("chdef", "-t", "osimage", "-o", "alma9", "template=/opt/gone.tmpl")
    with pytest.raises(XcatError, match=re.escape("linuximage.template /opt/gone.tmpl")):
        render(cluster_sqlite, "alma9")


def test_a_template_syntax_error_names_file_and_line(cluster_sqlite):
    path = custom(cluster_sqlite, "rh", "compute.rhels9.tmpl", "text\nlang en\n{{ node }\nreboot\n")
    with pytest.raises(XcatError) as err:
        render(cluster_sqlite, "alma9")
    assert str(err.value) == f"{path}:3: unexpected '}}'"


def test_an_included_template_syntax_error_names_its_file(cluster_sqlite):
    path = custom(cluster_sqlite, "rh", "compute.rhels9.tmpl", "ok\n{{ node }\n")
    cluster_sqlite.ok("chdef", "-t", "osimage", "-o", "alma9", "profile=service")
    with pytest.raises(XcatError, match=f"{path}:2"):
        render(cluster_sqlite, "alma9")


def test_an_undefined_variable_is_a_node_error_with_file_and_line(cluster_sqlite):
    path = custom(cluster_sqlite, "rh", "compute.rhels9.tmpl", "a\n{{ nodee }}\n")
    r = render(cluster_sqlite, "alma9")
    assert not r.files and set(r.errors) == {"n1", "n2", "n3"}
    assert r.errors["n1"].startswith(f"{path}:2:") and "nodee" in r.errors["n1"]


@pytest.mark.parametrize("image,words", [("alma9", ["dhcp-server", "@^minimal-environment"]),
                                         ("rocky8", ["dhcp-server", "@^minimal-environment"]),
                                         ("deb12", ["isc-dhcp-server", "nfs-common"]),
                                         ("noble", ["isc-dhcp-server", "nfs-common"])])
def test_service_profile_includes_compute_with_its_own_packages(cluster_sqlite, tmp_path, image,
                                                                 words):
    cluster_sqlite.ok("chdef", "-t", "osimage", "-o", image, "profile=service")
    r = render(cluster_sqlite, image)
    text = next(iter(r.files["n1"].values()))
    assert all(w in text for w in words)  # its pkglist #INCLUDEs compute's
    check_with_real_tools(tmp_path, image, r)


# ---- osimage attributes ------------------------------------------------------------------------
def test_missing_or_unusable_osimage_is_an_error_naming_it(cluster_sqlite):
    with pytest.raises(XcatError, match="Cannot find the OS image definition for 'nope'"):
        render(cluster_sqlite, "nope")
    cluster_sqlite.ok("mkdef", "-t", "osimage", "-o", "dl", "imagetype=linux", "provmethod=netboot",
                      "osvers=rocky9.4", "osarch=x86_64", "profile=compute")
    with pytest.raises(XcatError, match="provmethod=netboot"):
        render(cluster_sqlite, "dl")
    cluster_sqlite.ok("mkdef", "-t", "osimage", "-o", "old", "imagetype=linux",
                      "provmethod=install", "osvers=rhels7.9", "osarch=x86_64", "profile=compute")
    with pytest.raises(XcatError,
                       match=re.escape("no install template for profile compute, rhels7.9")):
        render(cluster_sqlite, "old")
    cluster_sqlite.ok("mkdef", "-t", "osimage", "-o", "sles", "imagetype=linux",
                      "provmethod=install", "osvers=sles15.5", "osarch=x86_64", "profile=compute")
    with pytest.raises(XcatError, match=re.escape("sles15.5")):
        render(cluster_sqlite, "sles")
    cluster_sqlite.ok("mkdef", "-t", "osimage", "-o", "noarch", "imagetype=linux",
                      "provmethod=install", "osvers=rocky9.4", "profile=compute")
    with pytest.raises(XcatError, match="osarch is not set"):
        render(cluster_sqlite, "noarch")


def test_bad_node_data_is_one_error_per_node_naming_the_attribute(cluster_sqlite):
    cluster_sqlite.ok("nodeadd", "n7", "groups=other", "hosts.ip=10.77.0.70")
    cluster_sqlite.ok("nodeadd", "n8", "groups=other", "hosts.ip=10.77.0.80", "mac.mac=52:54:zz")
    cluster_sqlite.ok("nodeadd", "n9", "groups=other")
    cluster_sqlite.ok("nodech", "n3", "noderes.installnic=bad nic")
    r = render(cluster_sqlite, "alma9", ["n1", "n3", "n7", "n8", "n9"])
    assert sorted(r.files) == ["n1", "n7"]
    assert r.errors == {"n3": "noderes.installnic 'bad nic' is not an interface name (or 'mac')",
                        "n8": "mac.mac '52:54:zz' is not a MAC address",
                        "n9": "no IP address (hosts.ip)"}


def test_static_mode_needs_a_network_for_the_netmask(cluster_sqlite):
    cluster_sqlite.ok("chtab", "key=managedaddressmode", "site.value=static")
    cluster_sqlite.ok("nodeadd", "n7", "groups=other", "hosts.ip=192.168.5.7")
    r = render(cluster_sqlite, "alma9", ["n1", "n7"])
    assert "n1" in r.files and "192.168.5.7 is in no network" in r.errors["n7"]


def test_pkglist_and_partitionfile_of_the_osimage(cluster_sqlite, tmp_path):
    lists = cluster_sqlite.root / "install/custom/lists"
    lists.mkdir(parents=True)
    (lists / "base.pkglist").write_text("# base\n@core\nvim-enhanced  tmux\n")
    (lists / "mine.pkglist").write_text("#INCLUDE:base.pkglist#\n\nhtop\n-iwl*firmware\n")
    (lists / "part.ks").write_text("part /boot --fstype=xfs --size=1024\n"
                                   "part / --fstype=xfs --size=1 --grow\n")
    cluster_sqlite.ok("chdef", "-t", "osimage", "-o", "alma9",
                      "pkglist=/install/custom/lists/mine.pkglist",
                      "partitionfile=/install/custom/lists/part.ks")
    r = render(cluster_sqlite, "alma9")
    text = r.files["n1"]["n1"]
    assert "%packages\n@core\nvim-enhanced\ntmux\nhtop\n-iwl*firmware\n%end" in text
    assert "part / --fstype=xfs --size=1 --grow\nreboot" in text and "autopart" not in text
    check_with_real_tools(tmp_path, "alma9", r)
    (lists / "part.sh").write_text("echo 'autopart --type=plain' > /tmp/partitionfile\n")
    cluster_sqlite.ok("chdef", "-t", "osimage", "-o", "alma9",
                      "partitionfile=s:/install/custom/lists/part.sh")
    r = render(cluster_sqlite, "alma9")
    text = r.files["n1"]["n1"]
    assert "%include /tmp/partitionfile" in text
    assert "%pre --interpreter=/bin/sh\n" in text and "autopart --type=plain' >" in text
    check_with_real_tools(tmp_path, "alma9", r)


def test_pkglist_and_partitionfile_errors_name_the_attribute(cluster_sqlite):
    cluster_sqlite.ok("chdef", "-t", "osimage", "-o", "alma9", "pkglist=/install/none.pkglist")
    with pytest.raises(XcatError, match=r"linuximage\.pkglist: cannot read .*none\.pkglist"):
        render(cluster_sqlite, "alma9")
    cluster_sqlite.ok("chdef", "-t", "osimage", "-o", "deb12", "partitionfile=s:/install/p.sh")
    with pytest.raises(XcatError, match=re.escape(
            "linuximage.partitionfile s: scripts work for kickstart only")):
        render(cluster_sqlite, "deb12")
    cluster_sqlite.ok("chdef", "-t", "osimage", "-o", "noble", "partitionfile=/install/gone.yaml")
    with pytest.raises(XcatError, match=re.escape("linuximage.partitionfile /install/gone.yaml")):
        render(cluster_sqlite, "noble")


def test_autoinstall_partitionfile_is_the_storage_section(cluster_sqlite, tmp_path):
    part = cluster_sqlite.root / "install/storage.yaml"
    part.write_text("layout:\n  name: direct\n  match:\n    size: largest\n")
    cluster_sqlite.ok("chdef", "-t", "osimage", "-o", "noble",
                      "partitionfile=/install/storage.yaml")
    r = render(cluster_sqlite, "noble")
    ud = yaml.safe_load(r.files["n1"]["n1/user-data"])
    assert ud["autoinstall"]["storage"] == {"layout": {"name": "direct",
                                                       "match": {"size": "largest"}}}
    check_with_real_tools(tmp_path, "noble", r)


def test_extra_variables(cluster_sqlite):
    r = render(cluster_sqlite, "alma9", ["n1", "n2"],
               {"n1": {"callback_url": "http://x/';reboot;'", "callback_token": "t"},
                "n2": {"callback_url": "http://x/cb", "callback_token": "has space"}})
    assert "callback_url" in r.errors["n1"] and "callback_token" in r.errors["n2"]
    r = render(cluster_sqlite, "alma9", ["n1"], {})
    assert "status=installed" not in r.files["n1"]["n1"]  # no callback asked, none made
    with pytest.raises(XcatError, match="may not replace gathered ones: ip"):
        render(cluster_sqlite, "alma9", ["n1"], {"n1": {"ip": "10.0.0.1"}})


# ---- bulk: a fixed number of queries, thousands of nodes ---------------------------------------
def count_statements(mn, fn):
    seen = []
    engine = mn.db.engine

    def listener(conn, cursor, statement, params, context, executemany):
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        fn()
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    return len(seen)


def test_queries_do_not_grow_with_the_nodes_and_resolve_runs_once(cluster_sqlite, monkeypatch):
    cluster_sqlite.ok("nodeadd", "c[1-2000]", "groups=big")
    cluster_sqlite.ok("chtab", "node=big", r"hosts.ip=|\D+(\d+)|10.78.($1/256).($1%256)|")
    calls = []
    real = type(cluster_sqlite.db).resolve

    def counting(self, nodes, *a, **k):
        if k.get("conn") is None:  # resolve calls itself again with its connection
            calls.append(len(nodes))
        return real(self, nodes, *a, **k)

    monkeypatch.setattr(type(cluster_sqlite.db), "resolve", counting)
    site = cluster_sqlite.db.site()
    few = [f"c{i}" for i in range(1, 6)]
    many = [f"c{i}" for i in range(1, 2001)]
    n_few = count_statements(cluster_sqlite, lambda: render_install_files(
        cluster_sqlite.db, cluster_sqlite.paths, site, few, "alma9", callbacks(few)))
    out = {}
    n_many = count_statements(cluster_sqlite, lambda: out.setdefault("r", render_install_files(
        cluster_sqlite.db, cluster_sqlite.paths, site, many, "alma9", callbacks(many))))
    assert n_many == n_few
    assert calls == [5, 2000]
    r = out["r"]
    assert not r.errors and len(r.files) == 2000
    assert "--hostname=c2000.hpc.example" in r.files["c2000"]["c2000"]
    assert r.boot["c2000"]["kcmdline"].endswith(" ip=dhcp")
    assert "tok-c1999-0123456789" in r.files["c1999"]["c1999"]


# ---- the kernel command line ---------------------------------------------------------------
@pytest.mark.parametrize("kind,nic,loader,expected", [
    ("kickstart", None, "ipxe", "inst.ks=F inst.repo=R ip=dhcp"),
    ("kickstart", "eno1", "ipxe", "inst.ks=F inst.repo=R ip=eno1:dhcp"),
    ("kickstart", "52:54:00:aa:bb:cc", "grub",
     "inst.ks=F inst.repo=R ip=52-54-00-aa-bb-cc:dhcp"),
    ("preseed", None, "ipxe", "auto=true priority=critical url=F interface=auto hostname=n1"),
    ("preseed", "eno1", "ipxe", "auto=true priority=critical url=F interface=eno1 hostname=n1"),
    ("preseed", "52:54:00:aa:bb:cc", "ipxe",
     "auto=true priority=critical url=F interface=auto hostname=n1"),
    ("autoinstall", None, "ipxe", "ip=dhcp autoinstall ds=nocloud-net;s=F/"),
    ("autoinstall", None, "grub", "ip=dhcp autoinstall 'ds=nocloud-net;s=F/'"),
    ("autoinstall", "eno1", "pxelinux", "ip=:::::eno1:dhcp autoinstall ds=nocloud-net;s=F/"),
    ("autoinstall", "52:54:00:aa:bb:cc", "ipxe",
     "ip=dhcp BOOTIF=01-52-54-00-aa-bb-cc autoinstall ds=nocloud-net;s=F/"),
])
def test_install_kcmdline(kind, nic, loader, expected):
    got = install_kcmdline(kind, "n1", "http://m:80/f", "http://m:80/r", nic, loader=loader)
    assert got == expected.replace("=F", "=http://m:80/f").replace("=R", "=http://m:80/r")


def test_install_kcmdline_ubuntu_iso_and_bad_input():
    got = install_kcmdline("autoinstall", "n1", "http://m/a/n1/", "http://m/u.iso", None)
    assert got == ("ip=dhcp url=http://m/u.iso cloud-config-url=/dev/null autoinstall "
                   "ds=nocloud-net;s=http://m/a/n1/")
    with pytest.raises(XcatError, match="file_url"):
        install_kcmdline("kickstart", "n1", "http://m/a b", "http://m/r", None)
    with pytest.raises(XcatError, match="unknown install file kind 'autoyast'"):
        install_kcmdline("autoyast", "n1", "http://m/f", "http://m/r", None)


# ---- validate: what each checker rejects -------------------------------------------------------
def test_validate_rejects_a_bad_kickstart_naming_the_line(cluster_sqlite):
    text = render(cluster_sqlite, "alma9").files["n1"]["n1"]
    validate("kickstart", text)
    with pytest.raises(XcatError, match=r"RHEL9.*line 3: Unknown command: frobnicate"):
        validate("kickstart", "#version=RHEL9\ntext\nfrobnicate --now\n")
    rhel8 = text.replace("#version=RHEL9", "#version=RHEL8")
    with pytest.raises(XcatError, match="timesource"):  # RHEL 8 has no timesource
        validate("kickstart", rhel8)
    with pytest.raises(XcatError, match="RHEL9"):  # a parse warning counts as an error
        validate("kickstart", "#version=RHEL9\nrepo --name=a --baseurl=http://x\n"
                              "repo --name=a --baseurl=http://y\n")


def test_validate_rejects_a_bad_preseed_without_echoing_values(cluster_sqlite):
    text = render(cluster_sqlite, "deb12").files["n1"]["n1"]
    validate("preseed", text)
    hashed = next(ln for ln in text.splitlines() if "root-password-crypted" in ln)
    broken = text.replace(hashed, hashed.replace(" password ", " passwd "))
    with pytest.raises(XcatError) as err:
        validate("preseed", broken)
    assert "passwd/root-password-crypted has unknown type 'passwd'" in str(err.value)
    assert "$6$" not in str(err.value)
    with pytest.raises(XcatError, match="line 2: expected 'owner question type value'"):
        validate("preseed", "d-i a/b string x\nlonely\n")
    with pytest.raises(XcatError, match="line 1: d-i/x is boolean"):
        validate("preseed", "d-i d-i/x boolean maybe\n")
    with pytest.raises(XcatError, match="continued line"):
        validate("preseed", "d-i a/b string x \\\n")


@pytest.mark.skipif(DEBCONF is None, reason="debconf-set-selections is not installed")
def test_one_debconf_run_maps_its_errors_back_to_each_node():
    bad = installformats._debconf_check_many({"n1": "d-i a/b string x\n",
                                              "n2": "d-i a/b string x\n# c\nlonely\n",
                                              "n3": "d-i a/b string x\n"})
    assert bad == {"n2": "debconf-set-selections rejected the preseed: parse error on line 3"}


def test_validate_rejects_a_bad_autoinstall(cluster_sqlite):
    r = render(cluster_sqlite, "noble")
    validate("autoinstall", r.files["n1"]["n1/user-data"])
    validate("autoinstall", r.files["n1"]["n1/meta-data"])
    head = "#cloud-config\nautoinstall:\n"
    for body, words in [
        ("  version: 2\n  user-data: {}\n", "version must be 1"),
        ("  version: 1\n", "identity or user-data"),
        ("  version: 1\n  identity: {username: a}\n", "identity needs hostname"),
        ("  version: 1\n  user-data: {}\n  late-commands: echo\n", "late-commands must be"),
        ("  version: 1\n  user-data: {\n", "not YAML: line"),
    ]:
        with pytest.raises(XcatError, match=words):
            validate("autoinstall", head + body)
    with pytest.raises(XcatError, match="no autoinstall: section"):
        validate("autoinstall", "#cloud-config\nhostname: x\n")
    with pytest.raises(XcatError, match="instance-id"):
        validate("autoinstall", "local-hostname: n1\n")


def test_validate_rendered_names_the_bad_nodes():
    r = Rendered("kickstart", {"n1": {"n1": "#version=RHEL9\ntext\n"},
                               "n2": {"n2": "#version=RHEL9\nbogus\n"}})
    assert list(validate_rendered(r)) == ["n2"]
    r = Rendered("autoinstall", {"n1": {"n1/user-data": "#cloud-config\nautoinstall: {}\n",
                                        "n1/meta-data": "instance-id: x\n"}})
    assert validate_rendered(r)["n1"].startswith("n1/user-data: ")


def test_without_the_libraries_the_programs_and_line_checks_stand_in(cluster_sqlite, monkeypatch):
    """Production installs may lack pykickstart and PyYAML (test extras here)."""
    text = render(cluster_sqlite, "rhels9").files["n1"]["n1"]
    installformats._ksvalidator_program(text, "RHEL9")
    with pytest.raises(XcatError, match=r"ksvalidator -v RHEL9 rejected .*frobnicate"):
        installformats._ksvalidator_program(text + "frobnicate\n", "RHEL9")
    user_data = render(cluster_sqlite, "noble").files["n1"]["n1/user-data"]
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now fails
    validate("autoinstall", user_data)
    with pytest.raises(XcatError, match="version must be 1"):
        validate("autoinstall", user_data.replace("  version: 1\n", "  version: 2\n"))
    with pytest.raises(XcatError, match="identity or user-data"):
        validate("autoinstall", user_data.replace("  user-data:\n", "  userdata:\n"))


def test_a_custom_file_for_every_ubuntu_release_beats_the_shipped_one(cluster_sqlite):
    custom(cluster_sqlite, "ubuntu", "compute.ubuntu.tmpl", "#cloud-config\n# site-wide\n")
    assert render(cluster_sqlite, "noble").files["n3"]["n3/user-data"] == \
        "#cloud-config\n# site-wide\n"


def test_linuximage_pkgdir_places_the_repository(cluster_sqlite):
    cluster_sqlite.ok("chdef", "-t", "osimage", "-o", "alma9", "pkgdir=/install/alma9.4-dvd/x86_64")
    r = render(cluster_sqlite, "alma9")
    assert r.boot["n1"]["repo_url"] == "http://10.77.0.1:8080/install/alma9.4-dvd/x86_64"
    cluster_sqlite.ok("chdef", "-t", "osimage", "-o", "deb12",
                      "pkgdir=http://mirror.example:81/debian")
    text = render(cluster_sqlite, "deb12").files["n1"]["n1"]
    assert "d-i mirror/http/hostname string mirror.example:81\n" in text
    assert "d-i mirror/http/directory string /debian\n" in text
    cluster_sqlite.ok("chdef", "-t", "osimage", "-o", "alma9", "pkgdir=/srv/alma")
    with pytest.raises(XcatError, match="pkgdir /srv/alma is not under site"):
        render(cluster_sqlite, "alma9")
