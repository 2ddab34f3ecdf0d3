"""Dispatch: route a Request to the plugin that handles its command, stream its Responses.

Plugins register handlers with ``@command``; third-party plugins add modules through the
``pyxcat.plugins`` entry-point group. The dispatcher expands the noderange (so every plugin
sees the same node set and the same error for a bad one) and turns exceptions into error
responses, so one failure never becomes a traceback on the admin's terminal.
"""
from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from sqlalchemy import exc as sa_exc

from xcatd.base.paths import Paths
from xcatd.db.database import Database, DBError, split_list
from xcatd.base.locks import LockTimeout, NodeLocks
from xcatd.base.noderange import NodeRangeError, NodeRange, expand
from xcatd.base.regexval import RegexValueError
from xcatd.base.request import Request, Response, XcatError

log = logging.getLogger("xcatd.daemon.dispatch")

BUILTIN_PLUGINS = ("xcatd.plugins.tabutils", "xcatd.plugins.nodes", "xcatd.plugins.defs",
                   "xcatd.plugins.jobs", "xcatd.plugins.hosts", "xcatd.plugins.networks",
                   "xcatd.plugins.dhcp", "xcatd.plugins.dns", "xcatd.plugins.hwctl",
                   "xcatd.plugins.copycds", "xcatd.plugins.nodeset", "xcatd.plugins.hwinfo")

Handler = Callable[["Request", "Context", NodeRange | None], Iterable[Response]]


@dataclass(frozen=True)
class CommandSpec:
    name: str
    handler: Handler
    noderange: str  # "required", "optional", "new" (names need not exist) or "none"
    #: Whether the request changes nodes (and takes their locks); a function of the request
    #: for commands such as rpower, where "stat" only reads.
    writes: bool | Callable[[Request], bool]
    #: The nodes a request addresses when they come from its own arguments (chdef -o ...,
    #: the REST object path): writers lock them, and policy noderanges judge them.
    lock_nodes: Callable[[Request, Context], NodeRange | None] | None = None


_REGISTRY: dict[str, CommandSpec] = {}
_loaded = False


def command(name: str, *, noderange: str = "none",
            writes: bool | Callable[[Request], bool] = False,
            lock_nodes: Callable[[Request, Context], NodeRange | None] | None = None
            ) -> Callable[[Handler], Handler]:
    """Register a plugin function as the handler of ``name``."""
    if noderange not in ("required", "optional", "new", "none"):
        raise ValueError(noderange)

    def deco(fn: Handler) -> Handler:
        _REGISTRY[name] = CommandSpec(name, fn, noderange, writes, lock_nodes)
        return fn

    return deco


def load_plugins() -> dict[str, CommandSpec]:
    global _loaded
    if not _loaded:
        for mod in BUILTIN_PLUGINS:
            importlib.import_module(mod)
        for ep in entry_points(group="pyxcat.plugins"):
            try:
                ep.load()
            except Exception:  # a broken third-party plugin must not take the rest down
                log.exception("cannot load plugin %s", ep.name)
        _loaded = True
    return _REGISTRY


class Context:
    """What a handler may use: the database, the paths, and noderange expansion.

    It also answers the noderange module's questions about the cluster (groups, selectors,
    site.excludenodes), reading each table at most once per request.
    """

    def __init__(self, request: Request, paths: Paths | None = None,
                 db: Database | None = None, site: dict[str, str] | None = None) -> None:
        self.request = request
        self.service: Any = None  # the daemon's Service, when running inside xcatd
        self.paths = paths or Paths()
        self.db = db or Database.open(self.paths)
        self.db.check_ready()
        self._nodes: set[str] | None = None
        self._groups: dict[str, list[str]] | None = None
        self._node_groups: dict[str, list[str]] | None = None
        self._some_groups: dict[str, list[str]] = {}
        self._nodegroups: dict[str, dict] | None = None
        self._site: dict[str, str] | None = site

    # cluster facts, cached for the request
    @property
    def site(self) -> dict[str, str]:
        if self._site is None:
            self._site = self.db.site()
        return self._site

    def all_nodes(self) -> set[str]:
        if self._nodes is None:
            self._load_nodelist()
        return self._nodes  # type: ignore[return-value]

    def known_nodes(self, names: set[str]) -> set[str]:
        if self._nodes is not None:
            return names & self._nodes
        rows = self.db.rows("nodelist", keys=names)
        for r in rows:  # keep their groups: resolving their attributes needs them next
            self._some_groups[r["node"]] = split_list(r["groups"])
        return {r["node"] for r in rows}

    def node_groups_if_loaded(self, nodes: Iterable[str] | None = None
                              ) -> dict[str, list[str]] | None:
        """Groups of ``nodes`` if this request has read them already, else None."""
        if self._node_groups is not None:
            return self._node_groups
        if nodes is not None and self._some_groups:
            some = self._some_groups
            if all(n in some for n in nodes):
                return some
        return None

    def node_groups(self) -> dict[str, list[str]]:
        """Every node's groups (nodelist.groups), read once per request."""
        if self._node_groups is None:
            self._load_nodelist()
        return self._node_groups  # type: ignore[return-value]

    def _load_nodelist(self) -> None:
        groups = self._node_groups = self.db.node_groups()
        self._nodes = set(groups)
        self._groups = {}
        for node, gl in groups.items():
            for g in gl:
                self._groups.setdefault(g, []).append(node)

    def group_members(self, name: str) -> set[str] | None:
        if self._nodegroups is None:
            self._nodegroups = {r["groupname"]: r for r in self.db.rows("nodegroup")}
        row = self._nodegroups.get(name)
        if row is not None and (row.get("grouptype") or "") == "dynamic":
            from xcatd.db.objects import ObjectStore
            with self.db.connect() as conn:
                return ObjectStore(self.db, conn).dynamic_members(row.get("wherevals") or "")
        if self._groups is not None:
            members = self._groups.get(name)
        else:  # only the rows that can name the group, not the whole nodelist
            from xcatd.db.database import SA_TABLES, split_list
            t = SA_TABLES["nodelist"]
            like = "%" + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self.db.rows("nodelist", where=t.c.groups.like(like, escape="\\"))
            members = [r["node"] for r in rows if name in split_list(r["groups"])]
        if members:
            return set(members)
        if row is not None:
            return set()  # a defined group with no members
        return None

    def select_nodes(self, attr: str, op: str, value: str) -> set[str]:
        from xcatd.db.objects import ObjectStore
        with self.db.connect() as conn:
            return ObjectStore(self.db, conn).select_nodes(self.all_nodes(), attr,
                                                           "==" if op == "=" else op, value)

    def excludenodes(self) -> str | None:
        return self.site.get("excludenodes")

    def expand(self, noderange: str, *, verify: bool = True) -> NodeRange:
        # ^file is read with the daemon's rights: only root's requests may name one (the
        # commands inline files on the client, with the user's own rights)
        return expand(noderange, self, verify=verify, env=self.request.env,
                      allow_files=self.request.user == "root")


