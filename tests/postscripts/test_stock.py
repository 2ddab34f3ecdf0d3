"""The stock postscripts (postscripts/syslog, remoteshell, syncfiles, otherpkgs, hostname,
confignetwork, setupntp), run by a real sh as the node agent runs them: in a scratch
XCAT_ROOT standing for the node's /, with an environment like mypostscript's (and, once, the
one the management node renders), a fake "$XCATAGENT" that prints canned answers, and
XCAT_DRYRUN_LOG collecting the service commands instead of running them. Service programs
(systemctl, apt-get, ip...) are shadowed on PATH by traps, so a command that skips the
wrapper fails the test instead of touching this machine."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.cluster import build, command, nodes, site

from xcatd.base.paths import Paths
from xcatd.daemon.initialize import SHIPPED_POSTSCRIPTS, initialize
from xcatd.db.cluster import Cluster
from xcatd.provision.postscripts import PlanBuilder
from xcatd.security.nodekeys import node_host_keys, root_public_keys

SCRIPTS = Path(__file__).resolve().parents[2] / "postscripts"
STOCK = ("syslog", "remoteshell", "syncfiles", "otherpkgs", "hostname", "confignetwork",
         "setupntp")
#: programs a script may only reach through its run_action wrapper
TRAPPED = ("systemctl", "hostnamectl", "hostname", "networkctl", "ifup", "ifdown", "nmcli",
           "apt-get", "dnf", "yum", "timedatectl", "restorecon", "ip", "service")
#: the shells a node may run them with (Debian's dash, bash, busybox's ash)
SHELLS = [sh for sh in ("dash", "bash", "busybox sh") if shutil.which(sh.split()[0])]

FAKE_AGENT = """#!/bin/sh
d=$(dirname "$0")
printf '%s\\n' "$*" >>"$d/calls"
[ -f "$d/stdout" ] && cat "$d/stdout"
[ -f "$d/stderr" ] && cat "$d/stderr" >&2
exit "$(cat "$d/rc" 2>/dev/null || echo 0)"
"""


@dataclass
class Run:
    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


class FakeNode:
    """A node's / under ``root``, the environment its postscripts get, a fake agent."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.root = tmp / "root"
        self.root.mkdir()
        self.dry = tmp / "dryrun.log"
        bindir = tmp / "bin"
        bindir.mkdir()
        self.trapped = tmp / "unwrapped.log"
        for name in TRAPPED:
            self._exe(bindir / name, f'#!/bin/sh\necho "{name} $*" >>"{self.trapped}"\n'
                                     "exit 99\n")
        self._exe(bindir / "logger", "#!/bin/sh\nexit 0\n")  # keep this machine's log clean
        agent_dir = tmp / "agent"
        agent_dir.mkdir()
        self.agent = agent_dir / "xcatagent"
        self._exe(self.agent, FAKE_AGENT)
        (tmp / "tmp").mkdir()
        self.cwd = tmp / "cwd"
        self.cwd.mkdir()
        self.env = {
            "PATH": f"{bindir}:{os.environ['PATH']}", "HOME": str(tmp), "LC_ALL": "C",
            "TMPDIR": str(tmp / "tmp"), "XCAT_ROOT": str(self.root),
            "XCAT_DRYRUN_LOG": str(self.dry), "XCAT_RETRY_DELAY": "0",
            "XCATAGENT": str(self.agent), "NODE": "n1", "MASTER": "10.77.0.1",
            "MASTER_IP": "10.77.0.1", "SITEMASTER": "10.77.0.1", "HTTPPORT": "80",
            "INSTALLDIR": "/install", "OSVER": "debian12", "ARCH": "x86_64",
            "NTYPE": "compute", "IPADDR": "10.77.0.11", "DOMAIN": "hpc.example",
            "UPDATENODE": "0", "NODESETSTATE": "install", "MACADDRESS": "52:54:00:00:00:0b",
            "INSTALLNIC": "mac", "PRIMARYNIC": "mac",
        }

    @staticmethod
    def _exe(path: Path, text: str) -> None:
        path.write_text(text)
        path.chmod(0o755)

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def write(self, p: str, text: str = "", mode: int = 0o644) -> Path:
        path = self.path(p)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        return path

    def mkdir(self, *dirs: str) -> None:
        for d in dirs:
            self.path(d).mkdir(parents=True, exist_ok=True)

    def systemd(self) -> None:
        self.mkdir("/run/systemd/system")

    def answer(self, stdout: str = "", rc: int = 0, stderr: str = "") -> None:
        d = self.agent.parent
        (d / "stdout").write_text(stdout)
        (d / "stderr").write_text(stderr)
        (d / "rc").write_text(str(rc))

    def agent_calls(self) -> list[str]:
        calls = self.agent.parent / "calls"
        return calls.read_text().splitlines() if calls.exists() else []

    def run(self, script: str, *args: str, shell: str = "dash", scripts: Path = SCRIPTS,
            **env: str | None) -> Run:
        full = {**self.env, **{k: v for k, v in env.items() if v is not None}}
        for k, v in env.items():
            if v is None:
                full.pop(k, None)
        p = subprocess.run([*shell.split(), str(scripts / script), *args], capture_output=True,
                           text=True, env=full, cwd=self.cwd, stdin=subprocess.DEVNULL,
                           timeout=120)
        assert not self.trapped.exists(), \
            f"{script} ran a service command without its wrapper: {self.trapped.read_text()}"
        return Run(p.returncode, p.stdout, p.stderr)

    def actions(self) -> list[str]:
        """The service commands run (recorded) so far, and forget them."""
        if not self.dry.exists():
            return []
        lines = self.dry.read_text().splitlines()
        self.dry.unlink()
        return lines

    def files(self) -> set[str]:
        return {str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def node(tmp_path):
    return FakeNode(tmp_path / "node")


# ---- every stock script --------------------------------------------------------------------
@pytest.mark.parametrize("name", STOCK)
def test_each_script_is_shipped_executable_with_a_usage_comment(name):
    path = SCRIPTS / name
    text = path.read_text()
    assert text.startswith(f"#!/bin/sh\n# {name}: ")
    head = text.split("\n\n", 1)[0]
    assert "Usage" in head and "Exit:" in head
    assert name == "syncfiles" or "XCAT_ROOT" in head  # syncfiles writes nothing itself
    assert mode(path) & 0o111 == 0o111
    assert name in SHIPPED_POSTSCRIPTS
    for sh in SHELLS:
        p = subprocess.run([*sh.split(), "-n", str(path)], capture_output=True, text=True)
        assert p.returncode == 0, (sh, p.stderr)


def test_xcatconfig_puts_the_stock_scripts_in_the_postscripts_directory(tmp_path):
    initialize(Paths(tmp_path))
    for name in STOCK:
        shipped = tmp_path / "install/postscripts" / name
        assert shipped.read_text() == (SCRIPTS / name).read_text()
        assert mode(shipped) == 0o755


@pytest.mark.parametrize("name", STOCK)
def test_a_script_without_its_function_library_says_so(node, tmp_path, name):
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(SCRIPTS / name, alone / name)
    r = node.run(name, scripts=alone)
    assert r.rc == 1 and "xcatlib.sh is missing" in r.err


def test_the_harness_catches_a_service_command_outside_the_wrapper(node, tmp_path):
    rogue = tmp_path / "rogue"
    rogue.mkdir()
    (rogue / "rogue").write_text("#!/bin/sh\nsystemctl restart rsyslog\n")
    with pytest.raises(AssertionError, match="systemctl restart rsyslog"):
        node.run("rogue", scripts=rogue)


# ---- syslog ----------------------------------------------------------------------------------
def rsyslog(node: FakeNode) -> None:
    node.write("/etc/rsyslog.conf", "module(load=\"imuxsock\")\n"
               "$IncludeConfig /etc/rsyslog.d/*.conf\n")
    node.systemd()


@pytest.mark.parametrize("shell", SHELLS)
def test_syslog_forwards_every_message_to_the_master_and_restarts_rsyslog(node, shell):
    rsyslog(node)
    r = node.run("syslog", shell=shell)
    assert r.rc == 0, r.err
    conf = node.path("/etc/rsyslog.d/00-xcat.conf")
    assert ('*.* action(type="omfwd" target="10.77.0.1" port="514" protocol="udp")'
            in conf.read_text().splitlines())
    assert mode(conf) == 0o644
    assert node.actions() == ["systemctl try-restart rsyslog.service"]
    again = node.run("syslog", shell=shell)  # unchanged: no restart
    assert again.rc == 0 and "already forwards to 10.77.0.1" in again.out
    assert node.actions() == []


@pytest.mark.parametrize("arg, target, port, proto", [
    ("@@10.9.0.5", "10.9.0.5", "514", "tcp"),
    ("@loghost:1514", "loghost", "1514", "udp"),
    ("@@[fd00::5]:601", "fd00::5", "601", "tcp"),
    ("fd00::5", "fd00::5", "514", "udp"),
])
def test_syslog_takes_a_target_as_xcat_writes_them(node, arg, target, port, proto):
    rsyslog(node)
    assert node.run("syslog", arg).rc == 0
    rule = node.path("/etc/rsyslog.d/00-xcat.conf").read_text().splitlines()[-1]
    assert f'target="{target}" port="{port}" protocol="{proto}"' in rule
    assert ("queue.timeoutEnqueue=\"0\"" in rule) == (proto == "tcp")  # TCP never blocks


def test_syslog_leaves_logging_alone_when_told_or_on_a_logging_service_node(node):
    rsyslog(node)
    assert "'ignore'" in node.run("syslog", SYSLOG="ignore").out
    assert "its logs stay here" in node.run("syslog", NTYPE="service", SVLOGLOCAL="1").out
    assert not node.path("/etc/rsyslog.d").exists() and node.actions() == []


def test_syslog_with_journald_alone_says_so_and_succeeds(node):
    node.mkdir("/run/systemd/journal")
    r = node.run("syslog")
    assert r.rc == 0 and "only systemd-journald" in r.out
    assert node.files() == set() and node.actions() == []


def test_syslog_without_systemd_writes_the_rule_for_the_next_start(node):
    node.write("/etc/rsyslog.conf", "$IncludeConfig /etc/rsyslog.d/*.conf\n")
    r = node.run("syslog")
    assert r.rc == 0 and "applies when rsyslog starts" in r.out and node.actions() == []


@pytest.mark.parametrize("args, env, message", [
    (["bad host"], {}, "'bad host' is not a host name or address"),
    (["loghost:0"], {}, "port 0 is out of range"),
    (["loghost:x"], {}, "'x' is not a port number"),
    (["a", "b"], {}, "usage: syslog"),
    ([], {"MASTER_IP": None, "MASTER": None}, "no log host"),
])
def test_syslog_refuses_bad_input_and_writes_nothing(node, args, env, message):
    rsyslog(node)
    r = node.run("syslog", *args, **env)
    assert r.rc == 2 and message in r.err
    assert not node.path("/etc/rsyslog.d").exists() and node.actions() == []


# ---- remoteshell -----------------------------------------------------------------------------
@pytest.fixture
def mn_keys(tmp_path):
    """The management node's side: root's keys and n1's host keys, as the agent API sends
    them (xcatd.security.nodekeys)."""
    paths = Paths(tmp_path / "mn")
    return {"authorized_keys": root_public_keys(paths),
            "host_keys": node_host_keys(paths, "n1")}, paths


USER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeUserKeyFakeUserKeyFakeUserKey00 me@desk"


@pytest.mark.parametrize("shell", SHELLS)
def test_remoteshell_installs_root_keys_and_host_keys_in_one_request(node, mn_keys, shell):
    answer, _ = mn_keys
    node.systemd()
    node.write("/root/.ssh/authorized_keys", USER_KEY + "\n", 0o644)
    node.answer(json.dumps(answer))
    r = node.run("remoteshell", shell=shell)
    assert r.rc == 0, r.err
    assert node.agent_calls() == ["get credentials/remoteshell"]
    auth = node.path("/root/.ssh/authorized_keys")
    lines = auth.read_text().splitlines()
    assert lines[0] == USER_KEY                          # the node's own key is kept
    assert answer["authorized_keys"].splitlines()[0] in lines
    assert mode(auth) == 0o600 and mode(node.path("/root/.ssh")) == 0o700
    for kind, pair in answer["host_keys"].items():
        private = node.path(f"/etc/ssh/ssh_host_{kind}_key")
        public = node.path(f"/etc/ssh/ssh_host_{kind}_key.pub")
        assert private.read_text() == pair["private"] and mode(private) == 0o600
        assert public.read_text() == pair["public"] + "\n" and mode(public) == 0o644
        if shutil.which("ssh-keygen"):
            derived = subprocess.run(["ssh-keygen", "-y", "-f", str(private)],
                                     capture_output=True, text=True, check=True).stdout
            assert derived.split()[:2] == pair["public"].split()[:2]
    assert node.actions() == ["systemctl try-reload-or-restart ssh.service"]
    assert "PRIVATE KEY" not in r.text


def test_remoteshell_again_replaces_its_block_and_reloads_only_for_new_host_keys(
        node, mn_keys):
    answer = mn_keys[0]
    node.systemd()
    node.write("/root/.ssh/authorized_keys", USER_KEY + "\n")
    node.answer(json.dumps(answer))
    assert node.run("remoteshell").rc == 0
    node.actions()
    rotated = dict(answer, authorized_keys="ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCnew root@mn\n")
    node.answer(json.dumps(rotated))
    r = node.run("remoteshell")
    assert r.rc == 0 and "were already in place" in r.out
    lines = node.path("/root/.ssh/authorized_keys").read_text().splitlines()
    assert lines[0] == USER_KEY and "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCnew root@mn" in lines
    assert answer["authorized_keys"].splitlines()[0] not in lines  # the old MN key went
    assert sum(line.startswith("# xCAT keys start") for line in lines) == 1
    assert node.actions() == []


def test_remoteshell_reloads_sshd_by_its_rhel_name(node, mn_keys):
    node.systemd()
    node.answer(json.dumps(mn_keys[0]))
    assert node.run("remoteshell", OSVER="rocky9.4").rc == 0
    assert node.actions() == ["systemctl try-reload-or-restart sshd.service"]


def _without(d: dict, *keys: str) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def _bad_answers(answer: dict, other: dict) -> list[tuple[str, str]]:
    hk = answer["host_keys"]
    return [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps(_without(answer, "authorized_keys")), "authorized_keys is missing"),
        (json.dumps(dict(answer, authorized_keys="hello world\n")),
         "authorized_keys, line 1: not an ssh public key"),
        (json.dumps(dict(answer, authorized_keys="")), "authorized_keys holds no key"),
        (json.dumps(_without(answer, "host_keys")), "host_keys is missing"),
        (json.dumps(dict(answer, host_keys=dict(hk, dsa=hk["ecdsa"]))), "host_keys.dsa"),
        (json.dumps(dict(answer, host_keys=dict(hk, ecdsa=dict(hk["ecdsa"], private="x")))),
         "host_keys.ecdsa.private: not a private key"),
        (json.dumps(dict(answer, host_keys=dict(hk, ecdsa=dict(
            hk["ecdsa"], public=hk["ed25519"]["public"])))),
         "host_keys.ecdsa.public: not an ssh ecdsa public key"),
        (json.dumps(dict(answer, host_keys=dict(hk, ed25519=dict(
            hk["ed25519"], public=other["ed25519"]["public"])))),
         "host_keys.ed25519: the public key does not belong to the private key"),
    ]


