"""The REST API (/xcatws): its OpenAPI description, its agreement with the routes and the
responses, CRUD through the same dispatch as the commands, secrets, tables, site, jobs,
policy and audit, client certificates and malformed bodies.

Every call goes over HTTPS to a real xcatd (fixture ``mn_daemon``) with a client certificate,
as a REST client would.
"""
from __future__ import annotations

import copy
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import OpenAPIV30SpecValidator, validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from support.cluster import (
    INSTALL_IMAGE,
    behind_fleet,
    build,
    install_image,
    mkdef,
    network,
    nodes,
    site,
)
from support.waiting import poll

from xcatd.fronts.server import make_app
from xcatd.lab.bmcdata import lab_emu
from xcatd.lab.bmcfleet import Fleet
from xcatd.lab.ipmisim import IpmiSim
from xcatd.security.credentials import issue_client_cert

#: Something behind every GET endpoint (fixture ``cluster_daemon``): nodes, a group, an
#: osimage, a network, a policy rule, secrets.
pytestmark = pytest.mark.cluster(
    mkdef("node", "n1-n2", "groups=compute", "mgt=ipmi", "bmcpassword=s3cret"),
    mkdef("osimage", "img1", "imagetype=linux", "provmethod=install"),
    network("net1", "10.0.0.0", "255.255.255.0"),
    mkdef("policy", "6", "name=carol", "rule=allow"))

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
MASK = "********"


# ---- an HTTPS client ----------------------------------------------------------------------
class Rest:
    """HTTPS to xcatd on 127.0.0.1 with a client certificate (``cred=None``: without one)."""

    def __init__(self, port: int, ca: Path, cred: Path | None) -> None:
        self.port = port
        self.ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
        if cred is not None:
            self.ctx.load_cert_chain(str(cred))

    def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                           timeout=60)
        headers = {}
        if body is not None:
            if not isinstance(body, (str, bytes)):
                body = json.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body, headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            pytest.fail(f"{method} {path}: HTTP {resp.status} with a body that is not JSON: "
                        f"{raw[:200]!r}")


def client(mn, cred: Path | None = None, ca: Path | None = None, *,
           with_cert: bool = True) -> Rest:
    """Root's client from ~/.xcat by default (what xcatconfig issued into HOME)."""
    xcat = Path(os.environ["HOME"]) / ".xcat"
    return Rest(mn.daemon.listening.port, ca or xcat / "ca.pem",
                (cred or xcat / "client-cred.pem") if with_cert else None)


