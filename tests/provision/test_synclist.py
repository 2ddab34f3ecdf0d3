"""Synclists on the management node (xcatd.provision.synclist): the parser (every line form,
every section, errors naming file:line and the bad part), where a node's synclists come from
(osimage.synclists, xCAT's default file), the plan of each node (files and trees with their
hashes, noderange lines on a real cluster, APPEND, MERGE, EXECUTE triggers, EXECUTEALWAYS),
errors of one node naming the file, the bulk planner's fixed query count, and one plan applied
end to end by the node half (postscripts/xcatsync.py)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.cluster import build, command, mkdef, nodes, site
from xcatd.postscripts import xcatsync

from xcatd.base.request import XcatError
from xcatd.db.cluster import Cluster
from xcatd.provision import synclist as synclist_mod
from xcatd.provision.synclist import (
    FileLine,
    PairLine,
    ScriptLine,
    SyncPlanner,
    parse,
    plan_for,
)

IMAGE = "debian12-x86_64-install-compute"
SYNCLIST = "/install/custom/sync/compute.synclist"


# ---- the parser ---------------------------------------------------------------------------------
@pytest.mark.parametrize("line, expected", [
    ("/etc/hosts -> /etc/hosts", FileLine(("/etc/hosts",), "/etc/hosts", None, False, "s:1")),
    ("/etc/hosts -> /etc/", FileLine(("/etc/hosts",), "/etc", None, True, "s:1")),
    ("/a /b   /c -> /opt/d", FileLine(("/a", "/b", "/c"), "/opt/d", None, True, "s:1")),
    ("/home/mikev -> /home/mikev/", FileLine(("/home/mikev",), "/home/mikev", None, True,
                                             "s:1")),
    ("/tmp/* -> /tmp/", FileLine(("/tmp/*",), "/tmp", None, True, "s:1")),
    ("/etc/hosts -> (node1,node2) /etc/hosts",
     FileLine(("/etc/hosts",), "/etc/hosts", "node1,node2", False, "s:1")),
    ("/etc/hosts -> ( node[1-4], group1 ) /etc/hosts",
     FileLine(("/etc/hosts",), "/etc/hosts", "node[1-4],group1", False, "s:1")),
    ("/etc/hosts->/etc/x", FileLine(("/etc/hosts",), "/etc/x", None, False, "s:1")),
    ("//srv/./a/../b -> /etc//b   # a trailing comment",
     FileLine(("/srv/b",), "/etc/b", None, False, "s:1")),
])
def test_file_lines(line, expected):
    sl = parse(line + "\n", "s")
    assert sl.ok, sl.errors
    assert sl.files == (expected,)


def test_every_section_comments_and_blank_lines():
    text = """# the compute nodes' files
#INCLUDE:/install/custom/other.synclist#