def test_remoteshell_refuses_a_bad_answer_writes_nothing_and_prints_no_key(node, mn_keys):
    answer, paths = mn_keys
    other = node_host_keys(paths, "n2")
    node.systemd()
    node.write("/root/.ssh/authorized_keys", USER_KEY + "\n", 0o644)
    for text, message in _bad_answers(answer, other):
        if "does not belong" in message and not shutil.which("ssh-keygen"):
            continue
        node.answer(text)
        r = node.run("remoteshell")
        assert r.rc == 2 and message in r.err, (message, r.err)
        assert "PRIVATE KEY" not in r.text and "AAAA" not in r.text
        assert node.path("/root/.ssh/authorized_keys").read_text() == USER_KEY + "\n"
        assert mode(node.path("/root/.ssh/authorized_keys")) == 0o644
        assert not node.path("/etc/ssh").exists() and node.actions() == []


def test_remoteshell_gives_up_after_three_tries_naming_the_agents_reason(node):
    node.answer("", rc=1, stderr="xcatagent get: HTTP 403: not this node's certificate\n")
    r = node.run("remoteshell")
    assert r.rc == 1
    assert "did not give the keys: xcatagent get: HTTP 403: not this node's certificate" in r.err
    assert node.agent_calls() == ["get credentials/remoteshell"] * 3
    assert node.files() == set()