# ---- OpenAPI 3.0 schemas as JSON Schema ----------------------------------------------------
def to_jsonschema(schema: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` -> JSON Schema allowing null; the rest as is."""
    if isinstance(schema, list):
        return [to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (v if k == "properties" else to_jsonschema(v)) for k, v in schema.items()
           if not (k == "nullable" and isinstance(v, bool))}
    if "properties" in schema:
        out["properties"] = {name: to_jsonschema(s) for name, s in schema["properties"].items()}
    if schema.get("nullable") is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def response_schema(spec: dict, method: str, template: str, status: int) -> dict:
    op = spec["paths"][template][method.lower()]
    responses = op["responses"]
    assert str(status) in responses, (
        f"{method} {template} answered HTTP {status}, which the spec does not document "
        f"(documented: {sorted(responses)})")
    return to_jsonschema(responses[str(status)]["content"]["application/json"]["schema"])


def conforms(spec: dict, method: str, template: str, status: int, body: Any) -> None:
    """The response is documented for this operation and its body matches the schema."""
    schema = response_schema(spec, method, template, status)
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(body), key=str)
    assert not errors, (f"{method} {template} HTTP {status}: body does not match the "
                        f"documented schema: {errors[0].message} at "
                        f"{list(errors[0].absolute_path)}")


def served_spec(rest: Rest) -> dict:
    status, spec = rest("GET", "/xcatws/openapi.json")
    assert status == 200
    return spec


# ---- fixtures ------------------------------------------------------------------------------
@pytest.fixture
def rest(mn_daemon) -> Rest:
    return client(mn_daemon)


@pytest.fixture
def spec(rest) -> dict:
    return served_spec(rest)


# ---- 1. the spec ---------------------------------------------------------------------------
def test_served_spec_is_a_valid_openapi_3_0_document(rest):
    spec = served_spec(rest)
    assert spec["openapi"].startswith("3.0")
    validate(spec)
    validate(spec, cls=OpenAPIV30SpecValidator)
    assert len(spec["paths"]) >= 10


def test_validator_catches_a_broken_spec(rest):
    """The validation above can fail: the same document with a bogus type does not pass."""
    broken = copy.deepcopy(served_spec(rest))
    op = broken["paths"]["/xcatws/site"]["get"]
    op["responses"]["200"]["content"]["application/json"]["schema"] = {"type": "strang"}
    with pytest.raises(OpenAPIValidationError):
        validate(broken, cls=OpenAPIV30SpecValidator)


# ---- 2. routes and spec agree --------------------------------------------------------------
def routed(mn) -> set[tuple[str, str]]:
    d = mn.daemon.daemon
    app = make_app(d.pipeline, d.pool)
    out = set()
    for route in app.router.routes():
        path = route.resource.canonical
        # the command protocol and the node agent's API (node certificates only) are no
        # part of the REST API
        if route.method == "HEAD" or path.startswith(("/v1/", "/xcat/agent/")):
            continue
        out.add((route.method.upper(), path))
    return out


def documented(spec: dict) -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, item in spec["paths"].items()
            for m in item if m in HTTP_METHODS}


def test_every_route_is_documented_and_every_documented_operation_is_routed(mn_daemon, spec):
    routes, docs = routed(mn_daemon), documented(spec)
    assert ("GET", "/xcatws/nodes/{name}") in routes  # the comparison is not vacuous
    assert routes - docs == set(), "routed but not documented"
    assert docs - routes == set(), "documented but not routed"


def test_running_daemon_serves_the_same_routes(mn_daemon):
    app = mn_daemon.daemon.daemon._runner.app
    running = {(r.method, r.resource.canonical) for r in app.router.routes()
               if r.method != "HEAD"
               and not r.resource.canonical.startswith(("/v1/", "/xcat/agent/"))}
    assert running == routed(mn_daemon)


def test_documented_path_parameters_match_the_template(spec):
    for path, item in spec["paths"].items():
        in_template = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            params = [*item.get("parameters", []), *op.get("parameters", [])]
            in_path = {p["name"] for p in params if p["in"] == "path"}
            assert in_path == in_template, f"{method.upper()} {path}: {in_path}"


# ---- 3. responses match the documented schemas ---------------------------------------------
def test_nullable_converter():
    rows = to_jsonschema({"type": "object", "additionalProperties":
                          {"type": "string", "nullable": True}})
    jsonschema.validate({"a": None, "b": "x"}, rows)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"a": 1}, rows)
    with pytest.raises(jsonschema.ValidationError):  # not nullable: null is refused
        jsonschema.validate({"a": None}, to_jsonschema(
            {"type": "object", "additionalProperties": {"type": "string"}}))
    assert "nullable" not in json.dumps(to_jsonschema(
        {"type": "object", "properties": {"x": {"type": "string", "nullable": True}}}))


def concrete_paths(rest: Rest) -> dict[str, list[str]]:
    """Documented GET template -> URLs to call on the ``cluster_daemon`` fixture."""
    status, body = rest("GET", "/xcatws/jobs?all=1")
    assert status == 200
    mkdef = [j["jobid"] for j in body["jobs"] if j["command"] == "mkdef"]
    assert mkdef, body
    return {
        "/xcatws/nodes/{name}": ["/xcatws/nodes/n1", "/xcatws/nodes/compute",
                                 "/xcatws/nodes/n1,n2?show_secrets=1"],
        "/xcatws/nodes/{name}/attrs/{attrs}": ["/xcatws/nodes/n1,n2/attrs/mgt,groups"],
        "/xcatws/groups/{name}": ["/xcatws/groups/compute"],
        "/xcatws/osimages/{name}": ["/xcatws/osimages/img1"],
        "/xcatws/networks/{name}": ["/xcatws/networks/net1"],
        "/xcatws/policy/{name}": ["/xcatws/policy/6"],
        "/xcatws/site": ["/xcatws/site", "/xcatws/site?show_secrets=1"],
        "/xcatws/tables/{table}/rows": ["/xcatws/tables/nodelist/rows",
                                        "/xcatws/tables/ipmi/rows",
                                        "/xcatws/tables/nodelist/rows?where=node==n1"],
        "/xcatws/jobs": ["/xcatws/jobs", "/xcatws/jobs?all=1"],
        "/xcatws/jobs/{jobid}": [f"/xcatws/jobs/{mkdef[0]}", f"/xcatws/jobs/{mkdef[0][:13]}"],
        "/xcatws/nodes/{name}/bootstate": ["/xcatws/nodes/n1,n2/bootstate"],
    }


def test_every_documented_get_answers_per_its_schema(cluster_daemon, rest, spec):
    urls = concrete_paths(rest)
    gets = sorted(path for m, path in documented(spec) if m == "GET")
    assert len(gets) >= 15
    for template in gets:
        if template in HARDWARE_GETS:  # needs BMCs: test_every_hardware_get_answers_...
            continue
        if "{" in template:
            assert template in urls, f"no concrete URL for documented GET {template}"
        for url in urls.get(template, [template]):
            status, body = rest("GET", url)
            assert status == 200, (url, body)
            conforms(spec, "GET", template, 200, body)
            # nothing is empty on this cluster_daemon: the schema check saw real data
            assert body, url
            for key, value in body.items():
                if isinstance(value, (list, dict)) and key != "warnings":
                    assert value, f"GET {url}: {key} is empty"


def test_schema_check_can_fail(cluster_daemon, rest, spec):
    """A body of the wrong shape is refused by the same check."""
    status, body = rest("GET", "/xcatws/nodes")
    assert status == 200
    conforms(spec, "GET", "/xcatws/nodes", 200, body)
    with pytest.raises(AssertionError, match="does not match"):
        conforms(spec, "GET", "/xcatws/nodes", 200, {"objects": [{"name": "n1"}]})
    with pytest.raises(AssertionError, match="does not document"):
        conforms(spec, "GET", "/xcatws/nodes", 409, {"errors": []})


@pytest.mark.parametrize("url, template", [
    ("/xcatws/nodes/n99", "/xcatws/nodes/{name}"),
    ("/xcatws/osimages/nope", "/xcatws/osimages/{name}"),
    ("/xcatws/networks/nope", "/xcatws/networks/{name}"),
    ("/xcatws/nodes/n1/attrs/bogus", "/xcatws/nodes/{name}/attrs/{attrs}"),
    ("/xcatws/tables/bogus/rows", "/xcatws/tables/{table}/rows"),
    ("/xcatws/jobs/no-such-job", "/xcatws/jobs/{jobid}"),
])
def test_not_found_is_404_with_documented_errors(cluster_daemon, rest, spec, url, template):
    status, body = rest("GET", url)
    assert status == 404, body
    conforms(spec, "GET", template, 404, body)
    assert body["errors"] and all(body["errors"])


def test_node_n99_is_404_with_errors(cluster_daemon, rest, spec):
    status, body = rest("GET", "/xcatws/nodes/n99")
    assert status == 404
    conforms(spec, "GET", "/xcatws/nodes/{name}", 404, body)
    assert any("n99" in e for e in body["errors"])


# ---- 4. CRUD through the same dispatch as the commands ------------------------------------
def test_node_crud_through_rest_is_seen_by_commands(cluster_daemon, rest, spec):
    mn = cluster_daemon
    status, body = rest("POST", "/xcatws/nodes/n5", {"groups": "compute", "mgt": "ipmi"})
    assert status == 201, body
    conforms(spec, "POST", "/xcatws/nodes/{name}", 201, body)
    assert mn.ok("nodels", "n5", "groups").lines == ["n5: compute"]
    assert "n5" in mn.ok("nodels", "compute").lines

    status, body = rest("PUT", "/xcatws/nodes/n5", {"mgt": "kvm"})
    assert status == 200, body
    conforms(spec, "PUT", "/xcatws/nodes/{name}", 200, body)
    assert mn.ok("nodels", "n5", "nodehm.mgt").lines == ["n5: kvm"]
    assert rest("GET", "/xcatws/nodes/n5")[1]["n5"]["mgt"] == "kvm"

    status, body = rest("DELETE", "/xcatws/nodes/n5")
    assert status == 200, body
    conforms(spec, "DELETE", "/xcatws/nodes/{name}", 200, body)
    assert mn.run("nodels", "n5").rc != 0
    assert "n5" not in rest("GET", "/xcatws/nodes")[1]["objects"]

    status, body = rest("DELETE", "/xcatws/nodes/n5")
    assert status == 404
    conforms(spec, "DELETE", "/xcatws/nodes/{name}", 404, body)


def test_crud_calls_are_jobs_of_the_dispatched_commands(cluster_daemon, rest):
    rest("POST", "/xcatws/nodes/n5", {"groups": "compute", "mgt": "ipmi"})
    rest("PUT", "/xcatws/nodes/n5", {"mgt": "kvm"})
    rest("DELETE", "/xcatws/nodes/n5")
    jobs = rest("GET", "/xcatws/jobs")[1]["jobs"]
    mine = [(j["command"], j["clienttype"], j["state"]) for j in jobs
            if "n5" in (j["args"] or "")]
    assert mine == [("mkdef", "rest", "done"), ("chdef", "rest", "done"),
                    ("rmdef", "rest", "done")]


@pytest.mark.parametrize("resource, name, create, change, check", [
    ("osimages", "img5", {"imagetype": "linux", "provmethod": "install"},
     {"provmethod": "netboot"}, ("imagename=img5", "osimage.provmethod")),
    ("networks", "net5", {"net": "10.5.0.0", "mask": "255.255.0.0"},
     {"gateway": "10.5.0.254"}, ("netname=net5", "networks.gateway")),
])
def test_osimage_and_network_crud_through_rest(cluster_daemon, rest, spec, resource, name, create,
                                                change, check):
    mn = cluster_daemon
    objtype = {"osimages": "osimage", "networks": "network"}[resource]
    template = f"/xcatws/{resource}/{{name}}"
    status, body = rest("POST", f"/xcatws/{resource}/{name}", create)
    assert status == 201, body
    conforms(spec, "POST", template, 201, body)
    assert f"{name}  ({objtype})" in mn.ok("lsdef", "-t", objtype).lines

    (attr, value), = change.items()
    status, body = rest("PUT", f"/xcatws/{resource}/{name}", change)
    assert status == 200, body
    assert mn.ok("gettab", *check).out == f"{value}\n"
    assert rest("GET", f"/xcatws/{resource}/{name}")[1][name][attr] == value

    status, body = rest("DELETE", f"/xcatws/{resource}/{name}")
    assert status == 200, body
    assert mn.run("lsdef", "-t", objtype, "-o", name).rc == 1
    assert name not in rest("GET", f"/xcatws/{resource}")[1]["objects"]


def test_network_needs_net_and_mask(cluster_daemon, rest, spec):
    status, body = rest("POST", "/xcatws/networks/net6", {"net": "10.6.0.0"})
    assert status == 400, body
    conforms(spec, "POST", "/xcatws/networks/{name}", 400, body)
    assert "mask" in body["errors"][0]
    assert "net6" not in rest("GET", "/xcatws/networks")[1]["objects"]


def test_post_of_an_existing_node_is_409_and_changes_nothing(cluster_daemon, rest, spec):
    status, body = rest("POST", "/xcatws/nodes/n1", {"groups": "other", "mgt": "kvm"})
    assert status == 409, body
    conforms(spec, "POST", "/xcatws/nodes/{name}", 409, body)
    assert any("already exists" in e for e in body["errors"])
    assert cluster_daemon.ok("nodels", "n1", "groups").lines == ["n1: compute"]
    assert cluster_daemon.ok("nodels", "n1", "nodehm.mgt").lines == ["n1: ipmi"]


def test_post_with_an_unknown_attribute_is_400(cluster_daemon, rest, spec):
    status, body = rest("POST", "/xcatws/nodes/n8", {"groups": "compute", "bogusattr": "x"})
    assert cluster_daemon.run("nodels", "n8").rc != 0
    assert status == 400, body
    conforms(spec, "POST", "/xcatws/nodes/{name}", status, body)


# ---- 5. secrets ----------------------------------------------------------------------------
def test_node_secrets_are_masked_unless_show_secrets(cluster_daemon, rest):
    assert rest("GET", "/xcatws/nodes/n1")[1]["n1"]["bmcpassword"] == MASK
    assert rest("GET", "/xcatws/nodes/n1?show_secrets=0")[1]["n1"]["bmcpassword"] == MASK
    assert rest("GET", "/xcatws/nodes/n1?show_secrets=1")[1]["n1"]["bmcpassword"] == "s3cret"
    attrs = "/xcatws/nodes/n1/attrs/bmcpassword,mgt"
    assert rest("GET", attrs)[1] == {"n1": {"bmcpassword": MASK, "mgt": "ipmi"}}
    assert rest("GET", attrs + "?show_secrets=1")[1]["n1"]["bmcpassword"] == "s3cret"


def test_table_secrets_are_masked_unless_show_secrets(cluster_daemon, rest):
    rows = rest("GET", "/xcatws/tables/ipmi/rows")[1]["rows"]
    assert {r["node"]: r["password"] for r in rows} == {"n1": MASK, "n2": MASK}
    rows = rest("GET", "/xcatws/tables/ipmi/rows?show_secrets=1")[1]["rows"]
    assert {r["node"]: r["password"] for r in rows} == {"n1": "s3cret", "n2": "s3cret"}


def test_secrets_in_a_body_never_reach_jobs_or_audit(cluster_daemon, rest):
    mn = cluster_daemon
    mn.ok("chtab", "-d", "key=auditskipcmds", "site")
    status, _ = rest("POST", "/xcatws/nodes/n6", {"groups": "compute", "mgt": "ipmi",
                                                 "bmcpassword": "hunter2"})
    assert status == 201
    assert rest("GET", "/xcatws/nodes/n6?show_secrets=1")[1]["n6"]["bmcpassword"] == "hunter2"
    jobs = rest("GET", "/xcatws/jobs")[1]["jobs"]
    job = next(j for j in jobs if j["command"] == "mkdef" and "n6" in j["args"])
    assert "hunter2" not in json.dumps(job)
    audit = poll(lambda: [r for r in mn.db.rows("auditlog")
                          if r["command"] == "mkdef" and "n6" in (r["args"] or "")])
    assert audit, "the mkdef through REST was not audited"
    assert "hunter2" not in json.dumps(audit)


# ---- 6. tables -----------------------------------------------------------------------------
def test_tables_list_and_rows(cluster_daemon, rest, spec):
    status, body = rest("GET", "/xcatws/tables")
    assert status == 200
    assert {"nodelist", "site", "policy", "ipmi"} <= set(body["tables"])

    status, body = rest("GET", "/xcatws/tables/nodelist/rows")
    assert status == 200
    assert sorted(r["node"] for r in body["rows"]) == ["n1", "n2"]

    status, body = rest("GET", "/xcatws/tables/nodelist/rows?where=node==n1")
    assert status == 200
    assert [(r["node"], r["groups"]) for r in body["rows"]] == [("n1", "compute")]
    status, body = rest("GET", "/xcatws/tables/nodelist/rows?where=groups==compute"
                               "&where=node!=n1")
    assert [r["node"] for r in body["rows"]] == ["n2"]
    assert rest("GET", "/xcatws/tables/nodelist/rows?where=node==n9")[1] == {"rows": []}


def test_bad_where_is_400(cluster_daemon, rest, spec):
    status, body = rest("GET", "/xcatws/tables/nodelist/rows?where=bogus")
    assert status == 400
    conforms(spec, "GET", "/xcatws/tables/{table}/rows", 400, body)


def test_put_table_row_changes_site(cluster_daemon, rest, spec):
    mn = cluster_daemon
    status, body = rest("PUT", "/xcatws/tables/site/rows/key=domain", {"value": "x.example"})
    assert status == 200, body
    conforms(spec, "PUT", "/xcatws/tables/{table}/rows/{keys}", 200, body)
    assert mn.ok("gettab", "key=domain", "site.value").out == "x.example\n"
    rows = rest("GET", "/xcatws/tables/site/rows?where=key==domain")[1]["rows"]
    assert [r["value"] for r in rows] == ["x.example"]


def test_put_table_row_adds_a_row(cluster_daemon, rest):
    status, body = rest("PUT", "/xcatws/tables/nodelist/rows/node=n3", {"groups": "extra"})
    assert status == 200, body
    assert cluster_daemon.ok("nodels", "n3", "groups").lines == ["n3: extra"]


def test_delete_table_row(cluster_daemon, rest, spec):
    status, body = rest("DELETE", "/xcatws/tables/nodelist/rows/node=n2")
    assert status == 200, body
    conforms(spec, "DELETE", "/xcatws/tables/{table}/rows/{keys}", 200, body)
    rows = rest("GET", "/xcatws/tables/nodelist/rows")[1]["rows"]
    assert [r["node"] for r in rows] == ["n1"]
    assert cluster_daemon.ok("nodels").lines == ["n1"]


def test_unknown_table_rows_is_404(cluster_daemon, rest, spec):
    status, body = rest("GET", "/xcatws/tables/bogus/rows")
    assert status == 404
    conforms(spec, "GET", "/xcatws/tables/{table}/rows", 404, body)
    assert "bogus" in body["errors"][0]


@pytest.mark.parametrize("method, body", [("PUT", {"value": "x"}), ("DELETE", None)])
def test_unknown_table_row_change_is_404(cluster_daemon, rest, spec, method, body):
    status, answer = rest(method, "/xcatws/tables/bogus/rows/key=domain", body)
    assert "errors" in answer
    assert status == 404, answer


# ---- 7. site -------------------------------------------------------------------------------
def test_site_get_and_put(cluster_daemon, rest, spec):
    mn = cluster_daemon
    status, site = rest("GET", "/xcatws/site")
    assert status == 200
    assert site["xcatdport"] == "3001"
    status, body = rest("PUT", "/xcatws/site", {"domain": "y.example"})
    assert status == 200, body
    conforms(spec, "PUT", "/xcatws/site", 200, body)
    assert rest("GET", "/xcatws/site")[1]["domain"] == "y.example"
    assert mn.ok("gettab", "key=domain", "site.value").out == "y.example\n"


def test_site_put_with_a_bad_key_is_400(cluster_daemon, rest, spec):
    status, body = rest("PUT", "/xcatws/site", {"bad key": "1"})
    assert status == 400, body
    conforms(spec, "PUT", "/xcatws/site", 400, body)
    assert "bad key" not in rest("GET", "/xcatws/site")[1]


# ---- 8. jobs -------------------------------------------------------------------------------
def test_every_rest_call_is_a_job(cluster_daemon, rest, spec):
    rest("GET", "/xcatws/nodes")
    rest("GET", "/xcatws/site")
    rest("GET", "/xcatws/nodes/n99")
    status, body = rest("GET", "/xcatws/jobs")
    assert status == 200
    jobs = body["jobs"]
    assert len(jobs) <= 20
    ours = [j for j in jobs if j["clienttype"] == "rest"]
    assert [(j["command"], j["state"]) for j in ours[-4:]] == [
        ("lsdef", "done"), ("lsdef", "done"), ("lsdef", "failed"), ("job", "running")]
    assert all(j["user"] == "root" and j["client"] == "127.0.0.1" for j in ours)
    # the fixture's commands are jobs too, of the command line
    assert any(j["clienttype"] == "cli" and j["command"] == "mkdef" for j in jobs)

    failed = ours[-2]
    status, body = rest("GET", f"/xcatws/jobs/{failed['jobid']}")
    assert status == 200, body
    conforms(spec, "GET", "/xcatws/jobs/{jobid}", 200, body)
    assert body["job"]["jobid"] == failed["jobid"]
    assert body["job"]["exitcode"] == "1"
    # the job's error is in its results (as "error", or as report text in "data")
    assert any("n99" in (r.get("error") or r.get("data") or "") for r in body["results"])


def test_job_of_a_rest_post_has_its_results(cluster_daemon, rest):
    rest("POST", "/xcatws/nodes/n5", {"groups": "compute"})
    jobs = rest("GET", "/xcatws/jobs")[1]["jobs"]
    job = next(j for j in jobs if j["command"] == "mkdef" and j["clienttype"] == "rest")
    status, body = rest("GET", f"/xcatws/jobs/{job['jobid'][:8]}")
    assert status == 200
    assert body["job"]["jobid"] == job["jobid"]
    assert body["job"]["state"] == "done"
    assert any("created" in r.get("data", "") for r in body["results"])


def test_unknown_job_is_404(cluster_daemon, rest, spec):
    for method in ("GET", "DELETE"):
        status, body = rest(method, "/xcatws/jobs/ffffffff-0000")
        assert status == 404, (method, body)
        conforms(spec, method, "/xcatws/jobs/{jobid}", 404, body)


def test_cancel_of_a_finished_job_is_400(cluster_daemon, rest, spec):
    jobs = rest("GET", "/xcatws/jobs")[1]["jobs"]
    done = next(j for j in jobs if j["state"] == "done")
    status, body = rest("DELETE", f"/xcatws/jobs/{done['jobid']}")
    assert status == 400
    conforms(spec, "DELETE", "/xcatws/jobs/{jobid}", 400, body)
    assert "not running" in body["errors"][0]


# ---- 9. policy and audit -------------------------------------------------------------------
@pytest.fixture
def bob(cluster_daemon, tmp_path) -> Rest:
    files = issue_client_cert(cluster_daemon.paths, "bob", tmp_path / "bob")
    return client(cluster_daemon, files.cred, files.ca)


def audit_rows(mn, **match) -> list[dict]:
    return [r for r in mn.db.rows("auditlog")
            if all(r.get(k) == v for k, v in match.items())]


def test_policy_applies_to_rest(cluster_daemon, bob, spec):
    mn = cluster_daemon
    status, body = bob("GET", "/xcatws/nodes")
    assert status == 403, body
    conforms(spec, "GET", "/xcatws/nodes", 403, body)
    assert any("Permission denied" in e for e in body["errors"])

    denied = poll(lambda: audit_rows(mn, userid="bob", clienttype="rest", status="Denied",
                                     command="lsdef"))
    assert denied, "the denied REST call is not in the auditlog"
    assert denied[0]["clientname"] == "127.0.0.1"

    mn.ok("chtab", "priority=5", "policy.name=bob", "policy.commands=lsdef",
          "policy.rule=allow")
    answers: list[tuple[int, Any]] = []

    def allowed() -> bool:
        answers.append(bob("GET", "/xcatws/nodes"))
        return answers[-1][0] == 200

    poll(allowed, step=0.1)
    status, body = answers[-1]
    assert status == 200, f"the policy row for bob never took effect: {answers[-1]}"
    assert body == {"objects": ["n1", "n2"]}
    # only lsdef: a write is still denied
    status, body = bob("POST", "/xcatws/nodes/n9", {"groups": "compute"})
    assert status == 403, body
    assert mn.run("nodels", "n9").rc != 0


def test_allowed_rest_calls_are_audited_when_not_skipped(cluster_daemon, rest):
    mn = cluster_daemon
    mn.ok("chtab", "-d", "key=auditskipcmds", "site")
    assert "auditskipcmds" not in rest("GET", "/xcatws/site")[1]
    status, _ = rest("GET", "/xcatws/nodes/n1?show_secrets=1")
    assert status == 200
    rows = poll(lambda: [r for r in audit_rows(mn, userid="root", clienttype="rest",
                                               status="Allowed", command="lsdef")
                         if "show_secrets" in (r["args"] or "")])
    assert rows, "the REST lsdef with show_secrets is not in the auditlog"
    assert "s3cret" not in json.dumps(rows)


def test_allowed_rest_calls_are_skipped_with_auditskipcmds_all(cluster_daemon, rest, bob):
    mn = cluster_daemon
    rest("GET", "/xcatws/nodes")
    bob("GET", "/xcatws/nodes")  # denied: audited anyway, and a marker that audit ran
    assert poll(lambda: audit_rows(mn, userid="bob", status="Denied"))
    mn.daemon.daemon.pipeline.jobs.flush()
    assert audit_rows(mn, userid="root", clienttype="rest") == []


def test_another_users_job_is_403_or_404(cluster_daemon, rest, bob, spec):
    mn = cluster_daemon
    jobid = rest("GET", "/xcatws/jobs")[1]["jobs"][0]["jobid"]
    mn.ok("chtab", "priority=5", "policy.name=bob", "policy.commands=job",
          "policy.rule=allow")
    assert poll(lambda: bob("GET", "/xcatws/jobs")[0] == 200)
    status, body = bob("GET", f"/xcatws/jobs/{jobid}")
    assert status in (403, 404), body
    conforms(spec, "GET", "/xcatws/jobs/{jobid}", status, body)


# ---- 10. no client certificate -------------------------------------------------------------
def test_client_without_certificate_gets_401(mn_daemon):
    nocert = client(mn_daemon, with_cert=False)
    status, body = nocert("GET", "/xcatws/nodes")
    assert status == 401
    text = json.dumps(body)
    assert "client certificate" in text


def test_401_body_matches_the_documented_schema(mn_daemon, spec):
    status, body = client(mn_daemon, with_cert=False)("GET", "/xcatws/nodes")
    assert status == 401
    conforms(spec, "GET", "/xcatws/nodes", 401, body)


def test_certificate_of_another_ca_is_refused(mn_daemon, tmp_path):
    """A client certificate signed by another CA never gets an answer from xcatd."""
    from xcatd.base.paths import Paths
    from xcatd.security.credentials import create_ca
    other = Paths(tmp_path / "other")
    create_ca(other)
    files = issue_client_cert(other, "root", tmp_path / "foreign")
    xcat = Path(os.environ["HOME"]) / ".xcat"
    foreign = client(mn_daemon, files.cred, xcat / "ca.pem")
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        foreign("GET", "/xcatws/nodes")
    assert client(mn_daemon)("GET", "/xcatws/nodes")[0] == 200  # the daemon is fine


# ---- 11. malformed bodies ------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"a string"', "", '{"a": {"b": 1}'])
def test_malformed_body_is_400(cluster_daemon, rest, spec, raw):
    status, body = rest("POST", "/xcatws/nodes/n7", raw)
    assert status == 400, body
    conforms(spec, "POST", "/xcatws/nodes/{name}", 400, body)
    assert body["errors"]
    assert cluster_daemon.run("nodels", "n7").rc != 0


def test_list_body_on_put_is_400(cluster_daemon, rest, spec):
    status, body = rest("PUT", "/xcatws/nodes/n1", [{"mgt": "kvm"}])
    assert status == 400
    conforms(spec, "PUT", "/xcatws/nodes/{name}", 400, body)
    assert cluster_daemon.ok("nodels", "n1", "nodehm.mgt").lines == ["n1: ipmi"]


# ---- 12. node actions: power, nextboot, bootstate, inventory, vitals, eventlog -------------
needs_ipmi_sim = pytest.mark.skipif(not shutil.which("ipmi_sim") or not shutil.which("ipmitool"),
                                    reason="needs openipmi (ipmi_sim) and ipmitool")

#: Documented GETs that need BMCs to answer: the schema test of every GET above leaves them to
#: test_every_hardware_get_answers_per_its_schema, which calls these URLs on the ``bmcs``
#: fixture (n0, n1: simulated BMCs; s1: ipmi_sim with the lab server's FRU, SDRs and SEL).
HARDWARE_GETS = {
    "/xcatws/nodes/{name}/power": ["/xcatws/nodes/n0,n1/power"],
    "/xcatws/nodes/{name}/nextboot": ["/xcatws/nodes/n0/nextboot"],
    "/xcatws/nodes/{name}/inventory": ["/xcatws/nodes/s1/inventory",
                                       "/xcatws/nodes/s1/inventory?type=serial"],
    "/xcatws/nodes/{name}/vitals": ["/xcatws/nodes/s1/vitals",
                                    "/xcatws/nodes/s1/vitals?type=temp,voltage",
                                    "/xcatws/nodes/s1/vitals?type=temp&type=fanspeed"],
    "/xcatws/nodes/{name}/eventlog": ["/xcatws/nodes/s1/eventlog",
                                      "/xcatws/nodes/s1/eventlog?count=2&sort=1"],
}
IMG = INSTALL_IMAGE


@pytest.fixture
def fleet(mn_daemon):
    """n0, n1 behind simulated BMCs (admin/secret from passwd key=ipmi), n2's BMC dead."""
    mn = build(mn_daemon, site(ipmitimeout="0.5", ipmiretries="1"))
    with Fleet(count=3, dead=[2]) as bmcs:
        yield build(mn, nodes("n[0-2]", "nodehm.mgt=ipmi"), behind_fleet(bmcs)), bmcs


@pytest.fixture
def bmcs(fleet, tmp_path):
    """The fleet, and s1 behind an ipmi_sim holding the lab server's FRU, SDRs, DIMMs and SEL."""
    mn, fleet_bmcs = fleet
    with IpmiSim(tmp_path / "bmc", emu_extra=lab_emu()) as sim:
        mn.ok("nodeadd", "s1", "groups=sims", "nodehm.mgt=ipmi", "ipmi.bmc=127.0.0.1",
              f"ipmi.bmcport={sim.port}", f"ipmi.username={sim.user}",
              f"ipmi.password={sim.password}")
        yield mn, fleet_bmcs, sim


def judge(bmcs: Fleet, i: int, *args: str) -> str:
    """ipmitool's view of fleet BMC i: an IPMI client that is not ours."""
    r = subprocess.run(["ipmitool", "-I", "lanplus", "-C", "3", "-N", "1", "-R", "3",
                        "-H", "127.0.0.1", "-p", str(bmcs.port(i)), "-U", bmcs.user,
                        "-P", bmcs.password, *args], capture_output=True, text=True,
                       timeout=30, check=True)
    return r.stdout


needs_ipmitool = pytest.mark.skipif(not shutil.which("ipmitool"), reason="needs ipmitool")


def error_for(body: dict, node: str) -> list[str]:
    return [e for e in body.get("errors", []) if e.startswith(f"{node}: ")]


@needs_ipmitool
def test_power_get_put_and_a_dead_bmc(fleet, rest, spec):
    mn, bmcs = fleet
    template = "/xcatws/nodes/{name}/power"
    status, body = rest("GET", "/xcatws/nodes/n0,n1/power")
    assert (status, body) == (200, {"n0": {"power": "off"}, "n1": {"power": "off"}})

    status, body = rest("PUT", "/xcatws/nodes/n0/power", {"action": "on"})
    assert (status, body) == (200, {"n0": {"power": "on"}})
    conforms(spec, "PUT", template, 200, body)
    assert judge(bmcs, 0, "chassis", "power", "status").strip() == "Chassis Power is on"
    assert judge(bmcs, 1, "chassis", "power", "status").strip() == "Chassis Power is off"
    assert rest("GET", "/xcatws/nodes/n0,n1/power")[1] == {
        "n0": {"power": "on"}, "n1": {"power": "off"}}
    assert mn.ok("nodels", "n0", "nodelist.status").lines == ["n0: powering-on"]
    jobs = rest("GET", "/xcatws/jobs")[1]["jobs"]
    assert [(j["command"], j["noderange"], j["clienttype"], j["state"]) for j in jobs
            if j["command"] == "rpower" and j["clienttype"] == "rest"][-2:] == [
        ("rpower", "n0", "rest", "done"), ("rpower", "n0,n1", "rest", "done")]

    # boot on a node that is on: xCAT's 'on reset'
    assert rest("PUT", "/xcatws/nodes/n0/power", {"action": "boot"})[1] == {
        "n0": {"power": "on reset"}}

    # one dead BMC: the others' results stay, the dead one is one error line, still 200
    status, body = rest("GET", "/xcatws/nodes/n0-n2/power")
    assert status == 200, body
    conforms(spec, "GET", template, 200, body)
    assert {k: v for k, v in body.items() if k != "errors"} == {
        "n0": {"power": "on"}, "n1": {"power": "off"}}
    assert len(body["errors"]) == 1 and error_for(body, "n2"), body
    assert "secret" not in json.dumps(body)
    status, body = rest("PUT", "/xcatws/nodes/n1,n2/power", {"action": "on"})
    assert status == 200 and body["n1"] == {"power": "on"} and error_for(body, "n2"), body
    assert judge(bmcs, 1, "chassis", "power", "status").strip() == "Chassis Power is on"
    # nothing but the dead one: no result at all is a failure of the BMC, 502
    status, body = rest("GET", "/xcatws/nodes/n2/power")
    assert status == 502, body
    conforms(spec, "GET", template, 502, body)
    assert set(body) == {"errors"} and error_for(body, "n2")


@needs_ipmitool
def test_bad_power_requests_are_400_naming_the_word_and_change_nothing(fleet, rest, spec):
    _mn, bmcs = fleet
    judge(bmcs, 0, "chassis", "power", "on")
    for payload, word in (({"action": "explode"}, "explode"), ({}, "action"),
                          ({"action": ""}, "action"), ({"action": "off", "force": "1"}, "force"),
                          ({"acton": "off"}, "acton")):
        status, body = rest("PUT", "/xcatws/nodes/n0/power", payload)
        assert status == 400, (payload, body)
        conforms(spec, "PUT", "/xcatws/nodes/{name}/power", 400, body)
        assert any(word in e for e in body["errors"]), (payload, body)
    assert judge(bmcs, 0, "chassis", "power", "status").strip() == "Chassis Power is on"
    status, body = rest("GET", "/xcatws/nodes/n0,n99/power")
    assert status == 404, body
    conforms(spec, "GET", "/xcatws/nodes/{name}/power", 404, body)
    assert any("n99" in e for e in body["errors"])


@needs_ipmitool
def test_power_through_rest_obeys_policy(fleet, rest, spec, tmp_path):
    mn, bmcs = fleet
    files = issue_client_cert(mn.paths, "bob", tmp_path / "bob")
    bob = client(mn, files.cred, files.ca)
    status, body = bob("PUT", "/xcatws/nodes/n0/power", {"action": "on"})
    assert status == 403, body
    conforms(spec, "PUT", "/xcatws/nodes/{name}/power", 403, body)
    assert judge(bmcs, 0, "chassis", "power", "status").strip() == "Chassis Power is off"
    assert poll(lambda: audit_rows(mn, userid="bob", clienttype="rest", status="Denied",
                                   command="rpower"))
    status, body = bob("GET", "/xcatws/nodes/n0/power")
    assert status == 403, body
    assert any("Permission denied" in e for e in body["errors"])


@needs_ipmitool
def test_nextboot_get_put(fleet, rest, spec):
    mn, bmcs = fleet
    template = "/xcatws/nodes/{name}/nextboot"
    status, body = rest("GET", "/xcatws/nodes/n1/nextboot")
    assert (status, body) == (200, {"n1": {"nextboot": "boot override inactive"}})
    status, body = rest("PUT", "/xcatws/nodes/n1/nextboot", {"order": "net"})
    assert (status, body) == (200, {"n1": {"nextboot": "Network"}})
    conforms(spec, "PUT", template, 200, body)
    assert "Boot Device Selector : Force PXE" in judge(bmcs, 1, "chassis", "bootparam", "get",
                                                       "5")
    assert rest("GET", "/xcatws/nodes/n0,n1/nextboot")[1] == {
        "n0": {"nextboot": "boot override inactive"}, "n1": {"nextboot": "Network"}}
    assert mn.ok("rsetboot", "n1", "stat").lines == ["n1: Network"]

    status, body = rest("PUT", "/xcatws/nodes/n0,n2/nextboot", {"order": "hd",
                                                              "persistent": True})
    assert status == 200 and body["n0"] == {"nextboot": "Hard Drive"} and error_for(body, "n2")
    conforms(spec, "PUT", template, 200, body)

    for payload, word in (({"order": "usb"}, "usb"), ({"device": "net"}, "device"), ({}, "order")):
        status, body = rest("PUT", "/xcatws/nodes/n1/nextboot", payload)
        assert status == 400, (payload, body)
        conforms(spec, "PUT", template, 400, body)
        assert any(word in e for e in body["errors"]), body
    assert rest("GET", "/xcatws/nodes/n1/nextboot")[1] == {"n1": {"nextboot": "Network"}}


def currstate(mn, node: str) -> str | None:
    rows = mn.db.rows("chain", keys=[node])
    return rows[0]["currstate"] if rows else None


def test_bootstate_get_put_state_and_osimage(mn_daemon, rest, spec):
    mn = build(mn_daemon, install_image("b[1-2]", "prov"))
    template = "/xcatws/nodes/{name}/bootstate"
    status, body = rest("GET", "/xcatws/nodes/b1,b2/bootstate")
    assert (status, body) == (200, {"b1": {"bootstat": "offline"}, "b2": {"bootstat": "offline"}})

    status, body = rest("PUT", "/xcatws/nodes/b1/bootstate", {"state": "boot"})
    assert (status, body) == (200, {"b1": {"bootstat": "boot"}}), body
    conforms(spec, "PUT", template, 200, body)
    assert currstate(mn, "b1") == "boot"
    assert mn.ok("nodeset", "b1", "stat").lines == ["b1: boot"]

    state = "install rocky9.4-x86_64-compute"
    status, body = rest("PUT", "/xcatws/nodes/b1,b2/bootstate", {"osimage": IMG})
    assert (status, body) == (200, {"b1": {"bootstat": state}, "b2": {"bootstat": state}}), body
    assert rest("GET", "/xcatws/nodes/b1,b2/bootstate")[1] == {
        "b1": {"bootstat": state}, "b2": {"bootstat": state}}
    assert currstate(mn, "b2") == state
    assert (mn.root / "install/autoinst/b2").is_file()
    assert "inst.ks=" in (mn.root / "tftpboot/xcat/xnba/nodes/b2").read_text()
    jobs = rest("GET", "/xcatws/jobs")[1]["jobs"]
    assert any(j["command"] == "nodeset" and j["clienttype"] == "rest" and
               j["noderange"] == "b1,b2" and j["state"] == "done" for j in jobs)

    for payload, word in (({"osimage": "nosuchimage"}, "nosuchimage"),
                          ({"state": "bogus"}, "bogus"),
                          ({"osimage": IMG, "state": "boot"}, "exactly one"),
                          ({"image": IMG}, "image"), ({}, "exactly one")):
        status, body = rest("PUT", "/xcatws/nodes/b1/bootstate", payload)
        assert status == 400, (payload, body)
        conforms(spec, "PUT", template, 400, body)
        assert any(word in e for e in body["errors"]), (payload, body)
    assert currstate(mn, "b1") == state  # nothing changed
    status, body = rest("PUT", "/xcatws/nodes/b9/bootstate", {"state": "boot"})
    assert status == 404, body
    conforms(spec, "PUT", template, 404, body)


@needs_ipmi_sim
def test_inventory_vitals_and_eventlog_against_ipmi_sim(bmcs, rest, spec):
    mn, _fleet, sim = bmcs
    status, body = rest("GET", "/xcatws/nodes/s1/inventory?type=serial")
    assert (status, body) == (200, {"s1": {"inventory": [
        "System Serial Number: S1234567", "Chassis Serial Number: CHS0001"]}})
    fru = sim.ipmitool("fru", "print", "0").stdout
    assert re.search(r"Product Serial\s+: S1234567", fru)
    # the same lines as the command, in its order
    every = rest("GET", "/xcatws/nodes/s1/inventory")[1]["s1"]["inventory"]
    assert [f"s1: {line}" for line in every] == mn.ok("rinv", "s1", "all").lines
    assert len(every) > 10

    status, body = rest("GET", "/xcatws/nodes/s1/vitals?type=temp")
    assert (status, body) == (200, {"s1": {"vitals": ["CPU Temp: 40 C (104 F)"]}})
    vitals = rest("GET", "/xcatws/nodes/s1/vitals?type=temp,voltage")[1]["s1"]["vitals"]
    assert sorted(v.split(":")[0] for v in vitals) == ["12V", "3.3V", "CPU Temp"]

    status, body = rest("GET", "/xcatws/nodes/s1/eventlog")
    events = body["s1"]["eventlog"]
    assert status == 200 and len(events) == 4, body
    assert "(CPU Temp reading 85 C (185 F) with threshold 80 C (176 F))" in events[0]
    newest = rest("GET", "/xcatws/nodes/s1/eventlog?count=2&sort=1")[1]["s1"]["eventlog"]
    assert [e.split(" ", 2)[2] for e in newest] == [e.split(" ", 2)[2] for e in events[:-3:-1]]

    # a GET never clears, whatever the count says
    status, body = rest("GET", "/xcatws/nodes/s1/eventlog?count=clear")
    assert status == 400 and "count=clear" in body["errors"][0], body
    conforms(spec, "GET", "/xcatws/nodes/{name}/eventlog", 400, body)
    for url, word in (("/xcatws/nodes/s1/inventory?type=bogus", "bogus"),
                      ("/xcatws/nodes/s1/vitals?type=temp,humidity", "humidity")):
        status, body = rest("GET", url)
        assert status == 400 and word in body["errors"][0], (url, body)
        conforms(spec, "GET", url.split("?")[0].replace("s1", "{name}"), 400, body)
    assert len(rest("GET", "/xcatws/nodes/s1/eventlog")[1]["s1"]["eventlog"]) == 4

    # one dead BMC beside it: s1's lines, n2's error
    for url, key in (("/xcatws/nodes/s1,n2/inventory?type=serial", "inventory"),
                     ("/xcatws/nodes/s1,n2/vitals?type=temp", "vitals"),
                     ("/xcatws/nodes/s1,n2/eventlog?count=1", "eventlog")):
        status, body = rest("GET", url)
        assert status == 200, (url, body)
        conforms(spec, "GET", url.split("?")[0].replace("s1,n2", "{name}"), 200, body)
        assert set(body) == {"s1", "errors"} and len(body["s1"][key]) >= 1, body
        assert len(body["errors"]) == 1 and error_for(body, "n2"), body
    status, body = rest("GET", "/xcatws/nodes/n2/vitals")
    assert status == 502 and error_for(body, "n2"), body

    status, body = rest("DELETE", "/xcatws/nodes/s1/eventlog")
    assert (status, body) == (200, {"s1": {"eventlog": ["SEL cleared"]}})
    conforms(spec, "DELETE", "/xcatws/nodes/{name}/eventlog", 200, body)
    assert re.search(r"Entries\s+: 0", sim.ipmitool("sel", "info").stdout)
    assert rest("GET", "/xcatws/nodes/s1/eventlog")[1] == {
        "s1": {"eventlog": ["no SEL entries"]}}


@needs_ipmi_sim
def test_every_hardware_get_answers_per_its_schema(bmcs, rest, spec):
    documented_hw = {path for m, path in documented(spec) if m == "GET"
                     and re.fullmatch(r"/xcatws/nodes/\{name\}/\w+", path)
                     and not path.endswith(("/bootstate", "/attrs"))}
    assert documented_hw == set(HARDWARE_GETS)
    for template, urls in HARDWARE_GETS.items():
        for url in urls:
            status, body = rest("GET", url)
            assert status == 200, (url, body)
            conforms(spec, "GET", template, 200, body)
            assert body and "errors" not in body, (url, body)
            for node, value in body.items():
                assert all(value.values()), f"GET {url}: {node} has an empty value"
