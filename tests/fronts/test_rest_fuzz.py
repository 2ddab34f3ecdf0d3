"""The REST API fuzzed by schemathesis from its own OpenAPI document (/xcatws/openapi.json,
xcatd.fronts.openapi.spec(), which the first test checks is what xcatd serves): every
operation, schema-valid and schema-violating requests, sent to one live xcatd on a scratch
management node (tests/support/fuzz.py) over HTTPS with root's client certificate.

Each answer must be no server error, with a status code the document lists for that
operation, a documented content type, a body that conforms to the documented schema, and no
internal error or traceback in it. (Schemathesis' data-acceptance checks are left out: the
document types the bodies, it does not say which attribute names, noderanges or row keys
exist, so a 400 or 404 for a schema-valid request is xcatd doing its job.) The tables are
put back after every request that may change them, so each example sees the same cluster.

Bounded and reproducible: ``EXAMPLES`` generated examples per operation and method (plus
schemathesis' own explicit and coverage cases), derandomized, no deadline, no timing
assertion; about ten seconds in all.
"""
from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.fuzz import scratch_mn
from support.privileges import DAEMON_IS_ROOTS, need_root

from xcatd.fronts.openapi import spec

EXAMPLES = 5

schema = schemathesis.openapi.from_dict(spec())


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One scratch management node and its xcatd for the whole module."""
    need_root(DAEMON_IS_ROOTS)
    with scratch_mn(tmp_path_factory.mktemp("restfuzz")) as mn:
        yield mn


@pytest.fixture(scope="module")
def session(node):
    with requests.Session() as s:
        yield s


def no_internal_error(ctx, response, case) -> None:
    """No answer carries an internal error or a traceback, whatever its status."""
    text = response.content.decode("utf-8", "replace")
    for word in ("internal error", "Traceback"):
        if word in text:
            raise AssertionError(f"the answer holds {word!r}: {text[:2000]}")


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance, no_internal_error]


def _no_real_driver(body):
    """No value may name a real hardware driver (mgt=ipmi would reach for a BMC at
    whatever address came with it): such a value becomes 'fake'."""
    if isinstance(body, dict):
        return {k: "fake" if isinstance(v, str) and "ipmi" in v.lower() else v
                for k, v in body.items()}
    return body


def test_the_fuzzed_document_is_the_one_xcatd_serves(node, session):
    got = session.get(f"{node.url}/xcatws/openapi.json", verify=str(node.ca),
                      cert=str(node.cred), timeout=30)
    assert got.status_code == 200 and got.json() == spec()


@schema.parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          print_blob=False, suppress_health_check=list(HealthCheck))
def test_rest_answers_conform_to_the_document(case, node, session):
    if case.body is not None and not isinstance(case.body, type(...)):
        case.body = _no_real_driver(case.body)
    try:
        # each of CHECKS raises on a nonconforming answer
        response = case.call_and_validate(base_url=node.url, session=session,
                                          verify=str(node.ca), cert=str(node.cred),
                                          timeout=60, checks=CHECKS)
        assert response.status_code < 500, response.text[:2000]
    finally:
        if case.method.upper() not in ("GET", "HEAD", "OPTIONS"):
            node.reset()


# ---- the bugs it found (fixed) ---------------------------------------------------------
def documented(path: str, method: str) -> set[int]:
    return {int(code) for code in spec()["paths"][path][method.lower()]["responses"]}


@pytest.mark.parametrize("method, url, path", [
    ("GET", "/xcatws/nodes/%5B", "/xcatws/nodes/{name}"),
    ("DELETE", "/xcatws/nodes/%5B", "/xcatws/nodes/{name}"),
    ("GET", "/xcatws/nodes/%5B/attrs/groups", "/xcatws/nodes/{name}/attrs/{attrs}"),
], ids=["get-node", "delete-node", "get-node-attrs"])
def test_a_bad_noderange_gets_a_documented_status(node, method, url, path):
    reply = node.post(b"", url, method)
    assert reply.status in documented(path, method), (reply.status, reply.raw[:300])


def test_an_ambiguous_job_id_gets_a_documented_status(node):
    ids = [r["obj"]["job"]["jobid"] for r in node.run("job", action="list", all=True)]
    shared = next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) > 1)
    reply = node.post(b"", f"/xcatws/jobs/{shared}", "GET")
    assert reply.status in documented("/xcatws/jobs/{jobid}", "GET"), (reply.status,
                                                                        reply.raw[:300])
