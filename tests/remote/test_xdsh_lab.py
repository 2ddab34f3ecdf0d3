"""xdsh and xdcp end to end (issue 18): the real console scripts, run in the lab's
management-node namespace with XCATBYPASS, against 50 real OpenSSH nodes
(xcatd.lab.sshnodes), and through a live xcatd whose engine loop lives in that namespace.

Every test gets a fresh management node that knows the nodes (register + makeknownhosts);
the nodes are shared by the whole module, so a test uses its own paths on them (a uuid) and
puts back what it changes in their /etc and /root.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from support.sshlab import register, ssh_cluster
from support.waiting import poll

from xcatd.lab.incli import Result

nodes = ssh_cluster(50)

NAMES = [f"n{i:03d}" for i in range(1, 51)]
BIN = Path(sys.executable).parent
HOSTS_HEAD = "HOSTS " + "-" * 73
HOSTS_RULE = "-" * 79


class Ran(Result):
    @property
    def errlines(self) -> list[str]:
        return self.err.splitlines()


def uid() -> str:
    return uuid.uuid4().hex[:10]


def mn_env(mn, **extra: str) -> dict[str, str]:
    env = {**os.environ, "XCATROOT": str(mn.root), "XCATBYPASS": "1", **extra}
    for var in ("XCATHOST", "DSH_FANOUT", "DSH_TIMEOUT", "DSH_NODE_OPTS",
                "DSH_REMOTE_PASSWORD"):
        if var not in extra:
            env.pop(var, None)
    return env


def xcat(lab, mn, cmd: str, *args: str, env: dict[str, str] | None = None,
         input: str | None = None, timeout: float = 120) -> Ran:
    """The installed console script ``cmd`` in the management-node namespace, in process
    mode (XCATBYPASS) on ``mn``'s XCATROOT."""
    p = lab.mn_run([str(BIN / cmd), *args], env=mn_env(mn, **(env or {})),
                   capture_output=True, text=True, timeout=timeout, input=input,
                   stdin=None if input is not None else subprocess.DEVNULL)
    return Ran(p.returncode, p.stdout, p.stderr)


def on(lab, node: str, script: str, input: str | None = None) -> str:
    """A shell script inside the node (not over ssh); its stdout, failing on an error."""
    r = lab.node_run(node, ["sh", "-c", script], input=input)
    assert r.returncode == 0, f"{node}: {script}: {r.stderr}"
    return r.stdout


def cat(lab, node: str, path: str) -> str | None:
    r = lab.node_run(node, ["cat", path])
    return r.stdout if r.returncode == 0 else None


