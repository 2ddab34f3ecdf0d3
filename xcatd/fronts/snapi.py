"""Where a service node joins the management node (xcatd.security.snjoin). These paths need
no client certificate: the CA certificate is public, and a join proves itself with its
one-time token.

    GET  /v1/snjoin/ca    the CA certificate (PEM)
    POST /v1/snjoin       {"token", "name", "csr", "names": [...], "dbhost"?}
                          -> {"cert", "ca", "dburl"}
"""
from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import socket

from aiohttp import web
from sqlalchemy.engine import make_url

from xcatd.base.request import ErrorKind, XcatError
from xcatd.daemon.pipeline import Pipeline
from xcatd.db import servicenodes
from xcatd.db.cluster import Cluster
from xcatd.db.errors import DBError
from xcatd.db.pgroles import check_join_ready, scoped_role
from xcatd.fronts.https import IDENTITY, PIPELINE_KEY, POOL_KEY, SN_CLIENT, json_error, read_json
from xcatd.provision.nodeidentity import issue
from xcatd.security.credentials import (
    CSRError,
    ca_pem,
    csr_public_key,
    issue_servicenode_cert,
    server_names,
)
from xcatd.security.snjoin import SIGN_PATH, JoinError, check_address, check_name, redeem

log = logging.getLogger("xcatd.fronts.snapi")

PREFIX = "/v1/snjoin"
MAX_BODY = 64 * 1024
MAX_NAMES = 32


def add_snjoin_routes(app: web.Application) -> None:
    app.router.add_get(PREFIX + "/ca", handle_ca)
    app.router.add_post(PREFIX, handle_join)
    app.router.add_post(SIGN_PATH, handle_sign)


async def handle_sign(request: web.Request) -> web.Response:
    """A service node asks for the certificate of a node that enrolled with it (it holds no
    CA key): signed here only for a node it serves, recorded as the node's only accepted
    certificate, audited in the service node's name."""
    who = request[IDENTITY]
    if who.clienttype != SN_CLIENT:
        return json_error(403, "only a service node's certificate signs its nodes' requests")
    sn = who.user.removeprefix(f"{SN_CLIENT}:")
    try:
        body = await read_json(request)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return json_error(400, "the request body is not valid JSON")
    node, csr, extra = (body.get(k) for k in ("node", "csr", "extra")) \
        if isinstance(body, dict) else (None, None, None)
    if not isinstance(node, str) or not isinstance(csr, str) or not isinstance(extra, dict) \
            or set(extra) - {"enrolhash"} or not all(isinstance(v, str) for v in extra.values()):
        return json_error(400, 'expected {"node": NAME, "csr": PEM, "extra": {...}}')
    pipeline = request.app[PIPELINE_KEY]

    def sign() -> dict:
        cluster = Cluster(pipeline.paths, pipeline.db)
        if servicenodes.still_served(pipeline.db, sn, [node]) != [node]:
            raise XcatError(f"{sn} does not serve {node}", kind=ErrorKind.DENIED)
        got = issue(cluster, node, csr.encode(), extra)
        pipeline.jobs.audit({
            "audittime": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            "userid": who.user, "clientname": who.host, "clienttype": SN_CLIENT,
            "command": "snsign", "noderange": node, "args": "", "status": "Allowed",
            "comments": f"node certificate of {node}, enrolled through {sn}"})
        return got

    try:
        got = await asyncio.get_running_loop().run_in_executor(request.app[POOL_KEY], sign)
    except XcatError as exc:
        return json_error(403 if exc.kind == ErrorKind.DENIED else 400, str(exc))
    return web.json_response(got)


async def handle_ca(request: web.Request) -> web.Response:
    paths = request.app[PIPELINE_KEY].paths
    return web.Response(body=ca_pem(paths), content_type="application/x-pem-file")


