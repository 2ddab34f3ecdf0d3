"""The HTTP site nodes boot from: the trees with Range, what it refuses (404, escapes, private
files), each node's own files only to it, the counted boot script with its install-loop stop,
and the authenticated callback. Real HTTP on 127.0.0.1 (n1) and 127.0.0.2 (n2)."""
import hashlib
import http.client
import json
import os
import re
from pathlib import Path

import pytest
from support.cluster import (
    AUDITED,
    INSTALL_IMAGE,
    RHEL_MEDIA,
    nodes,
    osimage,
    root_password,
)
from support.cluster import site as site_keys

from xcatd.fronts.nodeapi import HttpSiteThread

IMG = INSTALL_IMAGE
STATE = "install rocky9.4-x86_64-compute"
N1, N2 = "127.0.0.1", "127.0.0.2"


#: The node API's audit rows are tested (AUDITED); n1 is 127.0.0.1, n2 127.0.0.2; the
#: kernel is 10,000 bytes, for the Range requests.
pytestmark = pytest.mark.cluster(
    AUDITED, site_keys(master=N1, dhcpsetup="n"), root_password(),
    osimage(IMG, "rocky9.4", media=RHEL_MEDIA, kernel=b"0123456789" * 1000, initrd=b"INITRD"),
    nodes("n1", f"hosts.ip={N1}", "mac.mac=52:54:00:00:00:01", "nodetype.arch=x86_64"),
    nodes("n2", f"hosts.ip={N2}", "mac.mac=52:54:00:00:00:02", "nodetype.arch=x86_64"))


@pytest.fixture
def site(cluster_sqlite):
    with HttpSiteThread(cluster_sqlite.paths) as http:
        yield http


def fetch(site, path, *, source=N1, method="GET", headers=None, body=None):
    conn = http_client(site.port, source)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read(), r.headers
    finally:
        conn.close()


def http_client(port, source):
    return http.client.HTTPConnection(N1, port, timeout=60, source_address=(source, 0))


def callback(site, node, token, status="installed", source=N1):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return fetch(site, f"/xcat/callback/{node}", source=source, method="POST",
                 headers=headers, body=f"status={status}")


def token_of(mn, node):
    text = (mn.root / f"tftpboot/xcat/xnba/nodes/{node}").read_text()
    return re.search(r"xcattoken=(\S+)", text).group(1)


def chain(mn, node):
    row = mn.db.rows("chain", keys=[node])[0]
    return row["currstate"], row["currchain"]


def status(mn, node):
    return mn.db.rows("nodelist", keys=[node])[0]["status"]


def audit(mn):
    return [r for r in mn.db.rows("auditlog") if r["command"] == "callback"]


# ---- the trees --------------------------------------------------------------------------------
def test_files_are_served_with_ranges(cluster_sqlite, site):
    path = "/install/rocky9.4/x86_64/images/pxeboot/vmlinuz"
    code, body, _ = fetch(site, path)
    assert code == 200 and body == b"0123456789" * 1000
    code, body, headers = fetch(site, path, headers={"Range": "bytes=3-6"})
    assert code == 206 and body == b"3456"
    assert headers["Content-Range"] == "bytes 3-6/10000"
    code, body, headers = fetch(site, path, method="HEAD")
    assert code == 200 and body == b"" and headers["Content-Length"] == "10000"
    loader = (cluster_sqlite.root / "tftpboot/xcat/xnba.kpxe").read_bytes()  # mknb's
    assert fetch(site, "/tftpboot/xcat/xnba.kpxe")[:2] == (200, loader)


@pytest.fixture
def traps(cluster_sqlite):
    """Things under (or beside) the trees that must never go out."""
    inst = cluster_sqlite.root / "install"
    (inst / "out").symlink_to("/etc")
    (inst / "passwd-link").symlink_to("/etc/passwd")
    (cluster_sqlite.root / "secret.txt").write_text("root:TOPSECRET")
    (inst / "up").symlink_to("..")
    (inst / ".hidden").write_text("TOPSECRET")
    private = inst / "private.key"
    private.write_text("TOPSECRET")
    os.chmod(private, 0o600)
    return cluster_sqlite


@pytest.mark.parametrize("path", [
    "/install/nosuch", "/install/rocky9.4", "/install/rocky9.4/", "/install/",
    "/install/../secret.txt", "/install/rocky9.4/../../secret.txt",
    "/install/%2e%2e/secret.txt", "/install/..%2fsecret.txt", "/install/up/secret.txt",
    "/install/out/passwd", "/install/passwd-link", "/install/.hidden", "/install/private.key",
    "/tftpboot/../install/rocky9.4/x86_64/images/pxeboot/vmlinuz", "/etc/passwd",
])
def test_what_must_not_go_out_is_not_found(traps, site, path):
    code, body, _ = fetch(site, path)
    assert code in (404, 400) and b"TOPSECRET" not in body and b"root:" not in body, (code, body)


