"""DHCP for the nodes: ISC dhcpd (xcatd.netconf.dhcp.isc, the default) or Kea
(xcatd.netconf.dhcp.kea), chosen by site.dhcpbackend; both plan alike
(xcatd.netconf.dhcp.common)."""
from __future__ import annotations

from collections.abc import Iterator

from xcatd.base.noderange import NodeRange, natural_key
from xcatd.base.request import ErrorKind, Response, XcatError
from xcatd.db.cluster import Cluster
from xcatd.netconf.dhcp.common import DhcpManager, scope
from xcatd.netconf.dhcp.isc import IscDhcp
from xcatd.netconf.dhcp.kea import Kea

#: site.dhcpbackend -> its manager
__all__ = ["BACKENDS", "DhcpManager", "manager", "scope", "update_nodes"]

BACKENDS: dict[str, type[DhcpManager]] = {"dhcpd": IscDhcp, "isc": IscDhcp, "kea": Kea}


def manager(cluster: Cluster) -> DhcpManager:
    """The DHCP manager of site.dhcpbackend."""
    backend = cluster.site.text("dhcpbackend", "dhcpd").lower()
    if backend not in BACKENDS:
        raise XcatError(f"site.dhcpbackend '{backend}' is not dhcpd or kea",
                        kind=ErrorKind.CONFLICT)
    return BACKENDS[backend](cluster)


def update_nodes(cluster: Cluster, online: list[str], offline: list[str]
                 ) -> Iterator[Response]:
    """Tell the running DHCP server about nodes after a boot change (nodeset): reserve the
    online ones, remove the offline ones. A failure is one error line naming the nodes."""
    dhcp = manager(cluster)
    for nodes, delete in ((online, False), (offline, True)):
        if not nodes:
            continue
        try:
            yield from dhcp.update(sorted(nodes, key=natural_key), delete=delete)
        except XcatError as exc:
            yield Response(error=f"DHCP was not updated for {NodeRange(nodes)}: {exc}",
                           errorcode=1, kind=exc.kind.value)
