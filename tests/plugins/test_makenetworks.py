"""makenetworks: networks from the management node's interfaces (run in a namespace)."""
import os
import shutil
import subprocess
import sys
import uuid

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                reason="needs root and iproute2 for a network namespace")


@pytest.fixture
def netns():
    name = f"pyxmn{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (["ip", "link", "add", "va", "type", "veth", "peer", "name", "vb"],
                    ["ip", "addr", "add", "10.79.3.1/24", "dev", "va"],
                    ["ip", "addr", "add", "172.30.0.5/16", "dev", "vb"],
                    ["ip", "link", "set", "va", "up"], ["ip", "link", "set", "vb", "up"],
                    ["ip", "link", "set", "lo", "up"],
                    ["ip", "route", "add", "default", "via", "172.30.0.254"]):
            subprocess.run(["ip", "netns", "exec", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def makenetworks(mn, ns, *args):
    exe = os.path.join(os.path.dirname(sys.executable), "makenetworks")
    env = {**os.environ, "XCATROOT": str(mn.root), "XCATBYPASS": "1"}
    env.pop("XCATHOST", None)
    return subprocess.run(["ip", "netns", "exec", ns, exe, *args], env=env, text=True,
                          capture_output=True, timeout=60)


def test_display_shows_stanzas_and_writes_nothing(mn_sqlite, netns):
    r = makenetworks(mn_sqlite, netns, "-d")
    assert r.returncode == 0, r.stderr
    assert "10_79_3_0-255_255_255_0:\n    objtype=network" in r.stdout
    assert "    mgtifname=va" in r.stdout and "    gateway=172.30.0.254" in r.stdout
    assert mn_sqlite.db.rows("networks") == []


def test_creates_rows_once(mn_sqlite, netns):
    assert makenetworks(mn_sqlite, netns).returncode == 0
    rows = {r["netname"]: r for r in mn_sqlite.db.rows("networks")}
    assert set(rows) == {"10_79_3_0-255_255_255_0", "172_30_0_0-255_255_0_0"}
    assert rows["172_30_0_0-255_255_0_0"]["gateway"] == "172.30.0.254"
    assert rows["10_79_3_0-255_255_255_0"]["mgtifname"] == "va"
    again = makenetworks(mn_sqlite, netns)
    assert again.returncode == 0 and "already defined" in again.stderr
    assert len(mn_sqlite.db.rows("networks")) == 2
