"""The REST API: a second front on the same server. Every call becomes a Request with typed
parameters (never argv words for the handler to parse again) and goes through the same
pipeline as a command: policy, audit, job record, locks.

Paths follow xCAT's ``/xcatws`` layout; bodies and results are JSON. The HTTP status follows
the kind of the error (xcatd.base.request.ErrorKind), never its wording. The node actions
(``/xcatws/nodes/{noderange}/power|nextboot|bootstate|inventory|vitals|eventlog``) answer in
xcatws' per-node shape, ``{"n1": {"power": "on"}}``, keep the nodes that succeeded when
others fail (``"errors": ["n2: ..."]`` beside them, HTTP 200), and stream: each node is
written as soon as it answers, so ``power`` on 10,000 nodes shows them as they come. A
client that sends ``Accept: application/x-ndjson`` gets the command protocol's records
instead, one JSON line per response and an end line with the job and exit code.

The parallel shell (``POST /xcatws/nodes/{noderange}/shell``, xdsh) and file copies
(``.../files``, xdcp) always answer NDJSON, a line per node's output line, exit code or
error as the nodes go, and a last ``{"done": true, "rc": N}``; a client that goes away
stops the run (see _shell_stream).
"""
from __future__ import annotations

import asyncio
import json
import math
import posixpath
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from xcatd.base.request import ErrorKind, Request, Response
from xcatd.daemon.policy import Identity
from xcatd.fronts.https import IDENTITY, PIPELINE_KEY, Relay, line, read_json, watch_client
from xcatd.fronts.openapi import spec

# REST resource -> object type of lsdef/mkdef/chdef/rmdef
OBJECT_RESOURCES = {"nodes": "node", "groups": "group", "osimages": "osimage",
                    "networks": "network", "policy": "policy"}
NDJSON = "application/x-ndjson"

#: HTTP status of each kind of error; the first kind in this order wins when there are several
STATUS = {ErrorKind.DENIED: 403, ErrorKind.NOT_FOUND: 404, ErrorKind.CONFLICT: 409,
          ErrorKind.BUSY: 503, ErrorKind.INTERNAL: 500, ErrorKind.UPSTREAM: 502,
          ErrorKind.BAD_REQUEST: 400}


def _who(request: web.Request) -> Identity:
    who = request[IDENTITY]
    return Identity(who.user, who.host, "rest")


async def _responses(request: web.Request, req: Request) -> AsyncIterator[list[Response]]:
    """Run a Request as a job of the caller; batches of its responses as they come."""
    who = _who(request)
    job = request.app[PIPELINE_KEY].new_job(req, who)
    relay = Relay.start(request.app, job, req, who)
    finished = False
    while not finished:
        items, finished, _code = await relay.take()
        items = [r for r in items if r.progress is None]  # a terminal's status line: not here
        if items:
            yield items


async def run(request: web.Request, req: Request) -> list[Response]:
    """Run a Request as a job of the caller and collect its responses."""
    out: list[Response] = []
    async for items in _responses(request, req):
        out += items
    return out


def status_of(errors: list[Response]) -> int:
    """The HTTP status for a request that failed with these errors: by their kinds."""
    kinds = {r.kind for r in errors}
    return next((code for kind, code in STATUS.items() if kind.value in kinds), 400)


def _errors(status: int, errors: list[str]) -> web.Response:
    return web.json_response({"errors": errors}, status=status)


def _answer(responses: list[Response], ok: dict[str, Any], status: int = 200) -> web.Response:
    failed = [r for r in responses if r.error]
    if failed:
        return _errors(status_of(failed), [r.error or "" for r in failed])
    return web.json_response(ok, status=status)


def _messages(responses: list[Response]) -> dict[str, Any]:
    return {"messages": [r.data for r in responses if r.data],
            "warnings": [r.warning for r in responses if r.warning]}


TRUE = ("1", "true", "yes")


def _show_secrets(request: web.Request) -> bool:
    return request.query.get("show_secrets", "") in TRUE


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"errors": [message]}),
                              content_type="application/json")


