"""Shared fixtures, all of them here: a management node under a scratch XCATROOT, on SQLite
and on a throwaway PostgreSQL server that the test session starts itself (and stops, by PID,
whatever happens), or reached through a live xcatd; a small cluster built on it from the
pieces a test module names (tests/support/cluster.py); the provisioning lab.

Run as root, as CI does, everything runs. Run as another user, what needs root is skipped
with the reason: commands in process (XCATBYPASS=1) are root's; so are commands through the
test management node's xcatd, whose policy (as xcatconfig writes it) allows root alone; and
so are network namespaces (the labs)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.cluster import SMALL, build
from support.privileges import BYPASS_IS_ROOTS, DAEMON_IS_ROOTS, need_root

from xcatd.base.paths import Paths
from xcatd.daemon.initialize import initialize
from xcatd.db.database import Database
from xcatd.lab import postgres as pg
from xcatd.lab.daemon import DaemonThread
from xcatd.lab.incli import Result, run_command
from xcatd.netboot.bootfiles import copy_tree, place


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cluster(*pieces): the pieces (tests/support/cluster.py) the cluster, "
        "cluster_sqlite and cluster_daemon fixtures build; without it, SMALL")


# ---- PostgreSQL ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_server():
    if pg.bindir() is None:
        pytest.skip("PostgreSQL is not installed (make test installs the postgresql package)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed")
    server = pg.start()
    try:
        yield server
    finally:
        server.stop()


# ---- a management node ---------------------------------------------------------------------
class MN:
    """A management node under a scratch root; ``run`` calls a command as an admin would."""

    def __init__(self, root: Path, url: str) -> None:
        self.daemon = None  # a DaemonThread when commands go through xcatd
        self.root = root
        self.paths = Paths(root)
        self.url = url

    @property
    def db(self) -> Database:
        return Database.open(self.paths)

    def run(self, cmd: str, *args: str, input: str | None = None) -> Result:
        """Run a command in process, exactly as its console script would."""
        return run_command(cmd, *args, input=input)

    def ok(self, cmd: str, *args: str, input: str | None = None) -> Result:
        r = self.run(cmd, *args, input=input)
        assert r.rc == 0, f"{cmd} {' '.join(args)} failed ({r.rc}): {r.err}"
        return r

    def sh(self, *argv: str, input: str | None = None) -> Result:
        """Run the installed console script in a subprocess."""
        env = {**os.environ, "XCATROOT": str(self.root)}
        bindir = os.path.dirname(sys.executable)
        exe = os.path.join(bindir, argv[0])
        p = subprocess.run([exe if os.path.exists(exe) else argv[0], *argv[1:]], input=input,
                           capture_output=True, text=True, env=env, timeout=120)
        return Result(p.returncode, p.stdout, p.stderr)


@pytest.fixture(autouse=True)
def _own_home(tmp_path_factory, monkeypatch):
    """Every test gets its own HOME, so ~/.xcat client certificates never leak between
    tests or onto the machine."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    return home


def make_mn(tmp_path: Path, url: str | None) -> MN:
    """A management node as xcatconfig leaves it: initialised, with the boot loaders in its
    TFTP root (copied from one tree mknb's ``place`` filled for the whole session)."""
    root = tmp_path / "root"
    root.mkdir()
    paths = Paths(root)
    initialize(paths, db_url=url)
    copy_tree(_loaders(tmp_path), paths.under("/tftpboot"))
    return MN(root, paths.db_url())


_LOADER_TREE: list[Path] = []


def _loaders(tmp_path: Path) -> Path:
    """The session's loader tree, beside the test directories."""
    if not _LOADER_TREE:
        tree = tmp_path.parent.parent / "loaders"
        for _ in place(tree):  # a missing package: makedhcp's error names it in the test
            pass
        _LOADER_TREE.append(tree)
    return _LOADER_TREE[0]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("daemon", marks=pytest.mark.daemon)])
def backend(request):
    return request.param


