"""The postscript plan (xcatd.provision.postscripts): xCAT's order and first-wins rule,
entries in subdirectories, bad entries as node errors naming them, per-entry timeouts; the
environment rendered from the mypostscript template (the site's copy wins, each directive,
secrets never exported, values that cannot run commands), sourced by a real sh; lsdef -i
postscripts showing the effective list, in process and through xcatd; the postscripts' sh
function library against a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.cluster import build, command, mkdef, nodes, passwd, site

from xcatd.base.request import XcatError
from xcatd.db.cluster import Cluster
from xcatd.lab.ports import free_port
from xcatd.provision.postscripts import DEFAULT_TIMEOUT, PlanBuilder

#: what xcatconfig puts in the xcatdefaults row
DEFAULT_POST = ["syslog", "remoteshell", "syncfiles"]
DEFAULT_POSTBOOT = ["otherpkgs"]
IMAGE = "debian12-x86_64-install-compute"
LIB = Path(__file__).resolve().parents[2] / "postscripts" / "xcatlib.sh"


def scripts_dir(mn) -> Path:
    return Path(mn.root) / "install" / "postscripts"


def add_scripts(mn, *names: str, text: str = "#!/bin/sh\necho hi\n") -> None:
    for name in names:
        path = scripts_dir(mn) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def builder(mn, names=("n1",), **kw) -> PlanBuilder:
    return PlanBuilder(Cluster(mn.paths, mn.db), names, **kw)


def texts(plan, kind="postscript") -> list[str]:
    return [" ".join((s.name, *s.args)) for s in plan.of_kind(kind)]


def image(*attrs: str):
    return mkdef("osimage", IMAGE, "imagetype=linux", "provmethod=install", "osvers=debian12",
                 "osarch=x86_64", "profile=compute", *attrs)


@pytest.fixture
def ps_mn(mn_sqlite):
    """A management node (in process, SQLite) with n1-n3 in compute,all and the scripts
    xcatdefaults names."""
    build(mn_sqlite, nodes("n1-n3", groups="compute,all"))
    add_scripts(mn_sqlite, *DEFAULT_POST, *DEFAULT_POSTBOOT)
    return mn_sqlite


# ---- the lists --------------------------------------------------------------------------------
def test_defaults_then_osimage_then_node_and_the_first_entry_wins(ps_mn):
    build(ps_mn, image("postscripts=syslog,fromimage,hello a", "postbootscripts=otherpkgs,boot1"),
          command("nodech", "compute", f"nodetype.provmethod={IMAGE}",
                  "postscripts.postscripts=hello a,hello b,grp",
                  "postscripts.postbootscripts=boot1,boot2"),
          command("nodech", "n1", "postscripts.postscripts=remoteshell,hello a,mine"))
    add_scripts(ps_mn, "fromimage", "hello", "grp", "mine", "boot1", "boot2")
    b = builder(ps_mn, ["n1", "n2"])
    n1, n2 = b.plan("n1"), b.plan("n2")
    assert n1.ok and n2.ok, (n1.errors, n2.errors)
    # xCAT keeps an entry's first place; "hello b" differs from "hello a" by its argument
    assert texts(n1) == DEFAULT_POST + ["fromimage", "hello a", "mine"]
    assert texts(n2) == DEFAULT_POST + ["fromimage", "hello a", "hello b", "grp"]
    assert texts(n2, "postbootscript") == ["otherpkgs", "boot1", "boot2"]
    assert [s.origin for s in n2.scripts][:5] == ["xcatdefaults"] * 3 + [f"osimage {IMAGE}"] * 2
    assert n1.osimage == IMAGE


def test_legacy_provmethod_uses_noderes_current_osimage(ps_mn):
    build(ps_mn, image("postscripts=fromimage"), mkdef("osimage", "other", "imagetype=linux",
                                                     "provmethod=install", "postscripts=x"),
          command("nodech", "n1", "nodetype.provmethod=install",
                  f"noderes.current_osimage={IMAGE}"),
          command("nodech", "n2", "nodetype.provmethod=other",
                  f"noderes.current_osimage={IMAGE}"))
    add_scripts(ps_mn, "fromimage", "x")
    b = builder(ps_mn, ["n1", "n2", "n3"])
    assert texts(b.plan("n1")) == DEFAULT_POST + ["fromimage"]
    assert texts(b.plan("n2")) == DEFAULT_POST + ["x"]       # provmethod names an image
    assert texts(b.plan("n3")) == DEFAULT_POST and b.plan("n3").osimage is None


def test_entries_in_subdirectories_carry_their_hash_size_and_arguments(ps_mn):
    body = b"#!/bin/sh\necho custom \"$@\"\n"
    (scripts_dir(ps_mn) / "custom/deep").mkdir(parents=True)
    (scripts_dir(ps_mn) / "custom/deep/run.sh").write_bytes(body)
    build(ps_mn, command("nodech", "n1", "postscripts.postscripts=./custom/deep/run.sh a 'b c'"))
    plan = builder(ps_mn).plan("n1")
    script = plan.of_kind("postscript")[-1].as_dict()
    assert script == {"name": "custom/deep/run.sh", "args": ["a", "b c"],
                      "path": "custom/deep/run.sh",
                      "sha256": hashlib.sha256(body).hexdigest(), "size": len(body),
                      "kind": "postscript", "timeout": DEFAULT_TIMEOUT, "origin": "n1"}
    sent = json.loads(json.dumps(plan.as_dict()))["scripts"]
    assert [x for x in sent if x["kind"] == "postscript"][-1] == script


def test_site_timeout_and_per_entry_timeouts(ps_mn):
    build(ps_mn, site(postscripttimeout="42"),
          command("nodech", "n1", "postscripts.postscripts=hang@5,big@2m x,long@1h"))
    add_scripts(ps_mn, "hang", "big", "long")
    plan = builder(ps_mn).plan("n1")
    assert {s.name: s.timeout for s in plan.scripts} == {
        "syslog": 42, "remoteshell": 42, "syncfiles": 42, "otherpkgs": 42,
        "hang": 5, "big": 120, "long": 3600}
    assert plan.timeout == 42


def test_a_bad_postscripttimeout_fails_the_request_naming_it(ps_mn):
    build(ps_mn, site(postscripttimeout="soon"))
    with pytest.raises(XcatError, match=r"site\.postscripttimeout 'soon'"):
        builder(ps_mn).plan("n1")


@pytest.mark.parametrize("entry, words", [
    ("/etc/passwd", "absolute path"),
    ("../etc/passwd", "'..'"),
    ("custom/../../x", "'..'"),
    (".hidden", "hidden"),
    ("missing", "no such file"),
    ("adir", "not a regular file"),
    ("escape", "leads outside"),
    ("ok@0", "timeout"),
    ("ok 'unbalanced", "cannot split"),
])
def test_a_bad_entry_is_an_error_of_its_node_naming_it(ps_mn, entry, words):
    add_scripts(ps_mn, "ok")
    (scripts_dir(ps_mn) / "adir").mkdir()
    outside = Path(ps_mn.root) / "secret.sh"
    outside.write_text("#!/bin/sh\n")
    (scripts_dir(ps_mn) / "escape").symlink_to(outside)
    build(ps_mn, command("nodech", "n1", f"postscripts.postscripts=ok,{entry}"))
    b = builder(ps_mn, ["n1", "n2"])
    plan = b.plan("n1")
    assert not plan.ok
    assert len(plan.errors) == 1
    assert f"'{entry}'" in plan.errors[0] and words in plan.errors[0]
    assert plan.errors[0].startswith("postscript ")
    assert texts(plan)[-1] == "ok"      # the good entries are still planned
    assert b.plan("n2").ok              # and the other nodes are not concerned


def test_plans_cost_the_same_queries_for_3_nodes_as_for_60(mn_sqlite):
    build(mn_sqlite, site(master="10.77.0.1"), nodes("n[1-60]", groups="compute,all"),
          command("nodech", "compute", "nodetype.os=debian12", f"nodetype.provmethod={IMAGE}",
                  "noderes.routenames=r1"), image("postscripts=syslog"))
    add_scripts(mn_sqlite, *DEFAULT_POST, *DEFAULT_POSTBOOT)
    engine = mn_sqlite.db.engine
    counts = []
    for names in ([f"n{i}" for i in range(1, 4)], [f"n{i}" for i in range(1, 61)]):
        seen = []
        listener = lambda *a, seen=seen: seen.append(1)  # noqa: E731
        sa.event.listen(engine, "before_cursor_execute", listener)
        try:
            plans = builder(mn_sqlite, names).plans()
        finally:
            sa.event.remove(engine, "before_cursor_execute", listener)
        assert all(p.ok for p in plans.values())
        counts.append(len(seen))
    assert 0 < counts[0] == counts[1], counts


# ---- the environment ---------------------------------------------------------------------------
#: what sh (and Python, coercing the C locale) put in the environment themselves
SHELL_VARS = {"PATH", "PWD", "OLDPWD", "SHLVL", "_", "LC_CTYPE"}


def sourced(tmp_path: Path, text: str) -> dict[str, str]:
    """The environment a real sh exports after sourcing ``text`` (what the scripts get),
    without sh's own variables."""
    env_file = tmp_path / "mypostscript"
    env_file.write_text(text)
    show = "import json, os; print(json.dumps(dict(os.environ)))"
    p = subprocess.run(["/bin/sh", "-c", f'. "$1" && exec "$2" -c "{show}"', "sh", str(env_file),
                       sys.executable], capture_output=True, text=True, cwd=tmp_path,
                       env={"PATH": os.environ["PATH"]}, timeout=60)
    assert p.returncode == 0, p.stderr
    return {k: v for k, v in json.loads(p.stdout).items() if k not in SHELL_VARS}