def by_node(lines: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in lines:
        node, sep, text = line.partition(": ")
        assert sep, f"a line without a node prefix: {line!r}"
        out.setdefault(node, []).append(text)
    return out


def site(mn, **values: str) -> None:
    mn.ok("chdef", "-t", "site", *(f"{k}={v}" for k, v in values.items()))


@pytest.fixture
def mn(mn_sqlite, nodes):
    """A management node (SQLite, in process) that knows the 50 nodes, in group compute,
    with their host keys in root's known_hosts."""
    register(mn_sqlite, nodes)
    mn_sqlite.ok("makeknownhosts", "compute")
    return mn_sqlite


# ---- xdsh: output, streams, exit codes ------------------------------------------------------
def test_hostname_on_all_50_nodes_gives_one_line_each(nodes, mn):
    r = xcat(nodes, mn, "xdsh", "compute", "hostname")
    assert r.rc == 0, r.err
    assert r.err == ""
    assert sorted(r.lines) == [f"{n}: {n}" for n in NAMES]


def test_stdout_and_stderr_lines_land_on_their_own_streams(nodes, mn):
    r = xcat(nodes, mn, "xdsh", "n001-n005",
             "echo out1; sleep 0.1; echo err >&2; sleep 0.1; echo out2")
    assert r.rc == 0, r.err
    assert sorted(r.lines) == sorted(f"n00{i}: out{j}" for i in range(1, 6) for j in (1, 2))
    assert sorted(r.errlines) == [f"n00{i}: err" for i in range(1, 6)]
    # without -s a node's lines come together, in order, when it is done
    for i in range(0, 10, 2):
        node = r.lines[i].split(": ")[0]
        assert r.lines[i:i + 2] == [f"{node}: out1", f"{node}: out2"], r.lines


def test_a_non_zero_exit_is_reported_for_that_node_only(nodes, mn):
    r = xcat(nodes, mn, "xdsh", "compute", "echo ran; [ $NODE = n003 ] && exit 3; true")
    assert r.rc == 1
    assert sorted(r.lines) == [f"{n}: ran" for n in NAMES]
    assert r.errlines == ["Error: n003 remote Command had return code: 3"]


def test_node_is_exported_to_the_command_and_its_children(nodes, mn):
    r = xcat(nodes, mn, "xdsh", "compute", "sh -c 'echo \"node=$NODE\"'")
    assert r.rc == 0, r.err
    assert sorted(r.lines) == [f"{n}: node={n}" for n in NAMES]


def test_z_prints_each_nodes_remote_rc(nodes, mn):
    r = xcat(nodes, mn, "xdsh", "n001-n004", "-z",
             "echo hi; [ $NODE = n002 ] && exit 5; [ $NODE = n004 ] && exit 1; true")
    assert r.rc == 1
    got = by_node(r.lines)
    assert got == {"n001": ["hi", "Remote_command_rc = 0"],
                   "n002": ["hi", "Remote_command_rc = 5"],
                   "n003": ["hi", "Remote_command_rc = 0"],
                   "n004": ["hi", "Remote_command_rc = 1"]}
    assert sorted(r.errlines) == ["Error: n002 remote Command had return code: 5",
                                  "Error: n004 remote Command had return code: 1"]


def test_s_streams_a_line_before_the_node_is_done(nodes, mn, tmp_path):
    """The node prints a line, then waits for a file that the test makes only once it has
    read that line: without streaming the line would come after the wait, and the node
    would say 'nogo'."""
    go = f"/tmp/xdsh-go-{uid()}"
    command = (f"echo first; i=0; while [ ! -e {go} ] && [ $i -lt 200 ]; do sleep 0.1; "
               f"i=$((i+1)); done; [ -e {go} ] && echo second || echo nogo")
    p = nodes.mn_popen([str(BIN / "xdsh"), "n001", "-s", command], env=mn_env(mn),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = p.stdout.readline()
        on(nodes, "n001", f"touch {go}")
        rest, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        nodes.node_run("n001", ["rm", "-f", go])
    assert first == "n001: first\n"
    assert rest.splitlines() == ["n001: second"], err
    assert p.returncode == 0, err


def test_Q_prints_nothing_but_keeps_the_exit_code(nodes, mn):
    r = xcat(nodes, mn, "xdsh", "n001-n003", "-Q", "echo out; echo err >&2; "
             "[ $NODE = n002 ] && exit 4; true")
    assert r.out == ""
    assert not [x for x in r.errlines if re.match(r"n00\d: ", x)], r.err
    assert r.rc == 1
    ok = xcat(nodes, mn, "xdsh", "n001-n003", "-Q", "echo out; echo err >&2")
    assert (ok.rc, ok.out, ok.err) == (0, "", "")


def test_fanout_1_and_50_give_the_same_output(nodes, mn):
    """On 20 of the nodes: one at a time, 50 ssh handshakes take long on a small machine."""
    one = xcat(nodes, mn, "xdsh", "n[001-020]", "-f", "1", "echo $NODE $(hostname)")
    fifty = xcat(nodes, mn, "xdsh", "n[001-020]", "-f", "50", "echo $NODE $(hostname)")
    assert one.rc == fifty.rc == 0, one.err + fifty.err
    assert sorted(one.lines) == sorted(fifty.lines) == [f"{n}: {n} {n}" for n in NAMES[:20]]
    assert one.err == fifty.err == ""


def test_json_document_has_each_nodes_stdout_stderr_and_rc(nodes, mn):
    r = xcat(nodes, mn, "xdsh", "n001-n003", "--json",
             "echo out; echo err >&2; [ $NODE = n003 ] && exit 3; true")
    assert r.rc == 1
    doc = json.loads(r.out)
    assert doc["command"] == "xdsh"
    assert doc["rc"] == 1
    assert doc["nodes"] == {
        "n001": {"stdout": ["out"], "stderr": ["err"], "rc": 0},
        "n002": {"stdout": ["out"], "stderr": ["err"], "rc": 0},
        "n003": {"stdout": ["out"], "stderr": ["err"], "rc": 3}}
    assert [e["error"] for e in doc["errors"]] == ["n003 remote Command had return code: 3"]


def test_E_exports_the_variables_of_an_environment_file(nodes, mn, tmp_path):
    env = tmp_path / "env"
    env.write_text("# an xdsh -E file\nexport GREETING='hello world'\nCOLOR=blue\n")
    r = xcat(nodes, mn, "xdsh", "n001-n003", "-E", str(env),
             "sh -c 'echo \"$GREETING/$COLOR\"'")
    assert r.rc == 0, r.err
    assert sorted(r.lines) == [f"n00{i}: hello world/blue" for i in range(1, 4)]


def test_e_runs_a_local_script_with_its_arguments_and_removes_it(nodes, mn, tmp_path):
    script = tmp_path / "probe.sh"
    script.write_text('#!/bin/sh\necho "args=$*"\necho "host=$(hostname)"\necho "self=$0"\n')
    script.chmod(0o755)
    r = xcat(nodes, mn, "xdsh", "n001-n003", "-e", str(script), "one", "two")
    assert r.rc == 0, r.err
    got = by_node(r.lines)
    assert sorted(got) == ["n001", "n002", "n003"]
    for node, lines in got.items():
        assert lines[:2] == ["args=one two", f"host={node}"]
        m = re.fullmatch(r"self=(/tmp/\w+\.dsh)", lines[2])
        assert m, lines
        assert nodes.node_run(node, ["test", "-e", m.group(1)]).returncode == 1, \
            f"{node}: {m.group(1)} was left on the node"
        assert on(nodes, node, "ls /tmp | grep '\\.dsh$' || true") == ""


def test_l_logs_in_as_another_user(nodes, mn):
    user = f"xdu{uid()[:6]}"
    home = f"/tmp/{user}-home"
    pub = mn.paths.under("/root/.ssh/id_ed25519.pub").read_text()
    on(nodes, "n005", f"echo '{user}:x:4321:4321::{home}:/bin/sh' >>/etc/passwd; "
                      f"mkdir -p {home}/.ssh; cat >{home}/.ssh/authorized_keys; "
                      f"chown -R 4321:4321 {home}", input=pub)
    try:
        r = xcat(nodes, mn, "xdsh", "n005", "-l", user, "id -un; echo $HOME")
    finally:
        on(nodes, "n005", f"sed -i '/^{user}:/d' /etc/passwd; rm -rf {home}")
    assert r.rc == 0, r.err
    assert r.lines == [f"n005: {user}", f"n005: {home}"]


# ---- xdsh: nodes that fail ------------------------------------------------------------------
def test_a_node_whose_sshd_is_down_gets_one_error_line(nodes, mn):
    nodes.stop_sshd("n007")
    try:
        r = xcat(nodes, mn, "xdsh", "compute", "echo up")
    finally:
        nodes.start_sshd("n007")
    assert r.rc == 1
    assert sorted(r.lines) == [f"{n}: up" for n in NAMES if n != "n007"]
    assert len(r.errlines) == 1, r.err
    assert "n007" in r.errlines[0] and "connection refused" in r.errlines[0]


def test_t_ends_a_hung_node_and_kills_its_command_on_the_node(nodes, mn):
    mark = f"xdshmark{uid()}"
    # n002's command ignores TERM: the kill has to go on to KILL
    r = xcat(nodes, mn, "xdsh", "n001-n003", "-t", "2",
             f"if [ $NODE = n002 ]; then bash -c \"trap '' TERM; exec -a {mark} sleep 300\"; "
             "fi; echo fine")
    assert r.rc == 1
    assert sorted(r.lines) == ["n001: fine", "n003: fine"]
    assert len(r.errlines) == 1, r.err
    assert r.errlines[0].startswith("n002: ") and "timed out" in r.errlines[0]
    # processes on the nodes are host processes (no PID namespace): pgrep sees them all
    left = nodes.node_run("n002", ["pgrep", "-af", mark])
    assert left.returncode == 1 and left.stdout == "", \
        f"the timed-out command still runs on n002: {left.stdout}"


def test_Q_still_says_which_node_could_not_be_reached(nodes, mn):
    """-Q silences the nodes' output (man page: 'No target output is written'); that xdsh
    could not reach a node is xdsh's own error, which the plugin promises always."""
    nodes.stop_sshd("n007")
    try:
        r = xcat(nodes, mn, "xdsh", "n006-n008", "-Q", "echo up")
    finally:
        nodes.start_sshd("n007")
    assert r.rc == 1
    assert r.out == ""
    assert len(r.errlines) == 1 and "n007" in r.errlines[0] \
        and "connection refused" in r.errlines[0], r.err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGQUIT])
