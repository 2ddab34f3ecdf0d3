"""A small cluster on a test's management node, built from named pieces.

A piece is one thing an admin sets up: site keys, a password, a network, some nodes (with
addresses and MACs that a regex on their group computes from their names), an osimage with
its copied kernel and initrd... It is made of the commands an admin would type (``chtab``,
``nodeadd``, ``mkdef``...) and, for copied media, of the files. Pieces add up with ``+``, and
``build(mn, *pieces)`` applies them in order:

>>> piece = site(master="10.77.0.1") + nodes("n[1-3]", ip="10.77.0", mac=True)
>>> for step in piece.steps:
...     print(" ".join(step))
chtab key=master site.value=10.77.0.1
nodeadd n[1-3] groups=compute
chtab node=compute hosts.ip=|\\D+(\\d+)|10.77.0.($1+10)| mac.mac=|\\D+(\\d+)|52:54:00:00:00:($1+10)|

A test module names the pieces it needs once, with the ``cluster`` marker, and takes the
built management node from a fixture of tests/conftest.py:

    pytestmark = pytest.mark.cluster(site(master=MASTER, domain="hpc.example"), MGT_DHCP,
                                     nodes("n[1-3]", ip=NET, mac=True), netboot(n3="grub2"))

    def test_a(cluster): ...          # on every backend (the ``mn`` fixture)
    def test_b(cluster_sqlite): ...   # on SQLite only (``mn_sqlite``)
    def test_c(cluster_daemon): ...   # through a live xcatd (``mn_daemon``)

A test's own marker replaces its module's. Without one, the fixtures build SMALL. Inside a
test or another fixture, ``build(mn, install_image("b[1-2]", "prov"))`` adds pieces later.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

#: A step: a command and its arguments, run with ``mn.ok``; copied files
#: (path under the root -> bytes); or a callable that does something cleverer with ``mn``.
Step = Union[tuple[str, ...], Mapping[str, bytes], Callable[[Any], None]]

MASTER = "10.77.0.1"      # the management node on the 10.77.0.0/24 management network
NET = "10.77.0"           # ... whose node nN is NET.(N+10)
IB_NET = "10.78.1"        # the InfiniBand addresses: nN-ib is IB_NET.(N+10)
INSTALL_IMAGE = "rocky9.4-x86_64-install-compute"


@dataclass(frozen=True)
class Piece:
    """Steps that set up one part of a cluster; ``a + b`` does a's steps, then b's."""
    steps: tuple[Step, ...]

    def __add__(self, other: Piece) -> Piece:
        return Piece(self.steps + other.steps)

    def apply(self, mn) -> None:
        for step in self.steps:
            if isinstance(step, tuple):
                mn.ok(*step)
            elif isinstance(step, Mapping):
                for rel, data in step.items():
                    path = Path(mn.root) / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
            else:
                step(mn)


def build(mn, *pieces: Piece):
    """Apply ``pieces`` to the management node ``mn``, in order; returns ``mn``."""
    for p in pieces:
        p.apply(mn)
    return mn


def command(*argv: str) -> Piece:
    """One command, as an admin types it: ``command("nodech", "n2", "nodehm.mgt=ipmi")``."""
    return Piece((tuple(argv),))


def files(tree: Mapping[str, bytes]) -> Piece:
    """Files under the root (path relative to it -> content), parents made as needed."""
    return Piece((dict(tree),))


def call(fn: Callable[[Any], None]) -> Piece:
    """``fn(mn)``, for what is chosen when the cluster is built (a free port...)."""
    return Piece((fn,))


# ---- site and passwords --------------------------------------------------------------------
def site(**values: str) -> Piece:
    """Site keys, one ``chtab key=K site.value=V`` each, in the order given."""
    return Piece(tuple(("chtab", f"key={k}", f"site.value={v}") for k, v in values.items()))


def site_free_port(key: str) -> Piece:
    """Site key ``key`` set to a TCP port that is free when the cluster is built."""
    def choose(mn) -> None:
        from xcatd.lab.ports import free_port
        site(**{key: str(free_port())}).apply(mn)
    return call(choose)


def site_value(mn, key: str) -> str:
    """The value of site key ``key`` on ``mn``."""
    return mn.db.rows("site", keys=[key])[0]["value"]


#: The management node's audit rows are kept for every command (the fixtures skip them, as
#: the command tests count the rows they make themselves).
AUDITED = command("chtab", "-d", "key=auditskipcmds", "site")


def passwd(key: str, username: str, password: str) -> Piece:
    return command("chtab", f"key={key}", f"passwd.username={username}",
                   f"passwd.password={password}")


def root_password(password: str = "cluster") -> Piece:
    """The nodes' root password (passwd key=system)."""
    return passwd("system", "root", password)


#: The OMAPI key makedhcp gives dhcpd (base64 of "secret").
OMAPI_KEY = passwd("omapi", "xcat_key", "c2VjcmV0")


# ---- networks ------------------------------------------------------------------------------
def network(name: str, net: str, mask: str, **attrs: str) -> Piece:
    """``mkdef -t network -o name net= mask= attrs...``."""
    return command("mkdef", "-t", "network", "-o", name, f"net={net}", f"mask={mask}",
                   *(f"{k}={v}" for k, v in attrs.items()))