@pytest.fixture
def env_cluster(ps_mn):
    mn = ps_mn
    custom = Path(mn.root) / "install/custom/netboot/debian"
    custom.mkdir(parents=True)
    (custom / "compute.pkglist").write_text("openssh-server\n"
                                            "#ENV:DEBIAN_FRONTEND=noninteractive#\n")
    (custom / "compute.otherpkgs.pkglist").write_text("slurm-client\n#NEW_INSTALL_LIST#\nmunge\n")
    build(mn, site(master="10.77.0.1", domain="hpc.example"),
          command("chtab", "net=10.77.0.0,mask=255.255.255.0", "networks.netname=mgt",
                  "networks.gateway=10.77.0.254"),
          command("chtab", "routename=r1", "routes.net=10.9.0.0", "routes.mask=255.255.0.0",
                  "routes.gateway=10.77.0.254", "routes.ifname=eth0"),
          image("pkglist=/install/custom/netboot/debian/compute.pkglist",
                "pkgdir=/install/debian12/x86_64",
                "otherpkglist=/install/custom/netboot/debian/compute.otherpkgs.pkglist",
                "otherpkgdir=/install/post/otherpkgs/debian12/x86_64"),
          command("chtab", f"imagename={IMAGE}", "osimage.environvar=SLURM_CONF=/etc/slurm.conf"),
          command("chtab", "node=compute", r"hosts.ip=|\D+(\d+)|10.77.0.($1+10)|",
                  r"mac.mac=|\D+(\d+)|52:54:00:00:00:($1+10)|",
                  r"nics.nicips=ib0!|\D+(\d+)|10.78.1.($1+10)|", "nics.nictypes=ib0!Infiniband",
                  "nics.nicnetworks=ib0!ib"),
          command("nodech", "compute", "nodetype.os=debian12", "nodetype.arch=x86_64",
                  "nodetype.profile=compute", f"nodetype.provmethod={IMAGE}",
                  "noderes.installnic=mac", "noderes.primarynic=mac", "noderes.routenames=r1",
                  f"chain.currstate=install {IMAGE}"),
          command("chtab", "node=n3", "servicenode.tftpserver=1"))
    return mn