async def handle_join(request: web.Request) -> web.Response:
    if (request.content_length or 0) > MAX_BODY:
        return json_error(400, f"join request larger than {MAX_BODY} bytes")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        return json_error(400, f"join request larger than {MAX_BODY} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return json_error(400, "the join request is not JSON")
    if not isinstance(body, dict):
        return json_error(400, "the join request is not a JSON object")
    peer = (request.transport.get_extra_info("peername") or ("?",))[0] \
        if request.transport else "?"
    loop = asyncio.get_running_loop()
    try:
        answer = await loop.run_in_executor(request.app[POOL_KEY], join_here,
                                            request.app[PIPELINE_KEY], body, str(peer))
    except JoinError as exc:
        log.warning("service node join from %s refused: %s", peer, exc)
        return json_error(exc.status, str(exc))
    return web.json_response(answer)


def _fields(body: dict) -> tuple[str, str, bytes, list[str], str | None]:
    token, name, csr = body.get("token"), body.get("name"), body.get("csr")
    names, dbhost = body.get("names", []), body.get("dbhost")
    for field, value in (("token", token), ("name", name), ("csr", csr)):
        if not isinstance(value, str) or not value:
            raise JoinError(f"the join request has no {field}")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise JoinError("names must be a list of addresses and host names")
    if len(names) > MAX_NAMES:
        raise JoinError(f"at most {MAX_NAMES} names")
    check_name(name)
    for n in names:
        check_address(n, "name")
    if dbhost is not None:
        if not isinstance(dbhost, str):
            raise JoinError("dbhost must be a host name or address")
        check_address(dbhost, "dbhost")
    return token, name, csr.encode(), names, dbhost


def _taken_names(pipeline: Pipeline, name: str) -> set[str]:
    """The names a joining service node's certificate may not carry (lower case): the
    management node's (its certificate's, site.master, this host's) and the other service
    nodes' (their names and heartbeat addresses)."""
    taken = {n.lower() for n in server_names(pipeline.paths)}
    taken |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    master = pipeline.db.site().get("master")
    if master:
        taken.add(master.lower())
    for r in pipeline.db.rows("snstatus"):
        if r["node"] != name:
            taken |= {str(r["node"]).lower(), str(r.get("address") or "").lower()} - {""}
    taken |= {sn.lower() for sn in servicenodes.in_use(pipeline.db) if sn != name}
    return taken


def _canonical(name: str) -> str:
    """A name as a certificate means it: an address in its one written form (::1, not
    0:0:0:0:0:0:0:1), a host name in lower case."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower().rstrip(".")


def join_here(pipeline: Pipeline, body: dict, peer: str) -> dict:
    """The management node's side of a join, in a worker thread: the token checked, the
    database ready, then the token used up, the certificate signed, the role made."""
    token, name, csr, names, dbhost = _fields(body)
    paths, db = pipeline.paths, pipeline.db
    try:
        csr_public_key(csr)
    except CSRError as exc:
        raise JoinError(f"Invalid signing request: {exc}") from None
    redeem(paths, name, token, consume=False)  # (nothing below for a caller without one)
    taken = {_canonical(n) for n in _taken_names(pipeline, name)}
    clash = [n for n in [name, *names] if _canonical(n) in taken]
    if clash:
        raise JoinError(f"A service node's certificate cannot name {', '.join(clash)}: the "
                        "management node or another service node goes by it")
    try:
        check_join_ready(db)
    except DBError as exc:
        raise JoinError(str(exc)) from None
    redeem(paths, name, token)
    cert = issue_servicenode_cert(paths, name, csr, names)
    try:
        role, password = scoped_role(db, name)
    except DBError as exc:
        raise JoinError(str(exc)) from None
    url = make_url(db.url).set(username=role, password=password)
    if dbhost:
        url = url.set(host=dbhost)
    pipeline.jobs.audit({
        "audittime": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        "userid": name, "clientname": peer, "clienttype": "servicenode",
        "command": "snjoin", "noderange": name, "args": " ".join(names)[:1024],
        "status": "Allowed",
        "comments": f"service node {name} joined (database role {role})"})
    pipeline.jobs.flush()
    log.info("service node %s joined from %s", name, peer)
    return {"cert": cert.decode(), "ca": ca_pem(paths).decode(),
            "dburl": url.render_as_string(hide_password=False)}
