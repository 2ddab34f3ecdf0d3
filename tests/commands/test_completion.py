"""Bash completion: what a TAB offers (options, actions, node, group and osimage names), and
the cached name list it reads, refreshed from the daemon in the background."""
from __future__ import annotations

import os
import select
import stat
import sys
import time
from pathlib import Path

import pytest
from xcatd.commands import _docgen

from xcatd.db.database import TABLES
from xcatd.db.objects import DEFINABLE

REPO = Path(__file__).resolve().parents[2]
COMPLETIONS = REPO / "share/bash-completion/completions"
SCRIPT = COMPLETIONS / "pyxcat"
BIN = Path(sys.executable).parent
NAMES = ["n1", "n2", "n3", "n10", "n20", "compute", "all", "other"]
OSIMAGES = ["rocky9.4-x86_64-install-compute", "debian12-x86_64-netboot-compute"]

COMPLETE = r"""
. "$SCRIPT"
COMP_LINE=$LINE
COMP_POINT=${#LINE}
_pyxcat "$CMD" "" ""
(( ${#COMPREPLY[@]} == 0 )) || printf '%s\n' "${COMPREPLY[@]}"
"""


def bash(script: str, env: dict[str, str], *args: str) -> str:
    import subprocess
    r = subprocess.run(["bash", "-c", script, "test", *args], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return r.stdout


def cache_key(env: dict[str, str]) -> str:
    where = env.get("XCATHOST") or env.get("XCATROOT") or "/"
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in where)