def test_the_environment_has_xcats_variables_for_existing_postscripts(env_cluster, tmp_path):
    plan = builder(env_cluster).plan("n1")
    assert plan.ok, plan.errors
    env = sourced(tmp_path, plan.env)
    assert {k: env.get(k) for k in (
        "NODE", "MASTER", "MASTER_IP", "SITEMASTER", "OSVER", "ARCH", "PROFILE", "PROVMETHOD",
        "NODESETSTATE", "UPDATENODE", "IPADDR", "NTYPE", "INSTALLNIC", "PRIMARYNIC",
        "MACADDRESS", "NICIPS", "NICTYPES", "NICNETWORKS", "GROUP", "DOMAIN",
        "ENABLESSHBETWEENNODES", "ZONENAME", "NODEROUTENAMES", "ROUTE_r1")} == {
        "NODE": "n1", "MASTER": "10.77.0.1", "MASTER_IP": "10.77.0.1",
        "SITEMASTER": "10.77.0.1", "OSVER": "debian12", "ARCH": "x86_64",
        "PROFILE": "compute", "PROVMETHOD": IMAGE, "NODESETSTATE": "install",
        "UPDATENODE": "0", "IPADDR": "10.77.0.11", "NTYPE": "compute", "INSTALLNIC": "mac",
        "PRIMARYNIC": "mac", "MACADDRESS": "52:54:00:00:00:11", "NICIPS": "ib0!10.78.1.11",
        "NICTYPES": "ib0!Infiniband", "NICNETWORKS": "ib0!ib", "GROUP": "compute,all",
        "DOMAIN": "hpc.example", "ENABLESSHBETWEENNODES": "YES", "ZONENAME": "",
        "NODEROUTENAMES": "r1", "ROUTE_r1": "10.9.0.0,255.255.0.0,10.77.0.254,eth0"}
    assert env["NETWORKS_LINES"] == "1"
    assert env["NETWORKS_LINE1"].startswith("netname=mgt||net=10.77.0.0||mask=255.255.255.0||")
    assert env["NETWORKS_LINE1"].endswith("||disable=||comments=")
    assert {k: env.get(k) for k in ("OSPKGDIR", "OSPKGS", "ENVLIST", "OTHERPKGDIR",
                                    "OTHERPKGS1", "OTHERPKGS2", "OTHERPKGS_INDEX",
                                    "SLURM_CONF", "NOSYNCFILES")} == {
        "OSPKGDIR": "/install/debian12/x86_64", "OSPKGS": "openssh-server",
        "ENVLIST": "DEBIAN_FRONTEND=noninteractive",
        "OTHERPKGDIR": "/install/post/otherpkgs/debian12/x86_64",
        "OTHERPKGS1": "slurm-client", "OTHERPKGS2": "munge", "OTHERPKGS_INDEX": "2",
        "SLURM_CONF": "/etc/slurm.conf", "NOSYNCFILES": "1"}
    site_keys = {r["key"] for r in env_cluster.db.rows("site")}
    assert {k.upper() for k in site_keys if k != "master"} <= set(env)   # every site key
    assert sourced(tmp_path, builder(env_cluster, ["n3"]).plan("n3").env)["NTYPE"] == "service"