def test_remoteshell_without_the_agent_says_what_is_missing(node):
    r = node.run("remoteshell", XCATAGENT=str(node.tmp / "nowhere"))
    assert r.rc == 1 and "the node agent" in r.err and "nowhere" in r.err


# ---- syncfiles -------------------------------------------------------------------------------
@pytest.mark.parametrize("agent_rc", [0, 3])
def test_syncfiles_asks_the_agent_to_sync_and_exits_with_its_status(node, agent_rc):
    node.answer("synced 2 files\n", rc=agent_rc)
    r = node.run("syncfiles")
    assert r.rc == agent_rc and node.agent_calls() == ["sync"]
    assert "synced 2 files" in r.out


@pytest.mark.parametrize("env", [{"UPDATENODE": "1"}, {"NOSYNCFILES": "1"}])
def test_syncfiles_has_nothing_to_do_under_updatenode_or_without_synclists(node, env):
    r = node.run("syncfiles", **env)
    assert r.rc == 0 and node.agent_calls() == []


def test_syncfiles_refuses_arguments(node):
    r = node.run("syncfiles", "now")
    assert r.rc == 2 and "usage: syncfiles" in r.err and node.agent_calls() == []


# ---- otherpkgs -------------------------------------------------------------------------------
APT = ("env {env}DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 "
       "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold {what} {names}")
