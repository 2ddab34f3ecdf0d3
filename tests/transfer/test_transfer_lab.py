"""A management node moved to another with xcatexport and xcatimport, for real: two xcatds,
each under its own root and in its own network namespace (xcatd.lab.twomn), and the same BMCs
behind both (a pyghmi fleet and ipmi_sim). MN A is set up as an admin would (nodes behind the
BMCs, an osimage with its own pkglist, exlist and template, a postscript, a policy row and a
second user's certificate, networks with DHCP and DNS, a node set to install), exported, and
imported into a fresh MN B with --remap of A's address. Then B, through its own xcatd, powers
the nodes, renders the site's template, writes DHCP and DNS, serves the second user, and
dumps what A dumped. The move is made once per database backend (a class); each test looks at
one side of it."""
from __future__ import annotations

import csv
import difflib
import io
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from xcatd.lab.fakemedia import build_tree
from xcatd.lab.ipmisim import IpmiSim
from xcatd.lab.twomn import (
    ADDRESSES,
    HUB_IP,
    ManagementNode,
    Result,
    TwoMN,
    pg_socket_url,
    usable,
)
from xcatd.provision.osfamily import shipped_dir

_why = usable() or next((f"the lab needs {tool}" for tool in
                         ("ipmi_sim", "ipmitool", "dhcpd", "named-checkconf")
                         if shutil.which(tool) is None), None)
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")

OLD, NEW = ADDRESSES["a"], ADDRESSES["b"]
IMAGE = "rocky9.4-x86_64-install-compute"
STATE = "install rocky9.4-x86_64-compute"
MARKER = "# pyxcat-lab: the site's own compute template"
NODES = "c1-c4"                 # c1-c3 behind the fleet, c4 behind ipmi_sim
#: an admin's extra kernel arguments on c3 (never rewritten by nodeset): a URL with a port
UPDATES = f"inst.updates=http://{OLD}:80/install/updates.img"
#: the log tables: xcatexport leaves them out without -a, and each MN writes its own
LOGS = {"auditlog", "eventlog", "jobs", "jobresults", "nodeevents"}
#: the install callback token nodeset gives a node is new each time it runs (only its hash
#: and time are stored): B's regeneration of c1's boot files makes another
FRESH = {"bootstate": ("tokenhash", "tokentime")}


def remapped(text: str) -> str:
    """A's output as B should print it: A's address, wherever it stands whole, is B's."""
    return re.sub(rf"(?<![\d.]){re.escape(OLD)}(?![\d])", NEW, text)


def ok(r: Result, what: str) -> Result:
    assert r.rc == 0, f"{what} failed ({r.rc}):\n{r.out}\n{r.err}"
    return r


def through(m: ManagementNode, *argv: str, home: Path | None = None) -> Result:
    """A command on ``m`` through its xcatd (TLS), from its namespace."""
    return ok(m.cli(*argv, home=home), f"{' '.join(argv)} on {m.name}")


@dataclass
class Move:
    lab: TwoMN
    bmc: IpmiSim                # c4's BMC
    bob: Path                   # bob's HOME: his client certificate from A's CA
    imported: Result            # what xcatimport said
    lsdef: dict[str, str]       # "a" and "b": lsdef -t node -l
    tables: dict[str, dict[str, str]]  # "a" and "b": table -> tabdump --show-secrets

    @property
    def b(self) -> ManagementNode:
        return self.lab.b


