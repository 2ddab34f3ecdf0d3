"""REST node answers stream as the nodes answer, in xCAT's per-node shape or as NDJSON records,
and the HTTP status of a failed request follows the kind of its error, never its wording."""
from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
from pathlib import Path

import pytest
from support.cluster import nodech, nodes

from xcatd.hardware import registry
from xcatd.hardware.fake import FakeDriver

GATE = threading.Event()


class GatedDriver(FakeDriver):
    """A fake BMC fleet where a BMC whose address starts with 'slow' answers only once the
    test opens GATE: the nodes before it must be on the wire by then."""

    def _each(self, targets, fn):
        for t in targets:
            if t.address.startswith("slow"):
                assert GATE.wait(30), "the test never opened the gate"
            yield from super()._each([t], fn)


#: n1 answers at once, n2 once the test opens GATE, d1 never
pytestmark = pytest.mark.cluster(
    nodes("n1,n2", "nodehm.mgt=gated", "ipmi.bmc=10.0.0.1"), nodech("n2", "ipmi.bmc=slow-bmc"),
    nodes("d1", "nodehm.mgt=gated", "ipmi.bmc=dead-bmc", groups="dead"))


@pytest.fixture
def fleet(cluster_daemon):
    GATE.clear()
    registry.register("gated", GatedDriver)
    try:
        yield cluster_daemon
    finally:
        GATE.set()
        registry.unregister("gated")


def connect(mn) -> http.client.HTTPSConnection:
    xcat = Path(os.environ["HOME"]) / ".xcat"
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(xcat / "ca.pem"))
    ctx.load_cert_chain(str(xcat / "client-cred.pem"))
    return http.client.HTTPSConnection("127.0.0.1", mn.daemon.listening.port, context=ctx,
                                       timeout=30)


def get(mn, path: str, accept: str | None = None) -> tuple[int, bytes]:
    conn = connect(mn)
    try:
        conn.request("GET", path, headers={"Accept": accept} if accept else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_a_node_that_answered_is_sent_before_a_slow_node_answers(fleet):
    conn = connect(fleet)
    try:
        conn.request("GET", "/xcatws/nodes/n1,n2/power")
        resp = conn.getresponse()
        assert resp.status == 200
        first = resp.read1(4096)   # only what is on the wire: n2's BMC has not answered
        assert b'"n1":{"power":"off"}' in first and b"n2" not in first, first
        GATE.set()
        body = json.loads(first + resp.read())
    finally:
        conn.close()
    assert body == {"n1": {"power": "off"}, "n2": {"power": "off"}}


def test_ndjson_carries_each_response_and_the_exit_code(fleet):
    GATE.set()
    status, raw = get(fleet, "/xcatws/nodes/n1,d1/power", accept="application/x-ndjson")
    records = [json.loads(line) for line in raw.splitlines()]
    assert status == 200
    assert {"r": {"node": "n1", "data": "off", "obj": {"power": "off"}}} in records
    assert any(r.get("r", {}).get("node") == "d1" and "timeout" in r["r"].get("error", "")
               for r in records)
    assert records[-1] == {"end": {"exitcode": 1}}


def test_a_partial_answer_keeps_the_good_nodes_and_lists_the_errors(fleet):
    GATE.set()
    status, raw = get(fleet, "/xcatws/nodes/n1,d1/power")
    body = json.loads(raw)
    assert status == 200 and body["n1"] == {"power": "off"}
    assert body["errors"] == ["d1: timeout: no answer from the BMC at dead-bmc:623"]


@pytest.mark.parametrize("path,status", [
    ("/xcatws/nodes/dead/power", 502),        # every node's BMC failed: upstream
    ("/xcatws/nodes/nosuch/power", 404),      # the noderange names no node: not found
    ("/xcatws/nodes/n1/bootstate", 200),      # nodeset stat answers for any node
    ("/xcatws/jobs/nosuchjob", 404),
    ("/xcatws/tables/nosuch/rows", 404),
])
def test_the_status_follows_the_kind_of_error(fleet, path, status):
    GATE.set()
    assert get(fleet, path)[0] == status