def test_updatenode_exports_UPDATENODE_1(env_cluster, tmp_path):
    plan = builder(env_cluster, updatenode=True, nodesetstate="boot").plan("n1")
    env = sourced(tmp_path, plan.env)
    assert (env["UPDATENODE"], env["NODESETSTATE"]) == ("1", "boot")


def test_an_unknown_master_is_an_error_of_the_node(env_cluster):
    build(env_cluster, command("nodech", "n2", "noderes.xcatmaster=nosuchhost.invalid"))
    b = builder(env_cluster, ["n1", "n2"])
    assert b.plan("n1").ok
    assert "nosuchhost.invalid" in b.plan("n2").errors[0]


def site_template(mn, text: str) -> Path:
    path = scripts_dir(mn) / "mypostscript.tmpl"
    path.write_text(text)
    return path


def test_the_sites_template_wins_then_the_custom_directory(env_cluster, tmp_path):
    custom = Path(env_cluster.root) / "install/custom/templates/mypostscript/mypostscript.tmpl"
    custom.parent.mkdir(parents=True)
    custom.write_text("FROM=custom\nexport FROM\n")
    env = sourced(tmp_path, builder(env_cluster).plan("n1").env)
    assert env.get("FROM") == "custom" and "NODE" not in env
    site_template(env_cluster, "## a comment left out\nFROM=site\nexport FROM\nN=$NODE\n"
                  "export N\n")
    text = builder(env_cluster).plan("n1").env
    assert text == "FROM=site\nexport FROM\nN=n1\nexport N\n"
    assert sourced(tmp_path, text) == {"FROM": "site", "N": "n1"}


def test_table_directive_reads_node_group_regex_and_named_rows(env_cluster, tmp_path):
    site_template(env_cluster, "\n".join([
        "A=#TABLE:nodetype:$NODE:os#", "B=#TABLE:nodetype:THISNODE:arch#",
        "C=#TABLE:hosts:$NODE:ip#", f"D=#TABLE:osimage:{IMAGE}:osvers#",
        "E=#TABLE:nics:compute:nictypes#", "F=#TABLE:noderes:$NODE:tftpserver#",
        "G=#TABLE:nodelist:$NODE:comments#", "H=#TABLE:nodetype:n3:os#",
        "I=#TABLE:nics:$NODE:nicips#", "export A B C D E F G H I", ""]))
    env = sourced(tmp_path, builder(env_cluster, ["n2"]).plan("n2").env)
    assert [env[k] for k in "ABCDEFGHI"] == [
        "debian12", "x86_64", "10.77.0.12", "debian12", "ib0!Infiniband", "10.77.0.1", "",
        "debian12", "ib0!10.78.1.12"]


