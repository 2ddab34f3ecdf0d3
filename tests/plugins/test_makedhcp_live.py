"""makedhcp -n served by a real dhcpd in a network namespace to a real dhclient."""
import os
import shutil

import pytest

from xcatd.lab.netns import Lab

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(p) for p in ("ip", "ss", "dhcpd", "dhclient")),
    reason="needs root, iproute2, isc-dhcp-server and isc-dhcp-client")


def test_nodes_get_their_address_and_boot_files_from_the_generated_config(mn_daemon, tmp_path):
    mn = mn_daemon  # makedhcp goes through xcatd
    with Lab(workdir=tmp_path / "lab") as lab:
        p = lab.prefix
        mn.ok("chtab", "key=master", f"site.value={lab.server_ip}")
        mn.ok("chtab", "key=dhcpinterfaces", f"site.value={lab.server_if}")
        mn.ok("mkdef", "-t", "network", "-o", "lab", f"net={lab.subnet}",
              "mask=255.255.255.0", f"mgtifname={lab.server_if}")
        mn.ok("mkdef", "-t", "network", "-o", "elsewhere", "net=192.168.77.0",
              "mask=255.255.255.0", "mgtifname=eth9")   # not served: not on dhcpinterfaces
        mn.ok("nodeadd", "n[1-2]", "groups=compute")
        mn.ok("chtab", "node=compute", rf"hosts.ip=|\D+(\d+)|{p}.($1+10)|",
              r"mac.mac=|\D+(\d+)|52:54:00:00:00:($1+10)|")
        mn.ok("nodech", "n2", "noderes.netboot=pxe")
        mn.ok("makedhcp", "-n")
        lab.start_dhcpd(mn.root / "etc/dhcp/dhcpd.conf", tmp_path / "leases")

        bios = lab.dhclient("52:54:00:00:00:11")
        assert (bios["ip"], bios["hostname"]) == (f"{p}.11", "n1")
        assert bios["filename"] == "xcat/xnba.kpxe" and bios["next_server"] == lab.server_ip
        ipxe = lab.dhclient("52:54:00:00:00:11", user_class="iPXE")
        assert ipxe["filename"] == f"http://{lab.server_ip}:80/tftpboot/xcat/xnba/nodes/n1"
        pxe = lab.dhclient("52:54:00:00:00:12")
        assert (pxe["ip"], pxe["filename"]) == (f"{p}.12", "pxelinux.0")
        assert lab.dhclient("52:54:00:00:00:99", timeout=3) is None   # not a node


def test_nodes_added_and_removed_on_the_running_dhcpd_through_omapi(mn_sqlite, tmp_path):
    """makedhcp runs in process inside the server namespace: dhcpd's OMAPI port is there."""
    import sys
    mn = mn_sqlite
    exe = os.path.join(os.path.dirname(sys.executable), "makedhcp")
    env = {**os.environ, "XCATROOT": str(mn.root), "XCATBYPASS": "1"}
    env.pop("XCATHOST", None)
    with Lab(workdir=tmp_path / "lab") as lab:
        p = lab.prefix
        mn.ok("chtab", "key=master", f"site.value={lab.server_ip}")
        mn.ok("mkdef", "-t", "network", "-o", "lab", f"net={lab.subnet}",
              "mask=255.255.255.0", f"mgtifname={lab.server_if}")
        mn.ok("nodeadd", "n1", "groups=compute", f"hosts.ip={p}.11",
              "mac.mac=52:54:00:00:00:11")
        mn.ok("makedhcp", "-n")
        lab.start_dhcpd(mn.root / "etc/dhcp/dhcpd.conf", tmp_path / "leases")
        mn.ok("nodeadd", "n2", "groups=compute", f"hosts.ip={p}.12",
              "mac.mac=52:54:00:00:00:12", "noderes.netboot=pxe")
        assert lab.dhclient("52:54:00:00:00:12", timeout=3) is None   # not there yet

        def makedhcp(*args):  # OMAPI goes to 127.0.0.1 inside the server namespace
            return lab.run("server", [exe, *args], env=env)

        r = makedhcp("n2")
        assert r.returncode == 0, r.stderr
        got = lab.dhclient("52:54:00:00:00:12")
        assert (got["ip"], got["hostname"], got["filename"]) == (f"{p}.12", "n2", "pxelinux.0")
        q = makedhcp("-q", "n2")
        assert q.returncode == 0 and q.stdout.startswith("n2: ") and f"{p}.12" in q.stdout
        assert makedhcp("-d", "n2").returncode == 0
        assert lab.dhclient("52:54:00:00:00:12", timeout=3) is None
        gone = makedhcp("-q", "n2")
        assert gone.returncode == 1 and "n2: Error: not known to dhcpd" in gone.stderr
        assert lab.dhclient("52:54:00:00:00:11")["ip"] == f"{p}.11"   # the others stay


@pytest.mark.skipif(not shutil.which("kea-dhcp4"), reason="kea-dhcp4-server missing")
def test_kea_serves_the_generated_config_and_takes_live_changes(mn_daemon, tmp_path):
    mn = mn_daemon  # makedhcp goes through xcatd, to Kea's control socket
    with Lab(workdir=tmp_path / "lab") as lab:
        p = lab.prefix
        mn.ok("chtab", "key=dhcpbackend", "site.value=kea")
        mn.ok("chtab", "key=master", f"site.value={lab.server_ip}")
        mn.ok("mkdef", "-t", "network", "-o", "lab", f"net={lab.subnet}",
              "mask=255.255.255.0", f"mgtifname={lab.server_if}")
        mn.ok("nodeadd", "n[1-2]", "groups=compute")
        mn.ok("chtab", "node=compute", rf"hosts.ip=|\D+(\d+)|{p}.($1+10)|",
              r"mac.mac=|\D+(\d+)|52:54:00:00:00:($1+10)|")
        mn.ok("nodech", "n2", "noderes.netboot=pxe")
        mn.ok("makedhcp", "-n")
        lab.start_kea(mn.root / "etc/kea/kea-dhcp4.conf")

        got = lab.dhclient("52:54:00:00:00:11")
        assert (got["ip"], got["hostname"], got["filename"]) == (f"{p}.11", "n1",
                                                                "xcat/xnba.kpxe")
        ipxe = lab.dhclient("52:54:00:00:00:11", user_class="iPXE")
        assert ipxe["filename"] == f"http://{lab.server_ip}:80/tftpboot/xcat/xnba/boot.ipxe"
        assert lab.dhclient("52:54:00:00:00:12")["filename"] == "pxelinux.0"

        mn.ok("nodeadd", "n3", "groups=compute")          # a new node, no restart
        mn.ok("makedhcp", "n3")
        assert lab.dhclient("52:54:00:00:00:13")["ip"] == f"{p}.13"
        assert f"ip-address = {p}.13" in mn.ok("makedhcp", "-q", "n3").out
        mn.ok("makedhcp", "-d", "n3")
        assert lab.dhclient("52:54:00:00:00:13", timeout=3) is None
        r = mn.run("makedhcp", "-q", "n3")
        assert r.rc == 1 and "not known to Kea" in r.err
        assert lab.dhclient("52:54:00:00:00:11")["ip"] == f"{p}.11"