async def _body(request: web.Request) -> dict[str, str]:
    """The body: a JSON object of names to scalar values (as strings; null is "")."""
    try:
        body = await read_json(request)
    except web.HTTPException:
        raise
    except Exception:
        raise _bad_request("the body must be a JSON object") from None
    if not isinstance(body, dict) or not all(isinstance(k, str) for k in body):
        raise _bad_request("the body must be a JSON object of attribute: value")
    nested = [k for k, v in body.items() if isinstance(v, dict | list)]
    if nested:
        raise _bad_request(f"values must be strings, numbers or booleans, not objects or "
                           f"lists: {', '.join(sorted(nested)[:10])}")
    return {k: "" if v is None else str(v) for k, v in body.items()}


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
        return _answer(res, objs)
    return handler


def _object_change(objtype: str, command: str):
    async def handler(request: web.Request) -> web.Response:
        attrs = await _body(request) if command != "rmdef" else {}
        args: dict[str, Any] = {"type": objtype, "objects": request.match_info["name"],
                                "attributes": attrs}
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
    res = await run(request, Request("chdef", args={"type": "site", "attributes": attrs}))
    return _answer(res, _messages(res))


# ---- tables --------------------------------------------------------------------------------
async def tables_list(request: web.Request) -> web.Response:
    res = await run(request, Request("tabdump"))
    return _answer(res, {"tables": [r.obj["table"] for r in res if r.obj]})


async def table_rows(request: web.Request) -> web.Response:
    res = await run(request, Request("tabdump", args={
        "table": request.match_info["table"], "where": request.query.getall("where", []),
        "show_secrets": _show_secrets(request)}))
    return _answer(res, {"rows": [r.obj["row"] for r in res if r.obj and "row" in r.obj]})


async def table_row_put(request: web.Request) -> web.Response:
    table = request.match_info["table"]
    values = await _body(request)
    res = await run(request, Request("chtab", args={
        "keys": _keys(request.match_info["keys"]),
        "assignments": [[table, column, "=", value] for column, value in values.items()]}))
    return _answer(res, _messages(res))


async def table_row_delete(request: web.Request) -> web.Response:
    res = await run(request, Request("chtab", args={
        "keys": _keys(request.match_info["keys"]), "delete": True,
        "tables": [request.match_info["table"]]}))
    return _answer(res, _messages(res))


def _keys(text: str) -> dict[str, str]:
    """The row's keys from the path: ``key=value[,key=value]``."""
    keys = {}
    for part in (p.strip() for p in text.split(",")):
        col, sep, value = part.partition("=")
        if not sep or not col:
            raise _bad_request(f"the row keys must be key=value[,key=value], not '{part}'")
        keys[col] = value
    return keys


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
    failed = [r for r in res if r.error and record is None]
    if failed:
        return _errors(status_of(failed), [r.error or "" for r in failed])
    return web.json_response({"job": record, "results": results})


async def job_delete(request: web.Request) -> web.Response:
    res = await run(request, Request("job", args={"action": "cancel",
                                                  "jobid": request.match_info["jobid"]}))
    return _answer(res, _messages(res))


# ---- node actions: hardware control and provisioning ---------------------------------------
#: HTTP status when not one node could be served because each node's management controller
#: failed (unreachable, refused the login, ...): the fault is upstream, not in the request.
UPSTREAM_FAILED = 502