def test_installers_get_their_media_description_files(cluster_sqlite, site):
    """anaconda reads .treeinfo (and .discinfo) from inst.repo; Debian media keep .disk/info:
    hidden names are refused except these."""
    tree = cluster_sqlite.root / "install/rocky9.4/x86_64"
    (tree / ".treeinfo").write_text("[general]\nfamily = Rocky Linux\n")
    (tree / ".discinfo").write_text("1715000000\nRocky Linux 9.4\nx86_64\n")
    (tree / ".disk").mkdir()
    (tree / ".disk/info").write_text("Debian GNU/Linux 12.5.0")
    for name in (".treeinfo", ".discinfo", ".disk/info"):
        os.chmod(tree / name, 0o644)
        assert fetch(site, f"/install/rocky9.4/x86_64/{name}")[0] == 200, name
    (tree / ".fingerprint").write_text("x")
    assert fetch(site, "/install/rocky9.4/x86_64/.fingerprint")[0] == 404


# ---- a node's own files ------------------------------------------------------------------------
def test_install_files_go_only_to_their_node(cluster_sqlite, site):
    cluster_sqlite.ok("nodeset", "n1,n2", f"osimage={IMG}")
    code, body, _ = fetch(site, "/install/autoinst/n1", source=N1)
    assert code == 200 and b"rootpw --iscrypted" in body
    assert token_of(cluster_sqlite, "n1").encode() in body
    assert fetch(site, "/install/autoinst/n1", source=N2)[0] == 403
    assert fetch(site, "/install/autoinst/n2", source=N1)[0] == 403
    assert fetch(site, "/install/autoinst/n2", source=N2)[0] == 200
    assert fetch(site, "/install/autoinst/", source=N1)[0] == 404          # no listing
    assert fetch(site, "/tftpboot/xcat/xnba/nodes/n2", source=N1)[0] == 403
    # a lab with dynamic addresses
    cluster_sqlite.ok("chtab", "key=httpsourcecheck", "site.value=no")
    site.site.invalidate()
    assert fetch(site, "/install/autoinst/n2", source=N1)[0] == 200


def test_install_files_go_out_only_while_installing_and_installed_removes_them(cluster_sqlite,
                                                                                site):
    """After the install, a local user on the node must not be able to fetch the root
    password's hash: the file is refused outside an install and gone after the report."""
    cluster_sqlite.ok("nodeset", "n1,n2", f"osimage={IMG}")
    auto = cluster_sqlite.root / "install/autoinst"
    assert fetch(site, "/install/autoinst/n1")[0] == 200
    cluster_sqlite.ok("nodeset", "n1", "boot")                 # the file is still on disk
    assert (auto / "n1").exists()
    code, body, _ = fetch(site, "/install/autoinst/n1")
    assert code == 404 and b"rootpw" not in body
    cluster_sqlite.ok("nodeset", "n1", f"osimage={IMG}")
    assert fetch(site, "/install/autoinst/n1")[0] == 200
    (auto / "n1.pre").write_text("pre")                 # n1's variants go with it
    (auto / "n10").write_text("not n1's")               # a name that only starts alike stays
    assert callback(site, "n1", token_of(cluster_sqlite, "n1"))[0] == 200
    assert not (auto / "n1").exists() and not (auto / "n1.pre").exists()
    assert (auto / "n10").exists() and (auto / "n2").exists()
    assert fetch(site, "/install/autoinst/n1")[0] == 404
    assert fetch(site, "/install/autoinst/n2", source=N2)[0] == 200    # n2 is still installing


# ---- behind a proxy ----------------------------------------------------------------------------
PROXY = "127.0.0.3"


@pytest.mark.parametrize("source,headers,n1,n2", [
    (PROXY, {"X-Real-IP": N2}, 403, 200),                      # a listed proxy: honoured
    (PROXY, {"X-Real-IP": N1, "X-Forwarded-For": N2}, 200, 403),
    (PROXY, {"X-Forwarded-For": N2}, 403, 403),                # X-Forwarded-For: ignored
    (PROXY, {"X-Forwarded-For": f"{N1}, {N2}"}, 403, 403),
    (N2, {"X-Real-IP": N1}, 403, 200),                         # not a proxy: ignored
    (N2, {"X-Forwarded-For": N1}, 403, 200),
])
def test_only_a_listed_proxys_x_real_ip_is_believed(cluster_sqlite, site, source, headers, n1, n2):
    cluster_sqlite.ok("chtab", "key=httpproxies", f"site.value={PROXY}")
    cluster_sqlite.ok("nodeset", "n1,n2", f"osimage={IMG}")
    site.site.invalidate()
    got = [fetch(site, f"/install/autoinst/{n}", source=source, headers=headers)[0]
           for n in ("n1", "n2")]
    assert got == [n1, n2]