/srv/a -> /etc/a
EXECUTE:
/srv/a.post
# a comment inside a section
EXECUTEALWAYS:
/srv/always.sh
APPEND:
/srv/motd.add -> /etc/motd
MERGE:
/srv/users -> /etc/passwd
/srv/groups -> /etc/group
/srv/shadow -> /etc/shadow
/srv/gshadow -> /etc/gshadow
"""
    sl = parse(text, "c.synclist")
    assert sl.ok, sl.errors
    assert sl.files == (FileLine(("/srv/a",), "/etc/a", None, False, "c.synclist:4"),)
    assert sl.execute == (ScriptLine("/srv/a.post", "c.synclist:6"),)
    assert sl.executealways == (ScriptLine("/srv/always.sh", "c.synclist:9"),)
    assert sl.append == (PairLine("/srv/motd.add", "/etc/motd", "c.synclist:11"),)
    assert [(m.source, m.dest) for m in sl.merge] == [
        ("/srv/users", "/etc/passwd"), ("/srv/groups", "/etc/group"),
        ("/srv/shadow", "/etc/shadow"), ("/srv/gshadow", "/etc/gshadow")]


@pytest.mark.parametrize("text, line, part, words", [
    ("etc/hosts -> /etc/hosts", 1, "etc/hosts", "the source must be a full path"),
    ("/etc/hosts -> etc/hosts", 1, "etc/hosts", "the destination must be a full path"),
    ("/etc/hosts /etc/hosts2", 1, "/etc/hosts /etc/hosts2", "not a 'source -> destination'"),
    ("-> /etc/hosts", 1, "-> /etc/hosts", "no source"),
    ("/etc/hosts ->", 1, "/etc/hosts ->", "no destination"),
    ("/a -> /b /c", 1, "/b /c", "one destination a line"),
    ("/a -> /b -> /c", 1, "/a -> /b -> /c", "more than one '->'"),
    ("/a -> (n1 /b", 1, "(n1 /b", "no ')' closes the noderange"),
    ("/a -> ( ) /b", 1, "( ) /b", "empty noderange"),
    ("/a -> /b\nEXECUTE: /a.post", 2, "EXECUTE: /a.post", "header stands alone"),
    ("EXECUTE:\n/a -> /b", 2, "/a -> /b", "EXECUTE: lists one script a line"),
    ("EXECUTEALWAYS:\nrun.sh", 2, "run.sh", "the script must be a full path"),
    ("EXECUTE:\n/a /b", 2, "/a /b", "one script a line"),
    ("MERGE:\n/srv/sudo -> /etc/sudoers", 2, "/etc/sudoers", "MERGE: changes only"),
    ("APPEND:\n/a -> (n1) /etc/motd", 2, "(n1)", "a noderange is not allowed in APPEND"),
    ("APPEND:\n/a /b -> /etc/motd", 2, "/a /b", "APPEND: takes one source"),
    ("APPEND:\n/a -> /etc/", 2, "/etc/", "needs a file, not a directory"),
    ("MERGE:\n/srv/u* -> /etc/passwd", 2, "/srv/u*", "not a pattern"),
    ("/a\x00 -> /b", 1, "/a\x00", "NUL"),
])
def test_a_bad_line_is_an_error_naming_the_file_the_line_and_the_part(text, line, part, words):
    sl = parse(text, "/install/custom/x.synclist")
    assert len(sl.errors) == 1 and not sl.ok
    err = sl.errors[0]
    assert (err.source, err.line, err.part) == ("/install/custom/x.synclist", line, part)
    assert words in err.problem
    assert str(err) == f"/install/custom/x.synclist:{line}: {err.problem}: '{part}'"


def test_a_bad_line_leaves_the_good_lines_parsed():
    sl = parse("/a -> /b\nnonsense\n/c -> /d\nEXECUTE:\n/x.post\n", "s")
    assert [e.line for e in sl.errors] == [2]
    assert [f.sources for f in sl.files] == [("/a",), ("/c",)]
    assert [s.path for s in sl.execute] == ["/x.post"]


# ---- a cluster ----------------------------------------------------------------------------------
def mnfile(mn, path: str, data: bytes | str, mode: int = 0o644) -> Path:
    """A file on the management node (under its root)."""
    real = Path(mn.root) / path.lstrip("/")
    real.parent.mkdir(parents=True, exist_ok=True)
    real.write_bytes(data.encode() if isinstance(data, str) else data)
    real.chmod(mode)
    return real


def real(mn, path: str) -> str:
    return str(Path(mn.root) / path.lstrip("/"))


def sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def with_synclist(mn, text: str, path: str = SYNCLIST):
    mnfile(mn, path, text)
    return mn


@pytest.fixture
def sync_mn(mn_sqlite):
    """n1-n3 in compute,all (n2 also in rack2), provisioned with an osimage whose synclist
    is SYNCLIST."""
    build(mn_sqlite, nodes("n1-n3", groups="compute,all"), command("nodech", "n2", "groups,=rack2"),
          mkdef("osimage", IMAGE, "imagetype=linux", "provmethod=install", "osvers=debian12",
                "osarch=x86_64", "profile=compute", f"synclists={SYNCLIST}"),
          command("nodech", "compute", f"nodetype.provmethod={IMAGE}"))
    return mn_sqlite


def planner(mn, names=("n1", "n2", "n3")) -> SyncPlanner:
    return SyncPlanner(Cluster(mn.paths, mn.db), names)


def dests(plan) -> list[str]:
    return [f.dest for f in plan.files]


def test_files_lists_and_trees_expand_with_their_hashes_sizes_and_modes(sync_mn):
    mn = sync_mn
    mnfile(mn, "/srv/hosts", "127.0.0.1 localhost\n")
    mnfile(mn, "/srv/a.conf", "a\n", 0o600)
    mnfile(mn, "/srv/b.conf", "bb\n", 0o755)
    mnfile(mn, "/srv/tree/top", "top\n")
    mnfile(mn, "/srv/tree/sub/deep/leaf", "leaf\n")
    mnfile(mn, "/srv/tree/.hidden", "h\n")
    mnfile(mn, "/srv/skel/.profile", "p\n")
    mnfile(mn, "/srv/skel/bin/tool", "t\n", 0o755)
    mnfile(mn, "/srv/skel/readme", "r\n")
    with_synclist(mn, """/srv/hosts -> /etc/hosts
