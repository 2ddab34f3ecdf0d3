"""The SSH node lab: real sshd nodes in their own namespaces, reached with OpenSSH's client
from the management-node namespace, with the nodes' own host keys; private files; a node's
sshd stopped and started; nothing left behind, even when the body fails."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support.sshlab import register, ssh_cluster

from xcatd.base.paths import Paths
from xcatd.lab import pid_alive
from xcatd.lab.sshnodes import SshCluster, SshLabError, _kill_all, _merge, _render, usable
from xcatd.security import nodekeys

REASON = usable() or (None if shutil.which("ssh") else
                      "the SSH lab tests need OpenSSH's client (Debian package "
                      "openssh-client)")
needs_lab = pytest.mark.skipif(REASON is not None, reason=REASON or "")

lab3 = ssh_cluster(3)
lab50 = ssh_cluster(50)


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@pytest.fixture
def known_hosts(lab3, tmp_path):
    path = tmp_path / "known_hosts"
    path.write_text(lab3.known_hosts())
    return path


def ssh(lab, name, command, known_hosts, **kw):
    return lab.mn_run(lab.ssh_argv(name, command, known_hosts=known_hosts), **kw)


def hostname_answers(lab, known_hosts: Path) -> dict[str, tuple[str, str, int]]:
    """{node: (stdout, stderr, rc)} of `hostname` over OpenSSH on every node, all at once,
    inside the MN namespace."""
    procs = {n.name: lab.mn_popen(lab.ssh_argv(n.name, "hostname", known_hosts=known_hosts),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in lab.nodes}
    return {name: p.communicate(timeout=120) + (p.returncode,) for name, p in procs.items()}


def as_themselves(lab) -> dict[str, tuple[str, str, int]]:
    return {n.name: (f"{n.name}\n", "", 0) for n in lab.nodes}


# ---- without root --------------------------------------------------------------------------
def test_names_are_padded_to_the_count_and_at_least_three_digits():
    paths = Paths("/nonexistent")
    assert [n.name for n in SshCluster(3, paths).nodes] == ["n001", "n002", "n003"]
    big = SshCluster(1000, paths, prefix="c")
    assert (big.nodes[0].name, big.nodes[-1].name) == ("c0001", "c1000")
    assert big.nodes[249].ip == "10.88.1.250" and big.nodes[250].ip == "10.88.2.1"
    lab = SshCluster(2, paths, names=["alpha", "beta"])
    assert lab.hosts() == [("alpha", "10.88.1.1"), ("beta", "10.88.1.2")]
    assert lab.mn_ip == "10.88.0.1" and str(os.getpid()) in lab.mn_ns
    assert all(str(os.getpid()) in n.ns for n in lab.nodes)


@pytest.mark.parametrize("kw, message", [
    ({"count": 2, "names": ["a"]}, "2 nodes asked for, but 1 names given"),
    ({"count": 0}, "1 to 1000 nodes, not 0"),
    ({"count": 1001}, "1 to 1000 nodes, not 1001"),
    ({"count": 1, "names": ["../x"]}, "'../x' cannot be a lab node's host name"),
    ({"count": 2, "names": ["a", "a"]}, "the node names repeat"),
    ({"count": 1, "workdir": "/tmp/lab"}, "the nodes mount /tmp privately"),
    ({"count": 1, "workdir": "/root/x"}, "the nodes mount /root privately"),
    ({"count": 1, "sshd_options": {"Bad Key": "x"}}, "'Bad Key' is not an sshd_config"),
    ({"count": 1, "sshd_options": {"Banner": "a\nb"}}, "the value of Banner holds a newline"),
])
def test_bad_arguments_name_the_bad_part(kw, message):
    count = kw.pop("count")
    with pytest.raises(ValueError, match=message):
        SshCluster(count, Paths("/nonexistent"), **kw)


def test_sshd_options_replace_add_repeat_and_remove_keywords():
    opts = _merge(_merge({}, {"MaxSessions": "200", "UsePAM": "no", "LogLevel": "INFO"}),
                  {"maxsessions": 7, "UsePAM": None, "AcceptEnv": ["LANG", "LC_*"]})
    assert _render(opts) == "maxsessions 7\nLogLevel INFO\nAcceptEnv LANG\nAcceptEnv LC_*\n"
    assert _render(_merge({}, {"Match": "User x", "Port": "22"})) == "Port 22\nMatch User x\n"


# ---- a running lab -------------------------------------------------------------------------
@needs_lab
def test_each_node_answers_as_itself_with_its_own_host_keys(lab3, known_hosts):
    assert hostname_answers(lab3, known_hosts) == as_themselves(lab3)
    r = ssh(lab3, "n002", "hostname; id -un", known_hosts)
    assert (r.returncode, r.stdout) == (0, "n002\nroot\n"), r.stderr


@needs_lab
def test_another_nodes_host_keys_do_not_verify(lab3, tmp_path):
    n1 = lab3.node("n001")
    wrong = tmp_path / "known_hosts"
    wrong.write_text(nodekeys.known_hosts_line(lab3.paths, "n002", [n1.ip]))
    r = ssh(lab3, "n001", "hostname", wrong)
    assert r.returncode == 255
    assert "Host key verification failed" in r.stderr
    assert r.stdout == ""


@needs_lab
def test_sshd_runs_the_configuration_the_brief_asks_for(lab3):
    n = lab3.node("n003")
    conf = (n.dir / "sshd_config").read_text().splitlines()
    for line in (f"ListenAddress {n.ip}", "PermitRootLogin prohibit-password",
                 "PasswordAuthentication no", "UsePAM no", "StrictModes no",
                 "MaxStartups 1000:30:1000", "MaxSessions 200", "PidFile none"):
        assert line in conf
    for key in n.dir.glob("ssh_host_*_key"):
        assert key.stat().st_mode & 0o777 == 0o600
    assert os.readlink(f"/proc/{n.pid}/exe") == "/usr/sbin/sshd"
    title = Path(f"/proc/{n.pid}/cmdline").read_bytes()  # sshd sets its own
    assert b"/usr/sbin/sshd -D -e -f " in title and b"[listener]" in title
    # the node's sshd is not in the host's network namespace
    assert os.stat(f"/proc/{n.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
    assert os.stat(f"/proc/{n.pid}/ns/net").st_ino == os.stat(f"/run/netns/{n.ns}").st_ino


@needs_lab
@pytest.mark.parametrize("where", ["/tmp", "/var/tmp", "/root"])
def test_files_written_on_a_node_are_its_own(lab3, known_hosts, where):
    name = f"{where}/pyxcat-lab-{uuid.uuid4().hex}"
    r = ssh(lab3, "n001", f"echo written-on-n001 > {name}", known_hosts)
    assert r.returncode == 0, r.stderr
    assert lab3.node_run("n001", ["cat", name]).stdout == "written-on-n001\n"
    assert not os.path.exists(name)
    assert lab3.node_run("n002", ["test", "-e", name]).returncode == 1


@needs_lab
def test_root_is_seeded_with_the_mn_key_and_the_rest_is_read_only(lab3, known_hosts):
    keys = lab3.node_run("n002", ["cat", "/root/.ssh/authorized_keys"]).stdout
    assert keys == nodekeys.root_public_keys(lab3.paths)
    name = f"/usr/pyxcat-lab-{uuid.uuid4().hex}"
    r = ssh(lab3, "n002", f"touch {name}", known_hosts)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert not os.path.exists(name)
    # /etc is the node's own: written there, seen on that node only, never on the host
    etc = f"/etc/pyxcat-lab-{uuid.uuid4().hex}"
    assert ssh(lab3, "n002", f"echo mine > {etc}", known_hosts).returncode == 0
    assert lab3.node_run("n002", ["cat", etc]).stdout == "mine\n"
    assert lab3.node_run("n001", ["test", "-e", etc]).returncode != 0
    assert not os.path.exists(etc)


@needs_lab
def test_a_stopped_sshd_refuses_and_a_started_one_answers_again(lab3, known_hosts):
    n = lab3.node("n003")
    mark = f"/tmp/pyxcat-lab-{uuid.uuid4().hex}"
    assert lab3.node_run("n003", ["touch", mark]).returncode == 0
    old = n.pid
    lab3.stop_sshd("n003")
    try:
        assert n.pid is None and not pid_alive(old)
        r = ssh(lab3, "n003", "hostname", known_hosts)
        assert r.returncode == 255 and "Connection refused" in r.stderr
        assert ssh(lab3, "n002", "hostname", known_hosts).stdout == "n002\n"
    finally:
        lab3.start_sshd("n003")
    assert n.pid not in (None, old)
    r = ssh(lab3, "n003", f"hostname; ls {mark}", known_hosts)
    assert (r.returncode, r.stdout) == (0, f"n003\n{mark}\n"), r.stderr


@needs_lab
def test_a_thread_in_the_mn_namespace_reaches_the_nodes(lab3):
    def netns() -> int:
        return os.stat("/proc/thread-self/ns/net").st_ino
    host = netns()
    with lab3.mn_netns():
        assert netns() == os.stat(f"/run/netns/{lab3.mn_ns}").st_ino
        with socket.create_connection((lab3.node("n001").ip, 22), timeout=10) as s:
            assert s.recv(64).startswith(b"SSH-2.0-")
    assert netns() == host


@needs_lab
def test_register_gives_a_management_node_the_nodes_and_keys(lab3, mn_sqlite, tmp_path):
    register(mn_sqlite, lab3)
    r = mn_sqlite.ok("lsdef", "compute", "-i", "ip")
    for name, ip in lab3.hosts():
        assert f"Object name: {name}\n    ip={ip}\n" in r.out
    kh = tmp_path / "known_hosts"
    kh.write_text("".join(nodekeys.known_hosts_line(mn_sqlite.paths, n, [ip])
                          for n, ip in lab3.hosts()))
    argv = lab3.ssh_argv("n001", "hostname", known_hosts=kh)
    argv[argv.index("-i") + 1] = str(mn_sqlite.paths.under("/root/.ssh/id_ed25519"))
    assert lab3.mn_run(argv).stdout == "n001\n"


@needs_lab
def test_a_failing_body_leaves_no_namespace_process_or_file(tmp_path):
    paths = Paths(tmp_path / "root")
    with pytest.raises(RuntimeError, match="the body failed"), SshCluster(2, paths) as lab:
        kh = tmp_path / "known_hosts"
        kh.write_text(lab.known_hosts())
        r = ssh(lab, "n001", "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!", kh)
        left_on_node = int(r.stdout)
        waiting = lab.mn_popen(["sleep", "600"])
        pids = [left_on_node, waiting.pid, *(n.pid for n in lab.nodes),
                *(n.holder for n in lab.nodes)]
        names = {lab.mn_ns, *(n.ns for n in lab.nodes)}
        assert all(pid_alive(p) for p in pids) and names <= namespaces()
        raise RuntimeError("the body failed")
    assert not names & namespaces()
    assert [p for p in pids if pid_alive(p)] == []
    assert not lab.dir.exists()


@needs_lab
def test_an_sshd_that_does_not_start_raises_with_its_log(tmp_path):
    lab = SshCluster(1, Paths(tmp_path / "root"), sshd_options={"NoSuchKeyword": "x"})
    with pytest.raises(SshLabError) as err, lab:
        pass
    assert "n001: sshd did not listen on port 22 (rc=255)" in str(err.value)
    assert "Bad configuration option: NoSuchKeyword" in str(err.value)
    assert not {lab.mn_ns, lab.nodes[0].ns} & namespaces()
    assert not lab.dir.exists()


@needs_lab
@pytest.mark.lab
def test_fifty_nodes_each_answer_as_itself(lab50, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text(lab50.known_hosts())
    assert hostname_answers(lab50, kh) == as_themselves(lab50)


@needs_lab
def test_a_lab_left_by_a_killed_run_is_removed_by_the_next_one(tmp_path):
    script = ("import sys, time\n"
              "from xcatd.base.paths import Paths\n"
              "from xcatd.lab.sshnodes import SshCluster\n"
              "with SshCluster(1, Paths(sys.argv[1])) as lab:\n"
              "    n = lab.nodes[0]\n"
              "    print(lab.mn_ns, n.ns, n.pid, n.holder, lab.dir, flush=True)\n"
              "    time.sleep(600)\n")
    p = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "old")],
                         stdout=subprocess.PIPE, text=True)
    try:
        mn_ns, ns, sshd, holder, where = p.stdout.readline().split()
    finally:
        p.kill()
        p.wait()
    names, pids = {mn_ns, ns}, [int(sshd), int(holder)]
    try:
        assert names <= namespaces() and all(pid_alive(x) for x in pids)
        with SshCluster(1, Paths(tmp_path / "new")):
            assert not names & namespaces()
            assert not any(pid_alive(x) for x in pids)
            assert not Path(where).exists()
    finally:  # whatever the test found, the old lab goes
        _kill_all([], sorted(names))
        subprocess.run(["ip", "-force", "-batch", "-"], capture_output=True, text=True,
                       input="".join(f"netns del {x}\n" for x in names))
        shutil.rmtree(where, ignore_errors=True)