APT_UPDATE = ("apt-get -q -o Dir::Etc::sourcelist=sources.list.d/xcat-otherpkgs.list "
              "-o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 update")
PKG_ENV = {"OTHERPKGS_INDEX": "2", "OTHERPKGS1": "slurm-client,-nano,--vim-tiny",
           "ENVLIST1": "SLURM_VER=23", "OTHERPKGS2": "munge,lib*",
           "OTHERPKGDIR": "/install/post/otherpkgs/debian12/x86_64,"
                          "http://deb.example/debian bookworm main"}


def test_otherpkgs_sets_up_the_repositories_and_installs_each_pass_in_order(node):
    (node.cwd / "libfoo").write_text("")  # a glob in a name stays a glob
    node.write("/etc/apt/sources.list.d/xCAT-otherpkgs0.list", "deb http://old ./\n")
    r = node.run("otherpkgs", **PKG_ENV)
    assert r.rc == 0, r.err
    lst = node.path("/etc/apt/sources.list.d/xcat-otherpkgs.list")
    assert lst.read_text().splitlines()[1:] == [
        "deb [trusted=yes] http://10.77.0.1:80/install/post/otherpkgs/debian12/x86_64 ./",
        "deb [trusted=yes] http://deb.example/debian bookworm main"]
    assert not node.path("/etc/apt/sources.list.d/xCAT-otherpkgs0.list").exists()
    assert node.actions() == [
        APT_UPDATE,
        APT.format(env="SLURM_VER=23 ", what="remove", names="nano"),
        APT.format(env="SLURM_VER=23 ", what="install", names="slurm-client"),
        APT.format(env="SLURM_VER=23 ", what="remove", names="vim-tiny"),
        APT.format(env="", what="install", names="munge lib*")]
    again = node.run("otherpkgs", **PKG_ENV)  # a postbootscript: the next boot
    assert again.rc == 0 and "have not changed" in again.out and node.actions() == []
    assert node.run("otherpkgs", **PKG_ENV, UPDATENODE="1").rc == 0  # updatenode -S: again
    assert len(node.actions()) == 5


def test_otherpkgs_installs_again_when_the_list_changed(node):
    assert node.run("otherpkgs", **PKG_ENV).rc == 0
    node.actions()
    assert node.run("otherpkgs", **dict(PKG_ENV, OTHERPKGS2="munge,hwloc")).rc == 0
    assert APT.format(env="", what="install", names="munge hwloc") in node.actions()