def test_a_callback_through_the_proxy_is_the_nodes(cluster_sqlite, site):
    cluster_sqlite.ok("chtab", "key=httpproxies", f"site.value={PROXY}")
    cluster_sqlite.ok("nodeset", "n1", f"osimage={IMG}")
    site.site.invalidate()
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "Authorization": f"Bearer {token_of(cluster_sqlite, 'n1')}", "X-Real-IP": N1}
    code, _, _ = fetch(site, "/xcat/callback/n1", source=PROXY, method="POST", headers=headers,
                       body="status=installed")
    assert code == 200 and audit(cluster_sqlite)[-1]["clientname"] == N1


def nginx_locations(text):
    """The location blocks of an nginx config as a tree: [(modifier, pattern, directives,
    nested locations)]; other blocks (server, upstream, limit_except) are looked through."""
    text = re.sub(r"#[^\n]*", "", text)
    root = []
    stack = [(root, [])]
    for stmt, end in re.findall(r"([^{};]*)([{};])", text):
        stmt = " ".join(stmt.split())
        if end == "{":
            m = re.fullmatch(r"location\s+(?:(\^~|~\*|~|=)\s+)?(\S+)", stmt)
            if m:
                loc = (m.group(1), m.group(2), [], [])
                stack[-1][0].append(loc)
                stack.append((loc[3], loc[2]))
            else:
                stack.append((stack[-1][0], stack[-1][1]))
        elif end == "}":
            stack.pop()
        elif stmt:
            stack[-1][1].append(stmt)
    return root


def nginx_pick(locations, uri):
    """The location nginx's ngx_http_core_find_location chooses: an exact match; else the
    longest matching prefix, and within it its nested locations, the same way; then, unless
    that prefix has ^~, this level's regular expressions in order, the first match winning
    (and its own nested locations searched). Returns (location or None, final)."""
    exact = [loc for loc in locations if loc[0] == "=" and loc[1] == uri]
    if exact:
        return exact[0], True
    prefixes = [loc for loc in locations if loc[0] in (None, "^~") and uri.startswith(loc[1])]
    best = max(prefixes, key=lambda loc: len(loc[1]), default=None)
    if best is not None and best[3]:
        inner, final = nginx_pick(best[3], uri)
        if final:
            return inner, True
        best_inner = inner or best
    else:
        best_inner = best
    if best is None or best[0] != "^~":
        for loc in locations:
            if loc[0] in ("~", "~*") and re.search(loc[1], uri, re.I if loc[0] == "~*" else 0):
                return (nginx_pick(loc[3], uri)[0] if loc[3] else None) or loc, True
    return best_inner, False


@pytest.mark.parametrize("uri,want", [
    ("/install/rocky9.4/x86_64/.treeinfo", "alias /install/"),
    ("/install/rocky9.4/x86_64/.discinfo", "alias /install/"),
    ("/install/debian12/x86_64/.disk/info", "alias /install/"),
    ("/install/rocky9.4/x86_64/images/pxeboot/vmlinuz", "alias /install/"),
    ("/install/rocky9.4/x86_64/.treeinfo.new", "return 404"),
    ("/install/rocky9.4/x86_64/.hidden", "return 404"),
    ("/install/.diskette", "return 404"),
    ("/install/autoinst/n1", "proxy_pass http://pyxcat"),
    ("/tftpboot/xcat/xnba/nodes/n1", "proxy_pass http://pyxcat"),
    ("/tftpboot/xcat/xnba.kpxe", "alias /tftpboot/"),
    ("/tftpboot/xcat/.xnba.kpxe.lock", "return 404"),
    ("/tftpboot/.treeinfo", "return 404"),
    ("/xcat/callback/n1", "proxy_pass http://pyxcat"),
    ("/.git/config", "return 404"),
    ("/index.html", "return 404"),
])
def test_the_nginx_config_routes_each_path_as_meant(uri, want):
    """nginx is not installed here: the shipped config is checked against a model of nginx's
    location choice (longest prefix, ^~ stops the regular expressions, nested locations),
    which is what hid .treeinfo behind the top-level dotfile rule."""
    conf = Path(__file__).resolve().parents[2] / "share/nginx/pyxcat.conf"
    loc = nginx_pick(nginx_locations(conf.read_text()), uri)[0]
    assert loc is not None and want in loc[2], (uri, loc)
    if want.startswith("proxy_pass"):        # and nginx, not the client, says who asks
        assert "proxy_set_header X-Real-IP $remote_addr" in loc[2]