@pytest.fixture
def shell(tmp_path):
    """An environment whose cache holds NAMES and OSIMAGES, stamped now (no refresh)."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "XCATROOT": str(tmp_path / "root"),
           "SCRIPT": str(SCRIPT)}
    cache = tmp_path / "cache/pyxcat"
    cache.mkdir(parents=True)
    stamp = f"# {int(time.time())}\n"
    (cache / f"names-{cache_key(env)}").write_text(stamp + "\n".join(NAMES) + "\n")
    (cache / f"osimages-{cache_key(env)}").write_text(stamp + "\n".join(OSIMAGES) + "\n")
    return env


def complete(env: dict[str, str], line: str) -> list[str]:
    cmd = next(w for w in line.split() if "=" not in w)
    return bash(COMPLETE, {**env, "LINE": line, "CMD": cmd}).splitlines()


@pytest.mark.parametrize("line, offered", [
    ("rpower n1 ", list(_docgen.ACTIONS["rpower"])),
    ("rpower n1 s", ["softoff", "stat", "state", "status"]),
    ("rpower n1 on ", []),                           # no third argument
    ("rsetboot n1 d", ["def", "default"]),
    ("rsetboot n1 -p n", ["net"]),                   # a flag does not count as an argument
    ("rinv n1 f", ["firm"]),
    ("rvitals n1 temp w", ["wattage"]),              # rvitals takes several
    ("reventlog n1 c", ["clear"]),
    ("job s", ["show"]),
    ("tabprune a", ["auditlog"]),
    ("nodeset n1 st", ["standby", "stat"]),
    ("nodeset n1 osi", ["osimage", "osimage="]),
    ("XCATBYPASS=1 rpower n1 of", ["off"]),
    ("packimage -m s", ["squashfs"]),
    ("packimage --compress x", ["xz"]),
    ("lsdef -t ", list(DEFINABLE)),
    ("lsdef -t node,gr", ["node,group"]),
    ("tabdump nodel", sorted(t for t in TABLES if t.startswith("nodel"))),
])
def test_actions_and_option_values(shell, line, offered):
    assert complete(shell, line) == offered


@pytest.mark.parametrize("line, offered", [
    ("rpower n", ["n1", "n2", "n3", "n10", "n20"]),
    ("rpower n1", ["n1", "n10"]),
    ("rpower c", ["compute"]),                       # groups too
    ("rpower ", NAMES),
    ("rpower n1,n2", ["n1,n2", "n1,n20"]),           # a noderange's last element
    ("rpower compute,-n1", ["compute,-n1", "compute,-n10"]),
    ("rpower compute@n2", ["n2", "n20"]),            # readline keeps "compute@"
    ("nodels o", ["other"]),
    ("lsdef -o n2", ["n2", "n20"]),
    ("mkdef -t node -o n5 gr", []),                  # attr=val: nothing to offer
    ("tabgrep n3", ["n3"]),
    ("nodeset n1 osimage=rocky", ["rocky9.4-x86_64-install-compute"]),  # after "="
    ("genimage deb", ["debian12-x86_64-netboot-compute"]),
    ("lslite -i r", ["rocky9.4-x86_64-install-compute"]),
    ("rpower x", []),
])
def test_node_group_and_osimage_names_from_the_cache(shell, line, offered):
    assert complete(shell, line) == offered


@pytest.mark.parametrize("name", sorted(_docgen.commands()))
def test_every_option_of_every_command_completes(shell, name):
    cmd = _docgen.commands()[name]
    spelt = {o for opt in _docgen.options(name, cmd) for o in _docgen.spellings(opt)} - {"-?"}
    assert set(complete(shell, f"{name} -")) == spelt
    assert "--help" in spelt and "--version" in spelt


def test_every_command_is_registered_and_its_own_file_loads_the_library(shell):
    names = sorted(_docgen.commands())
    out = bash('. "$SCRIPT"; for c in "$@"; do complete -p "$c"; done', shell, *names)
    assert out.splitlines() == [f"complete -F _pyxcat {n}" for n in names]
    stub = str(COMPLETIONS / "rpower")
    out = bash('. "$1"; complete -p rpower; declare -F _pyxcat', shell, stub)
    assert out.splitlines() == ["complete -F _pyxcat rpower", "_pyxcat"]


def test_a_real_tab_in_an_interactive_bash(shell):
    """readline calls the function: the line is completed in place."""
    import pty
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"],
                   {**shell, "PS1": "$ ", "INPUTRC": "/dev/null", "TERM": "dumb"})
    seen = b""

    def until(needle: bytes, timeout: float = 20) -> bool:
        nonlocal seen
        end = time.time() + timeout
        while time.time() < end:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    seen += os.read(fd, 65536)
                except OSError:
                    return False
            if needle in seen:
                return True
        return False

    try:
        os.write(fd, b'. "$SCRIPT"; echo ready\n')
        assert until(b"ready\r\n")
        seen = b""
        os.write(fd, b"rpower n1 sof\t")
        assert until(b"rpower n1 softoff"), seen
        os.write(fd, b"\x15nodeset n1 osimage=deb\t")
        assert until(b"osimage=debian12-x86_64-netboot-compute"), seen
    finally:
        os.write(fd, b"\x15exit\n")
        os.close(fd)
        os.waitpid(pid, 0)


# ---- the cache and its refresh -------------------------------------------------------------
def wait_for(path: Path, old: str | None = None, timeout: float = 60) -> str:
    end = time.time() + timeout
    while time.time() < end:
        if path.is_file() and path.read_text() != old and not list(
                path.parent.glob(".refresh-*")):
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{path} was not refreshed")


def test_the_names_come_from_the_daemon_in_the_background(cluster_sqlite, tmp_path):
    """First TAB: nothing cached yet, a refresh starts (nodels, lsdef) and the TAB returns
    at once; the next TAB offers what the daemon answered."""
    cluster_sqlite.ok("mkdef", "-t", "osimage", "-o", "img1", "osvers=rocky9.4", "osarch=x86_64",
                      "profile=compute", "provmethod=install", "imagetype=linux")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "SCRIPT": str(SCRIPT),
           "PATH": f"{BIN}:{os.environ['PATH']}"}
    assert complete(env, "rpower n") == []
    cache = tmp_path / "cache/pyxcat"
    names = wait_for(cache / f"names-{cache_key(env)}")
    assert names.splitlines()[1:] == ["n1", "n2", "n3", "n10", "n20", "all", "compute",
                                      "other"]
    assert complete(env, "rpower n") == ["n1", "n2", "n3", "n10", "n20"]
    assert complete(env, "rpower a") == ["all"]
    assert wait_for(cache / f"osimages-{cache_key(env)}").splitlines()[1:] == ["img1"]
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE((cache / f"names-{cache_key(env)}").stat().st_mode) == 0o600


@pytest.fixture
def daemon_down(tmp_path):
    """A PATH whose nodels and lsdef fail as they do when xcatd cannot be reached."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for cmd in ("nodels", "lsdef"):
        (fake / cmd).write_text("#!/bin/sh\necho 'Error: cannot reach xcatd' >&2\nexit 1\n")
        (fake / cmd).chmod(0o755)
    return f"{fake}:{os.environ['PATH']}"


def test_a_stale_cache_is_used_while_it_is_refreshed_and_a_failure_keeps_it(shell,
                                                                            daemon_down):
    """Past the TTL the old names are offered at once; a daemon that cannot answer leaves
    them in place, stamped anew (asked again after the TTL, not at every TAB)."""
    env = {**shell, "PATH": daemon_down}
    names = Path(env["XDG_CACHE_HOME"]) / "pyxcat" / f"names-{cache_key(env)}"
    old = "# 1000\n" + "\n".join(NAMES) + "\n"
    names.write_text(old)
    assert complete(env, "rpower n2") == ["n2", "n20"]
    refreshed = wait_for(names, old)
    assert refreshed.splitlines()[1:] == NAMES
    assert int(refreshed.split()[1]) >= int(time.time()) - 60


def test_each_management_node_has_its_own_cache(shell, daemon_down):
    other = {**shell, "XCATHOST": "127.0.0.1:1", "PATH": daemon_down}
    assert complete(other, "rpower n") == []  # nothing cached for that one yet
    names = Path(other["XDG_CACHE_HOME"]) / "pyxcat" / "names-127.0.0.1_1"
    assert wait_for(names).splitlines()[1:] == []
    assert complete(shell, "rpower n") == ["n1", "n2", "n3", "n10", "n20"]