class _NodeAnswer:
    """xCAT's per-node shape, ``{node: {key: value}}`` (``value`` a list of lines when
    ``lines``), for the nodes that answered, plus ``errors`` ("node: message", as xcatws
    words them) for those that did not. One dead BMC must not hide the other nodes' results
    (xcatws answers 403 with only the errors): a partial result is 200 with ``errors``.

    It streams: the answer starts (200) with the first node that succeeded, and each node
    is written when its answer is complete (a node's lines come together). Until then
    nothing is sent, so a request that fails outright gets the status of its error's kind,
    and one where every node failed alone gets ``all_failed`` (None: by kind)."""

    def __init__(self, key: str, lines: bool, all_failed: int | None) -> None:
        self.key, self.lines, self.all_failed = key, lines, all_failed
        self.errors: list[Response] = []
        self.warnings: list[str] = []
        self.done: set[str] = set()
        self.current: tuple[str, list[str]] | None = None  # a node whose lines still come
        self.started = False

    def take(self, r: Response) -> list[tuple[str, Any]]:
        """The nodes that are complete after ``r``: (node, value)."""
        out: list[tuple[str, Any]] = []
        if r.error:
            self.errors.append(r)
        elif r.warning:
            self.warnings.append(f"{r.node}: {r.warning}" if r.node else r.warning)
        elif r.node is not None and r.data is not None and r.node not in self.done:
            if not self.lines:
                self.done.add(r.node)  # the node's line, not later notes
                out.append((r.node, r.data))
            elif self.current is not None and self.current[0] == r.node:
                self.current[1].append(r.data)
            else:
                out += self.finish_node()
                self.current = (r.node, [r.data])
        return out

    def finish_node(self) -> list[tuple[str, Any]]:
        if self.current is None:
            return []
        node, lines = self.current
        self.current = None
        self.done.add(node)
        return [(node, lines)]

    def error_texts(self) -> list[str]:
        return [f"{r.node}: {r.error}" if r.node else (r.error or "") for r in self.errors]

    def failure(self) -> web.Response:
        """The answer when no node succeeded."""
        request_failed = any(r.node is None for r in self.errors)
        # errors of a kind were the pipeline's (a locked node: 409), not the nodes' BMCs
        if request_failed or self.all_failed is None or all(r.kind for r in self.errors):
            status = status_of([r for r in self.errors if r.node is None] or self.errors)
        else:
            status = self.all_failed
        return _errors(status, self.error_texts())

    def entry(self, node: str, value: Any) -> bytes:
        return (json.dumps(node) + ":" + json.dumps({self.key: value},
                                                    separators=(",", ":"))).encode()

    def tail(self) -> bytes:
        extra = ""
        if self.errors:
            extra += ',"errors":' + json.dumps(self.error_texts())
        if self.warnings:
            extra += ',"warnings":' + json.dumps(self.warnings)
        return (extra + "}\n").encode()


class _Stream:
    """A streamed answer: started on the first write; a client that goes away ends the
    writing, never the job (the request runs to its end and is recorded), except where
    the caller cancels it (the parallel shell)."""

    def __init__(self, request: web.Request, content_type: str,
                 headers: dict[str, str] | None = None) -> None:
        self.request = request
        self.resp = web.StreamResponse(status=200, headers={"Content-Type": content_type,
                                                            **(headers or {})})
        self.started = False
        self.gone = False

    async def write(self, data: bytes) -> None:
        if self.gone or not data:
            return
        try:
            if not self.started:
                self.started = True
                await self.resp.prepare(self.request)
            await self.resp.write(data)
        except (ConnectionResetError, RuntimeError):
            self.gone = True

    async def end(self) -> web.StreamResponse:
        if not self.gone:
            try:
                await self.resp.write_eof()
            except (ConnectionResetError, RuntimeError):
                pass
        return self.resp


async def _node_answer(request: web.Request, req: Request, key: str, *, lines: bool = False,
                       all_failed: int | None = UPSTREAM_FAILED) -> web.StreamResponse:
    if NDJSON in request.headers.get("Accept", ""):
        return await _ndjson(request, req)
    answer = _NodeAnswer(key, lines, all_failed)
    out = _Stream(request, "application/json")
    written = 0

    def entries(pending: list[tuple[str, Any]]) -> bytes:
        nonlocal written
        chunk = b"".join((b"," if written + i else b"{") + answer.entry(n, v)
                         for i, (n, v) in enumerate(pending))
        written += len(pending)
        return chunk

    async for items in _responses(request, req):
        pending: list[tuple[str, Any]] = []
        for r in items:
            pending += answer.take(r)
        await out.write(entries(pending))
    last = answer.finish_node()
    if not written and not last:
        if answer.errors:
            return answer.failure()
        body: dict[str, Any] = {}
        if answer.warnings:
            body["warnings"] = answer.warnings
        return web.json_response(body)
    await out.write(entries(last) + answer.tail())
    return await out.end()