# ---- the boot script ---------------------------------------------------------------------------
def test_each_boot_script_fetch_in_install_counts_and_sets_installing(cluster_sqlite, site):
    cluster_sqlite.ok("nodeset", "n1", f"osimage={IMG}")
    code, body, _ = fetch(site, "/tftpboot/xcat/xnba/nodes/n1")
    assert code == 200 and body.startswith(f"#!ipxe\n#{STATE}\n".encode())
    assert status(cluster_sqlite, "n1") == "installing"
    fetch(site, "/tftpboot/xcat/xnba/nodes/n1")
    assert cluster_sqlite.db.rows("bootstate", keys=["n1"])[0]["installboots"] == 2
    assert fetch(site, "/tftpboot/xcat/xnba/nodes/n9")[0] == 404


def test_an_install_loop_ends_in_failed_and_a_local_boot(cluster_sqlite, site):
    cluster_sqlite.ok("chtab", "key=maxinstallboots", "site.value=2")
    cluster_sqlite.ok("nodeset", "n1", f"osimage={IMG}")
    token = token_of(cluster_sqlite, "n1")
    for _ in range(2):
        assert b"kernel http" in fetch(site, "/tftpboot/xcat/xnba/nodes/n1")[1]
    code, body, _ = fetch(site, "/tftpboot/xcat/xnba/nodes/n1")
    assert (code, body) == (200, b"#!ipxe\n#boot\nexit\n")
    assert status(cluster_sqlite, "n1") == "failed"
    assert chain(cluster_sqlite, "n1")[0] == "boot"
    assert callback(site, "n1", token)[0] == 403        # that install's token is spent
    fetch(site, "/tftpboot/xcat/xnba/nodes/n1")
    assert status(cluster_sqlite, "n1") == "booting"


def _packed_image(mn, method: str, *attrs: str) -> str:
    """A debian12 compute osimage of ``method`` and the files packimage leaves for it (with
    a manifest); its name."""
    image = f"debian12-x86_64-{method}-compute"
    mn.ok("chtab", f"imagename={image}", f"osimage.provmethod={method}",
          "osimage.osvers=debian12", "osimage.osarch=x86_64", "osimage.profile=compute", *attrs)
    where = mn.root / "install/netboot/debian12/x86_64/compute"
    where.mkdir(parents=True)
    for name in ("kernel", "initrd-stateless.gz", "rootimg.sfs"):
        (where / name).write_bytes(name.encode())
    (where / "manifest.json").write_text(json.dumps({
        "kernel": {"file": "kernel"}, "initrd": {"file": "initrd-stateless.gz"},
        "rootimg": {"file": "rootimg.sfs",
                    "sha256": hashlib.sha256(b"rootimg.sfs").hexdigest()}}))
    return image


def _diskless(mn):
    """n1 set to a packed netboot image."""
    image = _packed_image(mn, "netboot")
    mn.ok("nodeset", "n1", f"osimage={image}")
    return image


def test_a_diskless_node_reports_netbooting_then_booted_every_boot(cluster_sqlite, site):
    image = _diskless(cluster_sqlite)
    before = token_of(cluster_sqlite, "n1")   # nodeset's, in the file
    for _boot in range(3):  # each boot's script fetch issues the token of that boot
        script = fetch(site, "/tftpboot/xcat/xnba/nodes/n1")[1].decode()
        assert "xcat.image=" in script
        token = re.search(r"xcattoken=(\S+)", script).group(1)
        assert token != before and callback(site, "n1", before, status="netbooting")[0] == 403
        before = token
        assert status(cluster_sqlite, "n1") == "netbooting"
        assert callback(site, "n1", token, status="netbooting")[0] == 200
        assert status(cluster_sqlite, "n1") == "netbooting"
        assert callback(site, "n1", token, status="booted")[0] == 200
        assert status(cluster_sqlite, "n1") == "booted"
        assert cluster_sqlite.db.rows("bootstate", keys=["n1"])[0]["installboots"] == 0
    assert chain(cluster_sqlite, "n1")[0] == f"netboot {image}"


def test_a_diskless_node_that_never_reports_booted_ends_in_failed(cluster_sqlite, site):
    cluster_sqlite.ok("chtab", "key=maxinstallboots", "site.value=2")
    _diskless(cluster_sqlite)
    for _ in range(2):
        assert b"xcat.image=" in fetch(site, "/tftpboot/xcat/xnba/nodes/n1")[1]
    assert fetch(site, "/tftpboot/xcat/xnba/nodes/n1")[1] == b"#!ipxe\n#boot\nexit\n"
    assert status(cluster_sqlite, "n1") == "failed" and chain(cluster_sqlite, "n1")[0] == "boot"


