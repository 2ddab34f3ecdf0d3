"""What the HTTPS fronts share (the command protocol and REST, on one port): who is asking,
reading a JSON body within bounds, the application's keys, and the relay that carries a job's
responses from its worker thread to its connection as they come.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import pwd
import socket
import struct
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from xcatd.base.request import Request, Response, json_problem
from xcatd.daemon.pipeline import Pipeline
from xcatd.daemon.policy import Identity
from xcatd.daemon.relay import RELAY_ORIGIN, RELAY_PATH
from xcatd.db.jobs import Job
from xcatd.handler import NODE_ORIGIN
from xcatd.provision.nodereports import plain_ip
from xcatd.security.credentials import (
    MASTER_OU,
    NODE_OU,
    SN_OU,
    certificate_cn,
    certificate_ou,
)

AGENT_PREFIX = "/xcat/agent/"   # the node agent's paths (xcatd.fronts.agentapi)
JOIN_PREFIX = "/v1/snjoin"       # a service node joining (xcatd.fronts.snapi): no certificate
#: Identity.clienttype of a service node's own certificate calling this xcatd's API
SN_CLIENT = "servicenode"
MAX_REQUEST = 64 * 1024 * 1024   # a stanza file for 50,000 nodes fits
BODY_TIMEOUT = 30.0              # a request body must arrive within this

PIPELINE_KEY = web.AppKey("pipeline", Pipeline)
#: Who is asking, set by authenticate() on every request.
IDENTITY = web.RequestKey("identity", Identity) if hasattr(web, "RequestKey") else "identity"
POOL_KEY = web.AppKey("pool", ThreadPoolExecutor)
#: On a service node: who it is (xcatd.security.snjoin.SnIdentity); absent on the MN.
SN_KEY = web.AppKey("servicenode", object)
#: The relayed parts under way: {cancel event: leases} (a service node's heartbeat cancels
#: them when it finds it was silent too long, or their leases moved).
PARTS_KEY = web.AppKey("parts", dict)


# ---- who is asking -------------------------------------------------------------------------
_IDENTITIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def identify(request: web.Request) -> Identity | None:
    """The certificate CN on TCP, the peer's user on the unix socket; None if unknown.
    Worked out once per connection (a keep-alive client sends many requests)."""
    transport = request.transport
    if transport is None:
        return None
    try:
        return _IDENTITIES[transport]
    except (KeyError, TypeError):
        pass
    who = _identify(transport)
    if who is not None:
        with contextlib.suppress(TypeError):
            _IDENTITIES[transport] = who
    return who


def _identify(transport) -> Identity | None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family == socket.AF_UNIX:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        return Identity(user, "localhost", "unix")
    cert = transport.get_extra_info("peercert")
    cn = certificate_cn(cert)
    if not cn:
        return None
    peer = transport.get_extra_info("peername") or ("?",)
    ou = certificate_ou(cert)
    if ou == MASTER_OU:  # the management node relaying a request to this service node
        return Identity(cn, str(peer[0]), RELAY_ORIGIN)
    if ou == SN_OU:      # a service node calling its management node's API: never a user
        return Identity(f"{SN_CLIENT}:{cn}", str(peer[0]), SN_CLIENT)
    if ou == NODE_OU:  # a node's certificate: a node, whatever its CN
        der = transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return Identity(cn, plain_ip(str(peer[0])) or "?", NODE_ORIGIN,
                        hashlib.sha256(der).hexdigest())
    return Identity(cn, str(peer[0]), "cli")


def _peer(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return str((peer or ("?",))[0])


def json_error(status: int, message: str) -> web.Response:
    """The same error shape for the command protocol and the REST API."""
    return web.json_response({"error": message, "errors": [message]}, status=status)


@web.middleware
async def authenticate(request: web.Request, handler):
    who = identify(request)
    if request.path.startswith(JOIN_PREFIX):  # a joining service node proves a token
        request[IDENTITY] = who or Identity("", _peer(request), "join")
        return await handler(request)
    if who is not None and (who.clienttype == RELAY_ORIGIN) != (request.path == RELAY_PATH):
        return json_error(403, "the relay path is for the management node's relay "
                          "certificate, and that certificate is for the relay path only")
    if who is None:
        return json_error(401, "xcatd requires a client certificate signed by this management "
                               "node's CA (see xcatclientcert)")
    # a node's certificate opens the agent's paths only, and nothing else does
    if (who.clienttype == NODE_ORIGIN) != request.path.startswith(AGENT_PREFIX):
        return json_error(403, "a node certificate is for the node agent's requests only"
                          if who.clienttype == NODE_ORIGIN else
                          "the node agent's requests need the node's certificate")
    request[IDENTITY] = who
    return await handler(request)


async def read_json(request: web.Request):
    """The body as JSON, read within BODY_TIMEOUT: a client that stalls mid-body is dropped.
    JSON that parses but no request could hold (nested too deep, lone surrogates, numbers of
    thousands of digits) is a 400 here, before anything is made of it."""
    try:
        body = await asyncio.wait_for(request.json(), BODY_TIMEOUT)
    except TimeoutError:
        raise _json_http(web.HTTPRequestTimeout, "request body not received in time") from None
    except web.HTTPRequestEntityTooLarge as exc:
        message = f"request body larger than {MAX_REQUEST} bytes"
        raise web.HTTPRequestEntityTooLarge(
            MAX_REQUEST, exc.status and MAX_REQUEST + 1,
            text=json.dumps({"error": message, "errors": [message]}),
            content_type="application/json", headers={"Connection": "close"}) from None
    except (ConnectionResetError, asyncio.IncompleteReadError) as exc:
        raise _json_http(web.HTTPBadRequest, f"request body incomplete: {exc}") from None
    except RecursionError:  # JSON nested thousands deep: the parser's recursion ran out
        raise _json_http(web.HTTPBadRequest, "the request body is nested too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except ValueError as exc:  # an integer of more digits than Python converts
        raise _json_http(web.HTTPBadRequest,
                         f"the request body is not usable JSON: {str(exc)[:200]}") from None
    why = json_problem(body)
    if why:
        raise _json_http(web.HTTPBadRequest, f"the request body is unusable: {why}")
    return body


def _json_http(cls, message: str) -> web.HTTPException:
    """An HTTP error that closes the connection, with the JSON error body clients read."""
    return cls(text=json.dumps({"error": message, "errors": [message]}),
               content_type="application/json", headers={"Connection": "close"})


class Relay:
    """Responses from a job's thread to its connection: whatever has arrived goes out in one
    write, and the thread wakes the event loop once per batch, not once per response.

    A job outlives its connection, and may outlive the event loop too (xcatd stopping: the
    job is recorded interrupted and its thread is not waited for); once the loop has closed,
    what the job emits is dropped here (its record has it), never an error in its thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._items: list[Response] = []
        self._done = False
        self._code = 0
        self._wake_pending = False
        self._orphaned = False  # the loop has closed: nobody will take what comes
        self._event = asyncio.Event()

    def _notify(self) -> None:  # in the worker thread, with the lock held
        if self.loop.is_closed():
            self._orphan()
        elif not self._wake_pending:
            self._wake_pending = True
            try:
                self.loop.call_soon_threadsafe(self._event.set)
            except RuntimeError:  # "Event loop is closed": it closed just now
                self._orphan()

    def _orphan(self) -> None:
        self._orphaned = True
        self._items.clear()

    def emit(self, resp: Response) -> None:
        with self._lock:
            if self._orphaned:
                return
            self._items.append(resp)
            self._notify()

    def close(self, code: int) -> None:
        with self._lock:
            self._done, self._code = True, code
            if not self._orphaned:
                self._notify()

    @classmethod
    def start(cls, app: web.Application, job: Job, req: Request, who: Identity) -> Relay:
        """Run the job in the app's worker pool; its responses come through the relay."""
        relay = cls(asyncio.get_running_loop())
        pipeline = app[PIPELINE_KEY]

        def work() -> None:
            code = 1
            try:
                code = pipeline.run(job, req, who, relay.emit)
            finally:
                relay.close(code)

        app[POOL_KEY].submit(work)
        return relay

    async def take(self) -> tuple[list[Response], bool, int]:
        await self._event.wait()
        with self._lock:
            items, self._items = self._items, []
            self._event.clear()
            self._wake_pending = False
            return items, self._done, self._code


#: seconds between looks at a waiting job's connection
CLIENT_WATCH = 0.5


async def watch_client(request: web.Request, job) -> None:
    """Cancel the job when its client's connection closes, even while the job says nothing
    (it waits for BMCs that do not answer, or runs a command on nodes for hours)."""
    while True:
        await asyncio.sleep(CLIENT_WATCH)
        transport = request.transport
        if transport is None or transport.is_closing():
            job.cancel.set()
            return


def line(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