/srv/hosts -> /tmp/etc/
/srv/a.conf /srv/b.conf -> /opt/app
/srv/tree -> /data/tree/
/srv/skel/* -> /etc/skel/
""")
    plan = planner(mn).plan("n1")
    assert plan.ok, plan.errors
    assert plan.synclists == [SYNCLIST]
    want = [("/srv/hosts", "/etc/hosts", 0o644), ("/srv/hosts", "/tmp/etc/hosts", 0o644),
            ("/srv/a.conf", "/opt/app/a.conf", 0o600),
            ("/srv/b.conf", "/opt/app/b.conf", 0o755),
            ("/srv/tree/.hidden", "/data/tree/.hidden", 0o644),
            ("/srv/tree/top", "/data/tree/top", 0o644),
            ("/srv/tree/sub/deep/leaf", "/data/tree/sub/deep/leaf", 0o644),
            # like the shell's, * leaves hidden names out; a matched directory keeps its name
            ("/srv/skel/bin/tool", "/etc/skel/bin/tool", 0o755),
            ("/srv/skel/readme", "/etc/skel/readme", 0o644)]
    got = plan.as_dict()["files"]
    assert got == [{"path": real(mn, src), "dest": dest,
                    "sha256": sha(Path(real(mn, src)).read_bytes()),
                    "size": Path(real(mn, src)).stat().st_size, "mode": mode}
                   for src, dest, mode in want]
    assert json.loads(json.dumps(plan.as_dict())) == plan.as_dict()


def test_noderange_lines_go_to_their_nodes_only(sync_mn):
    mn = sync_mn
    for name in "abcd":
        mnfile(mn, f"/srv/{name}", name)
    with_synclist(mn, """/srv/a -> /etc/all
/srv/b -> (n1,n3) /etc/b
/srv/c -> (compute,-n1) /etc/c
/srv/d -> (rack2) /etc/d
""")
    plans = planner(mn).plans()
    assert {n: dests(p) for n, p in plans.items()} == {
        "n1": ["/etc/all", "/etc/b"],
        "n2": ["/etc/all", "/etc/c", "/etc/d"],
        "n3": ["/etc/all", "/etc/b", "/etc/c"]}
    assert all(p.ok and not p.warnings for p in plans.values())


def test_a_noderange_naming_no_node_or_group_warns_and_the_others_still_match(sync_mn):
    mn = sync_mn
    mnfile(mn, "/srv/a", "a")
    with_synclist(mn, "/srv/a -> (n1,gone7) /etc/a\n")
    plans = planner(mn).plans()
    assert dests(plans["n1"]) == ["/etc/a"] and dests(plans["n2"]) == []
    assert plans["n1"].ok
    assert len(plans["n1"].warnings) == 1
    assert plans["n1"].warnings[0].startswith(f"{SYNCLIST}:1: (n1,gone7): ")
    assert "gone7" in plans["n1"].warnings[0]


def test_the_later_line_wins_for_one_destination(sync_mn):
    mn = sync_mn
    mnfile(mn, "/srv/generic", "generic")
    mnfile(mn, "/srv/special", "special")
    with_synclist(mn, "/srv/generic -> /etc/x\n/srv/special -> (n2) /etc/x\n")
    plans = planner(mn).plans()
    assert [(f.source, f.dest) for f in plans["n1"].files] == [("/srv/generic", "/etc/x")]
    assert [(f.source, f.dest) for f in plans["n2"].files] == [("/srv/special", "/etc/x")]


@pytest.mark.parametrize("line, words", [
    ("/srv/missing -> (n1) /etc/m", "/srv/missing: no such file on the management node"),
    ("/srv/adir/* -> (n1) /etc/m/", "/srv/adir/*: matches no file on the management node"),
    ("/srv/fifo -> (n1) /etc/m", "/srv/fifo is not a regular file"),
    ("/srv/broken -> (n1) /etc/m", "/srv/broken: no such file on the management node"),
])
def test_a_bad_source_is_an_error_of_its_nodes_naming_it(sync_mn, line, words):
    mn = sync_mn
    mnfile(mn, "/srv/a", "a")
    Path(real(mn, "/srv/adir")).mkdir()
    os.mkfifo(real(mn, "/srv/fifo"))
    os.symlink(real(mn, "/srv/nowhere"), real(mn, "/srv/broken"))
    with_synclist(mn, f"/srv/a -> /etc/a\n{line}\n")
    plans = planner(mn).plans()
    assert plans["n1"].errors == [f"{SYNCLIST}:2: {words}"]
    assert dests(plans["n1"]) == ["/etc/a"]          # the rest of the list still syncs
    assert plans["n2"].ok and dests(plans["n2"]) == ["/etc/a"]   # not its line


def test_synclist_errors_and_a_missing_synclist_are_errors_of_the_nodes(sync_mn):
    mn = sync_mn
    mnfile(mn, "/srv/a", "a")
    with_synclist(mn, "/srv/a -> /etc/a\n/srv/a -> etc/b\n")
    other = "/install/custom/sync/extra.synclist"
    build(mn, command("chdef", "-t", "osimage", "-o", IMAGE,
                      f"synclists={SYNCLIST},{other}"))
    plan = planner(mn).plan("n1")
    assert plan.synclists == [SYNCLIST, other]
    assert plan.errors == [
        f"{SYNCLIST}:2: the destination must be a full path on the node: 'etc/b'",
        f"synclist {other}: no such file"]
    assert dests(plan) == ["/etc/a"]


def test_append_and_merge_entries_carry_where_the_node_keeps_its_copies(sync_mn):
    mn = sync_mn
    mnfile(mn, "/srv/motd.add", "welcome\n")
    users = "ann:x:1001:1001::/home/ann:/bin/sh\n"
    mnfile(mn, "/srv/users", users)
    with_synclist(mn, "APPEND:\n/srv/motd.add -> /etc/motd\nMERGE:\n/srv/users -> /etc/passwd\n"
                      "/srv/nousers -> /etc/group\n")
    plan = planner(mn).plan("n1").as_dict()
    assert plan["append"] == [{
        "path": real(mn, "/srv/motd.add"), "dest": "/etc/motd", "sha256": sha("welcome\n"),
        "size": 8, "stage": "/var/xcat/node/syncfiles/append/srv/motd.add",
        "original": "/var/xcat/node/syncfiles/org/etc/motd"}]
    assert plan["merge"] == [{
        "path": real(mn, "/srv/users"), "dest": "/etc/passwd",
        "sha256": sha(users), "size": len(users),
        "stage": "/var/xcat/node/syncfiles/merge/mergefiles/srv/users"}]
    assert plan["errors"] == [f"{SYNCLIST}:5: MERGE: /srv/nousers: no such file on the "
                              "management node"]
    build(mn, site(nodesyncfiledir="/opt/xsync"))
    again = planner(mn).plan("n1").as_dict()
    assert again["append"][0]["stage"] == "/opt/xsync/append/srv/motd.add"
    assert again["nodesyncfiledir"] == "/opt/xsync"


def test_execute_triggers_and_executealways(sync_mn):
    mn = sync_mn
    for name in ("app.conf", "app.conf.post", "other", "other.post", "restart.sh",
                 "always.sh", "notsynced.sh"):
        mnfile(mn, f"/srv/{name}", f"#!/bin/sh\necho {name}\n", 0o755)
    with_synclist(mn, """/srv/app.conf -> /etc/app.conf
/srv/app.conf.post -> /usr/local/sbin/app.post
/srv/other -> (n1) /etc/other
/srv/restart.sh -> /opt/restart.sh
/srv/always.sh -> (n1) /opt/always.sh
EXECUTE:
/srv/app.conf.post
/srv/other.post
/srv/restart.sh
/srv/nothing.post
EXECUTEALWAYS:
/srv/always.sh
/srv/notsynced.sh
""")
    plans = planner(mn).plans()
    n1, n2 = plans["n1"], plans["n2"]
    staged = "/var/xcat/node/syncfiles/execute/srv/other.post"
    body = "#!/bin/sh\necho other.post\n"
    assert n1.execute == ["/usr/local/sbin/app.post", staged, "/opt/restart.sh"]
    assert n1.triggers == {
        "/usr/local/sbin/app.post": ["/usr/local/sbin/app.post", "/etc/app.conf"],
        staged: ["/etc/other", staged],
        "/opt/restart.sh": ["/opt/restart.sh"]}
    assert [f.as_dict() for f in n1.files if f.stage] == [{
        "path": real(mn, "/srv/other.post"), "dest": staged,
        "sha256": sha(body), "size": len(body), "mode": 0o755,
        "stage": True}]
    # /etc/other goes to n1 only: n2 has no reason to run other.post
    assert n2.execute == ["/usr/local/sbin/app.post", "/opt/restart.sh"]
    assert n1.executealways == ["/opt/always.sh"] and n2.executealways == []
    assert n1.ok and n2.ok, (n1.errors, n2.errors)
    assert n1.warnings == [f"{SYNCLIST}:13: EXECUTEALWAYS: /srv/notsynced.sh is not synced "
                           "by the synclist, so it runs nowhere (list it as a file too)"]


def test_a_missing_execute_script_is_an_error_of_the_nodes_that_need_it(sync_mn):
    mn = sync_mn
    mnfile(mn, "/srv/conf", "c")
    with_synclist(mn, "/srv/conf -> (n1) /etc/conf\nEXECUTE:\n/srv/conf.post\n")
    plans = planner(mn).plans()
    assert plans["n1"].errors == [f"{SYNCLIST}:3: EXECUTE: /srv/conf.post: no such file on "
                                  "the management node"]
    assert plans["n2"].ok


def test_allows_only_the_files_of_the_nodes_own_plan(sync_mn):
    mn = sync_mn
    for name in ("a", "b", "add", "users", "x.post"):
        mnfile(mn, f"/srv/{name}", name)
    with_synclist(mn, "/srv/a -> /etc/a\n/srv/b -> (n2) /etc/b\n/srv/x -> /etc/x\n"
                      "APPEND:\n/srv/add -> /etc/motd\nMERGE:\n/srv/users -> /etc/passwd\n"
                      "EXECUTE:\n/srv/x.post\n")
    mnfile(mn, "/srv/x", "x")
    plans = planner(mn).plans()
    n1 = plans["n1"]
    for name in ("a", "add", "users", "x", "x.post"):
        assert n1.allows(real(mn, f"/srv/{name}")), name
    assert not n1.allows(real(mn, "/srv/b"))            # n2's line
    assert plans["n2"].allows(real(mn, "/srv/b"))
    assert not n1.allows("/srv/a")                      # the plan's own name only
    assert not n1.allows(real(mn, "/srv/../srv/a"))
    assert not n1.allows(real(mn, SYNCLIST))
    assert not n1.allows(real(mn, "/etc/xcat/cfgloc"))
    assert not n1.allows(None)  # type: ignore[arg-type]


# ---- where the synclists are ---------------------------------------------------------------------
def test_xcats_default_synclist_for_legacy_provmethods(mn_sqlite):
    mn = mn_sqlite
    build(mn, nodes("n1-n5", groups="compute"),
          command("nodech", "compute", "nodetype.os=debian12", "nodetype.arch=x86_64",
                  "nodetype.profile=compute"),
          command("nodech", "n1", "nodetype.provmethod=install"),
          command("nodech", "n2", "nodetype.provmethod=netboot"),
          command("nodech", "n3", "nodetype.provmethod=statelite", "nodetype.profile=service"),
          mkdef("osimage", IMAGE, "imagetype=linux", "provmethod=install"),
          command("nodech", "n4", f"nodetype.provmethod={IMAGE}"),
          command("nodech", "n5", "nodetype.provmethod=install",
                  f"noderes.current_osimage={IMAGE}"))
    inst = "/install/custom/install/debian"
    mnfile(mn, f"{inst}/compute.synclist", "")
    mnfile(mn, f"{inst}/compute.debian12.x86_64.synclist", "")    # the most specific wins
    mnfile(mn, "/install/custom/netboot/debian/compute.debian12.synclist", "")
    plans = planner(mn, ["n1", "n2", "n3", "n4", "n5"]).plans()
    assert plans["n1"].synclists == [f"{inst}/compute.debian12.x86_64.synclist"]
    assert plans["n2"].synclists == ["/install/custom/netboot/debian/compute.debian12.synclist"]
    assert plans["n3"].synclists == []          # no service synclist
    assert plans["n4"].synclists == []          # an osimage node: its osimage has none
    assert plans["n5"].synclists == [f"{inst}/compute.debian12.x86_64.synclist"]
    build(mn, command("chdef", "-t", "osimage", "-o", IMAGE, "synclists=/srv/img.synclist"))
    plans = planner(mn, ["n4", "n5"]).plans()
    assert plans["n4"].synclists == plans["n5"].synclists == ["/srv/img.synclist"]


def test_no_synclist_is_an_empty_plan(mn_sqlite):
    build(mn_sqlite, nodes("n1", groups="compute"))
    plan = plan_for(Cluster(mn_sqlite.paths, mn_sqlite.db), "n1").as_dict()
    assert plan == {"node": "n1", "synclists": [], "nodesyncfiledir": "/var/xcat/node/syncfiles",
                    "timeout": 300, "files": [], "append": [], "merge": [], "execute": [],
                    "executealways": [], "triggers": {}, "errors": [], "warnings": []}


def test_a_bad_site_value_fails_the_request_naming_it(sync_mn):
    build(sync_mn, site(nodesyncfiledir="var/sync"))
    with pytest.raises(XcatError, match=r"site\.nodesyncfiledir 'var/sync'"):
        planner(sync_mn).plan("n1")


def test_a_node_the_planner_did_not_read_is_refused(sync_mn):
    with pytest.raises(ValueError, match="n9"):
        planner(sync_mn, ["n1"]).plan("n9")


# ---- in bulk -------------------------------------------------------------------------------------
def test_plans_cost_the_same_queries_and_hashes_for_3_nodes_as_for_60(mn_sqlite, monkeypatch):
    mn = mn_sqlite
    build(mn, nodes("n[1-60]", groups="compute,all"), command("nodech", "n[1-30]", "groups,=odd"),
          mkdef("osimage", IMAGE, "imagetype=linux", "provmethod=install",
                f"synclists={SYNCLIST}"),
          command("nodech", "compute", f"nodetype.provmethod={IMAGE}"))
    for name in ("a", "b", "tree/x", "tree/y", "add", "users", "b.post"):
        mnfile(mn, f"/srv/{name}", name)
    with_synclist(mn, "/srv/a -> /etc/a\n/srv/b -> (odd,n59) /etc/b\n/srv/tree -> /t/\n"
                      "APPEND:\n/srv/add -> /etc/motd\nMERGE:\n/srv/users -> /etc/passwd\n"
                      "EXECUTE:\n/srv/b.post\n")
    hashed: list[str] = []
    real_hash = synclist_mod._hash_file
    monkeypatch.setattr(synclist_mod, "_hash_file",
                        lambda path, source: hashed.append(source) or real_hash(path, source))
    engine = mn.db.engine
    counts = []
    for names in ([f"n{i}" for i in range(1, 4)], [f"n{i}" for i in range(1, 61)]):
        seen: list[int] = []
        hashed.clear()
        listener = lambda *a, seen=seen: seen.append(1)  # noqa: E731
        sa.event.listen(engine, "before_cursor_execute", listener)
        try:
            plans = planner(mn, names).plans()
        finally:
            sa.event.remove(engine, "before_cursor_execute", listener)
        assert all(p.ok for p in plans.values()), [p.errors for p in plans.values()]
        assert sorted(hashed) == sorted(set(hashed))     # each file hashed once
        counts.append(len(seen))
    assert 0 < counts[0] == counts[1], counts
    assert dests(plans["n59"]) == ["/etc/a", "/etc/b", "/t/x", "/t/y",
                                   "/var/xcat/node/syncfiles/execute/srv/b.post"]
    assert dests(plans["n40"]) == ["/etc/a", "/t/x", "/t/y"]


# ---- end to end: the plan applied by the node half ------------------------------------------
def test_a_plan_applied_by_xcatsync_through_a_fetch_that_checks_allows(sync_mn, tmp_path):
    mn = sync_mn
    mnfile(mn, "/srv/hosts", "10.0.0.1 mn\n")
    mnfile(mn, "/srv/tree/a/b", "deep\n", 0o600)
    mnfile(mn, "/srv/run.sh", "#!/bin/sh\necho ran >> \"$0.log\"\n", 0o755)
    with_synclist(mn, "/srv/hosts -> /etc/hosts\n/srv/tree -> /opt/t/\n"
                      "/srv/run.sh -> /opt/run.sh\nEXECUTE:\n/srv/run.sh\n")
    plan = planner(mn).plan("n1")
    fetched: list[str] = []

    def fetch(path: str) -> bytes:          # what GET /xcat/agent/file?path= does
        if not plan.allows(path):
            raise PermissionError(f"403 {path}")
        fetched.append(path)
        return Path(path).read_bytes()

    node = tmp_path / "node"
    node.mkdir()
    wire = json.loads(json.dumps(plan.as_dict()))
    rc, lines = xcatsync.apply(wire, fetch, root=str(node), log=lambda _line: None)
    assert rc == 0, lines
    assert (node / "etc/hosts").read_text() == "10.0.0.1 mn\n"
    assert (node / "opt/t/a/b").read_text() == "deep\n"
    assert (node / "opt/t/a/b").stat().st_mode & 0o777 == 0o600
    assert (node / "opt/run.sh.log").read_text() == "ran\n"
    assert len(fetched) == 3
    fetched.clear()
    rc, lines = xcatsync.apply(wire, fetch, root=str(node), log=lambda _line: None)
    assert rc == 0 and fetched == []
    assert (node / "opt/run.sh.log").read_text() == "ran\n"    # nothing changed: not run again