def mgt_network(**attrs: str) -> Piece:
    """The management network mgt, 10.77.0.0/24."""
    return network("mgt", f"{NET}.0", "255.255.255.0", **attrs)


#: mgt as DHCP serves it: on eth1, a gateway, a dynamic range.
MGT_DHCP = mgt_network(mgtifname="eth1", gateway=f"{NET}.254",
                       dynamicrange=f"{NET}.200-{NET}.220")
#: The InfiniBand network ib, 10.78.0.0/16.
IB_NETWORK = network("ib", "10.78.0.0", "255.255.0.0")


# ---- nodes ---------------------------------------------------------------------------------
def nodes(noderange: str, *attrs: str, groups: str = "compute", ip: str | None = None,
          mac: bool = False, ib: str | None = None) -> Piece:
    """``nodeadd noderange groups=... attrs...``; then, on the row of the first group, the
    regexes every member computes its values from (node nN: N+10): ``ip`` (three octets)
    gives hosts.ip ip.(N+10), ``mac`` the MAC 52:54:00:00:00:(N+10), ``ib`` (three octets)
    an ib0 address ib.(N+10) named nN-ib."""
    regexes = []
    if ip:
        regexes.append(rf"hosts.ip=|\D+(\d+)|{ip}.($1+10)|")
    if mac:
        regexes.append(r"mac.mac=|\D+(\d+)|52:54:00:00:00:($1+10)|")
    if ib:
        regexes += [rf"nics.nicips=|\D+(\d+)|ib0!{ib}.($1+10)|",
                    "nics.nichostnamesuffixes=ib0!-ib"]
    piece = command("nodeadd", noderange, f"groups={groups}", *attrs)
    if regexes:
        piece += command("chtab", f"node={groups.split(',')[0]}", *regexes)
    return piece


def nodech(noderange: str, *attrs: str) -> Piece:
    return command("nodech", noderange, *attrs)


def netboot(**loader: str) -> Piece:
    """Each node's boot loader (noderes.netboot): ``netboot(n2="grub2", n3="pxe")``."""
    return Piece(tuple(("nodech", node, f"noderes.netboot={value}")
                       for node, value in loader.items()))


def mkdef(kind: str, name: str, *attrs: str) -> Piece:
    """Any object definition: ``mkdef("policy", "6", "name=carol", "rule=allow")``."""
    return command("mkdef", "-t", kind, "-o", name, *attrs)


def behind_fleet(fleet, group: str = "compute") -> Piece:
    """The nodes of ``group`` behind the started simulated BMC fleet ``fleet``
    (xcatd.lab.bmcfleet): node nN's BMC is fleet BMC N, 127.0.0.1:(fleet.base_port+N), with
    the fleet's user and password (passwd key=ipmi)."""
    return (command("chtab", f"node={group}", "ipmi.bmc=127.0.0.1",
                    rf"ipmi.bmcport=|\D+(\d+)|({fleet.base_port}+$1)|")
            + passwd("ipmi", fleet.user, fleet.password))


#: The command tests' cluster: n1-n3,n10 in compute,all; n20 in other, managed by kvm.
SMALL = (nodes("n1-n3,n10", groups="compute,all")
         + nodes("n20", "nodehm.mgt=kvm", groups="other"))


# ---- osimages and their copied media -------------------------------------------------------
RHEL_MEDIA = ("images/pxeboot/vmlinuz", "images/pxeboot/initrd.img")


def osimage(name: str, osvers: str, *, osarch: str = "x86_64", profile: str = "compute",
            media: tuple[str, str] | None = None, kernel: bytes = b"KERNEL" * 100,
            initrd: bytes = b"INITRD" * 100) -> Piece:
    """An install osimage (imagetype linux, provmethod install); with ``media`` (the kernel's
    and the initrd's path in the distribution tree), the kernel and initrd copycds would
    have copied under install/<osvers>/<osarch>/."""
    piece = mkdef("osimage", name, "imagetype=linux", "provmethod=install", f"osvers={osvers}",
                  f"osarch={osarch}", f"profile={profile}")
    if media:
        tree = f"install/{osvers}/{osarch}"
        piece += files({f"{tree}/{media[0]}": kernel, f"{tree}/{media[1]}": initrd})
    return piece


def install_image(noderange: str, group: str = "compute", **media: bytes) -> Piece:
    """What ``nodeset <noderange> osimage=INSTALL_IMAGE`` needs: the MN at 10.77.0.1 (DHCP
    left alone), a root password, the osimage with its copied kernel and initrd (``kernel=``,
    ``initrd=``: their bytes), and the nodes in ``group`` with an address and a MAC each
    (node nN: 10.77.0.(N+10), 52:54:00:00:00:(N+10)), x86_64."""
    return (site(master=MASTER, dhcpsetup="n") + root_password()
            + osimage(INSTALL_IMAGE, "rocky9.4", media=RHEL_MEDIA, **media)
            + nodes(noderange, "nodetype.arch=x86_64", groups=group, ip=NET, mac=True))


#: genesis (the discovery kernel and its file system) and grub2's network image, as
#: xCAT's packages put them under tftpboot.
GENESIS = files({"tftpboot/xcat/genesis.kernel.x86_64": b"G",
                 "tftpboot/xcat/genesis.fs.x86_64.gz": b"F",
                 "tftpboot/boot/grub2/grub2.x86_64": b"GRUB"})