# ---- MN A, as an admin sets it up --------------------------------------------------------------
def build_a(lab: TwoMN, fleet, bmc, tmp: Path) -> Path:
    """A's configuration (commands in process, in A's namespace); returns bob's HOME."""
    a = lab.a

    def do(*argv: str) -> Result:
        return ok(a.cli(*argv, bypass=True), " ".join(argv))

    for key, value in (("master", OLD), ("nameservers", OLD), ("domain", "lab.example"),
                       ("dhcpsetup", "n")):
        do("chtab", f"key={key}", f"site.value={value}")
    do("chtab", "key=omapi", "passwd.username=xcat_key", "passwd.password=c2VjcmV0")
    do("chtab", "key=system", "passwd.username=root", "passwd.password=cluster")
    do("mkdef", "-t", "network", "-o", "mgt", "net=10.79.0.0", "mask=255.255.0.0",
       "mgtifname=eth0", f"gateway={HUB_IP}", "dynamicrange=10.79.200.1-10.79.200.50",
       f"tftpserver={OLD}", f"dhcpserver={OLD}", "nameservers=<xcatmaster>")
    # the distribution, and the osimage with the site's own files (outside install/custom:
    # exported because the osimage names them, the pkglist with the list it includes)
    do("copycds", str(build_tree(tmp / "media", "rocky9.4")))
    site = a.root / "opt/site"
    site.mkdir(parents=True)
    (site / "compute.pkglist").write_text("# the site's compute packages\n"
                                          "#INCLUDE:common.pkglist#\npyxlab-tools\n")
    (site / "common.pkglist").write_text("chrony\npyxlab-common\n")
    (site / "compute.exlist").write_text("./usr/share/doc*\n")
    shipped = (shipped_dir("install") / "rh/compute.rhels9.tmpl").read_text()
    (site / "compute.tmpl").write_text(MARKER + "\n" + shipped)
    do("chdef", "-t", "osimage", "-o", IMAGE, "pkglist=/opt/site/compute.pkglist",
       "exlist=/opt/site/compute.exlist", "template=/opt/site/compute.tmpl")
    script = a.root / "install/postscripts/site-tune"
    script.write_text("#!/bin/sh\necho tuned\n")
    script.chmod(0o755)
    # c1-c3 behind fleet BMCs 0-2 (the fleet's password in passwd), c4 behind ipmi_sim
    # (its own user and password in the ipmi table)
    do("nodeadd", NODES, "groups=compute,all", "nodehm.mgt=ipmi", "nodehm.power=ipmi",
       "nodetype.arch=x86_64", f"noderes.xcatmaster={OLD}", "noderes.netboot=xnba",
       "postscripts.postscripts=site-tune")
    do("chtab", "node=compute", r"hosts.ip=|\D+(\d+)|10.79.1.($1+10)|",
       r"mac.mac=|\D+(\d+)|52:54:00:00:01:($1+10)|", "ipmi.bmc=127.0.0.1",
       rf"ipmi.bmcport=|\D+(\d+)|({fleet.base_port}+$1-1)|")
    do("chtab", "key=ipmi", f"passwd.username={fleet.user}", f"passwd.password={fleet.password}")
    do("chtab", "node=c4", f"ipmi.bmcport={bmc.port}", f"ipmi.username={bmc.user}",
       f"ipmi.password={bmc.password}")
    do("nodech", "c3", f"bootparams.addkcmdline={UPDATES}")
    # a second user: a policy row and a client certificate from A's CA
    do("mkdef", "-t", "policy", "-o", "6", "name=bob", "commands=nodels,rpower", "rule=allow")
    bob = tmp / "home-bob"
    do("xcatclientcert", "bob", "--dir", str(bob / ".xcat"))
    do("makedhcp", "-n")
    do("makedns", "-n")
    # A at work: c1 and c4 powered on, c1 set to install
    through(a, "rpower", "c1,c4", "on")
    assert sorted(through(a, "rpower", NODES, "stat").lines) == \
        ["c1: on", "c2: off", "c3: off", "c4: on"]
    assert through(a, "nodeset", "c1", f"osimage={IMAGE}").lines == [f"c1: {STATE}"]
    assert MARKER in (a.root / "install/autoinst/c1").read_text()
    return bob


def dump(m: ManagementNode) -> tuple[str, dict[str, str]]:
    """``lsdef -t node -l``, and ``tabdump --show-secrets`` of every table but the logs (the
    table list under "(tables)"), through ``m``'s xcatd."""
    tables = through(m, "tabdump").lines
    dumps = {"(tables)": "\n".join(tables)}
    for t in tables:
        if t not in LOGS:
            dumps[t] = _blank(through(m, "tabdump", "--show-secrets", t).out, FRESH.get(t, ()))
    return through(m, "lsdef", "-t", "node", "-l").out, dumps


def _blank(csv_text: str, columns: tuple[str, ...]) -> str:
    """The CSV with the values of ``columns`` replaced by whether they are set."""
    if not columns:
        return csv_text
    lines = csv_text.splitlines()
    header = lines[0].lstrip("#").split(",")
    idx = [header.index(c) for c in columns]
    out = [lines[0]]
    for row in csv.reader(io.StringIO("\n".join(lines[1:]))):
        out.append(",".join("(set)" if i in idx and v else v for i, v in enumerate(row)))
    return "\n".join(out)


