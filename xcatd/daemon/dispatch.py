"""Dispatch: the last step of the pipeline. Route a Request to its handler, expand its
noderange, hold the locks of the nodes it changes, stream the handler's Responses.

Every handler sees the same node set and the same error for a bad noderange, and every
exception becomes an error Response with its kind, so one failure never becomes a traceback
on the admin's terminal, and a front answers by kind (xcatd.base.request.ErrorKind).
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

from xcatd.base.locks import LockTimeout, NodeLocks
from xcatd.base.noderange import InvalidNodes, NodeRange, NodeRangeError
from xcatd.base.regexval import RegexValueError
from xcatd.base.request import ErrorKind, Request, Response, XcatError
from xcatd.base.site import SiteValueError
from xcatd.db.database import DBError
from xcatd.handler import NODE_ORIGIN, CommandSpec, Context

log = logging.getLogger("xcatd.daemon.dispatch")

DEFAULT_LOCK_TIMEOUT = 120.0


def error(message: str, kind: ErrorKind, node: str | None = None) -> Response:
    return Response(node=node, error=message, errorcode=1, kind=kind.value)


def dispatch(spec: CommandSpec | None, request: Request, ctx: Context, *, locks: NodeLocks,
             owner: str | None = None, cancel: threading.Event | None = None,
             origin: str = "cli") -> Iterator[Response]:
    """Run one request in this thread and yield its responses as they come.

    A request that changes nodes holds their locks (all at once, bounded wait) while it
    runs; read-only requests never wait. ``cancel`` stops it between two responses.
    """
    if spec is None:
        yield error(f"Unsupported command: {request.command}", ErrorKind.BAD_REQUEST)
        return
    if spec.origin == NODE_ORIGIN and origin != NODE_ORIGIN:
        yield error(f"{request.command} is for nodes reporting about themselves, through "
                    "the node API", ErrorKind.DENIED)
        return
    try:
        nodes: NodeRange | None = None
        if spec.noderange != "none" and request.noderange:
            nodes = ctx.expand(request.noderange, verify=spec.noderange != "new")
            if not nodes:  # an empty group, an empty intersection: say so, do nothing
                yield error(f"The noderange '{request.noderange}' contains no nodes",
                            ErrorKind.NOT_FOUND)
                return
        elif spec.noderange in ("required", "new"):
            yield error(f"{request.command}: a noderange is required", ErrorKind.BAD_REQUEST)
            return
        held: set[str] = set()
        if spec.changes_nodes(request):
            target = nodes if nodes is not None else (
                spec.lock_nodes(request, ctx) if spec.lock_nodes else None)
            held = set(target.names) if target else set()
        owner = owner or f"{request.command} (pid {os.getpid()}, {id(request):x})"
        timeout = spec.lock_timeout or ctx.site.number("nodelocktimeout",
                                                       DEFAULT_LOCK_TIMEOUT, low=0)
        with locks.hold(held, owner, timeout) as waited:
            if waited > 0.5:
                yield Response(warning=f"waited {waited:.1f}s for nodes another request was "
                                       "changing")
            result = spec.handler(request, ctx, nodes)
            if result is not None:
                for resp in result:
                    yield resp
                    if cancel is not None and cancel.is_set():
                        close = getattr(result, "close", None)
                        if close:
                            close()
                        yield error("cancelled", ErrorKind.CONFLICT)
                        return
    except XcatError as exc:
        yield exc.response()
    except InvalidNodes as exc:
        yield error(str(exc), ErrorKind.NOT_FOUND)
    except LockTimeout as exc:
        yield error(str(exc), ErrorKind.BUSY)
    except (NodeRangeError, RegexValueError) as exc:
        yield error(str(exc), ErrorKind.BAD_REQUEST)
    except SiteValueError as exc:
        yield error(str(exc), ErrorKind.CONFLICT)
    except DBError as exc:
        yield error(str(exc), getattr(exc, "kind", ErrorKind.BAD_REQUEST))
    except sa_exc.IntegrityError as exc:
        yield error(f"{request.command}: a row with that key exists already or a key is "
                    f"missing ({_first_line(exc.orig)})", ErrorKind.CONFLICT)
    except sa_exc.DBAPIError as exc:  # the driver's message, never the statement's values
        log.error("%s failed: %s", request.command, _first_line(exc.orig))
        yield error(f"{request.command}: database error: {_first_line(exc.orig)}",
                    ErrorKind.INTERNAL)
    except Exception as exc:  # report, never crash the caller
        log.exception("%s failed", request.command)
        yield error(f"{request.command}: internal error: {exc.__class__.__name__}: {exc}",
                    ErrorKind.INTERNAL)


def _first_line(exc: BaseException | None) -> str:
    return (str(exc) or exc.__class__.__name__).splitlines()[0] if exc else "unknown"
