"""The node half of synclists (postscripts/xcatsync.py), applied into temporary directories:
files and trees with their modes, unchanged files not fetched again, a bad hash written
nowhere, APPEND twice appending once, MERGE of passwd/shadow/group, EXECUTE only when its
files changed, EXECUTEALWAYS every time, a hanging script killed whole at its timeout,
execute-only runs; and that the module stays standard-library Python 3.9."""
from __future__ import annotations

import ast
import doctest
import hashlib
import os
import sys
import time
from importlib.resources import files
from pathlib import Path

import pytest
from xcatd.postscripts import xcatsync
from xcatd.postscripts.xcatsync import apply

NSFD = "/var/xcat/node/syncfiles"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class MN:
    """The management node's files as a node's fetch sees them; it counts the fetches."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.fetched: list[str] = []

    def put(self, path: str, data: bytes | str) -> tuple[str, bytes]:
        self.data[path] = data.encode() if isinstance(data, str) else data
        return path, self.data[path]

    def fetch(self, path: str) -> bytes:
        self.fetched.append(path)
        return self.data[path]

    def file(self, path: str, data: bytes | str, dest: str, mode: int = 0o644, **kw) -> dict:
        path, body = self.put(path, data)
        return {"path": path, "dest": dest, "sha256": sha(body), "size": len(body),
                "mode": mode, **kw}

    def pair(self, path: str, data: bytes | str, dest: str, stage: str, **kw) -> dict:
        path, body = self.put(path, data)
        return {"path": path, "dest": dest, "sha256": sha(body), "size": len(body),
                "stage": stage, **kw}


def plan(**parts) -> dict:
    base = {"node": "n1", "synclists": ["/install/custom/x.synclist"], "nodesyncfiledir": NSFD,
            "timeout": 300, "files": [], "append": [], "merge": [], "execute": [],
            "executealways": [], "triggers": {}, "errors": [], "warnings": []}
    base.update(parts)
    return base


@pytest.fixture
def mn() -> MN:
    return MN()


@pytest.fixture
def node(tmp_path) -> Path:
    root = tmp_path / "node"
    root.mkdir()
    return root


def run(p: dict, mn: MN, node: Path, **kw) -> tuple[int, list[str]]:
    logged: list[str] = []
    rc, lines = apply(p, mn.fetch, root=str(node), log=logged.append, **kw)
    assert logged == lines          # every line went to the log as it came
    return rc, lines


def on_node(node: Path, path: str) -> Path:
    return node / path.lstrip("/")


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.rglob("*.xcatsync")]


# ---- files -----------------------------------------------------------------------------------
def test_files_and_trees_are_written_with_their_modes_and_parent_directories(mn, node):
    p = plan(files=[mn.file("/srv/hosts", "127.0.0.1 localhost\n", "/etc/hosts"),
                    mn.file("/srv/key", "secret-ish\n", "/etc/app/key", 0o600),
                    mn.file("/srv/tree/a", "a\n", "/opt/tree/a", 0o755),
                    mn.file("/srv/tree/b/c/d", "d\n", "/opt/tree/b/c/d")])
    rc, lines = run(p, mn, node)
    assert rc == 0, lines
    for entry in p["files"]:
        target = on_node(node, entry["dest"])
        assert target.read_bytes() == mn.data[entry["path"]]
        assert target.stat().st_mode & 0o7777 == entry["mode"]
    assert "/etc/app/key: updated" in lines
    assert lines[-1] == "sync: 4 updated, 0 unchanged, 0 errors"
    assert leftovers(node) == []


def test_files_that_did_not_change_are_not_fetched_again(mn, node):
    p = plan(files=[mn.file("/srv/a", "a\n", "/etc/a"), mn.file("/srv/b", "b\n", "/etc/b")])
    assert run(p, mn, node)[0] == 0
    assert sorted(mn.fetched) == ["/srv/a", "/srv/b"]
    mn.fetched.clear()
    rc, lines = run(p, mn, node)
    assert rc == 0 and mn.fetched == []
    assert lines == ["sync: 0 updated, 2 unchanged, 0 errors"]
    on_node(node, "/etc/b").write_text("changed on the node\n")
    assert run(p, mn, node)[0] == 0
    assert mn.fetched == ["/srv/b"]
    assert on_node(node, "/etc/b").read_text() == "b\n"


def test_a_file_with_the_right_content_gets_its_mode_without_a_fetch(mn, node):
    p = plan(files=[mn.file("/srv/tool", "#!/bin/sh\n", "/usr/local/bin/tool", 0o755)])
    target = on_node(node, "/usr/local/bin/tool")
    target.parent.mkdir(parents=True)
    target.write_text("#!/bin/sh\n")
    target.chmod(0o600)
    assert run(p, mn, node)[0] == 0
    assert mn.fetched == [] and target.stat().st_mode & 0o777 == 0o755


def test_a_file_that_arrives_with_another_hash_is_written_nowhere(mn, node):
    good = mn.file("/srv/good", "good\n", "/etc/good")
    bad = mn.file("/srv/bad", "what the plan says\n", "/etc/bad")
    new = mn.file("/srv/new", "n\n", "/opt/fresh/dir/new")
    mn.data["/srv/bad"] = b"what an attacker sends\n"
    mn.data["/srv/new"] = b"tampered\n"
    on_node(node, "/etc").mkdir()
    on_node(node, "/etc/bad").write_text("the old content\n")
    rc, lines = run(plan(files=[bad, good, new]), mn, node)
    assert rc == 1
    assert on_node(node, "/etc/bad").read_text() == "the old content\n"
    assert not on_node(node, "/opt/fresh").exists()
    assert on_node(node, "/etc/good").read_text() == "good\n"     # the others still sync
    errors = [x for x in lines if x.startswith("Error: ")]
    assert len(errors) == 2
    sent = sha(b"what an attacker sends\n")
    assert errors[0] == (f"Error: /etc/bad: /srv/bad arrived with sha256 {sent}, the plan "
                         f"says {bad['sha256']}: not written")
    assert leftovers(node) == []


def test_a_fetch_that_fails_is_an_error_of_that_file_only(mn, node):
    p = plan(files=[mn.file("/srv/a", "a", "/etc/a"),
                    {"path": "/srv/gone", "dest": "/etc/gone", "sha256": sha(b"x"), "size": 1,
                     "mode": 0o644},
                    mn.file("/srv/c", "c", "/etc/c")])
    rc, lines = run(p, mn, node)
    assert rc == 1
    assert "Error: /etc/gone: cannot fetch /srv/gone: '/srv/gone'" in lines
    assert on_node(node, "/etc/a").exists() and on_node(node, "/etc/c").exists()
    assert not on_node(node, "/etc/gone").exists()


@pytest.mark.parametrize("entry, words", [
    ({"dest": "etc/x"}, "not a full path on the node"),
    ({"dest": "/etc/adir"}, "is a directory on the node"),
    ({"dest": "/etc/file/below"}, "Not a directory"),
    ({"sha256": None}, "no sha256 in the plan"),
    ({"sha256": "ab" * 32}, "not written"),
    ("not an object", "not a JSON object in the plan"),
    ({"path": None}, "cannot fetch"),
])
def test_a_bad_entry_is_an_error_of_that_entry_only(mn, node, entry, words):
    on_node(node, "/etc/adir").mkdir(parents=True)
    on_node(node, "/etc/file").write_text("f")
    bad = entry if isinstance(entry, str) else {**mn.file("/srv/x", "x", "/etc/x"), **entry}
    rc, lines = run(plan(files=[bad, mn.file("/srv/ok", "ok", "/etc/ok")]), mn, node)
    assert rc == 1
    errors = [x for x in lines if x.startswith("Error: ")]
    assert len(errors) == 1 and words in errors[0], lines
    assert on_node(node, "/etc/ok").read_text() == "ok"


def test_a_destination_cannot_lead_out_of_the_root(mn, node):
    p = plan(files=[mn.file("/srv/x", "x", "/../../../etc/escaped")])
    assert run(p, mn, node)[0] == 0
    assert on_node(node, "/etc/escaped").read_text() == "x"


def test_plan_errors_fail_the_sync_and_the_planned_part_still_applies(mn, node):
    p = plan(files=[mn.file("/srv/a", "a", "/etc/a")],
             errors=["/install/custom/x.synclist:3: /srv/missing: no such file on the "
                     "management node"],
             warnings=["/install/custom/x.synclist:1: (n1,gone): Invalid nodes"])
    rc, lines = run(p, mn, node)
    assert rc == 1
    assert lines[:2] == ["Error: /install/custom/x.synclist:3: /srv/missing: no such file on "
                         "the management node",
                         "Warning: /install/custom/x.synclist:1: (n1,gone): Invalid nodes"]
    assert on_node(node, "/etc/a").read_text() == "a"


def test_a_plan_that_is_not_an_object_is_an_error():
    rc, lines = apply(["nope"], lambda p: b"", root="/nonexistent", log=lambda _x: None)
    assert rc == 1 and lines == ["Error: the sync plan is not a JSON object"]


# ---- APPEND ----------------------------------------------------------------------------------
def appending(mn: MN, content: str) -> dict:
    return mn.pair("/srv/motd.add", content, "/etc/motd", f"{NSFD}/append/srv/motd.add",
                   original=f"{NSFD}/org/etc/motd")


def test_append_twice_appends_once_and_a_new_content_replaces_the_old(mn, node):
    motd = on_node(node, "/etc/motd")
    motd.parent.mkdir()
    motd.write_text("hello")             # no newline at the end: one is added
    motd.chmod(0o640)
    p = plan(append=[appending(mn, "welcome to the cluster\n")])
    assert run(p, mn, node)[0] == 0
    assert motd.read_text() == "hello\nwelcome to the cluster\n"
    assert motd.stat().st_mode & 0o777 == 0o640
    assert on_node(node, f"{NSFD}/org/etc/motd").read_text() == "hello"
    mn.fetched.clear()
    rc, _ = run(p, mn, node)
    assert rc == 0 and mn.fetched == []
    assert motd.read_text() == "hello\nwelcome to the cluster\n"
    # the staged copy lost (a reboot of a diskless node): the original still prevents a repeat
    on_node(node, f"{NSFD}/append/srv/motd.add").unlink()
    assert run(p, mn, node)[0] == 0
    assert motd.read_text() == "hello\nwelcome to the cluster\n"
    assert run(plan(append=[appending(mn, "maintenance on friday\n")]), mn, node)[0] == 0
    assert motd.read_text() == "hello\nmaintenance on friday\n"


def test_append_needs_the_file_on_the_node(mn, node):
    rc, lines = run(plan(append=[appending(mn, "x\n")]), mn, node)
    assert rc == 1
    assert "Error: /etc/motd: APPEND needs the file on the node, and it does not exist" in lines
    assert not on_node(node, "/etc/motd").exists()
    assert not on_node(node, f"{NSFD}/append/srv/motd.add").exists()


# ---- MERGE -----------------------------------------------------------------------------------
PASSWD = ("root:x:0:0:root:/root:/bin/bash\n"
          "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
          "bob:x:1000:1000:Bob:/home/bob:/bin/sh\n")
SHADOW = "root:*:19000:0:99999:7:::\nbob:!:19000:0:99999:7:::\n"
GROUP = "root:x:0:\nusers:x:100:bob\n"


@pytest.fixture
def etc(node):
    d = on_node(node, "/etc")
    d.mkdir()
    for name, text, mode in (("passwd", PASSWD, 0o644), ("shadow", SHADOW, 0o640),
                             ("group", GROUP, 0o644)):
        (d / name).write_text(text)
        (d / name).chmod(mode)
    return d


def merging(mn: MN, src: str, data: str, dest: str) -> dict:
    return mn.pair(src, data, dest, f"{NSFD}/merge/mergefiles{src}")


def test_merge_replaces_entries_by_name_adds_new_ones_and_keeps_the_mode(mn, node, etc):
    p = plan(merge=[
        merging(mn, "/srv/passwd", "bob:x:1000:1000:Bob B.:/home/bob:/bin/bash\n"
                                   "ann:x:1001:1001:Ann:/home/ann:/bin/bash\n", "/etc/passwd"),
        merging(mn, "/srv/shadow", "bob:$6$salt$hash:19500:0:99999:7:::\n"
                                   "ann:$6$salt$other:19500:0:99999:7:::\n", "/etc/shadow"),
        merging(mn, "/srv/group", "users:x:100:bob,ann\nann:x:1001:\n", "/etc/group")])
    assert run(p, mn, node)[0] == 0
    assert (etc / "passwd").read_text() == (
        "root:x:0:0:root:/root:/bin/bash\n"
        "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        "bob:x:1000:1000:Bob B.:/home/bob:/bin/bash\n"
        "ann:x:1001:1001:Ann:/home/ann:/bin/bash\n")
    assert (etc / "shadow").read_text() == ("root:*:19000:0:99999:7:::\n"
                                            "bob:$6$salt$hash:19500:0:99999:7:::\n"
                                            "ann:$6$salt$other:19500:0:99999:7:::\n")
    assert (etc / "shadow").stat().st_mode & 0o777 == 0o640
    assert (etc / "group").read_text() == "root:x:0:\nusers:x:100:bob,ann\nann:x:1001:\n"
    before = {n: (etc / n).read_text() for n in ("passwd", "shadow", "group")}
    mn.fetched.clear()
    assert run(p, mn, node)[0] == 0
    assert mn.fetched == []
    assert {n: (etc / n).read_text() for n in before} == before
    # merging again (the staged copies lost) gives the same files: no duplicate entries
    for name in ("passwd", "shadow", "group"):
        on_node(node, f"{NSFD}/merge/mergefiles/srv/{name}").unlink()
    assert run(p, mn, node)[0] == 0
    assert {n: (etc / n).read_text() for n in before} == before


def test_a_bad_merge_file_changes_nothing(mn, node, etc):
    p = plan(merge=[merging(mn, "/srv/passwd", "ann:x:1001:1001::/home/ann:/bin/sh\n"
                                               "this is not an entry\n", "/etc/passwd")])
    rc, lines = run(p, mn, node)
    assert rc == 1
    assert ("Error: /etc/passwd: line 2 of the MERGE file is not a 'name:...' entry"
            in lines)
    assert (etc / "passwd").read_text() == PASSWD
    assert not on_node(node, f"{NSFD}/merge/mergefiles/srv/passwd").exists()


def test_merge_refuses_other_files_whatever_the_plan_says(mn, node, etc):
    (etc / "sudoers").write_text("root ALL=(ALL) ALL\n")
    p = plan(merge=[merging(mn, "/srv/sudo", "bob ALL=(ALL) NOPASSWD: ALL\n", "/etc/sudoers")])
    rc, lines = run(p, mn, node)
    assert rc == 1 and mn.fetched == []
    assert "Error: /etc/sudoers: MERGE changes only /etc/passwd, /etc/shadow, /etc/group, " \
           "/etc/gshadow" in lines
    assert (etc / "sudoers").read_text() == "root ALL=(ALL) ALL\n"


# ---- EXECUTE, EXECUTEALWAYS -------------------------------------------------------------------
def script(body: str) -> str:
    return "#!/bin/sh\n" + body + "\n"


def count(node: Path, name: str) -> int:
    log = on_node(node, f"/tmp/{name}")
    return len(log.read_text().splitlines()) if log.exists() else 0


def execute_plan(mn: MN, node: Path, conf: str) -> dict:
    """app.conf with its app.conf.post (staged), a synced restart.sh, an always.sh."""
    staged = f"{NSFD}/execute/srv/app.conf.post"
    log = lambda name: f'echo run >> "{node}/tmp/{name}"'  # noqa: E731
    return plan(files=[mn.file("/srv/app.conf", conf, "/etc/app.conf"),
                       mn.file("/srv/app.conf.post", script(log("post")), staged, 0o755,
                               stage=True),
                       mn.file("/srv/restart.sh", script(log("restart")), "/opt/restart.sh",
                               0o644),
                       mn.file("/srv/always.sh", script(log("always")), "/opt/always.sh", 0o755)],
                execute=[staged, "/opt/restart.sh"], executealways=["/opt/always.sh"],
                triggers={staged: ["/etc/app.conf", staged]})


def test_execute_runs_only_when_its_files_changed_and_executealways_every_time(mn, node):
    on_node(node, "/tmp").mkdir()
    p = execute_plan(mn, node, "v1\n")
    rc, lines = run(p, mn, node)
    assert rc == 0, lines
    assert (count(node, "post"), count(node, "restart"), count(node, "always")) == (1, 1, 1)
    assert f"EXECUTE {NSFD}/execute/srv/app.conf.post: ran, exit code 0" in lines
    assert run(p, mn, node)[0] == 0
    assert (count(node, "post"), count(node, "restart"), count(node, "always")) == (1, 1, 2)
    assert run(execute_plan(mn, node, "v2\n"), mn, node)[0] == 0      # app.conf changed
    assert (count(node, "post"), count(node, "restart"), count(node, "always")) == (2, 1, 3)


def test_a_failing_script_fails_the_sync_with_its_exit_code_and_output(mn, node):
    p = plan(files=[mn.file("/srv/bad.sh", script("echo something broke >&2; exit 3"),
                            "/opt/bad.sh", 0o755)],
             execute=["/opt/bad.sh"])
    rc, lines = run(p, mn, node)
    assert rc == 1
    assert "/opt/bad.sh: something broke" in lines
    assert "Error: EXECUTE /opt/bad.sh: exit code 3" in lines


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def gone(pid: int, patience: float = 30.0) -> bool:
    """Whether ``pid`` is gone, given a killed process the moment it takes to die."""
    deadline = time.monotonic() + patience
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_hanging_script_is_killed_with_its_whole_group_at_its_timeout(mn, node):
    out = on_node(node, "/tmp")
    out.mkdir()
    body = script(f'echo $$ > "{out}/main"\n'
                  f'sleep 600 & echo $! > "{out}/child"\n'
                  f'readlink /proc/$$/fd/0 > "{out}/stdin"\n'
                  'wait')
    p = plan(files=[mn.file("/srv/hang.sh", body, "/opt/hang.sh", 0o755)],
             executealways=["/opt/hang.sh"], timeout=3)
    rc, lines = run(p, mn, node)
    assert rc == 1
    assert "Error: EXECUTEALWAYS /opt/hang.sh: timed out after 3 s, killed" in lines
    main, child = (int((out / name).read_text()) for name in ("main", "child"))
    assert main != os.getpgrp()
    assert gone(main) and gone(child)
    assert (out / "stdin").read_text().strip() == "/dev/null"


def test_a_script_runs_in_its_own_process_group(mn, node):
    out = on_node(node, "/tmp")
    out.mkdir()
    body = script(f'{sys.executable} -c "import os; print(os.getpgrp(), os.getppid())" '
                  f'> "{out}/ids"')
    p = plan(files=[mn.file("/srv/ids.sh", body, "/opt/ids.sh", 0o755)],
             executealways=["/opt/ids.sh"])
    assert run(p, mn, node)[0] == 0
    pgrp, shell = map(int, (out / "ids").read_text().split())
    assert pgrp == shell != os.getpgrp()


def test_a_script_missing_on_the_node_is_an_error(mn, node):
    rc, lines = run(plan(executealways=["/opt/nothere.sh"]), mn, node)
    assert rc == 1 and "Error: EXECUTEALWAYS /opt/nothere.sh: not on the node" in lines


def test_execute_only_writes_nothing_and_runs_the_scripts_in_place(mn, node):
    on_node(node, "/tmp").mkdir()
    p = execute_plan(mn, node, "v1\n")
    on_node(node, "/opt").mkdir()
    for entry in p["files"]:
        if entry["dest"] in ("/opt/restart.sh", "/opt/always.sh"):   # as the image has them
            on_node(node, entry["dest"]).write_bytes(mn.data[entry["path"]])
    rc, lines = run(p, mn, node, execute_only=True)
    assert rc == 0, lines
    assert mn.fetched == ["/srv/app.conf.post"]          # its own copy of a script only
    assert not on_node(node, "/etc/app.conf").exists()
    assert "/etc/app.conf: not in place (execute only: not synced)" in lines
    assert (count(node, "post"), count(node, "restart"), count(node, "always")) == (1, 1, 1)


# ---- the module itself -------------------------------------------------------------------------
SOURCE = Path(xcatsync.__file__)


def test_it_is_standard_library_python_3_9():
    tree = ast.parse(SOURCE.read_text(), feature_version=(3, 9))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.module}
    assert imported and imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_it_ships_as_package_data_and_its_examples_hold():
    assert (files("xcatd.postscripts") / "xcatsync.py").is_file()
    result = doctest.testmod(xcatsync)
    assert result.attempted > 0 and result.failed == 0