#: Locks of requests run in this process (XCATBYPASS); the daemon passes its own.
_LOCAL_LOCKS = NodeLocks()
DEFAULT_LOCK_TIMEOUT = 120.0


def dispatch(request: Request, paths: Paths | None = None, *, locks: NodeLocks | None = None,
             owner: str | None = None, cancel: threading.Event | None = None,
             service: Any = None, site: dict[str, str] | None = None,
             db: Database | None = None) -> Iterator[Response]:
    """Run one request in this thread and yield its responses as they come.

    A request that changes nodes holds their locks (all at once, bounded wait) while it
    runs; read-only requests never wait. ``cancel`` stops it between two responses.
    """
    spec = load_plugins().get(request.command)
    if spec is None:
        yield Response(error=f"Unsupported command: {request.command}", errorcode=1)
        return
    try:
        ctx = Context(request, paths, db=db, site=site)
        ctx.service = service
        nodes: NodeRange | None = None
        if spec.noderange != "none" and request.noderange:
            nodes = ctx.expand(request.noderange, verify=spec.noderange != "new")
            if not nodes:  # an empty group, an empty intersection: say so, do nothing
                yield Response(error=f"The noderange '{request.noderange}' contains no nodes",
                               errorcode=1)
                return
        elif spec.noderange in ("required", "new"):
            yield Response(error=f"{request.command}: a noderange is required", errorcode=1)
            return
        held: set[str] = set()
        if spec.writes(request) if callable(spec.writes) else spec.writes:
            target = nodes if nodes is not None else (
                spec.lock_nodes(request, ctx) if spec.lock_nodes else None)
            held = set(target.names) if target else set()
        locks = locks or _LOCAL_LOCKS
        owner = owner or f"{request.command} (pid {os.getpid()}, {id(request):x})"
        timeout = _lock_timeout(ctx)
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
                        yield Response(error="cancelled", errorcode=1)
                        return
    except XcatError as exc:
        yield Response(node=exc.node, error=str(exc), errorcode=exc.errorcode)
    except (NodeRangeError, DBError, RegexValueError, LockTimeout) as exc:
        yield Response(error=str(exc), errorcode=1)
    except sa_exc.IntegrityError as exc:
        yield Response(error=f"{request.command}: a row with that key exists already or a "
                             f"key is missing ({_first_line(exc.orig)})", errorcode=1)
    except sa_exc.DBAPIError as exc:  # the driver's message, never the statement's values
        log.error("%s failed: %s", request.command, _first_line(exc.orig))
        yield Response(error=f"{request.command}: database error: {_first_line(exc.orig)}",
                       errorcode=1)
    except Exception as exc:  # report, never crash the caller
        log.exception("%s failed", request.command)
        yield Response(error=f"{request.command}: internal error: {exc.__class__.__name__}: "
                             f"{exc}", errorcode=1)


def _first_line(exc: BaseException | None) -> str:
    return (str(exc) or exc.__class__.__name__).splitlines()[0] if exc else "unknown"


def _lock_timeout(ctx: Context) -> float:
    try:
        return float(ctx.site.get("nodelocktimeout") or DEFAULT_LOCK_TIMEOUT)
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT
