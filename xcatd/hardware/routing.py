"""Which driver reaches each node, and how: nodehm.power (else nodehm.mgt) names the driver;
the BMC's address, port and credentials come from the node's ipmi row (regex values work),
else the passwd row whose key is the mgt value (key=ipmi). One node's missing setting is
that node's error, never the request's."""
from __future__ import annotations

from dataclasses import dataclass

from xcatd.base.request import Response
from xcatd.db.cluster import Cluster
from xcatd.hardware import registry
from xcatd.hardware.interfaces import Target


@dataclass
class Route:
    """The nodes one driver reaches, as that driver's interface."""

    mgt: str
    impl: object
    targets: list[Target]


def targets(cluster: Cluster, nodes: list[str]) -> tuple[dict[str, list[Target]], list[Response]]:
    """{mgt: [Target]} for the nodes, and an error Response for each node that cannot be
    reached (no method, no BMC address, a bad port)."""
    values = cluster.db.resolve(nodes, {"nodehm": ["mgt", "power"],
                                        "ipmi": ["bmc", "bmcport", "username", "password"]},
                                groups=cluster.node_groups_if_loaded(nodes))
    defaults: dict[str, dict] = {}
    routed: dict[str, list[Target]] = {}
    errors = []
    unsupported: dict[str, str] = {}
    for node in nodes:
        v = values[node]
        mgt = v.get(("nodehm", "power")) or v.get(("nodehm", "mgt"))
        if not mgt:
            errors.append(Response(node=node, error="no hardware management method "
                                                    "(nodehm.mgt)", errorcode=1))
            continue
        if mgt not in unsupported:
            try:
                registry.driver(mgt)
                unsupported[mgt] = ""
            except registry.Unsupported as exc:
                unsupported[mgt] = str(exc)
        if unsupported[mgt]:
            errors.append(Response(node=node, error=unsupported[mgt], errorcode=1))
            continue
        bmc = v.get(("ipmi", "bmc"))
        if not bmc:
            errors.append(Response(node=node, error="no BMC address (ipmi.bmc)", errorcode=1))
            continue
        port = bmc_udp_port(v.get(("ipmi", "bmcport")))
        if port is None:
            errors.append(Response(node=node, error=(
                f"ipmi.bmcport '{v.get(('ipmi', 'bmcport'))}' is neither xCAT's network port "
                "choice (0, 1, or two numbers) nor a UDP port (2-65535)"), errorcode=1))
            continue
        if mgt not in defaults:
            defaults[mgt] = (cluster.db.match("passwd", {"key": mgt}) or [{}])[0]
        default = defaults[mgt]
        routed.setdefault(mgt, []).append(Target(
            node, bmc, port, v.get(("ipmi", "username")) or default.get("username") or "",
            v.get(("ipmi", "password")) or default.get("password") or ""))
    return routed, errors


def routes(cluster: Cluster, nodes: list[str], kind: type
           ) -> tuple[list[Route], list[Response]]:
    """The nodes grouped by driver, each driver as the interface ``kind``; a node whose
    driver is missing or lacks ``kind`` is an error line of its own."""
    by_mgt, errors = targets(cluster, nodes)
    out = []
    for mgt, ts in by_mgt.items():
        try:
            out.append(Route(mgt, registry.interface(mgt, kind), ts))
        except registry.Unsupported as exc:
            errors += [Response(node=t.node, error=str(exc), errorcode=1) for t in ts]
    return out, errors


def bmc_udp_port(value: str | None) -> int | None:
    """The BMC's IPMI UDP port from ipmi.bmcport: xCAT's values (0 shared, 1 dedicated, or
    two numbers such as ``2 0``) pick the BMC's network port, not a UDP one, so they mean
    623, as blank does; pyxcat also takes a UDP port (2-65535) there. None for anything else.

    >>> [bmc_udp_port(v) for v in ("", None, "0", "1", "2 0", "6230", "70000", "x")]
    [623, 623, 623, 623, 623, 6230, None, None]
    """
    text = (value or "").strip()
    words = text.split()
    if not text or text in ("0", "1") or (len(words) == 2 and all(w.isdigit() for w in words)):
        return 623
    if text.isdigit() and 2 <= int(text) <= 65535:
        return int(text)
    return None