def test_a_diskless_node_reporting_failed_stops_netbooting(cluster_sqlite, site):
    _diskless(cluster_sqlite)
    token = token_of(cluster_sqlite, "n1")
    why = "xcat: FAILED: image http://mn/x answered 404 after 5 tries: check packimage"
    code, body, _ = callback(site, "n1", token, status=f"failed&reason={why}\x07")
    assert code == 200 and why.encode() in body
    assert any(why in (r["comments"] or "") for r in audit(cluster_sqlite))  # kept
    assert status(cluster_sqlite, "n1") == "failed" and chain(cluster_sqlite, "n1")[0] == "boot"
    assert callback(site, "n1", token, status="booted")[0] == 403  # its token is retired


def _statelite(mn, *, statemnt: bool = True, rootfstype: str = ""):
    """n1 and n2 set to a packed statelite image: /var/lib/data/ persistent on their NFS
    area (statelite.statemnt), /etc/motd ro from a litetree directory."""
    image = _packed_image(mn, "statelite", f"osimage.rootfstype={rootfstype}")
    mn.ok("chtab", f"image={image},file=/var/lib/data/", "litefile.options=persistent")
    mn.ok("chtab", "image=ALL,file=/etc/motd", "litefile.options=ro")
    mn.ok("chtab", "priority=1", "litetree.directory=/lite/$node", f"litetree.image={image}")
    if statemnt:
        mn.ok("chtab", "node=n1", "statelite.statemnt=10.9.0.1:/state",
              "statelite.mntopts=vers=4.2")
        mn.ok("chtab", "node=n2", "statelite.statemnt=10.9.0.1:/state")
    return image


def plan(site, node, token, source=N1):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return fetch(site, f"/xcat/statelite/{node}", source=source, headers=headers)


def test_a_statelite_node_gets_its_plan_with_its_boot_token(cluster_sqlite, site):
    image = _statelite(cluster_sqlite)
    assert cluster_sqlite.ok("nodeset", "n1", f"osimage={image}").lines == [
        f"n1: statelite {image}"]
    script = fetch(site, "/tftpboot/xcat/xnba/nodes/n1")[1].decode()
    assert f"xcat.statelite=http://{N1}:" in script and "/xcat/statelite/n1 " in script
    assert status(cluster_sqlite, "n1") == "netbooting"
    token = re.search(r"xcattoken=(\S+)", script).group(1)   # this boot's
    code, body, headers = plan(site, "n1", token)
    assert code == 200 and headers["Cache-Control"] == "no-store"
    # the litetree directory has no server: the node's management server (site.master)
    assert body.decode().splitlines() == [
        f"# statelite of n1 ({image})", "state 10.9.0.1 /state n1 vers=4.2",
        f"tree {N1} /lite/n1 -", "file ro /etc/motd", "file persistent /var/lib/data/"]
    assert plan(site, "n1", token)[0] == 200            # not spent: every boot asks again
    assert callback(site, "n1", token, status="booted")[0] == 200
    assert chain(cluster_sqlite, "n1")[0] == f"statelite {image}"


@pytest.mark.parametrize("node,token,source,code,why", [
    ("n1", "wrong-token", N1, 403, "bad or retired token"),
    ("n1", None, N1, 403, "bad or retired token"),
    ("n1", "n1", N2, 403, "source address 127.0.0.2 is not the node's"),
    ("n9", "n1", N1, 403, "not a node"),
    ("n2", "n2", N2, 404, "n2 is not set to boot a statelite image"),
])
def test_a_plan_needs_the_nodes_token_address_and_statelite_state(cluster_sqlite, site, node,
                                                                 token, source, code, why):
    image = _statelite(cluster_sqlite)
    cluster_sqlite.ok("nodeset", "n1", f"osimage={image}")
    cluster_sqlite.ok("nodeset", "n2", f"osimage={IMG}")   # n2 installs: no plan for it
    if token in ("n1", "n2"):
        token = token_of(cluster_sqlite, token)
    got, body, _ = plan(site, node, token, source=source)
    assert got == code and b"state " not in body
    rows = [r for r in cluster_sqlite.db.rows("auditlog") if r["command"] == "liteplan"]
    assert why in (rows[-1]["comments"] or "")
    assert token is None or token not in str(rows)