def _management_node(tmp_path, monkeypatch, url: str | None, daemon: bool = False):
    need_root(DAEMON_IS_ROOTS if daemon else BYPASS_IS_ROOTS)
    node = make_mn(tmp_path, url)
    monkeypatch.setenv("XCATROOT", str(node.root))
    for var in ("XCAT_NODE_PREFIX", "XCAT_NODE_SUFFIX", "XCATHOST"):
        monkeypatch.delenv(var, raising=False)
    thread = None
    # The command tests count auditlog rows themselves: the pipeline's own (written for
    # XCATBYPASS runs as for the daemon's) are skipped.
    with node.db.begin() as conn:
        node.db.set_rows(conn, "site", {("auditskipcmds",): {"value": "ALL"}})
    if daemon:
        # Commands go over HTTPS with the client certificate xcatconfig issued into HOME.
        thread = DaemonThread(node.paths)
        listening = thread.start()
        node.daemon = thread
        monkeypatch.delenv("XCATBYPASS", raising=False)
        monkeypatch.setenv("XCATHOST", f"127.0.0.1:{listening.port}")
    else:
        monkeypatch.setenv("XCATBYPASS", "1")
    try:
        yield node
    finally:
        if thread is not None:
            thread.stop()
        Database.open(node.paths).dispose()


@pytest.fixture
def mn(tmp_path, monkeypatch, request, backend):
    """A fresh management node on each database backend, and one reached through xcatd
    (root only: see support.privileges)."""
    need_root(DAEMON_IS_ROOTS if backend == "daemon" else BYPASS_IS_ROOTS)
    url = request.getfixturevalue("pg_server").new_database() if backend == "postgres" else None
    yield from _management_node(tmp_path, monkeypatch, url, daemon=backend == "daemon")


@pytest.fixture
def mn_sqlite(tmp_path, monkeypatch):
    """A management node on SQLite only, for tests that are about commands, not backends
    (commands run in process, with XCATBYPASS=1: root only)."""
    yield from _management_node(tmp_path, monkeypatch, None)


@pytest.fixture
def mn_daemon(tmp_path, monkeypatch):
    """A management node on SQLite with xcatd running; commands go through it (as root: its
    policy lets root alone run commands)."""
    yield from _management_node(tmp_path, monkeypatch, None, daemon=True)


@pytest.fixture
def bare_root(tmp_path, monkeypatch):
    """A root that xcatconfig has not initialised yet (XCATROOT points at it); commands run
    in process, with XCATBYPASS=1: root only."""
    need_root()
    root = tmp_path / "bare"
    root.mkdir()
    monkeypatch.setenv("XCATROOT", str(root))
    monkeypatch.setenv("XCATBYPASS", "1")
    monkeypatch.delenv("XCATHOST", raising=False)
    return MN(root, "")


@pytest.fixture
def vmlab(tmp_path):
    """The provisioning lab (xcatd.lab.vmlab): a namespace with a bridge, radvd, and VMs
    added by the test; skipped, saying why, where it cannot run (not root, no /dev/net/tun,
    QEMU or ipmi_sim missing). Everything it started is stopped by PID, even on failure."""
    from xcatd.lab.vmlab import LabUnavailable, VmLab, unavailable
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    lab = VmLab(tmp_path / "lab")
    try:
        lab.start()
    except LabUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield lab
    finally:
        lab.stop()


# ---- a small cluster ------------------------------------------------------------------------
def _built(request, mn):
    mark = request.node.get_closest_marker("cluster")
    return build(mn, *(mark.args if mark else (SMALL,)))


@pytest.fixture
def cluster(request, mn):
    """``mn`` (every backend) with the pieces of the test's ``cluster`` marker built, or
    SMALL: n1-n3,n10 in compute,all; n20 in other with nodehm.mgt=kvm."""
    return _built(request, mn)


@pytest.fixture
def cluster_sqlite(request, mn_sqlite):
    """The same cluster on ``mn_sqlite``."""
    return _built(request, mn_sqlite)


@pytest.fixture
def cluster_daemon(request, mn_daemon):
    """The same cluster on ``mn_daemon``: commands go through xcatd."""
    return _built(request, mn_daemon)