def test_otherpkgs_default_directory_and_repoonly(node):
    r = node.run("otherpkgs", "--repoonly", OTHERPKGS_INDEX=None, INSTALLDIR="/srv/install")
    assert r.rc == 0, r.err
    assert ("deb [trusted=yes] http://10.77.0.1:80/install/post/otherpkgs/debian12/x86_64 ./"
            in node.path("/etc/apt/sources.list.d/xcat-otherpkgs.list").read_text())
    assert node.actions() == [APT_UPDATE]


def test_otherpkgs_on_the_rhel_family_makes_a_repository_per_subdirectory(node):
    r = node.run("otherpkgs", OSVER="rocky9.4", OTHERPKGS_INDEX="1",
                 OTHERPKGS1="cuda/cuda-drivers,hwloc,-nano",
                 OTHERPKGDIR="/install/post/otherpkgs/rocky9.4/x86_64", HTTPPORT="8080")
    assert r.rc == 0, r.err
    repo = node.path("/etc/yum.repos.d/xcat-otherpkgs.repo").read_text()
    base = "http://10.77.0.1:8080/install/post/otherpkgs/rocky9.4/x86_64"
    assert f"baseurl={base}\n" in repo and f"baseurl={base}/cuda\n" in repo
    assert repo.count("gpgcheck=0") == 2
    assert node.actions() == ["env dnf -y remove nano", "env dnf -y install cuda-drivers hwloc"]


@pytest.mark.parametrize("env", [{"NODESETSTATE": "netboot"}, {"NODESETSTATE": "statelite"},
                                 {"OTHERPKGS_INDEX": None}])
def test_otherpkgs_has_nothing_to_do_on_a_diskless_boot_or_without_packages(node, env):
    r = node.run("otherpkgs", **{**PKG_ENV, **env})
    assert r.rc == 0 and node.files() == set() and node.actions() == []


def test_otherpkgs_on_a_diskless_node_under_updatenode_installs(node):
    assert node.run("otherpkgs", **PKG_ENV, NODESETSTATE="netboot", UPDATENODE="1").rc == 0
    assert len(node.actions()) == 5


@pytest.mark.parametrize("args, env, message", [
    (["--all"], {}, "option '--all' is not supported"),
    ([], {"OTHERPKGS1": "good,bad;name"}, "OTHERPKGS1: 'bad;name' is not a package name"),
    ([], {"OTHERPKGS2": "a,$(reboot)"}, "OTHERPKGS2: '$(reboot)' is not a package name"),
    ([], {"ENVLIST1": "1X=y"}, "ENVLIST1: '1X=y' is not NAME=value"),
    ([], {"OTHERPKGS_INDEX": "two"}, "OTHERPKGS_INDEX='two' is not a number"),
    ([], {"OTHERPKGDIR": "/srv/repo"}, "'/srv/repo' is not under the install directory"),
    ([], {"OTHERPKGDIR": "relative/dir"}, "neither a full path nor an http(s) URL"),
    ([], {"MASTER_IP": None, "MASTER": None}, "MASTER_IP is not set"),
])
def test_otherpkgs_refuses_bad_input_before_doing_anything(node, args, env, message):
    r = node.run("otherpkgs", *args, **{**PKG_ENV, **env})
    assert r.rc == 2 and message in r.err, r.err
    assert node.files() == set() and node.actions() == []


# ---- hostname --------------------------------------------------------------------------------
DEBIAN_HOSTS = "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_hostname_names_the_node_and_puts_it_in_hosts(node, shell):
    node.systemd()
    node.write("/etc/hosts", DEBIAN_HOSTS)
    r = node.run("hostname", shell=shell)
    assert r.rc == 0, r.err
    assert node.path("/etc/hostname").read_text() == "n1\n"
    assert node.path("/etc/hosts").read_text() == (
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"
        "10.77.0.11\tn1.hpc.example\tn1\t# xCAT hostname\n")
    assert node.actions() == ["hostnamectl set-hostname n1"]
    assert node.run("hostname", shell=shell).rc == 0
    assert node.path("/etc/hosts").read_text().count("n1") == 2  # one line, not two


