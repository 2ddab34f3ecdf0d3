"""The network-namespace lab itself: a hand-written dhcpd.conf served on a veth pair, leases taken
by dhclient in the other namespace, and nothing left behind when the lab closes."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from xcatd.lab.netns import Lab, LabError

if os.geteuid() != 0:
    pytest.skip("the network lab needs root (network namespaces)", allow_module_level=True)
_missing = [t for t in ("ip", "ss", "dhcpd", "dhclient") if shutil.which(t) is None]
if _missing:
    pytest.skip(f"the network lab needs {', '.join(_missing)} (iproute2, isc-dhcp-server, "
                "isc-dhcp-client)", allow_module_level=True)

N1 = "52:54:00:00:00:01"


def hand_written_conf(lab: Lab) -> str:
    p = lab.prefix
    return f"""\
ddns-update-style none;
authoritative;
default-lease-time 43200;
option domain-name "cluster.test";
subnet {p}.0 netmask 255.255.255.0 {{
  option routers {p}.1;
}}
host n1 {{
  hardware ethernet {N1};
  fixed-address {p}.11;
  option host-name "n1";
  next-server {p}.1;
  if exists user-class and option user-class = "iPXE" {{
    filename "http://{p}.1/n1.ipxe";
  }} else {{
    filename "undionly.kpxe";
  }}
}}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("dhcp")
    with Lab() as lab:
        conf = d / "dhcpd.conf"
        conf.write_text(hand_written_conf(lab))
        lab.start_dhcpd(conf, d / "leases")
        yield lab


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_known_mac_gets_fixed_address_host_name_and_pxe_filename(served):
    lease = served.dhclient(N1)
    assert lease is not None
    assert lease["ip"] == f"{served.prefix}.11"
    assert lease["hostname"] == "n1"
    assert lease["filename"] == "undionly.kpxe"
    assert lease["next_server"] == served.server_ip
    assert lease["domain"] == "cluster.test"


def test_ipxe_user_class_gets_http_filename(served):
    lease = served.dhclient(N1, user_class="iPXE")
    assert lease is not None
    assert lease["ip"] == f"{served.prefix}.11"
    assert lease["filename"] == f"http://{served.server_ip}/n1.ipxe"


def test_unknown_mac_gets_no_lease_without_dynamic_range(served):
    assert served.dhclient("52:54:00:00:00:99", timeout=3) is None


def test_lab_layout_and_unique_names(served):
    with Lab() as other:
        assert set(other.ns.values()).isdisjoint(served.ns.values())
        assert all(len(ns) <= 15 for ns in other.ns.values())
        assert set(other.ns.values()) <= namespaces()
        addrs = other.run("server", ["ip", "-o", "addr", "show", other.server_if]).stdout
        assert f"{other.server_ip}/24" in addrs and f"{other.server_ip6}/64" in addrs
        client = other.run("client", ["ip", "-o", "addr", "show", other.client_if]).stdout
        assert " inet " not in client
        other.set_client_mac("52:54:00:aa:bb:cc")
        link = other.run("client", ["ip", "-o", "link", "show", other.client_if]).stdout
        assert "52:54:00:aa:bb:cc" in link
    host = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert Lab.server_if not in host and Lab.client_if not in host


def test_bad_config_fails_with_dhcpd_message(tmp_path):
    conf = tmp_path / "dhcpd.conf"
    conf.write_text("subnet 192.0.2.0 netmask 255.255.255.0 {}\n")  # not on the veth
    with Lab() as lab, pytest.raises(LabError, match="Not configured to listen"):
        lab.start_dhcpd(conf, tmp_path)


def test_everything_is_gone_after_exit_even_when_the_body_raised(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), Lab() as lab:
        conf = tmp_path / "dhcpd.conf"
        conf.write_text(hand_written_conf(lab))
        dhcpd = lab.start_dhcpd(conf, tmp_path)
        sleeper = lab.start("client", ["sleep", "600"])
        names, pids = set(lab.ns.values()), [dhcpd.pid, sleeper.pid]
        assert names <= namespaces() and all(alive(p) for p in pids)
        raise RuntimeError("boom")
    assert not names & namespaces()
    assert not any(alive(p) for p in pids)
    assert not lab.dir.exists()