@pytest.mark.parametrize("line, words", [
    ("X=#TABLE:nosuch:$NODE:os#", "#TABLE:nosuch:...#: no such table"),
    ("X=#TABLE:nodetype:$NODE:nosuch#", "#TABLE:nodetype:...:nosuch#: the nodetype table has "
                                        "no column nosuch"),
    ("X=#TABLE:networks:$NODE:net#", "the networks table is not keyed by node: name a row "
                                     "instead of $NODE"),
    ("tabdump(nosuch)", "tabdump(nosuch): no such table"),
])
def test_a_bad_directive_fails_the_request_naming_its_line(env_cluster, line, words):
    parts = scripts_dir(env_cluster) / "parts"
    parts.mkdir()
    (parts / "bad.tmpl").write_text(f"## header\nOK=1\n{line}\n")
    path = site_template(env_cluster, f"## header\nOK=1\n{line}\n")
    with pytest.raises(XcatError) as exc:
        builder(env_cluster).plan("n1")
    assert str(exc.value) == f"{path}, line 3: {words}"
    site_template(env_cluster, "OK=1\n#INCLUDE:parts/bad.tmpl#\n")  # in an included file
    with pytest.raises(XcatError) as exc:
        builder(env_cluster).plan("n1")
    assert str(exc.value) == f"{parts / 'bad.tmpl'}, line 3: {words}"


def test_include_directive(env_cluster, tmp_path):
    parts = scripts_dir(env_cluster) / "parts"
    parts.mkdir()
    (parts / "a.tmpl").write_text("## a's comment\nA=$NODE\nexport A\n#INCLUDE:b.tmpl#\n")
    (parts / "b.tmpl").write_text("B=#TABLE:nodetype:$NODE:os#\nexport B\n")
    absolute = Path(env_cluster.root) / "etc/xcat/more.tmpl"
    absolute.write_text("C=abs\nexport C\n")
    private = parts / "private.tmpl"
    private.write_text("P=secret\nexport P\n")
    private.chmod(0o600)
    site_template(env_cluster, "#INCLUDE:parts/a.tmpl#\n#INCLUDE:/etc/xcat/more.tmpl#\n"
                  "#INCLUDE:parts/private.tmpl#\n#INCLUDE:parts/missing.tmpl#\n")
    b = builder(env_cluster)
    plan = b.plan("n1")
    env = sourced(tmp_path, plan.env)
    assert (env["A"], env["B"], env["C"], env.get("P")) == ("n1", "debian12", "abs", None)
    assert "a's comment" not in plan.env
    assert any("private.tmpl is not world-readable" in w for w in b.warnings)
    assert any(w.startswith(f"{scripts_dir(env_cluster) / 'mypostscript.tmpl'}, line 4: "
                            "#INCLUDE:parts/missing.tmpl#: no such file") for w in b.warnings)
    (parts / "b.tmpl").write_text("#INCLUDE:a.tmpl#\n")
    with pytest.raises(XcatError, match="cycle"):
        builder(env_cluster).plan("n1")


def test_site_table_and_tabdump_directives(env_cluster, tmp_path):
    build(env_cluster, command("chtab", "key=odd-name", "site.value=x"),
          command("chtab", "key=motd", "site.value=it's a cluster"))
    site_template(env_cluster, "#SITE_TABLE_ALL_ATTRIBS_EXPORT#\ntabdump(networks)\n"
                  "tabdump(routes)\ntabdump(nodelist)\n")
    b = builder(env_cluster)
    env = sourced(tmp_path, b.plan("n1").env)
    assert (env["SITEMASTER"], env["DOMAIN"], env["MOTD"]) == ("10.77.0.1", "hpc.example",
                                                             "it's a cluster")
    assert "MASTER" not in env and "NODELIST_LINES" not in env
    assert env["ROUTES_LINES"] == "1"
    assert env["ROUTES_LINE1"] == ("routename=r1||net=10.9.0.0||mask=255.255.0.0||"
                                   "gateway=10.77.0.254||ifname=eth0||disable=||comments=")
    assert "site.odd-name is not a shell variable name and is not exported" in b.warnings
    assert any("tabdump(nodelist)" in w for w in b.warnings)


SECRETS = ("root-pw-1", "bmc-pw-2", "switch-pw-3", "omapi-key-4", "ldap-pw-5")


