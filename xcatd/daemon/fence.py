"""fence_node: power a node off and make sure it is off, for an HA stack's fence agent
(libfence's job). It is an ordinary request, ``rpower <node> off``, run through the
pipeline like any other: policy decides, the audit log and the job record have it, and it
waits for the node's lock like any change to the node."""
from __future__ import annotations

from dataclasses import dataclass

from xcatd.base.paths import Paths
from xcatd.base.request import Request
from xcatd.daemon.pipeline import Pipeline, current_user
from xcatd.daemon.policy import Identity
from xcatd.db.cluster import Cluster


@dataclass(frozen=True)
class FenceResult:
    node: str
    fenced: bool
    message: str


def fence_node(name: str, paths: Paths | None = None,
               pipeline: Pipeline | None = None) -> FenceResult:
    """Power ``name`` (one node) off through whatever manages it and verify it is off.
    ``pipeline``: xcatd's own when called inside it; else one for this process."""
    paths = paths or (pipeline.paths if pipeline else Paths())
    try:
        nodes = Cluster(paths).expand(name)
    except Exception as exc:  # an unknown node, an uninitialised root
        return FenceResult(name, False, str(exc))
    if len(nodes) != 1:
        return FenceResult(name, False, f"{name} is not one node")
    node = nodes.sorted()[0]
    own = pipeline is None
    pipe = pipeline or Pipeline.local(paths)
    try:
        out = list(pipe.stream(Request("rpower", node, {"action": "off"}),
                               Identity(current_user(), "localhost", "internal")))
    finally:
        if own:
            pipe.close()
    failed = next((r for r in out if r.error), None)
    if failed is not None:
        return FenceResult(name, False, failed.error or "cannot reach its BMC")
    state = next((r.data for r in out if r.node == node and r.data), None)
    if state != "off":
        return FenceResult(name, False, f"still {state or 'in an unknown state'} after "
                                        "power off")
    return FenceResult(name, True, "off")
