"""The node agent's API, on xcatd's HTTPS port: every request with the node's own
certificate (mutual TLS; xcatd.fronts.https lets a node certificate in here and nowhere
else), and every one but the task poll a node-originated command through the pipeline
(policy, audit, job), whose handler checks the certificate is the node's current one and
the request comes from the node's address (plugins/nodeagent.py).

    GET  /xcat/agent/plan?mode=boot|install|updatenode[&scripts=a,b]   the plan (JSON)
    GET  /xcat/agent/script/<path>         one file of the postscripts directory
    POST /xcat/agent/events                {"events": [...], "status": ..., "failed": ...}
    POST /xcat/agent/status                {"status": "configuring|booted|failed", ...}
    GET  /xcat/agent/credentials/<what>    remoteshell: root's public keys, host keys
    POST /xcat/agent/credentials/certificate  a new certificate for a new key
    GET  /xcat/agent/synclist              the node's synclist plan (JSON)
    GET  /xcat/agent/file?path=<path>      one file the node's synclist names
    GET  /xcat/agent/task?wait=<seconds>   the next updatenode task, or 204 (a long poll)
    POST /xcat/agent/task/<id>             a task's result
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import web

from xcatd.base.request import Request, Response, XcatError
from xcatd.daemon.policy import Identity
from xcatd.db.cluster import Cluster
from xcatd.fronts.https import IDENTITY, PIPELINE_KEY, POOL_KEY, json_error
from xcatd.provision.agenttasks import MAX_WAIT, board_for
from xcatd.provision.nodeidentity import check_node

log = logging.getLogger("xcatd.fronts.agentapi")

MAX_BODY = 1 << 20
CLIENT_WATCH = 0.5   # seconds between looks at a waiting poll's connection
STATUS = {"not_found": 404, "denied": 403, "busy": 503, "bad_request": 400}


def add_agent_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/xcat/agent/plan", handle_plan)
    r.add_get("/xcat/agent/script/{path:.+}", handle_script)
    r.add_post("/xcat/agent/events", handle_events)
    r.add_post("/xcat/agent/status", handle_events)
    r.add_get("/xcat/agent/credentials/{what}", handle_credentials)
    r.add_post("/xcat/agent/credentials/certificate", handle_renew)
    r.add_get("/xcat/agent/synclist", handle_synclist)
    r.add_get("/xcat/agent/file", handle_file)
    r.add_get("/xcat/agent/task", handle_task_poll)
    r.add_post("/xcat/agent/task/{id}", handle_task_result)


async def _run(request: web.Request, command: str, args: dict[str, Any]
               ) -> tuple[list[Response], web.Response | None]:
    """Run the node's command in a worker thread: (its responses, the HTTP error if any)."""
    who: Identity = request[IDENTITY]
    pipeline = request.app[PIPELINE_KEY]
    req = Request(command, args={"node": who.user, "certfp": who.cert, **args},
                  user=who.user, client=who.host)
    loop = asyncio.get_running_loop()
    out = await loop.run_in_executor(request.app[POOL_KEY],
                                     lambda: list(pipeline.stream(req, who)))
    failed = [r for r in out if r.error]
    if failed:
        status = STATUS.get(failed[0].kind or "", 500)
        if status == 403:
            log.warning("%s refused to %s at %s: %s", command, who.user, who.host,
                        failed[0].error)
        return out, json_error(status, failed[0].error or "failed")
    return out, None


def _obj(out: list[Response], key: str) -> Any:
    return next((r.obj[key] for r in out if r.obj and key in r.obj), None)