def test_secrets_are_never_exported(env_cluster, tmp_path):
    build(env_cluster, passwd("system", "root", SECRETS[0]),
          command("chtab", "node=compute", "ipmi.bmc=10.1.0.1", f"ipmi.password={SECRETS[1]}"),
          command("chtab", "switch=sw1", f"switches.password={SECRETS[2]}",
                  f"switches.sshpassword={SECRETS[2]}"),
          site(omapikey=SECRETS[3], ldappassword=SECRETS[4]))
    shipped = builder(env_cluster)
    texts_seen = [shipped.plan("n1").env]
    site_template(env_cluster, "\n".join([
        "#SITE_TABLE_ALL_ATTRIBS_EXPORT#", "tabdump(passwd)", "tabdump(switches)",
        "tabdump(ipmi)", "BMCPW=#TABLE:ipmi:$NODE:password#",
        "ROOTPW=#TABLE:passwd:system:password#",
        "SW=#TABLE:switches:sw1:password#", "#AIX_ROOT_PW_VARS_EXPORT#", ""]))
    asking = builder(env_cluster)
    texts_seen.append(asking.plan("n1").env)
    for text in texts_seen:
        env = sourced(tmp_path, text)
        for secret in SECRETS:
            assert secret not in text
            assert secret not in json.dumps(env)
    tmpl = scripts_dir(env_cluster) / "mypostscript.tmpl"
    assert set(asking.warnings) >= {
        f"{tmpl}, line 5: #TABLE:ipmi:$NODE:password# is a secret and is not exported",
        f"{tmpl}, line 6: #TABLE:passwd:system:password# is a secret and is not exported",
        f"{tmpl}, line 7: #TABLE:switches:sw1:password# is a secret and is not exported",
        "site.omapikey looks like a secret and is not exported",
        "site.ldappassword looks like a secret and is not exported"}
    for table in ("passwd", "switches", "ipmi"):
        assert any(w.startswith(f"tabdump({table}):") for w in asking.warnings)


def test_table_values_cannot_run_commands_on_the_node(env_cluster, tmp_path):
    evil = "a b'$(touch pwned1)\"`touch pwned2` ; touch pwned3"
    build(env_cluster, command("nodech", "n1", f"nodelist.comments={evil}"))
    site_template(env_cluster, "X=#TABLE:nodelist:$NODE:comments#\n"
                  "Y='#TABLE:nodelist:$NODE:comments#'\n"
                  'Z="#TABLE:nodelist:$NODE:comments#"\nexport X Y Z\n')
    env = sourced(tmp_path, builder(env_cluster).plan("n1").env)
    assert (env["X"], env["Y"], env["Z"]) == (evil, evil, evil)
    assert not list(tmp_path.glob("pwned*"))


def test_list_directives_render_as_comments(env_cluster, tmp_path):
    site_template(env_cluster, "# postscripts-start-here\n#INCLUDE_POSTSCRIPTS_LIST#\n"
                  "# postbootscripts-start-here\n#INCLUDE_POSTBOOTSCRIPTS_LIST#\n")
    text = builder(env_cluster).plan("n1").env
    assert text.splitlines() == ["# postscripts-start-here", *(f"# {s}" for s in DEFAULT_POST),
                                 "# postbootscripts-start-here", "# otherpkgs"]


# ---- lsdef -i postscripts -----------------------------------------------------------------------
@pytest.fixture
def lsdef_cluster(cluster):
    """On every backend (in process, PostgreSQL, and through xcatd)."""
    return build(cluster, image("postscripts=fromimage,syslog", "postbootscripts=imgboot"),
                 command("nodech", "compute", f"nodetype.provmethod={IMAGE}",
                         "postscripts.postscripts=grp"),
                 command("nodech", "n1", "postscripts.postscripts=mine,fromimage,bad/../x",
                         "postscripts.postbootscripts=nodeboot"))


def test_lsdef_i_postscripts_shows_the_effective_list(lsdef_cluster):
    r = lsdef_cluster.ok("lsdef", "n1,n2", "-i", "postscripts,postbootscripts")
    assert r.lines == [
        "Object name: n1",
        "    postscripts=syslog,remoteshell,syncfiles,fromimage,mine,bad/../x",
        "    postbootscripts=otherpkgs,imgboot,nodeboot",
        "Object name: n2",
        "    postscripts=syslog,remoteshell,syncfiles,fromimage,grp",
        "    postbootscripts=otherpkgs,imgboot"]
    assert lsdef_cluster.ok("lsdef", "n2", "-i", "postbootscripts", "-c").lines == [
        "n2: postbootscripts=otherpkgs,imgboot"]