def test_hostname_without_systemd_and_address_uses_hostname_and_127_0_1_1(node):
    node.write("/etc/hosts", DEBIAN_HOSTS)
    r = node.run("hostname", IPADDR=None, DOMAIN=None)
    assert r.rc == 0, r.err
    assert node.path("/etc/hosts").read_text() == (
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n127.0.1.1\tn1\t# xCAT hostname\n")
    assert node.actions() == ["hostname n1"]


def test_hostname_leaves_a_hosts_file_that_already_names_the_node(node):
    hosts = "127.0.0.1 localhost\n10.77.0.11 n1 n1-alias\n"
    node.write("/etc/hosts", hosts)
    assert node.run("hostname").rc == 0
    assert node.path("/etc/hosts").read_text() == hosts


@pytest.mark.parametrize("env, message", [
    ({"NODE": None}, "NODE is not set"),
    ({"NODE": "n_1"}, "NODE 'n_1' is not a valid host name"),
    ({"NODE": "-n1"}, "is not a valid host name"),
    ({"IPADDR": "10.0.0.1;reboot"}, "IPADDR '10.0.0.1;reboot' is not an IP address"),
])
def test_hostname_refuses_bad_input(node, env, message):
    r = node.run("hostname", **env)
    assert r.rc == 2 and message in r.err
    assert node.files() == set() and node.actions() == []


# ---- confignetwork ---------------------------------------------------------------------------
NICS = {
    "NICIPS": "eth0!10.77.0.11,eth1!10.1.0.11|fd00:1::11,ib0!10.78.1.11",
    "NICNETWORKS": "eth0!mgt,eth1!data|data6",
    "NICTYPES": "eth0!Ethernet,eth1!Ethernet,ib0!Infiniband",
    "NICEXTRAPARAMS": "eth1!MTU=9000",
    "NETWORKS_LINES": "4",
    "NETWORKS_LINE1": "netname=mgt||net=10.77.0.0||mask=255.255.255.0||mgtifname=eth0||"
                      "gateway=10.77.0.254||mtu=||disable=||comments=",
    "NETWORKS_LINE2": "netname=data||net=10.1.0.0||mask=255.255.0.0||gateway=10.1.0.254||"
                      "mtu=1500||disable=||comments=",
    "NETWORKS_LINE3": "netname=data6||net=fd00:1::||mask=/64||disable=||comments=",
    "NETWORKS_LINE4": "netname=ib||net=10.78.0.0||mask=255.255.0.0||mtu=2044||disable=||"
                      "comments=",
}
HEAD = "# Written by the confignetwork postscript (xCAT nics table); replaced when it runs again."


def nics(node: FakeNode, backend: str) -> None:
    for nic, mac in (("eth0", "52:54:00:00:00:0b"), ("eth1", "52:54:00:00:01:0b")):
        node.write(f"/sys/class/net/{nic}/address", mac + "\n")
    node.systemd()
    if backend == "networkd":
        node.write("/run/systemd/netif/state", "OPER_STATE=routable\n")
    elif backend == "nm":
        node.mkdir("/run/NetworkManager", "/etc/NetworkManager")
    else:
        node.write("/etc/network/interfaces", "auto lo\niface lo inet loopback\n"
                   "allow-hotplug eth0\niface eth0 inet dhcp\n"
                   "source /etc/network/interfaces.d/*\n")
        node.mkdir("/run/network")


def test_confignetwork_writes_networkd_files_for_the_extra_nics_only(node):
    nics(node, "networkd")
    r = node.run("confignetwork", **NICS)
    assert r.rc == 0, r.err
    assert "eth0 is the install NIC: left alone" in r.out
    d = node.path("/etc/systemd/network")
    assert sorted(p.name for p in d.iterdir()) == ["10-xcat-eth1.network", "10-xcat-ib0.network"]
    assert (d / "10-xcat-eth1.network").read_text() == (
        f"{HEAD}\n# nic eth1\n\n[Match]\nName=eth1\n\n[Link]\nMTUBytes=9000\n\n"
        "[Network]\nAddress=10.1.0.11/16\nAddress=fd00:1::11/64\n")
    ib = (d / "10-xcat-ib0.network").read_text()
    assert "Address=10.78.1.11/16\n" in ib and "MTUBytes=2044" in ib  # found by address
    assert "Gateway" not in ib + (d / "10-xcat-eth1.network").read_text()
    assert node.actions() == ["networkctl reload", "networkctl reconfigure eth1",
                              "networkctl reconfigure ib0"]
    assert node.run("confignetwork", **NICS).rc == 0 and node.actions() == []


def test_confignetwork_with_ifupdown_and_a_nic_leaving_the_table(node):
    nics(node, "ifupdown")
    node.write("/etc/network/interfaces.d/site", "# the site's own\n")
    assert node.run("confignetwork", **NICS).rc == 0
    d = node.path("/etc/network/interfaces.d")
    assert (d / "eth1").read_text() == (
        f"{HEAD}\n# nic eth1\nauto eth1\niface eth1 inet static\n    address 10.1.0.11/16\n"
        "    mtu 9000\niface eth1 inet6 static\n    address fd00:1::11/64\n")
    assert node.actions() == ["ifdown --force eth1", "ifup eth1", "ifdown --force ib0",
                              "ifup ib0"]
    r = node.run("confignetwork", **dict(NICS, NICIPS="eth0!10.77.0.11,eth1!10.1.0.11|"
                                                      "fd00:1::11"))
    assert r.rc == 0 and "ib0: not in the nics table any more" in r.out
    assert sorted(p.name for p in d.iterdir()) == ["eth1", "site"]
    assert node.actions() == ["ifdown --force ib0"]


def test_confignetwork_with_networkmanager_writes_private_keyfiles(node):
    nics(node, "nm")
    assert node.run("confignetwork", **NICS, OSVER="rocky9.4").rc == 0
    f = node.path("/etc/NetworkManager/system-connections/xcat-ib0.nmconnection")
    text = f.read_text()
    assert mode(f) == 0o600
    assert "type=infiniband\ninterface-name=ib0\n" in text
    assert "[ipv4]\nmethod=manual\naddress1=10.78.1.11/16\n" in text
    assert "[ipv6]\nmethod=ignore\n" in text and "[infiniband]\nmtu=2044\n" in text
    assert node.actions() == ["nmcli connection reload", "nmcli connection up xcat-eth1",
                              "nmcli connection up xcat-ib0"]


def test_confignetwork_never_touches_the_nic_holding_the_node_address(node):
    nics(node, "networkd")
    env = dict(NICS, NICIPS="ens3!10.77.0.11,eth1!10.1.0.11", INSTALLNIC="mac",
               MACADDRESS="52:54:00:99:99:99")
    r = node.run("confignetwork", **env)
    assert r.rc == 0 and "ens3 is the install NIC: left alone" in r.out
    assert not node.path("/etc/systemd/network/10-xcat-ens3.network").exists()


@pytest.mark.parametrize("env, message", [
    ({"NICIPS": "eth1!10.9.0.11,ib0!10.78.1.11", "NICNETWORKS": ""},
     "eth1: no network in the networks table holds 10.9.0.11"),
    ({"NICIPS": "eth1!10.1.0.300,ib0!10.78.1.11"}, "eth1: '10.1.0.300' is not an IP address"),
    ({"NICNETWORKS": "eth1!nonet"}, "eth1: network 'nonet' of 10.1.0.11 is not defined"),
    ({"NICNETWORKS": "eth1!ib"}, "eth1: 10.1.0.11 is not in network ib (10.78.0.0/16)"),
    ({"NICTYPES": "eth1!bond"}, "eth1: type 'bond' is not configured by this script"),
    ({"NICEXTRAPARAMS": "eth1!MTU=big"}, "eth1: MTU 'big' is not a number"),
    ({"NICIPS": "eth1;reboot!10.1.0.11,ib0!10.78.1.11"},
     "'eth1;reboot' is not an interface name"),
])
def test_confignetwork_names_a_bad_nic_and_still_configures_the_others(node, env, message):
    nics(node, "networkd")
    r = node.run("confignetwork", **{**NICS, **env})
    assert r.rc == 2 and message in r.err, r.err
    d = node.path("/etc/systemd/network")
    assert [p.name for p in d.iterdir()] == ["10-xcat-ib0.network"]


@pytest.mark.parametrize("args, message", [(["-s"], "the install NIC is configured when"),
                                            (["--ib"], "option '--ib' is not supported")])
def test_confignetwork_refuses_options_it_does_not_have(node, args, message):
    nics(node, "networkd")
    r = node.run("confignetwork", *args, **NICS)
    assert r.rc == 2 and message in r.err and node.actions() == []


def test_confignetwork_without_a_network_system_fails_and_without_nics_does_nothing(node):
    assert node.run("confignetwork").rc == 0  # no NICIPS
    r = node.run("confignetwork", **NICS)
    assert r.rc == 1 and "no network configuration system found" in r.err


# ---- setupntp --------------------------------------------------------------------------------
def test_setupntp_points_chrony_at_the_master_keeping_the_original(node):
    node.systemd()
    original = "pool 2.debian.pool.ntp.org iburst\ndriftfile /var/lib/chrony/chrony.drift\n"
    node.write("/etc/chrony/chrony.conf", original)
    node.mkdir("/etc/chrony/conf.d")
    r = node.run("setupntp", NTPSERVERS="<xcatmaster>,ntp1.example")
    assert r.rc == 0, r.err
    conf = node.path("/etc/chrony/chrony.conf").read_text().splitlines()
    assert conf[1:3] == ["server 10.77.0.1 iburst", "server ntp1.example iburst"]
    assert "pool 2.debian.pool.ntp.org iburst" not in conf and "allow" not in conf
    assert "confdir /etc/chrony/conf.d" in conf
    assert node.path("/etc/chrony/chrony.conf.xcatorig").read_text() == original
    assert node.actions() == ["systemctl enable chrony.service",
                              "systemctl restart chrony.service"]
    again = node.run("setupntp", NTPSERVERS="<xcatmaster>,ntp1.example")
    assert again.rc == 0 and "already uses" in again.out
    assert node.actions() == ["systemctl enable chrony.service", "systemctl start chrony.service"]
    assert node.path("/etc/chrony/chrony.conf.xcatorig").read_text() == original


def test_setupntp_on_a_rhel_service_node_serves_its_nodes(node):
    node.systemd()
    node.write("/etc/chrony.conf", "pool 2.rhel.pool.ntp.org iburst\n")
    r = node.run("setupntp", "10.0.0.5", OSVER="rocky9.4", NTYPE="service", NTPSERVERS="x")
    assert r.rc == 0, r.err
    conf = node.path("/etc/chrony.conf").read_text().splitlines()
    assert "server 10.0.0.5 iburst" in conf and "server x iburst" not in conf
    assert "allow" in conf and "driftfile /var/lib/chrony/drift" in conf
    assert node.actions()[-1] == "systemctl restart chronyd.service"


def test_setupntp_uses_ntpsec_when_asked_and_timesyncd_as_the_last_choice(node):
    node.systemd()
    node.write("/etc/chrony/chrony.conf", "")
    node.write("/etc/ntpsec/ntp.conf", "pool 0.debian.pool.ntp.org iburst\n")
    assert node.run("setupntp", "--use-ntpd").rc == 0
    assert "server 10.77.0.1 iburst" in node.path("/etc/ntpsec/ntp.conf").read_text()
    assert node.actions() == ["systemctl enable ntpsec.service",
                              "systemctl restart ntpsec.service"]
    bare = FakeNode(node.tmp / "bare")
    bare.systemd()
    bare.write("/etc/systemd/timesyncd.conf", "[Time]\n")
    assert bare.run("setupntp", NTPSERVERS="a.example,b.example").rc == 0
    drop_in = bare.path("/etc/systemd/timesyncd.conf.d/xcat.conf").read_text()
    assert "[Time]\nNTP=a.example b.example\nFallbackNTP=\n" in drop_in
    assert bare.actions() == ["systemctl enable systemd-timesyncd.service",
                              "systemctl restart systemd-timesyncd.service",
                              "timedatectl set-ntp true"]


@pytest.mark.parametrize("args, env, rc, message", [
    (["ntp;reboot"], {}, 2, "NTP server 'ntp;reboot' is not a host name or address"),
    (["--fast"], {}, 2, "option '--fast' is not supported"),
    ([], {"MASTER_IP": None, "MASTER": None}, 2, "no NTP server"),
    (["--use-ntpd"], {}, 1, "--use-ntpd: ntpd is not installed"),
])
def test_setupntp_refuses_bad_input_and_writes_nothing(node, args, env, rc, message):
    node.systemd()
    node.write("/etc/chrony/chrony.conf", "pool x\n")
    r = node.run("setupntp", *args, **env)
    assert r.rc == rc and message in r.err, r.err
    assert node.path("/etc/chrony/chrony.conf").read_text() == "pool x\n"
    assert node.actions() == []


def test_setupntp_without_any_client_says_what_to_install(tmp_path):
    node = FakeNode(tmp_path)
    r = node.run("setupntp")
    assert r.rc == 1 and "no NTP client is installed" in r.err


# ---- with the environment the management node renders ----------------------------------------
def test_the_stock_scripts_run_from_the_rendered_environment(mn_sqlite, node):
    """The shipped copies in <install>/postscripts, in the environment the management node
    renders from mypostscript.tmpl for n1 (what the agent runs them in)."""
    mn = mn_sqlite
    build(mn, site(master="10.77.0.1", domain="hpc.example", ntpservers="<xcatmaster>"),
          nodes("n1-n2", groups="compute,all"),
          command("chtab", "net=10.77.0.0,mask=255.255.255.0", "networks.netname=mgt"),
          command("chtab", "net=10.1.0.0,mask=255.255.0.0", "networks.netname=data",
                  "networks.mtu=9000"),
          command("chtab", "node=compute", r"hosts.ip=|\D+(\d+)|10.77.0.($1+10)|",
                  r"mac.mac=|\D+(\d+)|52:54:00:00:00:($1+10)|",
                  r"nics.nicips=eth1!|\D+(\d+)|10.1.0.($1+10)|", "nics.nictypes=eth1!Ethernet",
                  "nics.nicnetworks=eth1!data"),
          command("nodech", "compute", "nodetype.os=debian12", "nodetype.arch=x86_64",
                  "noderes.installnic=mac", "noderes.primarynic=mac"))
    plan = PlanBuilder(Cluster(mn.paths, mn.db), ["n1"]).plan("n1")
    assert plan.ok, plan.errors
    (node.tmp / "mypostscript").write_text(plan.env)
    shipped = Path(mn.root) / "install/postscripts"
    nics(node, "networkd")
    rsyslog(node)
    node.write("/etc/chrony/chrony.conf", "pool 2.debian.pool.ntp.org iburst\n")
    keep = {k: node.env[k] for k in ("PATH", "HOME", "LC_ALL", "TMPDIR", "XCAT_ROOT",
                                     "XCAT_DRYRUN_LOG", "XCATAGENT")}
    for script in ("syslog", "hostname", "confignetwork", "setupntp"):
        p = subprocess.run(["sh", "-c", '. "$1" && exec sh "$2"', "sh",
                            str(node.tmp / "mypostscript"), str(shipped / script)],
                           capture_output=True, text=True, env=keep, cwd=node.cwd,
                           timeout=120)
        assert p.returncode == 0, (script, p.stdout, p.stderr)
    assert "10.77.0.11\tn1.hpc.example\tn1\t# xCAT hostname" in \
        node.path("/etc/hosts").read_text()
    assert ("Address=10.1.0.11/16" in
            node.path("/etc/systemd/network/10-xcat-eth1.network").read_text())
    assert "MTUBytes=9000" in node.path("/etc/systemd/network/10-xcat-eth1.network").read_text()
    assert not node.path("/etc/systemd/network/10-xcat-eth0.network").exists()
    assert "server 10.77.0.1 iburst" in node.path("/etc/chrony/chrony.conf").read_text()
    assert 'target="10.77.0.1"' in node.path("/etc/rsyslog.d/00-xcat.conf").read_text()
    assert "hostnamectl set-hostname n1" in node.actions()
