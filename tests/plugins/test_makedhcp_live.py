"""makedhcp -n served by a real dhcpd in a network namespace to a real dhclient."""
import os
import shutil

import pytest

from xcatd.lab.netns import Lab

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(p) for p in ("ip", "ss", "dhcpd", "dhclient")),
    reason="needs root, iproute2, isc-dhcp-server and isc-dhcp-client")


def test_nodes_get_their_address_and_boot_files_from_the_generated_config(mn_sqlite, tmp_path):
    mn = mn_sqlite
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