def test_other_listings_keep_the_stored_value(lsdef_cluster):
    long = lsdef_cluster.ok("lsdef", "n1", "-l").lines
    assert "    postscripts=mine,fromimage,bad/../x" in long
    assert "    postbootscripts=nodeboot" in long
    stanza = lsdef_cluster.ok("lsdef", "n1", "-z", "-i", "postscripts").out
    assert "    postscripts=mine,fromimage,bad/../x" in stanza.splitlines()


# ---- the sh library ----------------------------------------------------------------------------
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(directory: Path, port: int = 0) -> http.server.ThreadingHTTPServer:
    handler = lambda *a, **kw: _Quiet(*a, directory=str(directory), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def www(tmp_path):
    root = tmp_path / "www"
    (root / "install/postscripts").mkdir(parents=True)
    (root / "install/postscripts/hello.conf").write_text("hello from the MN\n")
    server = serve(root)
    yield server
    server.shutdown()
    server.server_close()


def tool_paths(tmp_path: Path) -> dict[str, Path]:
    """A PATH directory per fetch tool there is: curl alone, GNU wget alone, busybox wget."""
    out = {}
    for name, target in (("curl", shutil.which("curl")), ("wget", shutil.which("wget")),
                         ("busybox-wget", shutil.which("busybox"))):
        if not target:
            continue
        d = tmp_path / f"bin-{name}"
        d.mkdir()
        (d / name.split("-")[-1]).symlink_to(target)
        out[name] = d
    return out


def lib(tmp_path: Path, script: str, *, path_first: Path | None = None,
        **env: str) -> subprocess.CompletedProcess:
    """``script`` run by a real sh after sourcing the library, in ``tmp_path``."""
    base_path = "/usr/sbin:/usr/bin:/sbin:/bin"
    if path_first is not None:  # only the tools in path_first fetch: hide the others
        base_path = f"{path_first}:{hide_fetchers(tmp_path)}"
    full = {"PATH": base_path, "XCAT_SCRIPT": "mytest", "XCAT_RETRY_DELAY": "0", **env}
    return subprocess.run(["/bin/sh", "-c", f'. "{LIB}"\n{script}'], capture_output=True,
                          text=True, cwd=tmp_path, env=full, timeout=120)


def hide_fetchers(tmp_path: Path) -> Path:
    """A directory with the commands sh scripts need, but no curl or wget."""
    d = tmp_path / "bin-base"
    if not d.exists():
        d.mkdir()
        for cmd in ("sed", "grep", "tail", "mv", "rm", "sleep", "cat", "timeout", "logger"):
            found = shutil.which(cmd)
            if found:
                (d / cmd).symlink_to(found)
    return d


@pytest.mark.parametrize("tool", ["curl", "wget", "busybox-wget"])
def test_fetch_with_each_tool_gets_the_file_and_a_404_is_final(www, tmp_path, tool):
    dirs = tool_paths(tmp_path)
    if tool not in dirs:
        pytest.skip(f"{tool} is not installed")
    port = str(www.server_address[1])
    (tmp_path / "kept").write_text("old\n")
    p = lib(tmp_path, "xcat_fetch /install/postscripts/hello.conf got; echo rc=$?\n"
            "xcat_fetch install/postscripts/nope kept 4; echo rc=$?",
            path_first=dirs[tool], MASTER_IP="127.0.0.1", HTTPPORT=port)
    assert (tmp_path / "got").read_text() == "hello from the MN\n"
    assert p.stdout.splitlines()[:2] == [
        f"mytest: fetched http://127.0.0.1:{port}/install/postscripts/hello.conf", "rc=0"]
    assert p.stdout.splitlines()[2:] == ["rc=2"]       # a 404 is not retried
    assert p.stderr.splitlines() == [
        f"mytest: cannot fetch http://127.0.0.1:{port}/install/postscripts/nope: HTTP 404"]
    assert (tmp_path / "kept").read_text() == "old\n"    # and leaves DEST as it was
    assert not [x for x in tmp_path.iterdir() if ".part." in x.name or ".err." in x.name]


def test_fetch_waits_for_a_server_that_comes_up_late(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "late.txt").write_text("at last\n")
    port = free_port()
    started: list = []
    timer = threading.Timer(1.5, lambda: started.append(serve(root, port)))
    timer.start()
    try:
        p = lib(tmp_path, f"xcat_fetch http://127.0.0.1:{port}/late.txt got 8; echo rc=$?",
                XCAT_RETRY_DELAY="1", XCAT_RETRY_MAX_DELAY="2")
    finally:
        timer.join()
        for server in started:
            server.shutdown()
            server.server_close()
    assert p.stdout.splitlines()[-1] == "rc=0", p.stderr
    assert (tmp_path / "got").read_text() == "at last\n"
    retries = [ln for ln in p.stdout.splitlines() if "again in" in ln]
    assert retries and all(ln.startswith(f"mytest: fetching http://127.0.0.1:{port}/late.txt "
                                         "failed (") for ln in retries)


def test_fetch_gives_up_after_its_tries_naming_the_url(tmp_path):
    port = free_port()
    p = lib(tmp_path, f"xcat_fetch http://127.0.0.1:{port}/x got 3; echo rc=$?")
    assert p.stdout.splitlines()[-1] == "rc=1"
    assert len([ln for ln in p.stdout.splitlines() if "again in 0s" in ln]) == 2
    assert p.stderr.startswith(f"mytest: cannot fetch http://127.0.0.1:{port}/x after 3 tries: ")
    assert not (tmp_path / "got").exists()


def test_fetch_needs_a_master_and_a_tool(tmp_path):
    p = lib(tmp_path, "xcat_fetch /install/x got; echo rc=$?")
    assert p.stdout == "rc=1\n"
    assert "MASTER_IP is not set" in p.stderr
    p = lib(tmp_path, "xcat_fetch /install/x got; echo rc=$?", path_first=tmp_path / "none",
            MASTER_IP="127.0.0.1")
    assert p.stdout == "rc=3\n"
    assert p.stderr == ("mytest: xcat_fetch http://127.0.0.1:80/install/x: neither curl nor "
                        "wget is installed\n")


def test_retry_runs_until_success_and_returns_the_last_status(tmp_path):
    p = lib(tmp_path, "n=0\nflaky() { n=$((n + 1)); [ $n -ge 3 ]; }\n"
            "retry 5 flaky; echo rc=$? n=$n\n"
            "xcat_retry 2 sh -c 'exit 7'; echo rc=$?\n"
            "xcat_retry x true; echo rc=$?\nxcat_retry 0 true; echo rc=$?")
    out = p.stdout.splitlines()
    assert out == ["mytest: flaky failed (status 1, try 1 of 5), again in 0s",
                   "mytest: flaky failed (status 1, try 2 of 5), again in 0s",
                   "rc=0 n=3",
                   "mytest: sh failed (status 7, try 1 of 2), again in 0s",
                   "rc=7", "rc=2", "rc=2"]
    assert p.stderr.splitlines() == [
        "mytest: sh failed 2 times (last status 7)",
        "mytest: xcat_retry: TRIES must be a whole number above 0, not 'x'",
        "mytest: xcat_retry: TRIES must be a whole number above 0, not '0'"]


def test_backoff_doubles_and_is_bounded(tmp_path):
    p = lib(tmp_path, 'for i in 1 2 3 4 5 6; do _xcat_delay $i; done',
            XCAT_RETRY_DELAY="1", XCAT_RETRY_MAX_DELAY="5")
    assert p.stdout.split() == ["1", "2", "4", "5", "5", "5"]


def test_log_goes_to_stdout_and_syslog_and_status_to_the_agents_file(tmp_path):
    fake = tmp_path / "bin-logger"
    fake.mkdir()
    (fake / "logger").write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> "{tmp_path}/syslog"\n'
                                 f'echo >> "{tmp_path}/syslog"\n')
    (fake / "logger").chmod(0o755)
    p = lib(tmp_path, 'xcat_log "configuring syslog"\nxcat_error "it broke"\n'
            'xcat_status running "step 2"\nxcat_status "bad word" x; echo rc=$?',
            PATH=f"{fake}:/usr/bin:/bin", XCAT_STATUS_FILE=str(tmp_path / "status"))
    assert p.stdout.splitlines() == ["mytest: configuring syslog",
                                     "mytest: status: running step 2", "rc=1"]
    assert p.stderr.splitlines() == [
        "mytest: it broke",
        "mytest: xcat_status: 'bad word' is not a state word (letters, digits, '-', '_')"]
    assert (tmp_path / "syslog").read_text().splitlines()[:3] == [
        "-t|xcat.mytest|-p|local4.info|--|configuring syslog|",
        "-t|xcat.mytest|-p|local4.err|--|it broke|",
        "-t|xcat.mytest|-p|local4.notice|--|status: running step 2|"]
    assert (tmp_path / "status").read_text() == "running step 2\n"