async def _ndjson(request: web.Request, req: Request) -> web.StreamResponse:
    """The command protocol's records, as they come."""
    out = _Stream(request, NDJSON)
    code = 0
    async for items in _responses(request, req):
        for r in items:
            if r.failed:
                code = code or (r.errorcode or 1)
        await out.write(b"".join(line({"r": r.to_dict()}) for r in items))
    await out.write(line({"end": {"exitcode": code}}))
    return await out.end()


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


async def power_get(request: web.Request) -> web.StreamResponse:
    req = Request("rpower", _noderange(request), {"action": "stat"})
    return await _node_answer(request, req, "power")


async def power_put(request: web.Request) -> web.StreamResponse:
    _, action = await _one_of(request, ("action",))
    req = Request("rpower", _noderange(request), {"action": action})
    return await _node_answer(request, req, "power")


async def nextboot_get(request: web.Request) -> web.StreamResponse:
    req = Request("rsetboot", _noderange(request), {"device": "stat"})
    return await _node_answer(request, req, "nextboot")


async def nextboot_put(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    flags = {k: body.pop(k).lower() in TRUE for k in ("persistent", "uefi") if k in body}
    unknown = [k for k in body if k != "order"]
    if unknown or not body.get("order", "").strip():
        raise _bad_request(f"unknown key(s) {', '.join(unknown)} in the body" if unknown else
                           'the body must give the order, e.g. {"order": "net"}')
    req = Request("rsetboot", _noderange(request), {"device": body["order"].strip(), **flags})
    return await _node_answer(request, req, "nextboot")


async def bootstate_get(request: web.Request) -> web.StreamResponse:
    req = Request("nodeset", _noderange(request), {"state": "stat"})
    return await _node_answer(request, req, "bootstat", all_failed=None)


async def bootstate_put(request: web.Request) -> web.StreamResponse:
    key, value = await _one_of(request, ("osimage", "state"))
    state = f"osimage={value}" if key == "osimage" else value
    req = Request("nodeset", _noderange(request), {"state": state})
    return await _node_answer(request, req, "bootstat", all_failed=None)


async def inventory_get(request: web.Request) -> web.StreamResponse:
    req = Request("rinv", _noderange(request), {"what": request.query.get("type") or "all"})
    return await _node_answer(request, req, "inventory", lines=True)


async def vitals_get(request: web.Request) -> web.StreamResponse:
    what = [w for t in request.query.getall("type", []) for w in t.split(",") if w.strip()]
    req = Request("rvitals", _noderange(request), {"what": what or ["all"]})
    return await _node_answer(request, req, "vitals", lines=True)


async def eventlog_get(request: web.Request) -> web.StreamResponse:
    count = (request.query.get("count") or "all").strip().lower()
    if count != "all" and not (count.isdigit() and int(count) > 0):
        # never a 'clear' through a GET
        raise _bad_request(f"count={count} is not a number of entries (or all)")
    req = Request("reventlog", _noderange(request),
                  {"what": count, "sort": request.query.get("sort", "") in TRUE})
    return await _node_answer(request, req, "eventlog", lines=True)


async def eventlog_delete(request: web.Request) -> web.StreamResponse:
    req = Request("reventlog", _noderange(request), {"what": "clear"})
    return await _node_answer(request, req, "eventlog", lines=True)


# ---- the parallel shell and file copies: xdsh and xdcp, answered as NDJSON ------------------
#: Seconds between looks at the connection of a shell run that is not saying anything.
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _is_number(v: Any, whole: bool = False) -> bool:
    return (isinstance(v, int) or (isinstance(v, float) and not whole)) \
        and not isinstance(v, bool) and math.isfinite(v) and 0 < v < 2**63


def _is_texts(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


#: field -> (what it must be, its check); null is the same as leaving a field out
_FIELD_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "text": ("a string", lambda v: isinstance(v, str)),
    "flag": ("true or false", lambda v: isinstance(v, bool)),
    "fanout": ("a whole number above 0", lambda v: _is_number(v, whole=True)),
    "seconds": ("a number of seconds above 0", _is_number),
    "texts": ("a list of strings", _is_texts),
    "text_or_texts": ("a string or a list of strings",
                      lambda v: isinstance(v, str) or _is_texts(v)),
    "env": ("an object of variable names and string values",
            lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values())),
}
_REMOTE = {"fanout": "fanout", "timeout": "seconds", "user": "text", "options": "texts"}
SHELL_FIELDS = {"command": "text", "script": "text", "script_name": "text", "env": "env",
                "stream": "flag", "exitcode": "flag", "sudo": "flag", **_REMOTE}