def test_nodeset_checks_each_statelite_node_and_the_rootfstype(cluster_sqlite):
    image = _statelite(cluster_sqlite, statemnt=False)
    r = cluster_sqlite.run("nodeset", "n1", f"osimage={image}")
    assert r.rc == 1 and "n1: " in r.err
    assert "has persistent litefile entries, but n1 has no statelite.statemnt" in r.err
    cluster_sqlite.ok("chtab", "node=n1", "statelite.statemnt=10.9.0.1:/state")
    cluster_sqlite.ok("nodeset", "n1", f"osimage={image}")
    cluster_sqlite.ok("chtab", f"imagename={image}", "osimage.rootfstype=nfs")
    r = cluster_sqlite.run("nodeset", "n1", f"osimage={image}")
    assert r.rc == 1 and "rootfstype=nfs is not supported" in r.err


# ---- the callback ------------------------------------------------------------------------------
def test_installed_moves_the_chain_to_boot_and_spends_the_token(cluster_sqlite, site):
    cluster_sqlite.ok("nodeset", "n1", f"osimage={IMG}")
    token = token_of(cluster_sqlite, "n1")
    code, body, _ = callback(site, "n1", token)
    assert (code, body) == (200, b"ok\n")
    assert chain(cluster_sqlite, "n1") == ("boot", "boot")
    assert status(cluster_sqlite, "n1") == "installed"
    assert fetch(site, "/tftpboot/xcat/xnba/nodes/n1")[1] == b"#!ipxe\n#boot\nexit\n"
    assert cluster_sqlite.db.rows("bootstate", keys=["n1"])[0]["tokenhash"] is None
    assert callback(site, "n1", token)[0] == 403        # a replay
    rows = audit(cluster_sqlite)
    assert [r["status"] for r in rows] == ["Allowed", "Denied"]
    audit_log = repr(cluster_sqlite.db.rows("auditlog"))
    assert token not in audit_log
    assert hashlib.sha256(token.encode()).hexdigest() not in audit_log


@pytest.mark.parametrize("node,token,source,why", [
    ("n1", "wrong-token", N1, "bad or retired token"),
    ("n1", None, N1, "bad or retired token"),
    ("n2", "n2", N1, "source address 127.0.0.1 is not the node's"),   # n2's token, n1's address
    ("n1", "n2", N1, "bad or retired token"),                        # n2's token for n1
    ("n9", "n1", N1, "not a node"),
])
def test_a_wrong_token_or_address_is_403_audited_and_changes_nothing(cluster_sqlite, site, node,
                                                                     token, source, why):
    cluster_sqlite.ok("nodeset", "n1,n2", f"osimage={IMG}")
    if token in ("n1", "n2"):
        token = token_of(cluster_sqlite, token)
    assert callback(site, node, token, source=source)[0] == 403
    assert chain(cluster_sqlite, "n1")[0] == STATE and chain(cluster_sqlite, "n2")[0] == STATE
    row = audit(cluster_sqlite)[-1]
    assert row["status"] == "Denied" and why in row["comments"]
    assert row["clientname"] == source and row["noderange"] == node


def test_a_bad_status_is_400(cluster_sqlite, site):
    cluster_sqlite.ok("nodeset", "n1", f"osimage={IMG}")
    assert callback(site, "n1", token_of(cluster_sqlite, "n1"), status="done")[0] == 400
    assert chain(cluster_sqlite, "n1")[0] == STATE


def test_booted_sets_the_status_and_failed_ends_the_install(cluster_sqlite, site):
    cluster_sqlite.ok("nodeset", "n1,n2", f"osimage={IMG}")
    t1, t2 = token_of(cluster_sqlite, "n1"), token_of(cluster_sqlite, "n2")
    assert callback(site, "n1", t1, status="booted")[0] == 200
    assert status(cluster_sqlite, "n1") == "booted" and chain(cluster_sqlite, "n1")[0] == STATE
    assert callback(site, "n2", t2, status="failed", source=N2)[0] == 200
    assert status(cluster_sqlite, "n2") == "failed" and chain(cluster_sqlite, "n2")[0] == "boot"
    assert callback(site, "n2", t2, status="installed", source=N2)[0] == 403


