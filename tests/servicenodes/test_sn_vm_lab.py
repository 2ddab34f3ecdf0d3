"""A real VM behind a service node boots from it, and from the next one when it dies: the
management node (its own namespace, on PostgreSQL) runs nodeset and rpower through its
xcatd; both are relayed to sn1, whose xcatd lives in the VM lab's namespace beside the VM's
BMC (ipmi_sim), its dhcpd (the configuration makedhcp -n had sn1 write, with sn1's nodes
only), tftpd-hpa (sn1's TFTP root, the loaders its join placed) and sn1's own HTTP site; the
VM's firmware PXE-boots from sn1 and the test initrd reports installed, which sn1 records.
The management node has no route to the VM's network or its BMC: everything the VM gets
comes from sn1. Then sn1 dies (kill -9, its dhcpd and tftpd with it) and, with
site.snautofailover, the next request moves the node to sn2 (its own namespace, a second
interface on the VM's network): sn2's dhcpd learns the node, sn2 writes its boot files,
powers it through the same BMC, and the VM boots from sn2.

The install tree is the management node's, shared with sn1 (a link here, an NFS mount of
/install on a site, as xCAT's service nodes mount it)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
from support.cluster import INSTALL_IMAGE

from xcatd.lab.snlab import ServiceNodeLab
from xcatd.lab.twomn import pg_socket_url, usable

_why = usable()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or ""), pytest.mark.postgres]

IMG = INSTALL_IMAGE
STATE = "install rocky9.4-x86_64-compute"
MAC, IP = "52:54:00:77:00:21", "10.77.0.21"
BOOT_WAIT = 300
TIMEOUT = 3          # site.snheartbeattimeout
SN2_IP = "10.77.0.2"  # sn2 on the VM's network (sn1 is the VM lab's server_ip)


def ok(r, what):
    assert r.rc == 0, f"{what}: {r.out}\n{r.err}"
    return r


def test_a_vm_behind_a_service_node_boots_from_it(pg_server, vmlab, tmp_path):
    from xcatd.lab import assets
    from xcatd.lab.fakemedia import bootable_iso
    from xcatd.lab.initrd import MARK, InitrdError
    from xcatd.lab.vmlab import LabUnavailable
    try:
        iso = bootable_iso(tmp_path)
    except (assets.AssetsMissing, InitrdError) as exc:
        pytest.skip(str(exc))
    url = pg_socket_url(pg_server.new_database(), Path(pg_server.base) / "sock",
                        pg_server.port)
    with ServiceNodeLab(tmp_path / "snlab", url, sns=2, hub=vmlab.ns, in_hub="sn1") as lab:
        mn, sn1, sn2 = lab.mn, lab.members["sn1"], lab.members["sn2"]

        def do(*argv):
            return ok(mn.cli(*argv, bypass=True), " ".join(argv))

        lab.start(site={"tftpserver": "tftpd-hpa", "dhcpsetup": "n",
                        "snheartbeattimeout": str(TIMEOUT)})
        sn2.attach(vmlab.ns, vmlab.bridge, f"{SN2_IP}/{vmlab.subnet.prefixlen}")
        assert "Media copy operation successful" in do("copycds", str(iso)).out
        # sn1 serves the install tree the management node copied (shared, as over NFS)
        for sn in (sn1, sn2):
            shutil.rmtree(sn.root / "install", ignore_errors=True)
            (sn.root / "install").symlink_to(mn.root / "install")
        do("chtab", "key=system", "passwd.username=root", "passwd.password=cluster-sn")
        do("mkdef", "-t", "network", "-o", "vmnet", f"net={vmlab.subnet.network_address}",
           f"mask={vmlab.netmask}", f"mgtifname={vmlab.bridge}")
        for sn in ("sn1", "sn2"):
            do("chtab", f"node={sn}", f"servicenode.dhcpinterfaces={vmlab.bridge}")
        try:
            vm = vmlab.add_vm("n1", MAC, firmware="uefi")
        except LabUnavailable as exc:
            pytest.skip(str(exc))
        do("nodeadd", "n1", "groups=compute", f"hosts.ip={IP}", f"mac.mac={MAC}",
           "nodetype.arch=x86_64", "nodehm.serialport=0", "nodehm.serialspeed=115200",
           "noderes.netboot=xnba", "noderes.servicenode=sn1,sn2", "nodehm.mgt=ipmi",
           f"ipmi.bmc={vm.bmc_addr}", f"ipmi.bmcport={vm.bmc_port}",
           f"ipmi.username={vm.bmc_user}", f"ipmi.password={vm.bmc_password}")

        r = ok(mn.cli("makedhcp", "-n"), "makedhcp -n")  # through xcatd: here and on sn1
        conf = sn1.root / "etc/dhcp/dhcpd.conf"
        assert re.findall(r"^\s*host (\S+) \{", conf.read_text(), re.M) == ["n1"], r.out
        assert "n1" not in (mn.root / "etc/dhcp/dhcpd.conf").read_text()
        assert "host " not in (sn2.root / "etc/dhcp/dhcpd.conf").read_text()  # none of its
        tftpd1 = vmlab.start_tftpd(sn1.root / "tftpboot")
        dhcpd1 = vmlab.start_dhcpd(conf)
        sn2.start_dhcpd(vmlab.bridge)   # on the same network: it does not answer for n1
        sn2.start_tftpd(SN2_IP)

        r = ok(mn.cli("nodeset", "n1", f"osimage={IMG}"), "nodeset")
        assert r.lines == [f"n1: {STATE}"]
        assert (sn1.root / "tftpboot/xcat/xnba/nodes/n1").is_file()  # on sn1, not the MN
        assert not (mn.root / "tftpboot/xcat/xnba/nodes/n1").exists()
        r = ok(mn.cli("rpower", "n1", "on"), "rpower on")
        assert r.lines == ["n1: on"]
        assert vmlab.wait_serial(vm, rf"^{MARK} up (\S+)", timeout=BOOT_WAIT).group(1) == IP
        reported = vmlab.wait_serial(vm, rf"^{MARK} reported (.*)$", timeout=60).group(1)
        assert re.fullmatch(r"HTTP/1\.[01] 200 OK", reported.strip()), \
            sn1.log.read_text()[-3000:]
        status = do("lsdef", "n1", "-i", "status").out
        assert "status=installed" in status, status
        assert [p["command"] for p in lab.relayed_parts(sn1)] == \
            ["makedhcp", "nodeset", "rpower"]
        # what sn1 did on its own (the VM's boot script and report) it could record
        log = sn1.log.read_text()
        assert "permission denied" not in log, log[-3000:]
        audit = do("tabdump", "auditlog").out
        assert re.search(r'"n1","10\.77\.0\.21","node","bootscript"', audit), audit[-2000:]
        assert f"http://{vmlab.server_ip}" in vmlab.serial_text(vm)  # (sn1's own address)

        # ---- sn1 dies; with auto-failover the node moves to sn2 and boots from it
        do("chtab", "key=snautofailover", "site.value=yes")
        lab.bmc_ports(vm.bmc_port, reach=["sn2"])  # sn2 reaches the VM's BMC
        os.kill(sn1.xcatd.pid, signal.SIGKILL)
        vmlab.kill(dhcpd1)
        vmlab.kill(tftpd1)
        time.sleep(TIMEOUT + 1.5)
        r = ok(mn.cli("nodeset", "n1", f"osimage={IMG}"), "nodeset after sn1 died")
        assert r.lines == [f"n1: {STATE}"], r.out + r.err
        assert "sn1 silent past site.snheartbeattimeout: n1 moved to sn2" in r.err
        assert (sn2.root / "tftpboot/xcat/xnba/nodes/n1").is_file()
        assert do("lsdef", "n1", "-i", "servicenode").lines[1:] == ["    servicenode=sn2,sn1"]
        q = ok(mn.cli("makedhcp", "-q", "n1"), "makedhcp -q")  # sn2's running dhcpd
        assert MAC in q.out, q.out
        mark = vmlab.serial_mark(vm)
        r = ok(mn.cli("rpower", "n1", "reset"), "rpower reset through sn2")
        assert r.lines == ["n1: reset"], r.out
        assert vmlab.wait_serial(vm, rf"^{MARK} up (\S+)", timeout=BOOT_WAIT,
                                 start=mark).group(1) == IP
        reported = vmlab.wait_serial(vm, rf"^{MARK} reported (.*)$", timeout=60,
                                     start=mark).group(1)
        assert re.fullmatch(r"HTTP/1\.[01] 200 OK", reported.strip()), \
            sn2.log.read_text()[-3000:]
        booted = vmlab.serial_text(vm, mark)
        assert f"http://{SN2_IP}" in booted and f"http://{vmlab.server_ip}" not in booted
        # (the move) its DHCP entry, then the nodeset, the query, the reset
        assert [p["command"] for p in lab.relayed_parts(sn2)][-4:] == \
            ["makedhcp", "nodeset", "makedhcp", "rpower"]
        assert "permission denied" not in sn2.log.read_text()