FILES_FIELDS = {"src": "text_or_texts", "target": "text", "recursive": "flag",
                "preserve": "flag", "pull": "flag", **_REMOTE}


def _json_type(v: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(v), type(v).__name__)


async def _fields(request: web.Request, fields: dict[str, str]) -> dict[str, Any]:
    """The body's fields, each checked against its type; a 400 naming the first bad one
    (an unknown field is never ignored: a misspelt "timout" must not run without one)."""
    try:
        body = await read_json(request)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _bad_request("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _bad_request("the body must be a JSON object")
    unknown = sorted(k for k in body if k not in fields)
    if unknown:
        raise _bad_request(f"unknown field(s) in the body: {', '.join(unknown)[:200]} "
                           f"(the fields are {', '.join(fields)})")
    out: dict[str, Any] = {}
    for name, value in body.items():
        if value is None:
            continue
        what, check = _FIELD_TYPES[fields[name]]
        if not check(value):
            raise _bad_request(f"{name}: must be {what}, not {_json_type(value)}")
        out[name] = value
    for name in (k for k, v in out.items() if fields[k] == "env"):
        bad = next((k for k in out[name] if not _VARIABLE.fullmatch(k)), None)
        if bad is not None:
            raise _bad_request(f"{name}: {bad[:40]!r} is not a variable name")
    return out


def _remote_args(body: dict[str, Any]) -> dict[str, Any]:
    return {k: float(v) if k == "timeout" else v for k, v in body.items() if k in _REMOTE}


async def shell_post(request: web.Request) -> web.StreamResponse:
    """``POST /xcatws/nodes/{noderange}/shell``: xdsh. Body: {"command": "uptime"} and
    optionally fanout, timeout, user, options (["Port=2222"], as xdsh -o), env ({NAME:
    value} exported on the nodes), stream (each line as it comes, xdsh -s; else a node's
    lines together when it is done), exitcode (default true: each node's {"rc": N}),
    sudo, script (the text of a script to copy and run, the command being its arguments)
    and script_name. The answer is _shell_stream's."""
    body = await _fields(request, SHELL_FIELDS)
    if not body.get("command", "").strip() and "script" not in body:
        raise _bad_request('command: missing: give the command to run, e.g. '
                           '{"command": "uptime"} (or a script)')
    args = {**_remote_args(body), "exitcode": body.get("exitcode", True),
            **{k: body[k] for k in ("command", "script", "script_name", "env", "stream",
                                    "sudo") if k in body}}
    return await _shell_stream(request, Request("xdsh", _noderange(request), args))


async def files_post(request: web.Request) -> web.StreamResponse:
    """``POST /xcatws/nodes/{noderange}/files``: xdcp. Body: {"src": ["/etc/hosts"] (or
    one path), "target": "/etc/"} and optionally recursive, preserve, pull (copy the
    nodes' src into the management node's target directory as <name>._<node>), fanout,
    timeout, user, options. Paths on the management node are full paths (xcatd reads and
    writes them as root: root only). Each node that is done gets {"rc": 0}; the answer is
    _shell_stream's."""
    body = await _fields(request, FILES_FIELDS)
    src = body.get("src", [])
    src = [src] if isinstance(src, str) else src
    if not [s for s in src if s.strip()]:
        raise _bad_request('src: missing: give the files to copy, e.g. '
                           '{"src": ["/etc/hosts"], "target": "/etc/"}')
    if not body.get("target", "").strip():
        raise _bad_request('target: missing: give where the files go, e.g. '
                           '{"src": ["/etc/hosts"], "target": "/etc/"}')
    pull = body.get("pull", False)
    where = "on the nodes" if pull else "on the management node"
    relative = next((s for s in src if not posixpath.isabs(s)), None)
    if relative is not None:
        raise _bad_request(f"src: {relative[:200]!r} is not a full path {where}")
    if not posixpath.isabs(body["target"]):
        raise _bad_request(f"target: {body['target'][:200]!r} is not a full path "
                           f"{'on the management node' if pull else 'on the nodes'}")
    args = {**_remote_args(body), "sources": src, "target": body["target"], "json": True,
            **{k: body[k] for k in ("recursive", "preserve", "pull") if k in body}}
    return await _shell_stream(request, Request("xdcp", _noderange(request), args))


def shell_records(r: Response) -> list[dict[str, Any]]:
    """One response of xdsh/xdcp as NDJSON records: {"node", "stdout"|"stderr": line},
    {"node", "rc": N}, {"node"?, "error"|"warning"|"message": text}. "node" is left out
    when the text is not about one node (xdsh's 'n1 remote Command had return code: 2'
    is, in its words, not by its field)."""
    base: dict[str, Any] = {"node": r.node} if r.node is not None else {}
    if r.error is not None:
        return [{**base, "error": r.error}]
    if r.warning is not None:
        return [{**base, "warning": r.warning}]
    obj = r.obj or {}
    out = [{**base, key: text} for key in ("stdout", "stderr")
           for text in obj.get(key) or [] if isinstance(text, str)]
    if isinstance(obj.get("rc"), int):
        out.append({**base, "rc": obj["rc"]})
    if not out and r.data is not None:
        out.append({**base, "stderr" if r.stream == "err" else "message": r.data})
    return out


def _refusal(r: Response) -> bool:
    """An error of the request as a whole (policy, an unknown node, a bad value): before
    anything is sent, it is the answer's HTTP status."""
    return r.error is not None and r.kind is not None


async def _shell_stream(request: web.Request, req: Request) -> web.StreamResponse:
    """Run xdsh/xdcp and answer ``application/x-ndjson``: each response as shell_records as
    it comes (one write per batch, sent at once), then {"done": true, "rc": N, "job": id},
    N the exit code the command line gives. The status is 200 once a node has answered;
    a request refused before that (policy: 403, unknown nodes: 404, a bad value: 400)
    gets {"errors": [...]} instead. A client that goes away cancels the run: commands
    still running are killed on their nodes (a REST shell has no --async)."""
    who = _who(request)
    job = request.app[PIPELINE_KEY].new_job(req, who)
    relay = Relay.start(request.app, job, req, who)
    watch = asyncio.ensure_future(watch_client(request, job))
    out = _Stream(request, NDJSON, {"X-Xcat-Job": job.jobid})
    held: list[Response] = []
    code = finished_code = 0
    finished = False
    try:
        while not finished:
            items, finished, finished_code = await relay.take()
            for r in items:
                if r.progress is None:
                    held.append(r)
                    if r.failed:
                        code = code or (r.errorcode or 1)
            if not out.started and all(_refusal(r) for r in held):
                continue   # nothing yet, or only refusals: the status is still open
            data = b"".join(line(rec) for r in held for rec in shell_records(r))
            held = []
            await out.write(data)
            if out.gone:
                job.cancel.set()
        if not out.started and held:
            return _errors(status_of(held), [f"{r.node}: {r.error}" if r.node else
                                             r.error or "" for r in held])
        await out.write(line({"done": True, "rc": code or finished_code, "job": job.jobid}))
        return await out.end()
    finally:
        watch.cancel()
        if not finished:   # the handler itself was cancelled (the client went away)
            job.cancel.set()


#: /xcatws/nodes/{name}/<resource>: method -> handler
NODE_ACTIONS = {
    "power": {"GET": power_get, "PUT": power_put},
    "nextboot": {"GET": nextboot_get, "PUT": nextboot_put},
    "bootstate": {"GET": bootstate_get, "PUT": bootstate_put},
    "inventory": {"GET": inventory_get},
    "vitals": {"GET": vitals_get},
    "eventlog": {"GET": eventlog_get, "DELETE": eventlog_delete},
    "shell": {"POST": shell_post},
    "files": {"POST": files_post},
}


async def openapi(request: web.Request) -> web.Response:
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