def databases(request) -> dict[str, str]:
    """A's and B's database URLs on PostgreSQL (an xcatd in a namespace reaches the suite's
    server by its socket); none on SQLite (xcatconfig's default)."""
    if request.cls.backend != "postgres":
        return {}
    server = request.getfixturevalue("pg_server")
    return {name: pg_socket_url(server.new_database(), Path(server.base) / "sock", server.port)
            for name in ("a", "b")}


def move(lab: TwoMN, urls: dict[str, str], tmp: Path) -> Move:
    """Build A, export it, import it into a fresh B, restart B's xcatd, dump both."""
    fleet = lab.start_fleet(3, user="admin", password="fleet-pw")
    bmc = lab.start_ipmisim(tmp / "ipmisim", user="lab", password="sim-pw")
    for m in lab.nodes:
        ok(m.cli("xcatconfig", *(("--dburl", urls[m.name]) if urls else ()), bypass=True),
           f"xcatconfig on {m.name}")
        m.start_xcatd()
    bob = build_a(lab, fleet, bmc, tmp)
    a_lsdef, a_tables = dump(lab.a)

    secret = tmp / "passphrase"
    secret.write_text("correct horse battery staple\n")
    secret.chmod(0o600)
    archive = tmp / "mn.tar.zst"
    r = ok(lab.a.cli("xcatexport", "-f", str(archive), "--with-media", "--passphrase-file",
                     str(secret), bypass=True), "xcatexport")
    assert r.out.startswith("Exported ") and str(archive) in r.out, r.out
    imported = lab.b.cli("xcatimport", "-f", str(archive), "--remap", f"{OLD}={NEW}",
                         "--passphrase-file", str(secret), bypass=True)
    ok(imported, "xcatimport")
    lab.b.restart_xcatd()
    b_lsdef, b_tables = dump(lab.b)
    return Move(lab, bmc, bob, imported, {"a": a_lsdef, "b": b_lsdef},
                {"a": a_tables, "b": b_tables})


def _dispose(lab: TwoMN) -> None:
    """The engines this process opened on A's and B's databases (xcatexport, xcatimport)."""
    from xcatd.base.paths import Paths
    from xcatd.db.database import Database
    for m in lab.nodes:
        if m.root.joinpath("etc/xcat/cfgloc").exists():
            Database.open(Paths(m.root)).dispose()


def attrs(lsdef: str, node: str) -> list[str]:
    """The attribute lines of ``node`` in ``lsdef -l`` output, stripped."""
    section = lsdef.split(f"Object name: {node}\n")[1].split("Object name:")[0]
    return [line.strip() for line in section.splitlines() if line.strip()]


def _rows(csv_text: str) -> tuple[str, list[str]]:
    """A tabdump's header and its rows, sorted: the import writes each table in key order,
    where A's tabdump shows the rows in the order they were added."""
    lines = csv_text.splitlines()
    return lines[0], sorted(lines[1:])


# ---- the move, once per backend ----------------------------------------------------------------
@pytest.fixture(scope="class")
def moved(request, tmp_path_factory):
    """The move, made once for the tests of a class, on the class's backend."""
    tmp = tmp_path_factory.mktemp(f"twomn-{request.cls.backend}")
    urls = databases(request)
    with TwoMN(tmp / "lab") as lab:
        try:
            yield move(lab, urls, tmp)
        finally:
            _dispose(lab)


