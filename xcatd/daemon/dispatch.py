"""Dispatch: the last step of the pipeline. Route a Request to its handler, expand its
noderange, hold the locks of the nodes it changes, stream the handler's Responses.

Every handler sees the same node set and the same error for a bad noderange, and every
exception becomes an error Response with its kind, so one failure never becomes a traceback
on the admin's terminal, and a front answers by kind (xcatd.base.request.ErrorKind).

Admin locks are kept here too, once for every command and front: a request that changes
nodes (its spec's ``writes``) is refused, one error line per node, for the nodes whose
``locked`` attribute (nodelock.locked, inherited from groups like any attribute) is yes, and
goes on with the rest. The one change a locked node takes is to its lock alone
(``chdef n1 locked=no``); queries and the nodes' own reports never look at it.

>>> lock_change_only(Request("chdef", args={"objects": "n1", "attributes": {"locked": "no"}}))
True
>>> lock_change_only(Request("chdef", args={"attributes": {"locked": "no", "groups": "a"}}))
False
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

from xcatd.base import cancel as cancelling
from xcatd.base.locks import LockTimeout, NodeLocks
from xcatd.base.noderange import InvalidNodes, NodeRange, NodeRangeError, natural_key
from xcatd.base.patterns import PatternError
from xcatd.base.regexval import RegexValueError
from xcatd.base.request import ErrorKind, Request, Response, XcatError
from xcatd.base.site import SiteValueError
from xcatd.daemon import relay
from xcatd.db.database import DBError
from xcatd.handler import NODE_ORIGIN, CommandSpec, Context, check_args
from xcatd.handler import spec as command_spec

log = logging.getLogger("xcatd.daemon.dispatch")

DEFAULT_LOCK_TIMEOUT = 120.0
#: Seconds a request that only reads may run (site.requesttimeout), checked between two of
#: its responses.
DEFAULT_REQUEST_TIMEOUT = 3600.0


#: Characters of an error message: an error that quotes its input (a 10 MB argument, a
#: million bad node names) is cut, in the answer and in the job record alike.
MAX_ERROR = 2000


def error(message: str, kind: ErrorKind, node: str | None = None) -> Response:
    return Response(node=node, error=message, errorcode=1, kind=kind.value)


def bounded(resp: Response) -> Response:
    """``resp`` with its error or warning cut to MAX_ERROR characters, saying so."""
    for field in ("error", "warning"):
        text = getattr(resp, field)
        if text is not None and len(text) > MAX_ERROR:
            setattr(resp, field, f"{text[:MAX_ERROR]}... ({len(text) - MAX_ERROR:,} more "
                                 "characters)")
    return resp


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
    # the relay's own arguments (--retry; makedhcp's release from a former service node),
    # never the handler's
    retry, release = request.args.get("retry", False), request.args.get("release")
    if spec.name in relay.RELAYED and ("retry" in request.args or "release" in request.args):
        if not isinstance(retry, bool):
            yield error(f"{request.command}: argument 'retry' must be true or false",
                        ErrorKind.BAD_REQUEST)
            return
        if release is not None and (spec.name not in relay.RELEASED
                                    or not isinstance(release, str)):
            yield error(f"{request.command}: argument 'release' must name a service node "
                        f"(makedhcp -d only)", ErrorKind.BAD_REQUEST)
            return
        request = dataclasses.replace(request, args={k: v for k, v in request.args.items()
                                                     if k not in ("retry", "release")})
    why = request.problem() or check_args(spec, request.args) or _bad_lock_value(request)
    if why:
        yield error(why, ErrorKind.BAD_REQUEST)
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
        target: NodeRange | None = None
        if spec.changes_nodes(request):
            target = nodes if nodes is not None else (
                spec.lock_nodes(request, ctx) if spec.lock_nodes else None)
            held = set(target.names) if target else set()
        owner = owner or f"{request.command} (pid {os.getpid()}, {id(request):x})"
        timeout = spec.lock_timeout or ctx.site.number("nodelocktimeout",
                                                       DEFAULT_LOCK_TIMEOUT, low=0)
        limit = None if held or spec.changes_nodes(request) else \
            ctx.site.number("requesttimeout", DEFAULT_REQUEST_TIMEOUT, low=0.01)
        deadline = time.monotonic() + limit if limit else None
        with locks.hold(held, owner, timeout) as waited, cancelling.bound(cancel):
            if waited > 0.5:
                yield Response(warning=f"waited {waited:.1f}s for nodes another request was "
                                       "changing")
            if spec.changes_nodes(request) and origin != NODE_ORIGIN:
                refused, narrowed, nodes = refuse_locked(request, ctx, nodes, target)
                yield from refused
                if narrowed is None:
                    return
                request = narrowed
            if relay.relayed(spec, nodes, origin):  # split by service node
                result = relay.run(spec, request, ctx, nodes, retry=retry, cancel=cancel,
                                   release=release)
            else:
                result = spec.handler(request, ctx, nodes)
            if result is not None:
                for resp in result:
                    yield resp
                    stop = None
                    if cancel is not None and cancel.is_set():
                        stop = error("cancelled", ErrorKind.CONFLICT)
                    elif deadline is not None and time.monotonic() > deadline:
                        stop = error(f"{request.command} ran longer than site.requesttimeout "
                                     f"({limit:g} s) allows a request that only reads: "
                                     "stopped", ErrorKind.BUSY)
                    if stop is not None:
                        close = getattr(result, "close", None)
                        if close:
                            close()
                        yield stop
                        return
        for follow in _followups(ctx):  # after the locks are let go: they take their own
            follow = dataclasses.replace(follow, user=request.user, client=request.client)
            yield from dispatch(command_spec(follow.command), follow,
                                Context(follow, ctx.paths, ctx.db, ctx.site, jobs=ctx.jobs,
                                        daemon=ctx.daemon),
                                locks=locks, owner=owner, cancel=cancel, origin=origin)
    except XcatError as exc:
        yield exc.response()
    except InvalidNodes as exc:
        yield error(str(exc), ErrorKind.NOT_FOUND)
    except LockTimeout as exc:
        yield error(str(exc), ErrorKind.BUSY)
    except (NodeRangeError, RegexValueError, PatternError) as exc:
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


def _followups(ctx: Context) -> Iterator[Request]:
    for f in ctx.followups:
        yield from (f() if callable(f) else [f])


# ---- admin locks ---------------------------------------------------------------------------
#: Values of ``locked`` (nodelock.locked) that lock a node; LOCK_VALUES are all it takes.
LOCKED = ("yes", "y", "1", "true")
LOCK_VALUES = (*LOCKED, "no", "n", "0", "false", "")


def admin_locked(ctx: Context, names: list[str]) -> dict[str, str]:
    """The locked nodes among ``names``: node -> where its lock is set (the node, or the
    group it inherits it from). One read of nodelock, whatever the number of nodes."""
    if not names:
        return {}
    values = ctx.db.resolve(names, {"nodelock": ["locked"]}, blame=True,
                            groups=ctx.node_groups_if_loaded(names))
    out = {}
    for node, v in values.items():
        value, source = v.get(("nodelock", "locked"), ("", node))
        if str(value).strip().lower() in LOCKED:
            out[node] = source
    return out


def lock_change_only(request: Request) -> bool:
    """Whether a request changes nothing but the lock: chdef of ``locked`` alone (no rename,
    stanza, -p/-m or dynamic group), the one change a locked node accepts. chdef's plugin
    knows nothing of locks; its arguments say it (the REST object path sends the same)."""
    a = request.args
    attrs = a.get("attributes")
    return (request.command == "chdef" and isinstance(attrs, dict) and set(attrs) == {"locked"}
            and not any(a.get(k) for k in ("newname", "stanza", "plus", "minus", "dynamic")))


def _bad_lock_value(request: Request) -> str | None:
    attrs = request.args.get("attributes")
    if isinstance(attrs, dict) and isinstance(attrs.get("locked"), str) \
            and attrs["locked"].strip().lower() not in LOCK_VALUES:
        return f"locked takes yes or no, not '{attrs['locked'][:40]}'"
    return None


def refuse_locked(request: Request, ctx: Context, nodes: NodeRange | None,
                  target: NodeRange | None
                  ) -> tuple[list[Response], Request | None, NodeRange | None]:
    """A changing request's refusals (one per locked node it addresses) and the request
    narrowed to the other nodes: its expanded noderange, else the node names of its own
    arguments (``objects``, else ``noderange``). (refusals, None, None) when no node is
    left, or when the request addresses every node (``all``) and cannot be narrowed."""
    if lock_change_only(request):
        return [], request, nodes
    if target is not None:
        names = target.sorted()
    elif request.args.get("all") is True:  # rmdef -a -f, makedhcp -d -a: every node
        names = sorted(ctx.all_nodes(), key=natural_key)
    else:
        return [], request, nodes
    locked = admin_locked(ctx, names)
    if not locked:
        return [], request, nodes
    refused = [_refusal(request.command, n, locked[n]) for n in names if n in locked]
    if target is None:
        refused.append(error(f"{request.command} -a refused: {len(locked)} locked node(s)",
                             ErrorKind.CONFLICT))
        return refused, None, None
    rest = [n for n in names if n not in locked]
    if not rest:
        return refused, None, None
    if nodes is not None:
        return refused, request, nodes - list(locked)
    text = ",".join(rest)
    if request.args.get("objects"):
        return refused, dataclasses.replace(request, args={**request.args, "objects": text}), None
    return refused, dataclasses.replace(request, noderange=text), None


def _refusal(command: str, node: str, source: str) -> Response:
    how = (f"chdef {node} locked=no" if source == node
           else f"chdef -t group {source} locked=no")
    by = "" if source == node else f" by its group {source}"
    return error(f"{command} refused: the node is locked{by} ({how} unlocks it)",
                 ErrorKind.CONFLICT, node)


def _first_line(exc: BaseException | None) -> str:
    return (str(exc) or exc.__class__.__name__).splitlines()[0] if exc else "unknown"
