"""How a command reaches the request pipeline: through xcatd, or in process with
``XCATBYPASS=1`` (root only; policy, audit and the job record apply all the same).

The daemon is found as xCAT's clients find it: ``XCATHOST`` (host:port) if set, else root on
the management node uses the daemon's unix socket, else localhost:3001. TLS to the daemon
carries the user's client certificate from ``~/.xcat``. The standard library's http.client
keeps a command's start-up short (no event loop, no async library).
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from collections.abc import Iterator

from xcatd.base.paths import Paths
from xcatd.base.request import Request, Response
from xcatd.security.credentials import client_files

DEFAULT_PORT = 3001
TIMEOUT = None  # a command may run for hours (nodes installing); the daemon bounds its waits


class ClientError(Exception):
    pass


def bypass() -> bool:
    return os.environ.get("XCATBYPASS", "").lower() in ("1", "yes", "true", "y")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self._path)
        self.sock = s


def _tls_context() -> ssl.SSLContext:
    files = client_files()
    if not files.ca.is_file():
        raise ClientError(f"No CA certificate at {files.ca}: ask the admin for a client "
                          "certificate (xcatclientcert)")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if files.cred.is_file():
        ctx.load_cert_chain(str(files.cred))
    return ctx


def target() -> tuple[str, object]:
    """('unix', path) or ('tcp', (host, port)): where this client sends requests."""
    xcathost = os.environ.get("XCATHOST")
    if xcathost:
        host, _, port = xcathost.rpartition(":") if ":" in xcathost else (xcathost, "", "")
        host = host.strip("[]") or "localhost"
        try:
            return "tcp", (host, int(port) if port else DEFAULT_PORT)
        except ValueError:
            raise ClientError(f"XCATHOST={xcathost!r} is not host:port") from None
    path = Paths().under("/var/run/xcat/xcatd.sock")
    if path.exists() and os.access(path, os.R_OK | os.W_OK):
        return "unix", str(path)
    return "tcp", ("localhost", DEFAULT_PORT)


def connection() -> tuple[http.client.HTTPConnection, str]:
    kind, where = target()
    if kind == "unix":
        return _UnixConnection(str(where)), f"unix socket {where}"
    host, port = where  # type: ignore[misc]
    return (http.client.HTTPSConnection(host, port, context=_tls_context(), timeout=TIMEOUT),
            f"{host}:{port}")


def submit(request: Request, *, async_: bool = False) -> Iterator[Response]:
    """Send a request and stream its responses (in process with XCATBYPASS=1)."""
    if bypass():
        if os.geteuid() != 0:
            yield Response(error="XCATBYPASS is for root: other users go through xcatd",
                           errorcode=1)
            return
        if async_:
            yield Response(error="--async needs the daemon (unset XCATBYPASS)", errorcode=1)
            return
        # the same pipeline as xcatd's (policy, audit, job record, locks), in this process.
        # Imported here: a command that goes to xcatd must not pay for importing the
        # database layer (start-up time is most of a CLI round trip, bench/daemon.py).
        from xcatd.daemon.pipeline import run_local
        yield from run_local(request)
        return
    try:
        yield from _remote(request, async_)
    except ClientError as exc:
        yield Response(error=str(exc), errorcode=1)


def _remote(request: Request, async_: bool) -> Iterator[Response]:
    conn, where = connection()
    body = json.dumps({"request": request.to_dict(), "async": async_}).encode()
    try:
        conn.request("POST", "/v1/request", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
    except ssl.SSLError as exc:
        raise ClientError(f"TLS with xcatd at {where} failed ({exc.reason or exc}): is "
                          "~/.xcat/client-cred.pem issued by this management node's CA?"
                          ) from None
    except OSError as exc:
        raise ClientError(f"Cannot connect to xcatd at {where}: {exc.strerror or exc} (is "
                          "xcatd running? root can use XCATBYPASS=1)") from None
    if resp.status != 200:
        try:
            message = json.loads(resp.read() or b"{}").get("error") or resp.reason
        except ValueError:
            message = resp.reason
        raise ClientError(f"xcatd: {message}")
    ended = False
    try:
        for raw in resp:
            record = json.loads(raw)
            if "r" in record:
                yield Response.from_dict(record["r"])
            elif "end" in record:
                ended = True
                end = record["end"]
                if end.get("async"):
                    yield Response(data=end["job"])
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise ClientError(f"Lost the connection to xcatd at {where}: {exc}") from None
    finally:
        conn.close()
    if not ended:
        raise ClientError(f"xcatd at {where} closed the connection before the end of the "
                          "request; its job may still be running (see 'job list')")