class Moved:
    backend = "sqlite"

    def test_the_import_names_the_source_and_regenerates_hosts_dhcp_and_dns(self, moved):
        r = moved.imported
        assert f"({OLD})" in r.lines[0], r.out            # the manifest's source address
        assert any(line.startswith(f"Remapped {OLD} -> {NEW} in ") for line in r.lines), r.out
        for command in ("mknb x86_64", "makehosts", "makedhcp -n", "makedns -n"):
            assert f"Regenerated: {command}" in r.lines, r.out
        assert not [line for line in r.err.splitlines()
                    if line.startswith("Warning: make")], r.err
        assert "site.master" not in r.err             # B's own address: no warning
        assert re.search(r"^xcatd \(pid \d+\) is running: restart it", r.err, re.M), r.err

    def test_b_dumps_what_a_dumped_with_a_address_replaced_by_b(self, moved):
        a, b = moved.tables["a"], moved.tables["b"]
        assert b["(tables)"] == a["(tables)"]
        for t in sorted(set(a) - {"(tables)"}):
            assert _rows(b[t]) == _rows(remapped(a[t])), f"table {t}:\n" + "".join(
                difflib.unified_diff(remapped(a[t]).splitlines(True), b[t].splitlines(True)))
        want = remapped(moved.lsdef["a"])
        assert moved.lsdef["b"] == want
        assert "postscripts=site-tune" in want and f"xcatmaster={NEW}" in want

    def test_b_powers_the_nodes_through_the_same_bmcs_as_a(self, moved):
        b = moved.b
        assert sorted(through(b, "rpower", NODES, "stat").lines) == \
            ["c1: on", "c2: off", "c3: off", "c4: on"]   # as A left them
        assert through(b, "rpower", "c4", "off").lines == ["c4: off"]
        assert moved.bmc.ipmitool("chassis", "power", "status").stdout.strip() == \
            "Chassis Power is off"
        assert through(b, "rpower", "c4", "on").lines == ["c4: on"]

    def test_nodeset_on_b_renders_the_sites_template_with_b_address(self, moved):
        b = moved.b
        assert through(b, "nodeset", "c2", f"osimage={IMAGE}").lines == [f"c2: {STATE}"]
        ks = (b.root / "install/autoinst/c2").read_text()
        assert ks.startswith(MARKER + "\n")
        assert "pyxlab-common" in ks and "pyxlab-tools" in ks  # the pkglist and its include
        assert f"http://{NEW}:80/install/rocky9.4/x86_64" in ks and OLD not in ks
        assert (b.root / "opt/site/compute.exlist").read_text() == "./usr/share/doc*\n"
        script = b.root / "install/postscripts/site-tune"
        assert script.read_text() == "#!/bin/sh\necho tuned\n"
        assert script.stat().st_mode & 0o777 == 0o755

    def test_makedhcp_and_makedns_validate_on_b(self, moved):
        b = moved.b
        through(b, "makedhcp", "-n")      # checked with dhcpd -t before it is written
        through(b, "makedns", "-n")       # checked with named-checkconf
        conf = (b.root / "etc/dhcp/dhcpd.conf").read_text()
        assert "fixed-address 10.79.1.14;" in conf and NEW in conf and OLD not in conf
        zone = (b.root / "var/named/db.lab.example").read_text()
        assert re.search(r"^c4\s.*\bA\s+10\.79\.1\.14$", zone, re.M), zone

    def test_bobs_certificate_from_a_is_accepted_by_b_with_his_policy(self, moved):
        b, bob = moved.b, moved.bob
        assert through(b, "nodels", "compute", home=bob).lines == ["c1", "c2", "c3", "c4"]
        assert through(b, "rpower", "c2", "stat", home=bob).lines == ["c2: off"]
        r = b.cli("tabdump", "site", home=bob)
        assert (r.rc, r.out, r.err) == (1, "", "Error: Permission denied for request\n")

    def test_the_import_regenerates_the_boot_files_of_a_node_set_to_install(self, moved):
        r, b = moved.imported, moved.b
        assert any(line.startswith("Regenerated: nodeset c1 ") for line in r.lines), r.out
        assert "Warning: nodeset" not in r.err, r.err
        assert MARKER in (b.root / "install/autoinst/c1").read_text()
        kcmdline = next(a for a in attrs(moved.lsdef["b"], "c1") if a.startswith("kcmdline="))
        assert f"http://{NEW}:80/install/autoinst/c1" in kcmdline and OLD not in kcmdline

    def test_a_url_with_a_port_is_remapped(self, moved):
        assert f"addkcmdline={UPDATES}" in attrs(moved.lsdef["a"], "c3")
        assert f"addkcmdline={remapped(UPDATES)}" in attrs(moved.lsdef["b"], "c3")


class TestMoveOnSqlite(Moved):
    backend = "sqlite"


@pytest.mark.postgres
class TestMoveOnPostgres(Moved):
    backend = "postgres"
