"""A real VM behind a service node boots from it: the management node (its own namespace, on
PostgreSQL) runs nodeset and rpower through its xcatd; both are relayed to sn1, whose xcatd
lives in the VM lab's namespace beside the VM's BMC (ipmi_sim), its dhcpd (the configuration
makedhcp -n had sn1 write, with sn1's nodes only), tftpd-hpa (sn1's TFTP root, the loaders its
join placed) and sn1's own HTTP site; the VM's firmware PXE-boots from sn1 and the test initrd
reports installed, which sn1 records. The management node has no route to the VM's network or
its BMC: everything the VM gets comes from sn1.

The install tree is the management node's, shared with sn1 (a link here, an NFS mount of
/install on a site, as xCAT's service nodes mount it)."""
from __future__ import annotations

import re
import shutil
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


def ok(r, what):
    assert r.rc == 0, f"{what}: {r.out}\n{r.err}"
    return r


def test_a_vm_behind_a_service_node_boots_from_it(pg_server, vmlab, tmp_path):
    from xcatd.lab import assets
    from xcatd.lab.fakemedia import build_iso, build_tree
    from xcatd.lab.initrd import MARK, InitrdError, build_initrd
    from xcatd.lab.vmlab import LabUnavailable
    try:
        initrd = build_initrd(tmp_path / "initrd.img")
        tree = build_tree(tmp_path / "media", "rocky9.4", "x86_64", kernel=assets.kernel(),
                          initrd=initrd)
    except (assets.AssetsMissing, InitrdError) as exc:
        pytest.skip(str(exc))
    iso = build_iso(tree, tmp_path / "Rocky-9.4-x86_64-dvd.iso", "Rocky-9-4-x86_64-dvd")
    url = pg_socket_url(pg_server.new_database(), Path(pg_server.base) / "sock",
                        pg_server.port)
    with ServiceNodeLab(tmp_path / "snlab", url, sns=1, hub=vmlab.ns, in_hub="sn1") as lab:
        mn, sn1 = lab.mn, lab.members["sn1"]

        def do(*argv):
            return ok(mn.cli(*argv, bypass=True), " ".join(argv))

        lab.start(site={"tftpserver": "tftpd-hpa", "dhcpsetup": "n"})
        assert "Media copy operation successful" in do("copycds", str(iso)).out
        # sn1 serves the install tree the management node copied (shared, as over NFS)
        shutil.rmtree(sn1.root / "install", ignore_errors=True)
        (sn1.root / "install").symlink_to(mn.root / "install")
        do("chtab", "key=system", "passwd.username=root", "passwd.password=cluster-sn")
        do("mkdef", "-t", "network", "-o", "vmnet", f"net={vmlab.subnet.network_address}",
           f"mask={vmlab.netmask}", f"mgtifname={vmlab.bridge}")
        do("chtab", "node=sn1", f"servicenode.dhcpinterfaces={vmlab.bridge}")
        try:
            vm = vmlab.add_vm("n1", MAC, firmware="uefi")
        except LabUnavailable as exc:
            pytest.skip(str(exc))
        do("nodeadd", "n1", "groups=compute", f"hosts.ip={IP}", f"mac.mac={MAC}",
           "nodetype.arch=x86_64", "nodehm.serialport=0", "nodehm.serialspeed=115200",
           "noderes.netboot=xnba", "noderes.servicenode=sn1",
           f"noderes.xcatmaster={vmlab.server_ip}", "nodehm.mgt=ipmi",
           f"ipmi.bmc={vm.bmc_addr}", f"ipmi.bmcport={vm.bmc_port}",
           f"ipmi.username={vm.bmc_user}", f"ipmi.password={vm.bmc_password}")

        r = ok(mn.cli("makedhcp", "-n"), "makedhcp -n")  # through xcatd: here and on sn1
        conf = sn1.root / "etc/dhcp/dhcpd.conf"
        assert re.findall(r"^\s*host (\S+) \{", conf.read_text(), re.M) == ["n1"], r.out
        assert "n1" not in (mn.root / "etc/dhcp/dhcpd.conf").read_text()
        vmlab.start_tftpd(sn1.root / "tftpboot")
        vmlab.start_dhcpd(conf)

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