def test_a_signal_to_xdsh_kills_the_remote_commands(nodes, mn, sig):
    """xdsh(1), SIGNALS: INT, QUIT and TERM are propagated to the commands on the targets
    (TERM from a batch system or timeout(1)); xdsh exits 128 + the signal's number."""
    mark = f"xdshmark{uid()}"
    p = nodes.mn_popen([str(BIN / "xdsh"), "n001-n002", f"bash -c 'exec -a {mark} sleep 300'"],
                       env=mn_env(mn, PYTHONFAULTHANDLER="1"), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert poll(lambda: _running(nodes, "n001", mark) and _running(nodes, "n002", mark), 30)
        p.send_signal(sig)
        try:
            _, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:   # say where it hangs: faulthandler's dump
            p.send_signal(signal.SIGABRT)
            _, err = p.communicate(timeout=30)
            pytest.fail(f"xdsh did not end after {sig.name}:\n{err[-6000:]}")
        assert p.returncode == 128 + sig
        assert err.splitlines() == ["Interrupted"]
        left = {n: _running(nodes, n, mark) for n in ("n001", "n002")}
        assert left == {"n001": "", "n002": ""}, left
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for n in ("n001", "n002"):
            nodes.node_run(n, ["pkill", "-f", f"^{mark}"])


def _running(lab, node: str, mark: str) -> str:
    """The processes whose command line starts with ``mark`` (as the node sees them)."""
    return lab.node_run(node, ["pgrep", "-af", f"^{mark}"]).stdout


@pytest.fixture
def mute_node(nodes):
    """n009 with its sshd stopped and a listener on its port 22 that accepts connections
    and never says a word."""
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("the listener runs the system's /usr/bin/python3 inside the node")
    ip = nodes.node("n009").ip
    nodes.stop_sshd("n009")
    code = ("import socket\ns = socket.socket()\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('{ip}', 22))\ns.listen(64)\nprint('ready', flush=True)\nheld = []\n"
            "while True:\n    held.append(s.accept())\n")
    p = subprocess.Popen(nodes.node_argv("n009", ["/usr/bin/python3", "-c", code]),
                         stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert p.stdout.readline() == "ready\n"
        yield "n009"
    finally:
        p.kill()
        p.wait()
        nodes.start_sshd("n009")


@pytest.mark.lab   # beyond the module's minute
def test_t_ends_a_node_that_accepts_and_never_answers(nodes, mn, mute_node):
    r = xcat(nodes, mn, "xdsh", "n008-n010", "-t", "2", "echo hi")
    assert r.rc == 1
    assert sorted(r.lines) == ["n008: hi", "n010: hi"]
    assert r.errlines == ["n009: Error: cannot connect to 10.88.1.9: no answer within the "
                          "timeout (2 seconds)"]


def test_a_connect_timeout_says_so(nodes, mn, mute_node):
    r = xcat(nodes, mn, "xdsh", "n008-n010", "-o", "ConnectTimeout=2", "echo hi")
    assert r.rc == 1
    assert sorted(r.lines) == ["n008: hi", "n010: hi"]
    assert len(r.errlines) == 1 and r.errlines[0].startswith("n009: ")
    assert "timed out" in r.errlines[0], r.errlines[0]


def _known_hosts(mn) -> Path:
    return mn.paths.under("/root/.ssh/known_hosts")


def _keys_of(text: str, node: str) -> dict[str, str]:
    """{key type: base64} of a node's lines in known_hosts."""
    out = {}
    for line in text.splitlines():
        names, _, rest = line.partition(" ")
        if node in names.split(","):
            kind, blob = rest.split()[:2]
            out[kind] = blob
    return out


def test_a_wrong_host_key_refuses_that_node_unless_checking_is_off(nodes, mn):
    kh = _known_hosts(mn)
    text = kh.read_text()
    own, other = _keys_of(text, "n001"), _keys_of(text, "n002")
    assert own and own.keys() == other.keys()
    for kind, blob in own.items():
        text = text.replace(f" {kind} {blob}", f" {kind} {other[kind]}")
    kh.write_text(text)
    r = xcat(nodes, mn, "xdsh", "n001-n003", "hostname")
    assert r.rc == 1
    assert sorted(r.lines) == ["n002: n002", "n003: n003"]
    assert len(r.errlines) == 1, r.err
    assert r.errlines[0].startswith("n001: ")
    assert "known_hosts" in r.errlines[0] and "makeknownhosts" in r.errlines[0]
    off = xcat(nodes, mn, "xdsh", "n001-n003", "-o", "StrictHostKeyChecking=no", "hostname")
    assert off.rc == 0, off.err
    assert sorted(off.lines) == ["n001: n001", "n002: n002", "n003: n003"]


def test_a_node_missing_from_known_hosts_is_refused(nodes, mn):
    kh = _known_hosts(mn)
    kept = [x for x in kh.read_text().splitlines(keepends=True)
            if "n003" not in x.split(" ", 1)[0].split(",")]
    kh.write_text("".join(kept))
    r = xcat(nodes, mn, "xdsh", "n001-n003", "hostname")
    assert r.rc == 1
    assert sorted(r.lines) == ["n001: n001", "n002: n002"]
    assert len(r.errlines) == 1, r.err
    assert r.errlines[0].startswith("n003: ") and "known_hosts" in r.errlines[0]
    again = xcat(nodes, mn, "makeknownhosts", "n003")
    assert again.rc == 0, again.err
    fixed = xcat(nodes, mn, "xdsh", "n001-n003", "hostname")
    assert fixed.rc == 0, fixed.err


# ---- xdcp -----------------------------------------------------------------------------------
def test_xdcp_copies_a_file_into_a_directory_on_every_node(nodes, mn, tmp_path):
    src = tmp_path / "motd"
    src.write_text("copied by xdcp\n")
    dst = f"/var/tmp/xdcp-{uid()}/"
    r = xcat(nodes, mn, "xdcp", "compute", str(src), dst)
    assert (r.rc, r.out, r.err) == (0, "", "")
    wrong = {n: got for n in NAMES if (got := cat(nodes, n, f"{dst}motd")) != "copied by xdcp\n"}
    assert not wrong, wrong


def test_xdcp_R_copies_a_tree(nodes, mn, tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "top.txt").write_text("top\n")
    (tree / "sub" / "mid.txt").write_text("mid\n")
    (tree / "sub" / "deeper" / "low.txt").write_text("low\n")
    dst = f"/var/tmp/xdcpR-{uid()}"
    for n in ("n001", "n002"):
        on(nodes, n, f"mkdir {dst}")
    r = xcat(nodes, mn, "xdcp", "n001,n002", "-R", str(tree), dst)
    assert (r.rc, r.err) == (0, ""), r.err
    for n in ("n001", "n002"):
        listing = on(nodes, n, f"cd {dst} && find . | sort").split()
        assert listing == [".", "./tree", "./tree/sub", "./tree/sub/deeper",
                           "./tree/sub/deeper/low.txt", "./tree/sub/mid.txt", "./tree/top.txt"]
        assert cat(nodes, n, f"{dst}/tree/sub/deeper/low.txt") == "low\n"
        assert cat(nodes, n, f"{dst}/tree/top.txt") == "top\n"
    assert nodes.node_run("n003", ["test", "-e", dst]).returncode == 1


def test_xdcp_p_keeps_the_mode_and_time(nodes, mn, tmp_path):
    src = tmp_path / "tool"
    src.write_text("#!/bin/sh\n")
    src.chmod(0o667)
    os.utime(src, (1_600_000_000, 1_600_000_000))
    dst = f"/var/tmp/xdcpp-{uid()}/"
    kept = xcat(nodes, mn, "xdcp", "n001", "-p", str(src), dst)
    plain = xcat(nodes, mn, "xdcp", "n002", str(src), dst)
    assert kept.rc == plain.rc == 0, kept.err + plain.err
    assert on(nodes, "n001", f"stat -c '%a %Y' {dst}tool").split() == ["667", "1600000000"]
    mode = int(on(nodes, "n002", f"stat -c %a {dst}tool"), 8)
    assert mode & 0o022 == 0, oct(mode)   # without -p, no group/other write bits


def test_xdcp_does_not_send_an_unchanged_file_again(nodes, mn, tmp_path):
    src = tmp_path / "conf"
    src.write_text("version 1\n")
    dst = f"/var/tmp/xdcpu-{uid()}/"
    assert xcat(nodes, mn, "xdcp", "n001-n002", str(src), dst).rc == 0

    def ident(node: str) -> str:
        return on(nodes, node, f"stat -c '%i %Z' {dst}conf").strip()
    before = {n: ident(n) for n in ("n001", "n002")}
    again = xcat(nodes, mn, "xdcp", "n001-n002", str(src), dst)
    assert (again.rc, again.out, again.err) == (0, "", "")
    assert {n: ident(n) for n in ("n001", "n002")} == before, "the same file was sent again"
    src.write_text("version 2, longer\n")
    changed = xcat(nodes, mn, "xdcp", "n001-n002", str(src), dst)
    assert changed.rc == 0, changed.err
    for n in ("n001", "n002"):
        assert ident(n) != before[n]
        assert cat(nodes, n, f"{dst}conf") == "version 2, longer\n"


def test_xdcp_names_the_node_path_it_could_not_write(nodes, mn, tmp_path):
    """Every node's root file system but /etc, /tmp, /var/tmp and /root is read-only (a
    statelite node's is too): the error has to say which path failed."""
    src = tmp_path / "app.conf"
    src.write_text("x\n")
    dst = f"/usr/lib/xdcp-ro-{uid()}"
    r = xcat(nodes, mn, "xdcp", "n001-n002", str(src), dst)
    assert r.rc == 1
    assert len(r.errlines) == 2, r.err
    for line in r.errlines:
        assert dst in line, line


def test_xdcp_P_pulls_a_file_from_every_node_as_name_dot_node(nodes, mn, tmp_path):
    path = f"/var/tmp/pull-{uid()}"
    for n in NAMES:
        on(nodes, n, f"hostname >{path}")
    into = tmp_path / "pulled"
    into.mkdir()
    r = xcat(nodes, mn, "xdcp", "compute", "-P", path, str(into))
    assert (r.rc, r.err) == (0, ""), r.err
    name = os.path.basename(path)
    assert sorted(os.listdir(into)) == [f"{name}._{n}" for n in NAMES]
    assert all((into / f"{name}._{n}").read_text() == f"{n}\n" for n in NAMES)


def test_xdcp_refuses_bad_sources_and_targets_before_copying(nodes, mn, tmp_path):
    good = tmp_path / "good"
    good.write_text("g\n")
    dst = f"/var/tmp/xdcpbad-{uid()}/"
    missing = xcat(nodes, mn, "xdcp", "n001-n002", str(good), str(tmp_path / "nope"), dst)
    assert missing.rc != 0
    assert missing.errlines == [f"Error: xdcp: {tmp_path / 'nope'}: No such file or directory"]
    folder = xcat(nodes, mn, "xdcp", "n001-n002", str(tmp_path), dst)
    assert folder.rc != 0
    assert "is a directory" in folder.err and "-R" in folder.err and str(tmp_path) in folder.err
    relative = xcat(nodes, mn, "xdcp", "n001-n002", str(good), "var/tmp/x/")
    assert relative.rc != 0
    assert "var/tmp/x/" in relative.err and "full path" in relative.err
    for n in ("n001", "n002"):       # nothing half done
        assert nodes.node_run(n, ["test", "-e", dst]).returncode == 1
        assert nodes.node_run(n, ["test", "-e", "/var/tmp/x"]).returncode == 1


def test_xdcp_F_applies_every_synclist_section_and_a_second_run_changes_nothing(
        nodes, mn, tmp_path):
    u = uid()
    on_node = f"/var/tmp/sync-{u}"
    nsfd = f"/var/tmp/syncfiles-{u}"
    user = f"xds{u[:6]}"
    src = f"/srv/sync-{u}"
    here = mn.paths.under(src)
    here.mkdir(parents=True)
    (here / "a.conf").write_text("alpha\n")
    (here / "b.conf").write_text("beta\n")
    (here / "a.conf.post").write_text(f"#!/bin/sh\necho post-ran >>{on_node}/post.log\n"
                                      "echo post says hi\n")
    (here / "always.sh").write_text(f"#!/bin/sh\necho always >>{on_node}/always.log\n")
    for script in ("a.conf.post", "always.sh"):
        (here / script).chmod(0o755)
    (here / "extra.txt").write_text("appended line\n")
    (here / "users").write_text(f"{user}:x:4300:4300:sync test:/tmp:/bin/sh\n")
    synclist = here / "list"
    synclist.write_text(f"""# every section
{src}/a.conf -> {on_node}/a.conf
{src}/b.conf -> (n001,n002) {on_node}/only/
{src}/always.sh -> {on_node}/always.sh
EXECUTE:
{src}/a.conf.post
EXECUTEALWAYS:
{src}/always.sh
APPEND:
{src}/extra.txt -> {on_node}/target.txt
MERGE:
{src}/users -> /etc/passwd
""")
    site(mn, nodesyncfiledir=nsfd)
    three = ("n001", "n002", "n003")
    for n in three:
        on(nodes, n, f"mkdir -p {on_node} && echo original >{on_node}/target.txt")
    try:
        first = xcat(nodes, mn, "xdcp", "n001-n003", "-F", str(synclist))
        assert first.rc == 0, first.out + first.err
        got = by_node(first.lines)
        assert sorted(got) == list(three)
        for n in three:
            assert f"{on_node}/a.conf: updated" in got[n]
            assert any("EXECUTEALWAYS" in x and "ran" in x for x in got[n]), got[n]
            assert any(x.startswith("EXECUTE ") and "ran" in x for x in got[n]), got[n]
            assert cat(nodes, n, f"{on_node}/a.conf") == "alpha\n"
            assert cat(nodes, n, f"{on_node}/target.txt") == "original\nappended line\n"
            assert cat(nodes, n, f"{nsfd}/org{on_node}/target.txt") == "original\n"
            passwd = cat(nodes, n, "/etc/passwd")
            assert passwd.count(f"{user}:") == 1 and passwd.startswith("root:")
            assert cat(nodes, n, f"{on_node}/post.log") == "post-ran\n"
            assert cat(nodes, n, f"{on_node}/always.log") == "always\n"
        assert cat(nodes, "n001", f"{on_node}/only/b.conf") == "beta\n"
        assert cat(nodes, "n002", f"{on_node}/only/b.conf") == "beta\n"
        assert cat(nodes, "n003", f"{on_node}/only/b.conf") is None

        second = xcat(nodes, mn, "xdcp", "n001-n003", "-F", str(synclist))
        assert second.rc == 0, second.out + second.err
        got = by_node(second.lines)
        for n in three:
            assert not [x for x in got[n] if "updated" in x.split(": ", 1)[-1]
                        and not x.startswith("sync:")], got[n]
            assert any(re.fullmatch(r"sync: 0 updated, \d+ unchanged, 0 errors", x)
                       for x in got[n]), got[n]
            assert cat(nodes, n, f"{on_node}/post.log") == "post-ran\n"     # EXECUTE: not again
            assert cat(nodes, n, f"{on_node}/always.log") == "always\nalways\n"
            assert cat(nodes, n, f"{on_node}/target.txt") == "original\nappended line\n"
            assert cat(nodes, n, "/etc/passwd").count(f"{user}:") == 1
    finally:
        for n in three:
            on(nodes, n, f"sed -i '/^{user}:/d' /etc/passwd; rm -rf {on_node} {nsfd}")


# ---- xdshbak, -K, site.maxssh, -c -----------------------------------------------------------
def _blocks(lines: list[str]) -> dict[str, list[str]]:
    """xdshbak -c's blocks as {folded hosts: text lines}."""
    out: dict[str, list[str]] = {}
    i = 0
    while i < len(lines):
        if not lines[i]:
            i += 1
            continue
        assert lines[i] == HOSTS_HEAD and lines[i + 2] == HOSTS_RULE, lines[i:i + 3]
        hosts, i = lines[i + 1], i + 3
        text = []
        while i < len(lines) and lines[i] != "" and lines[i] != HOSTS_HEAD:
            text.append(lines[i])
            i += 1
        out[hosts] = text
    return out


def xdshbak(mn, *args: str, input: str) -> Ran:
    p = subprocess.run([str(BIN / "xdshbak"), *args], input=input, capture_output=True,
                       text=True, timeout=60, env=mn_env(mn))
    return Ran(p.returncode, p.stdout, p.stderr)


def test_xdshbak_groups_50_identical_outputs_in_one_block(nodes, mn):
    r = xcat(nodes, mn, "xdsh", "compute", "--xdshbak", "echo same")
    assert r.rc == 0, r.err
    assert [x for x in r.lines if x] == [HOSTS_HEAD, "n[001-050]", HOSTS_RULE, "same"]
    piped = xdshbak(mn, "-c", input="".join(f"{n}: same\n" for n in reversed(NAMES)))
    assert piped.rc == 0, piped.err
    assert [x for x in piped.lines if x] == [x for x in r.lines if x]


def test_xdsh_piped_to_xdshbak_c_keeps_different_outputs_apart(nodes, mn):
    raw = xcat(nodes, mn, "xdsh", "compute", "[ $NODE = n007 ] && echo odd || echo same")
    assert raw.rc == 0, raw.err
    piped = xdshbak(mn, "-c", input=raw.out)
    assert piped.rc == 0, piped.err
    assert _blocks(piped.lines) == {"n[001-006,008-050]": ["same"], "n007": ["odd"]}


def _key_line() -> str:
    """An authorized_keys line of a key nobody else has."""
    from xcatd.remote.engine import asyncssh  # imported there without DSA's warnings
    key = asyncssh.generate_private_key("ssh-ed25519")
    return " ".join(key.export_public_key().decode().split()[:2]) + " someone@elsewhere"


def test_K_keeps_authorized_keys_lines_and_adds_no_duplicate(nodes, mn):
    """n001 holds the management node's key behind an option and without a last newline,
    after another key; n002-n003 as the lab seeded them plus another key. With
    sshbetweennodes=NOGROUPS, -K (twice) leaves every file as it was and sends no key pair."""
    site(mn, sshbetweennodes="NOGROUPS")
    three = ("n001", "n002", "n003")
    saved = {n: cat(nodes, n, "/root/.ssh/authorized_keys") for n in three}
    extra = _key_line()
    mn_key = " ".join(mn.paths.under("/root/.ssh/id_ed25519.pub").read_text().split()[:2])
    wanted = {"n001": f"{extra}\nno-X11-forwarding {mn_key} root@mn"}
    wanted.update({n: saved[n] + extra + "\n" for n in three[1:]})
    try:
        for n in three:
            on(nodes, n, "cat >/root/.ssh/authorized_keys", input=wanted[n])
        for _ in range(2):
            r = xcat(nodes, mn, "xdsh", "n001-n003", "-K")
            assert r.rc == 0, r.err
            assert sorted(r.lines) == [f"{n}: ssh keys are set up" for n in three]
            for n in three:
                assert cat(nodes, n, "/root/.ssh/authorized_keys") == wanted[n], n
                assert nodes.node_run(n, ["test", "-e", "/root/.ssh/id_ed25519"]
                                      ).returncode == 1
    finally:
        for n in three:
            on(nodes, n, "cat >/root/.ssh/authorized_keys", input=saved[n])


def test_K_with_allgroups_gives_the_node_roots_key_pair(nodes, mn):
    site(mn, sshbetweennodes="ALLGROUPS")
    saved = cat(nodes, "n004", "/root/.ssh/authorized_keys")
    try:
        r = xcat(nodes, mn, "xdsh", "n004", "-K")
        assert r.rc == 0, r.err
        assert r.lines == ["n004: ssh keys are set up (with root's key pair: "
                           "site.sshbetweennodes)"]
        assert on(nodes, "n004", "stat -c %a /root/.ssh/id_ed25519").strip() == "600"
        assert cat(nodes, "n004", "/root/.ssh/id_ed25519") == \
            mn.paths.under("/root/.ssh/id_ed25519").read_text()
        assert cat(nodes, "n004", "/root/.ssh/authorized_keys") == saved
    finally:
        on(nodes, "n004", "rm -f /root/.ssh/id_ed25519 /root/.ssh/id_ed25519.pub; "
                          "cat >/root/.ssh/authorized_keys", input=saved)


def test_site_maxssh_2_completes_all_50_nodes_two_at_a_time(nodes, mn):
    """Each node's command holds a marker process while it counts the markers of every node
    (the nodes share the host's process table): never more than 2 at once."""
    site(mn, maxssh="2")
    marker = f"97.{int(uid(), 16) % 10**9}"
    command = (f"sleep {marker} & p=$!; i=0; while [ \"$(pgrep -c -f '^sleep {marker}$')\" "
               f"= 0 ] && [ $i -lt 200 ]; do sleep 0.02; i=$((i+1)); done; "
               f"echo \"$NODE $(pgrep -c -f '^sleep {marker}$')\"; kill $p; wait $p; true")
    r = xcat(nodes, mn, "xdsh", "compute", command)
    assert r.rc == 0, r.err
    got = by_node(r.lines)
    assert sorted(got) == NAMES
    counts = {}
    for n, lines in got.items():
        name, count = lines[0].split()
        assert name == n
        counts[n] = int(count)
    assert all(1 <= c <= 2 for c in counts.values()), counts


def test_c_removes_nodesyncfiledir_on_the_nodes(nodes, mn):
    nsfd = f"/var/tmp/syncfiles-{uid()}"
    site(mn, nodesyncfiledir=nsfd)
    for n in ("n001", "n002", "n003", "n004"):
        on(nodes, n, f"mkdir -p {nsfd}/org/etc && echo x >{nsfd}/org/etc/hosts")
    try:
        r = xcat(nodes, mn, "xdsh", "n001-n003", "-c")
        assert r.rc == 0, r.err
        for n in ("n001", "n002", "n003"):
            assert nodes.node_run(n, ["test", "-e", nsfd]).returncode == 1, n
        assert cat(nodes, "n004", f"{nsfd}/org/etc/hosts") == "x\n"   # not in the range
    finally:
        for n in ("n001", "n002", "n003", "n004"):
            on(nodes, n, f"rm -rf {nsfd}")


# ---- through a live xcatd -------------------------------------------------------------------
@pytest.fixture
def daemon(mn_daemon, nodes):
    """xcatd in this process, its engine loop born in the management-node namespace (so
    the handlers reach the nodes), every command audited. The process's previous loop is
    put back afterwards, so later tests get a loop in their own namespace."""
    from xcatd.remote import engine
    register(mn_daemon, nodes)
    mn_daemon.ok("makeknownhosts", "compute")
    mn_daemon.ok("chtab", "-d", "key=auditskipcmds", "site")
    with engine._loop_lock:   # site.maxssh's semaphore belongs to a loop too
        previous, engine._loop = (engine._loop, engine._limit), None
        engine._limit = None
    with nodes.mn_netns():
        loop = engine.loop()
    try:
        yield mn_daemon
    finally:
        with engine._loop_lock:
            engine._loop, engine._limit = previous
        loop.call_soon_threadsafe(loop.stop)


def _audited(mn, command: str, needle: str, wait: float = 20) -> list[dict]:
    deadline = time.monotonic() + wait
    while True:
        rows = [r for r in mn.db.rows("auditlog")
                if r.get("command") == command and needle in (r.get("args") or "")]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_xdsh_through_xcatd_reaches_all_nodes_and_is_audited(daemon, nodes, tmp_path):
    env = tmp_path / "env"
    env.write_text("export DBPASSWORD=s3cret\n")
    r = daemon.sh("xdsh", "compute", "-E", str(env),
                  "echo $NODE; echo password=hunter2 >/dev/null; [ -n \"$DBPASSWORD\" ]")
    assert r.rc == 0, r.err
    assert sorted(r.lines) == [f"{n}: {n}" for n in NAMES]
    rows = _audited(daemon, "xdsh", "echo $NODE")
    assert rows, "no auditlog row for the xdsh"
    row = rows[-1]
    assert row["noderange"] == "compute" and row["status"] == "Allowed"
    assert row["userid"] == "root"
    assert "hunter2" not in row["args"] and "s3cret" not in row["args"], row["args"]
    assert "password=********" in row["args"], row["args"]
    assert "DBPASSWORD=********" in row["args"], row["args"]


@pytest.mark.lab   # beyond the module's minute
def test_xdsh_errors_and_timeouts_through_xcatd(daemon, nodes):
    mark = f"xdshmark{uid()}"
    r = daemon.sh("xdsh", "n001-n004", "-t", "2",
                  f"[ $NODE = n003 ] && exit 3; if [ $NODE = n004 ]; then "
                  f"bash -c 'exec -a {mark} sleep 300'; fi; echo fine")
    assert r.rc == 1
    assert sorted(r.lines) == ["n001: fine", "n002: fine"]
    errs = sorted(r.err.splitlines())
    assert errs[0] == "Error: n003 remote Command had return code: 3", errs
    assert errs[1].startswith("n004: ") and "timed out" in errs[1], errs
    assert len(errs) == 2
    left = nodes.node_run("n004", ["pgrep", "-af", mark])
    assert left.stdout == "", left.stdout


def test_xdcp_through_xcatd_copies_to_the_nodes(daemon, nodes, tmp_path):
    src = tmp_path / "via-xcatd"
    src.write_text("through the daemon\n")
    dst = f"/var/tmp/xdcpd-{uid()}/"
    r = daemon.sh("xdcp", "n001-n003", str(src), dst)
    assert (r.rc, r.err) == (0, ""), r.err
    for n in ("n001", "n002", "n003"):
        assert cat(nodes, n, f"{dst}via-xcatd") == "through the daemon\n"
    assert _audited(daemon, "xdcp", "via-xcatd"), "no auditlog row for the xdcp"
