"""The REST API: a second front on the same server. Every call becomes a Request and goes
through the same policy, audit, job record, dispatch and locks as a command.

Paths follow xCAT's ``/xcatws`` layout; bodies and results are JSON. The node actions
(``/xcatws/nodes/{noderange}/power|nextboot|bootstate|inventory|vitals|eventlog``) answer in
xcatws' per-node shape, ``{"n1": {"power": "on"}}``, and keep the nodes that succeeded when
others fail (``"errors": ["n2: ..."]`` beside them, HTTP 200); see ``_node_answer``.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from xcatd.base.request import Request, Response

# REST resource -> object type of lsdef/mkdef/chdef/rmdef
OBJECT_RESOURCES = {"nodes": "node", "groups": "group", "osimages": "osimage",
                    "networks": "network", "policy": "policy"}


async def run(request: web.Request, req: Request) -> list[Response]:
    """Run a Request as a job of the caller and collect its responses."""
    from xcatd.fronts.server import IDENTITY, POOL_KEY, SERVICE_KEY
    service = request.app[SERVICE_KEY]
    who = request[IDENTITY]
    who = type(who)(who.user, who.host, "rest")
    loop = asyncio.get_running_loop()
    out: list[Response] = []

    def work() -> None:
        job = service.new_job(req, who)
        service.run(job, req, who, out.append)

    await loop.run_in_executor(request.app[POOL_KEY], work)
    return out


def _status(errors: list[str], reading: bool = False) -> int:
    text = " ".join(errors)
    if reading and "not a valid attribute" in text:
        return 404  # GET .../attrs/bogus: no such resource
    if "Permission denied" in text or "belongs to" in text:
        return 403
    if any(s in text for s in ("Invalid nodes", "Could not find", "No such table", "No job",
                               "does not exist", "No node in")):
        return 404
    if "already exists" in text:
        return 409
    return 400


def _answer(responses: list[Response], ok: dict[str, Any], status: int = 200,
            reading: bool = False) -> web.Response:
    errors = [r.error for r in responses if r.error]
    if errors:
        return web.json_response({"errors": errors}, status=_status(errors, reading))
    return web.json_response(ok, status=status)


def _messages(responses: list[Response]) -> dict[str, Any]:
    return {"messages": [r.data for r in responses if r.data],
            "warnings": [r.warning for r in responses if r.warning]}


TRUE = ("1", "true", "yes")


def _show_secrets(request: web.Request) -> bool:
    return request.query.get("show_secrets", "") in TRUE


async def _body(request: web.Request) -> dict[str, str]:
    from xcatd.fronts.server import read_json
    try:
        body = await read_json(request)
    except web.HTTPException:
        raise
    except Exception:
        raise web.HTTPBadRequest(text='{"errors": ["the body must be a JSON object"]}',
                                 content_type="application/json") from None
    if not isinstance(body, dict) or not all(isinstance(k, str) for k in body):
        raise web.HTTPBadRequest(text='{"errors": ["the body must be a JSON object of '
                                      'attribute: value"]}', content_type="application/json")
    return {k: "" if v is None else str(v) for k, v in body.items()}


def _attr_words(attrs: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in attrs.items()]


# ---- objects -------------------------------------------------------------------------------
def _objects_list(objtype: str):
    async def handler(request: web.Request) -> web.Response:
        res = await run(request, Request("lsdef", args={"type": objtype, "short": True}))
        names = [r.obj["name"] for r in res if r.obj and "name" in r.obj]
        return _answer(res, {"objects": names})
    return handler


def _object_get(objtype: str):
    async def handler(request: web.Request) -> web.Response:
        args: dict[str, Any] = {"type": objtype, "objects": request.match_info["name"],
                                "long": True, "show_secrets": _show_secrets(request)}
        if "attrs" in request.match_info:
            args["info"] = request.match_info["attrs"]
        res = await run(request, Request("lsdef", args=args))
        objs = {r.obj["name"]: r.obj.get("attributes", {}) for r in res
                if r.obj and "name" in r.obj}
        return _answer(res, objs, reading=True)
    return handler


def _object_change(objtype: str, command: str):
    async def handler(request: web.Request) -> web.Response:
        attrs = await _body(request) if command != "rmdef" else {}
        args: dict[str, Any] = {"type": objtype, "objects": request.match_info["name"],
                                "attributes": _attr_words(attrs)}
        res = await run(request, Request(command, args=args))
        return _answer(res, _messages(res), 201 if command == "mkdef" else 200)
    return handler


async def site_get(request: web.Request) -> web.Response:
    res = await run(request, Request("lsdef", args={"type": "site", "long": True,
                                                    "show_secrets": _show_secrets(request)}))
    site = next((r.obj.get("attributes", {}) for r in res if r.obj), {})
    return _answer(res, site)


async def site_put(request: web.Request) -> web.Response:
    attrs = await _body(request)
    res = await run(request, Request("chdef", args={"type": "site",
                                                    "attributes": _attr_words(attrs)}))
    return _answer(res, _messages(res))


# ---- tables --------------------------------------------------------------------------------
async def tables_list(request: web.Request) -> web.Response:
    res = await run(request, Request("tabdump"))
    return _answer(res, {"tables": [r.obj["table"] for r in res if r.obj]})


async def table_rows(request: web.Request) -> web.Response:
    res = await run(request, Request("tabdump", args={
        "table": request.match_info["table"], "where": request.query.getall("where", []),
        "show_secrets": _show_secrets(request)}))
    return _answer(res, {"rows": [r.obj["row"] for r in res if r.obj]})


async def table_row_put(request: web.Request) -> web.Response:
    table = request.match_info["table"]
    values = await _body(request)
    res = await run(request, Request("chtab", args={
        "keys": request.match_info["keys"],
        "assignments": [f"{table}.{k}={v}" for k, v in values.items()]}))
    return _answer(res, _messages(res))


async def table_row_delete(request: web.Request) -> web.Response:
    res = await run(request, Request("chtab", args={
        "keys": request.match_info["keys"], "delete": True,
        "assignments": [request.match_info["table"]]}))
    return _answer(res, _messages(res))


# ---- jobs ----------------------------------------------------------------------------------
async def jobs_list(request: web.Request) -> web.Response:
    res = await run(request, Request("job", args={"action": "list",
                                                  "all": request.query.get("all") == "1"}))
    return _answer(res, {"jobs": [r.obj["job"] for r in res if r.obj]})


async def job_get(request: web.Request) -> web.Response:
    res = await run(request, Request("job", args={"action": "show",
                                                  "jobid": request.match_info["jobid"]}))
    record = next((r.obj["job"] for r in res if r.obj and "job" in r.obj), None)
    results = [r.obj["result"] for r in res if r.obj and "result" in r.obj]
    errors = [r.error for r in res if r.error and record is None]
    if errors:
        return web.json_response({"errors": errors}, status=_status(errors))
    return web.json_response({"job": record, "results": results})


async def job_delete(request: web.Request) -> web.Response:
    res = await run(request, Request("job", args={"action": "cancel",
                                                  "jobid": request.match_info["jobid"]}))
    return _answer(res, _messages(res))


# ---- node actions: hardware control and provisioning ---------------------------------------
#: HTTP status when not one node could be served because each node's management controller
#: failed (unreachable, refused the login, ...): the fault is upstream, not in the request.
UPSTREAM_FAILED = 502


def _node_answer(responses: list[Response], key: str, *, lines: bool = False,
                 all_failed: int | None = UPSTREAM_FAILED) -> web.Response:
    """xCAT's per-node shape, ``{node: {key: value}}`` (``value`` a list of lines when
    ``lines``), for the nodes that answered, plus ``errors`` ("node: message", as xcatws
    words them) for those that did not. One dead BMC must not hide the other nodes' results
    (xcatws answers 403 with only the errors): a partial result is 200 with ``errors``.
    Nothing to show is an error status: ``_status`` for a failed request (bad word, unknown
    noderange, policy), ``all_failed`` (or ``_status``) when every node failed alone."""
    from xcatd.base.noderange import natural_key
    nodes: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    warnings: list[str] = []
    request_failed = False
    for r in responses:
        if r.error:
            errors.append(f"{r.node}: {r.error}" if r.node else r.error)
            request_failed = request_failed or r.node is None
        elif r.warning:
            warnings.append(f"{r.node}: {r.warning}" if r.node else r.warning)
        elif r.node is not None and r.data is not None:
            if lines:
                nodes.setdefault(r.node, {key: []})[key].append(r.data)
            else:
                nodes.setdefault(r.node, {key: r.data})  # the node's line, not later notes
    if not nodes and errors:
        status = _status(errors) if request_failed or all_failed is None else all_failed
        return web.json_response({"errors": errors}, status=status)
    body: dict[str, Any] = {n: nodes[n] for n in sorted(nodes, key=natural_key)}
    if errors:
        body["errors"] = errors
    if warnings:
        body["warnings"] = warnings
    return web.json_response(body)


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"errors": [message]}),
                              content_type="application/json")


async def _one_of(request: web.Request, keys: tuple[str, ...]) -> tuple[str, str]:
    """The body's single key of ``keys`` and its value; anything else is a 400 that names
    what was wrong (a misspelt key must not be ignored)."""
    body = await _body(request)
    unknown = [k for k in body if k not in keys]
    if unknown:
        raise _bad_request(f"unknown key(s) {', '.join(unknown)} in the body (use "
                           f"{' or '.join(keys)})")
    given = [(k, v.strip()) for k, v in body.items() if v.strip()]
    if len(given) != 1:
        raise _bad_request(f"the body must give exactly one of {', '.join(keys)}, e.g. "
                           f'{{"{keys[0]}": "..."}}')
    return given[0]


def _noderange(request: web.Request) -> str:
    return request.match_info["name"]


async def power_get(request: web.Request) -> web.Response:
    res = await run(request, Request("rpower", _noderange(request), {"action": "stat"}))
    return _node_answer(res, "power")


async def power_put(request: web.Request) -> web.Response:
    _, action = await _one_of(request, ("action",))
    res = await run(request, Request("rpower", _noderange(request), {"action": action}))
    return _node_answer(res, "power")


async def nextboot_get(request: web.Request) -> web.Response:
    res = await run(request, Request("rsetboot", _noderange(request), {"device": "stat"}))
    return _node_answer(res, "nextboot")


async def nextboot_put(request: web.Request) -> web.Response:
    body = await _body(request)
    flags = {k: body.pop(k).lower() in TRUE for k in ("persistent", "uefi") if k in body}
    unknown = [k for k in body if k != "order"]
    if unknown or not body.get("order", "").strip():
        raise _bad_request(f"unknown key(s) {', '.join(unknown)} in the body" if unknown else
                           'the body must give the order, e.g. {"order": "net"}')
    res = await run(request, Request("rsetboot", _noderange(request),
                                     {"device": body["order"].strip(), **flags}))
    return _node_answer(res, "nextboot")


async def bootstate_get(request: web.Request) -> web.Response:
    res = await run(request, Request("nodeset", _noderange(request), {"state": "stat"}))
    return _node_answer(res, "bootstat", all_failed=None)


async def bootstate_put(request: web.Request) -> web.Response:
    key, value = await _one_of(request, ("osimage", "state"))
    state = f"osimage={value}" if key == "osimage" else value
    res = await run(request, Request("nodeset", _noderange(request), {"state": state}))
    return _node_answer(res, "bootstat", all_failed=None)


async def inventory_get(request: web.Request) -> web.Response:
    what = request.query.get("type") or "all"
    res = await run(request, Request("rinv", _noderange(request), {"what": what}))
    return _node_answer(res, "inventory", lines=True)


async def vitals_get(request: web.Request) -> web.Response:
    what = [w for t in request.query.getall("type", []) for w in t.split(",") if w.strip()]
    res = await run(request, Request("rvitals", _noderange(request),
                                     {"what": what or ["all"]}))
    return _node_answer(res, "vitals", lines=True)


async def eventlog_get(request: web.Request) -> web.Response:
    count = (request.query.get("count") or "all").strip().lower()
    if count != "all" and not (count.isdigit() and int(count) > 0):
        # never a 'clear' through a GET
        raise _bad_request(f"count={count} is not a number of entries (or all)")
    res = await run(request, Request("reventlog", _noderange(request), {
        "what": count, "sort": request.query.get("sort", "") in TRUE}))
    return _node_answer(res, "eventlog", lines=True)


async def eventlog_delete(request: web.Request) -> web.Response:
    res = await run(request, Request("reventlog", _noderange(request), {"what": "clear"}))
    return _node_answer(res, "eventlog", lines=True)


#: /xcatws/nodes/{name}/<resource>: method -> handler
NODE_ACTIONS = {
    "power": {"GET": power_get, "PUT": power_put},
    "nextboot": {"GET": nextboot_get, "PUT": nextboot_put},
    "bootstate": {"GET": bootstate_get, "PUT": bootstate_put},
    "inventory": {"GET": inventory_get},
    "vitals": {"GET": vitals_get},
    "eventlog": {"GET": eventlog_get, "DELETE": eventlog_delete},
}


async def openapi(request: web.Request) -> web.Response:
    from xcatd.fronts.openapi import spec
    return web.json_response(spec())


def add_routes(app: web.Application) -> None:
    r = app.router
    for resource, objtype in OBJECT_RESOURCES.items():
        base = f"/xcatws/{resource}"
        r.add_get(base, _objects_list(objtype))
        r.add_get(base + "/{name}", _object_get(objtype))
        r.add_post(base + "/{name}", _object_change(objtype, "mkdef"))
        r.add_put(base + "/{name}", _object_change(objtype, "chdef"))
        r.add_delete(base + "/{name}", _object_change(objtype, "rmdef"))
    r.add_get("/xcatws/nodes/{name}/attrs/{attrs}", _object_get("node"))
    for resource, handlers in NODE_ACTIONS.items():
        for method, handler in handlers.items():
            r.add_route(method, f"/xcatws/nodes/{{name}}/{resource}", handler)
    r.add_get("/xcatws/site", site_get)
    r.add_put("/xcatws/site", site_put)
    r.add_get("/xcatws/tables", tables_list)
    r.add_get("/xcatws/tables/{table}/rows", table_rows)
    r.add_put("/xcatws/tables/{table}/rows/{keys}", table_row_put)
    r.add_delete("/xcatws/tables/{table}/rows/{keys}", table_row_delete)
    r.add_get("/xcatws/jobs", jobs_list)
    r.add_get("/xcatws/jobs/{jobid}", job_get)
    r.add_delete("/xcatws/jobs/{jobid}", job_delete)
    r.add_get("/xcatws/openapi.json", openapi)