@pytest.mark.parametrize("change,words", [
    (["chain.currchain=osimage=gone"], "Cannot find the OS image gone on the osimage table."),
    (["chain.currchain=dance"], "Unknown state dance requested"),
    (["chain.currchain=osimage", "nodetype.provmethod=", "noderes.next_osimage="],
     "nodetype.provmethod for nodes: n1."),
])
def test_an_installed_report_whose_chain_cannot_move_still_ends_the_install(cluster_sqlite, site,
                                                                          change, words):
    """The installer's curl -f must not fail an install that worked: 200 with a note, the
    node set to boot, its status recorded, the token spent and the report audited."""
    cluster_sqlite.ok("nodeset", "n1", f"osimage={IMG}")
    token = token_of(cluster_sqlite, "n1")
    cluster_sqlite.ok("nodech", "n1", *change)          # behind nodeset's back: chtab, nodech
    code, body, _ = callback(site, "n1", token)
    assert code == 200 and body.startswith(b"ok: ") and words.encode() in body, body
    assert chain(cluster_sqlite, "n1")[0] == "boot" and status(cluster_sqlite, "n1") == "installed"
    assert cluster_sqlite.db.rows("bootstate", keys=["n1"])[0]["tokenhash"] is None
    assert fetch(site, "/tftpboot/xcat/xnba/nodes/n1")[1] == b"#!ipxe\n#boot\nexit\n"
    row = audit(cluster_sqlite)[-1]
    assert row["status"] == "Allowed" and words in row["comments"]
    assert callback(site, "n1", token)[0] == 403


def test_an_installed_report_is_recorded_even_when_nothing_can_be_set(cluster_sqlite, site):
    """Neither the chain's next state nor boot can be written (a directory stands where the
    boot script goes): the report is still answered 200, recorded and its token spent."""
    cluster_sqlite.ok("nodeset", "n1", f"osimage={IMG}")
    token = token_of(cluster_sqlite, "n1")
    cluster_sqlite.ok("nodech", "n1", "chain.currchain=dance")
    script = cluster_sqlite.root / "tftpboot/xcat/xnba/nodes/n1"
    script.unlink()
    script.mkdir()
    code, body, _ = callback(site, "n1", token)
    assert code == 200 and b"could not be set to boot" in body, body
    assert status(cluster_sqlite, "n1") == "installed"
    assert cluster_sqlite.db.rows("bootstate", keys=["n1"])[0]["tokenhash"] is None
    assert audit(cluster_sqlite)[-1]["status"] == "Allowed"
    assert not (cluster_sqlite.root / "install/autoinst/n1").exists()


# ---- inside xcatd -------------------------------------------------------------------------------
def test_xcatd_serves_the_site_beside_its_https_port(mn_daemon):
    mn = mn_daemon
    port = mn.daemon.listening.http_port
    assert port
    loader = (mn.root / "tftpboot/xcat/xnba.kpxe").read_bytes()  # mknb's
    conn = http_client(port, N1)
    try:
        conn.request("GET", "/tftpboot/xcat/xnba.kpxe")
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, loader)
    finally:
        conn.close()


@pytest.mark.parametrize("key,value", [("httpport", "8o"), ("httpbind", "10.0.0.1:http")])
def test_a_typo_in_the_sites_address_is_logged_and_xcatd_serves_on(mn_sqlite, monkeypatch,
                                                                    caplog, key, value):
    """xcatd logs the bad setting, serves no HTTP site, and its commands go on working."""
    from xcatd.lab.daemon import DaemonThread
    from xcatd.lab.ports import free_port
    mn_sqlite.ok("chtab", f"key={key}", f"site.value={value}")
    mn_sqlite.ok("chtab", "key=tftpserver", "site.value=none")
    thread = DaemonThread(mn_sqlite.paths, port=free_port())  # not 0: the site is read
    try:
        listening = thread.start()
        assert listening.http_port is None
        assert f"site.{key} '{value}'" in caplog.text and "Traceback" not in caplog.text
        monkeypatch.delenv("XCATBYPASS")
        monkeypatch.setenv("XCATHOST", f"127.0.0.1:{listening.port}")
        assert mn_sqlite.ok("nodels").out == ""
    finally:
        thread.stop()


@pytest.mark.parametrize("site,host,want", [
    ({}, None, (None, 80)),
    ({"httpport": "8080"}, "10.0.0.1", ("10.0.0.1", 8080)),
    ({"httpbind": "127.0.0.1:8081", "httpport": "80"}, None, ("127.0.0.1", 8081)),
    ({"httpbind": "[::1]:8082"}, None, ("::1", 8082)),
    ({"httpbind": "10.0.0.2"}, "0.0.0.0", ("10.0.0.2", 80)),
    ({"httpbind": "none"}, None, None),
])
def test_where_the_site_listens(site, host, want):
    from xcatd.base.site import SiteValues
    from xcatd.fronts.nodeapi import listen_address
    assert listen_address(SiteValues(site), host) == want


# ---- a real network boot --------------------------------------------------------------------


