"""Real OpenSSH nodes for a test module (xcatd.lab.sshnodes): a fixture factory, and the steps
that make a test management node know them.

A module names its lab once; the fixture starts it the first time a test asks (once per
module unless told), on its own scratch XCATROOT (``lab.paths``: the MN root key pair and
the nodes' host keys), and stops it whatever happens. Where the lab cannot run (not root, no
sshd) the tests that use it are skipped, saying why:

    from support.sshlab import register, ssh_cluster

    nodes = ssh_cluster(50)                      # n001..n050; keywords go to SshCluster

    def test_hostname(nodes, tmp_path):
        kh = tmp_path / "known_hosts"
        kh.write_text(nodes.known_hosts())
        r = nodes.mn_run(nodes.ssh_argv("n001", "hostname", known_hosts=kh))
        assert r.stdout == "n001\\n"

    def test_xdsh(nodes, mn_sqlite):
        register(mn_sqlite, nodes)               # nodes, hosts.ip, the lab's keys
        ...                                      # run the command inside nodes.mn_ns

The nodes answer only inside the lab's management-node namespace: run the client there
(``nodes.mn_run``/``mn_popen``), or open its connections from a thread inside
``nodes.mn_netns()``.
"""
from __future__ import annotations

from typing import Any

import pytest

from xcatd.base.paths import Paths
from xcatd.lab.sshnodes import SshCluster, usable


def ssh_cluster(count: int, *, scope: str = "module", **options: Any):
    """A fixture (assign it to a module-level name: that is the fixture's name) yielding a
    running SshCluster of ``count`` nodes; ``options`` go to SshCluster (names=, prefix=,
    sshd_options=, workdir=)."""
    @pytest.fixture(scope=scope)
    def _ssh_cluster(tmp_path_factory):
        reason = usable()
        if reason:
            pytest.skip(reason)
        paths = Paths(tmp_path_factory.mktemp("sshlab"))
        with SshCluster(count, paths, **options) as lab:
            yield lab
    return _ssh_cluster


def register(mn, lab: SshCluster, groups: str = "compute") -> None:
    """Make the test management node ``mn`` (tests/conftest.py) know the lab's nodes: define
    them in ``groups`` with their addresses in the hosts table, and give it the lab's root key
    pair and the nodes' host keys (so its known_hosts can be made for real)."""
    names = [n.name for n in lab.nodes]
    mn.ok("nodeadd", ",".join(names), f"groups={groups}")
    with mn.db.begin() as conn:
        mn.db.set_rows(conn, "hosts", {(name,): {"ip": ip} for name, ip in lab.hosts()})
    lab.share_keys(mn.paths)