async def _read(request: web.Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (ValueError past it)."""
    chunks, size = [], 0
    while chunk := await request.content.read(65536):   # read(n) may return less than n
        size += len(chunk)
        if size > limit:
            raise ValueError(f"larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _body(request: web.Request) -> dict:
    try:
        raw = await asyncio.wait_for(_read(request, MAX_BODY), 30)
        body = json.loads(raw or b"{}")
    except (ValueError, TimeoutError) as exc:
        raise web.HTTPBadRequest(text=f"bad request body: {exc}\n") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object\n")
    return body


async def handle_plan(request: web.Request) -> web.StreamResponse:
    q = request.query
    args = {"mode": q.get("mode") or "boot"}
    if q.get("scripts"):
        args["scripts"] = q["scripts"]
    out, err = await _run(request, "getpostscript", args)
    return err or web.json_response(_obj(out, "plan"))


async def handle_script(request: web.Request) -> web.StreamResponse:
    out, err = await _run(request, "getpostscript", {"fetch": request.match_info["path"]})
    if err:
        return err
    got = _obj(out, "path")
    if not got:
        return json_error(404, "no such script")
    return web.FileResponse(got, headers={"Cache-Control": "no-store"})


async def handle_events(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    args: dict[str, Any] = {}
    if body.get("events") is not None:
        args["events"] = body["events"]
    if body.get("status") is not None:
        args["status"] = body["status"]
    if body.get("failed"):
        failed = body["failed"]
        args["failed"] = ",".join(map(str, failed)) if isinstance(failed, list) else failed
    out, err = await _run(request, "updatenodestat", args)
    return err or web.json_response({"ok": True,
                                     "warnings": [r.warning for r in out if r.warning]})


async def handle_credentials(request: web.Request) -> web.StreamResponse:
    out, err = await _run(request, "getcredentials", {"what": request.match_info["what"]})
    return err or web.json_response(_obj(out, "credentials"),
                                    headers={"Cache-Control": "no-store"})


async def handle_renew(request: web.Request) -> web.StreamResponse:
    """A new certificate for the PEM certificate request in the body (the current one
    proves the node; it stops working)."""
    try:
        csr = (await asyncio.wait_for(_read(request, 16384), 30)).decode("ascii")
    except (TimeoutError, ValueError):   # UnicodeDecodeError is a ValueError
        return json_error(400, "the body must be a PEM certificate request of at most "
                               "16 KiB")
    out, err = await _run(request, "getcredentials", {"what": "certificate", "csr": csr})
    return err or web.json_response(_obj(out, "credentials"),
                                    headers={"Cache-Control": "no-store"})


async def handle_synclist(request: web.Request) -> web.StreamResponse:
    out, err = await _run(request, "syncfiles", {})
    return err or web.json_response(_obj(out, "synclist"))


async def handle_file(request: web.Request) -> web.StreamResponse:
    path = request.query.get("path") or ""
    out, err = await _run(request, "syncfiles", {"path": path})
    if err:
        return err
    return web.FileResponse(_obj(out, "path"), headers={"Cache-Control": "no-store"})


async def handle_task_poll(request: web.Request) -> web.StreamResponse:
    """The agent's long poll: not a command (nothing happens until a task comes; the task is
    part of the updatenode job that sent it). The certificate is checked as in a command."""
    who: Identity = request[IDENTITY]
    try:
        wait = float(request.query.get("wait") or 25)
    except ValueError:
        return json_error(400, "wait must be a number of seconds")
    err = await _check(request, who)
    if err:
        return err
    board = board_for(request.app[PIPELINE_KEY].paths.root)
    poll = asyncio.ensure_future(board.poll(who.user, min(max(wait, 0.0), MAX_WAIT)))
    while not poll.done():   # a poll whose connection closed must not take a task
        await asyncio.wait({poll}, timeout=CLIENT_WATCH)
        if not poll.done() and _gone(request):
            poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll
            return web.Response(status=204)
    task = poll.result()
    if task is None:
        return web.Response(status=204)
    if _gone(request):
        board.requeue(task)
        return web.Response(status=204)
    return web.json_response(task.as_dict())


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def handle_task_result(request: web.Request) -> web.StreamResponse:
    who: Identity = request[IDENTITY]
    body = await _body(request)
    err = await _check(request, who)
    if err:
        return err
    board = board_for(request.app[PIPELINE_KEY].paths.root)
    if not board.complete(who.user, request.match_info["id"], body):
        return json_error(404, "no such task for this node")
    return web.json_response({"ok": True})


async def _check(request: web.Request, who: Identity) -> web.Response | None:
    """The certificate and address check of plugins/nodeagent.py, for the task paths (which
    are no commands): a refusal is logged."""
    pipeline = request.app[PIPELINE_KEY]

    def check() -> str | None:
        try:
            check_node(Cluster(pipeline.paths, pipeline.db, pipeline.site()), who.user,
                       who.cert, who.host)
        except XcatError as exc:
            return str(exc)
        return None

    why = await asyncio.get_running_loop().run_in_executor(request.app[POOL_KEY], check)
    if why:
        log.warning("agent task request of %s from %s refused: %s", who.user, who.host, why)
        return json_error(403, why)
    return None