def _until(what, probe, timeout):
    import time
    deadline = time.monotonic() + timeout
    while not (got := probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return got


def test_copycds_nodeset_rpower_and_the_vm_pxe_boots_and_reports_back(mn_sqlite, vmlab,
                                                                         tmp_path):
    """The first real network boot, as a new user does it: copycds an ISO (built here with
    xorriso around a fake Rocky tree holding Debian's kernel and the test initrd), nodeset the
    node, rpower it on through xcatd (which runs in the lab namespace beside its BMC,
    ipmi_sim, whose startcmd starts the QEMU VM), and the VM gets its address from the dhcpd
    makedhcp configured, fetches its iPXE script, kernel and initrd from xcatd's HTTP site,
    boots, and reports installed with its token. After a reset it gets the local-boot
    script."""
    import subprocess
    import sys

    from xcatd.lab import assets
    from xcatd.lab.fakemedia import bootable_iso
    from xcatd.lab.initrd import MARK, InitrdError
    mn, lab = mn_sqlite, vmlab
    mac, ip = "52:54:00:77:00:11", "10.77.0.11"
    try:
        iso = bootable_iso(tmp_path)
    except (assets.AssetsMissing, InitrdError) as exc:
        pytest.skip(str(exc))
    copied = mn.ok("copycds", str(iso))
    assert "Media copy operation successful" in copied.out
    assert mn.ok("lsdef", "-t", "osimage", "-o", IMG).rc == 0
    for key, value in (("master", lab.server_ip), ("dhcpsetup", "n"),
                       ("dhcpinterfaces", lab.bridge)):
        mn.ok("chtab", f"key={key}", f"site.value={value}")
    mn.ok("chtab", "key=system", "passwd.username=root", "passwd.password=cluster_sqlite")
    mn.ok("mkdef", "-t", "network", "-o", "lab", f"net={lab.subnet.network_address}",
          f"mask={lab.netmask}", f"mgtifname={lab.bridge}")
    vm = lab.add_vm("n1", mac)
    mn.ok("nodeadd", "n1", "groups=compute", f"hosts.ip={ip}", f"mac.mac={mac}",
          "nodetype.arch=x86_64", "nodehm.serialport=0", "nodehm.serialspeed=115200",
          "nodehm.mgt=ipmi", f"ipmi.bmc={vm.bmc_addr}", f"ipmi.bmcport={vm.bmc_port}",
          f"ipmi.username={vm.bmc_user}", f"ipmi.password={vm.bmc_password}")
    mn.ok("makedhcp", "-n")                       # n1's reservation: the source check holds
    lab.start_dhcpd(mn.root / "etc/dhcp/dhcpd.conf")
    log = tmp_path / "xcatd.log"
    bindir = os.path.dirname(sys.executable)
    with open(log, "wb") as fh:
        xcatd = lab.popen([os.path.join(bindir, "xcatd"), "--listen", lab.server_ip,
                           "--port", "3001"], env={**os.environ, "XCATROOT": str(mn.root)},
                          stdout=fh, stderr=subprocess.STDOUT)
    _until("xcatd's HTTP site", lambda: xcatd.poll() is not None or lab.run(
        ["ss", "-H", "-ltn", "sport", "= :80"]).stdout.strip(), 60)
    assert xcatd.poll() is None, log.read_text()

    assert mn.ok("nodeset", "n1", f"osimage={IMG}").lines == [f"n1: {STATE}"]
    # rpower goes through xcatd (root's unix socket): the BMC is on the namespace's loopback
    client_env = {k: v for k, v in os.environ.items() if k not in ("XCATBYPASS", "XCATHOST")}
    rpower = subprocess.run([os.path.join(bindir, "rpower"), "n1", "on"], capture_output=True,
                            text=True, timeout=120, env={**client_env, "XCATROOT": str(mn.root)})
    assert (rpower.returncode, rpower.stdout.strip()) == (0, "n1: on"), rpower.stderr
    assert lab.power_state(vm) == "on"
    assert lab.wait_serial(vm, rf"^{MARK} up (\S+)").group(1) == ip
    assert re.fullmatch(r"HTTP/1\.[01] 200 OK", lab.wait_serial(
        vm, rf"^{MARK} reported (.*)$").group(1).strip()), log.read_text()
    assert chain(mn, "n1") == ("boot", "boot") and status(mn, "n1") == "installed"
    row = mn.db.rows("bootstate", keys=["n1"])[0]
    assert row["lastfetch"] and row["tokenhash"] is None   # counted, then spent and reset

    lab.ipmitool(vm, "chassis", "power", "reset")  # iPXE now gets "exit": the disk's turn
    _until("the local-boot fetch", lambda: status(mn, "n1") == "booting", 180)
    assert mn.ok("nodeset", "n1", "stat").lines == ["n1: boot"]
