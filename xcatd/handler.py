"""What a command handler is: how it registers, and what it is given.

A plugin module registers handlers with ``@command``. The ``pyxcat.commands`` entry-point
group maps each command name to the module that handles it (setup.cfg lists the built-in
ones), so the core never names a plugin, a third party adds commands by installing a
package, and a command run in process loads only its own plugin. A handler gets the
Request, a Context (the cluster as this request sees it) and the expanded noderange, and
yields Responses; it never parses argv, opens its own database connection or prints.

>>> spec = CommandSpec("rpower", lambda r, c, n: [], "required",
...                    writes=lambda r: r.args.get("action") != "stat")
>>> spec.changes_nodes(Request("rpower", "n1", {"action": "stat"}))
False
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from xcatd.base.noderange import NodeRange
from xcatd.base.paths import Paths
from xcatd.base.request import ErrorKind, Request, Response, XcatError, denied
from xcatd.base.site import SiteValues
from xcatd.db.cluster import Cluster
from xcatd.db.database import Database
from xcatd.db.objects import node_column
from xcatd.tables import is_secret

log = logging.getLogger("xcatd.handler")

COMMAND_GROUP = "pyxcat.commands"

Handler = Callable[[Request, "Context", NodeRange | None], Iterable[Response] | None]

#: Fronts a request can come through (Identity.clienttype): the command protocol ("cli",
#: "unix"), XCATBYPASS ("bypass"), REST ("rest"), the node API ("node") and calls made by
#: the toolkit itself ("internal").
NODE_ORIGIN = "node"


# ---- argument types: what a command declares it takes ----------------------------------
@dataclass(frozen=True)
class Arg:
    """One type of argument: how an error names it, and the check of a value (None, an
    unset argument, is always accepted)."""

    name: str
    check: Callable[[Any], bool]

    def accepts(self, value: Any) -> bool:
        return value is None or self.check(value)


def _strings(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


TEXT = Arg("a string", lambda v: isinstance(v, str))
FLAG = Arg("true or false", lambda v: isinstance(v, bool))
#: A number a 64-bit integer column can hold: NaN, infinities and anything larger are not.
NUMBER = Arg("a finite number of at most 64 bits",
             lambda v: isinstance(v, int | float) and not isinstance(v, bool)
             and -2**63 <= v < 2**63)  # False for NaN too
TEXTS = Arg("a list of strings", _strings)
TEXT_OR_TEXTS = Arg("a string or a list of strings", lambda v: isinstance(v, str) or _strings(v))
ATTRS = Arg("an object of names and string values",
            lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str)
                                                  for k, x in v.items()))
ASSIGNMENTS = Arg("a list of [table, column, op, value]",
                  lambda v: isinstance(v, list) and all(_strings(x) and len(x) == 4 for x in v))

#: Cap on the arguments of one request, whatever the command: keys, and list lengths.
MAX_ARGS = 64


def root_only(req: Request, what: str) -> None:
    """Refuse (DENIED) a command that reads or writes the management node's files as root,
    for anyone but root, whatever policy allows."""
    if req.user != "root":
        raise XcatError(f"{what} reads and writes files on the management node as root: "
                        "only root may run it", kind=ErrorKind.DENIED)


def check_args(spec: CommandSpec, args: dict[str, Any]) -> str | None:
    """Why ``args`` do not fit ``spec``'s declared arguments (naming the argument), or None.
    A command that declares none takes any (third-party plugins)."""
    if len(args) > MAX_ARGS:
        return f"{spec.name}: {len(args)} arguments, more than {MAX_ARGS}"
    if spec.args is None:
        return None
    for key, value in args.items():
        kind = spec.args.get(key)
        if kind is None:
            return f"{spec.name}: unknown argument '{str(key)[:40]}'"
        if not kind.accepts(value):
            got = (repr(value)[:40] if isinstance(value, int | float)
                   and not isinstance(value, bool) else type(value).__name__)
            return f"{spec.name}: argument '{key}' must be {kind.name}, not {got}"
    return None


@dataclass(frozen=True)
class CommandSpec:
    name: str
    handler: Handler
    noderange: str  # "required", "optional", "new" (names need not exist) or "none"
    #: Whether the request changes nodes (and takes their locks); a function of the request
    #: for commands such as rpower, where "stat" only reads. Dispatch refuses such a request
    #: for the nodes an administrator locked (their ``locked`` attribute).
    writes: bool | Callable[[Request], bool] = False
    #: The nodes a request addresses when they come from its own arguments (chdef -o ...,
    #: the REST object path): writers lock them, and policy noderanges judge them.
    lock_nodes: Callable[[Request, Context], NodeRange | None] | None = None
    #: "any" front, or "node": only the node API may send it (a node reporting about itself).
    origin: str = "any"
    #: The handler proves who the caller is (a node's token): the audit row is written when
    #: it has finished, saying whether the proof held.
    authenticates: bool = False
    #: Seconds to wait for the nodes' locks (None: site.nodelocktimeout).
    lock_timeout: float | None = None
    #: The arguments it takes and their types (None: any, unchecked)
    args: dict[str, Arg] | None = None

    def changes_nodes(self, request: Request) -> bool:
        return bool(self.writes(request) if callable(self.writes) else self.writes)


_REGISTRY: dict[str, CommandSpec] = {}
_lock = threading.Lock()
_entry_points: dict[str, list[EntryPoint]] | None = None
_tried: set[str] = set()


def command(name: str, *, noderange: str = "none",
            writes: bool | Callable[[Request], bool] = False,
            lock_nodes: Callable[[Request, Context], NodeRange | None] | None = None,
            origin: str = "any", authenticates: bool = False,
            lock_timeout: float | None = None,
            args: dict[str, Arg] | None = None) -> Callable[[Handler], Handler]:
    """Register a plugin function as the handler of ``name``; ``args`` declares the
    arguments it takes (checked before it runs)."""
    if noderange not in ("required", "optional", "new", "none"):
        raise ValueError(noderange)
    if origin not in ("any", NODE_ORIGIN):
        raise ValueError(origin)

    def deco(fn: Handler) -> Handler:
        register(CommandSpec(name, fn, noderange, writes, lock_nodes, origin, authenticates,
                             lock_timeout, args))
        return fn

    return deco


def register(spec: CommandSpec) -> None:
    _REGISTRY[spec.name] = spec


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def _commands() -> dict[str, list[EntryPoint]]:
    """command name -> the entry points that handle it (read once: a scan of every
    installed distribution)."""
    global _entry_points
    if _entry_points is None:
        found: dict[str, list[EntryPoint]] = {}
        for ep in entry_points(group=COMMAND_GROUP):
            found.setdefault(ep.name, []).append(ep)
        _entry_points = found
    return _entry_points


def _load(name: str) -> None:
    """Import the module(s) the entry points name for ``name`` (with the lock held)."""
    if name in _tried:
        return
    _tried.add(name)
    for ep in _commands().get(name, []):
        try:
            ep.load()
        except Exception:  # a broken third-party plugin must not take the rest down
            log.exception("cannot load the plugin of %s (%s)", name, ep.value)


def spec(name: str) -> CommandSpec | None:
    """The handler of ``name``, its plugin loaded on first use; None when nothing handles
    it."""
    found = _REGISTRY.get(name)
    if found is None:
        with _lock:
            _load(name)
        found = _REGISTRY.get(name)
    return found


def registry() -> dict[str, CommandSpec]:
    """Every command, every plugin loaded (xcatd loads them all when it starts)."""
    with _lock:
        for name in _commands():
            _load(name)
    return _REGISTRY


class Context(Cluster):
    """The cluster as one request sees it, with the request and its job store."""

    def __init__(self, request: Request, paths: Paths | None = None,
                 db: Database | None = None, site: SiteValues | None = None, *,
                 jobs: Any = None, daemon: bool = False,
                 may_see_secrets: Callable[[], bool] | None = None) -> None:
        super().__init__(paths, db, site)
        self.request = request
        #: xcatd.db.jobs.JobStore of the pipeline running this request
        self.jobs = jobs
        #: True inside xcatd (live jobs of other requests can be seen and cancelled)
        self.daemon = daemon
        #: requests to run once this one has ended and let go of its nodes' locks, in
        #: this request's name (snmove: the moved nodes' DHCP and boot files, which the
        #: relay sends to their new service node); a function is asked for its requests
        #: then, so they see the tables as this request left them
        self.followups: list[Request | Callable[[], list[Request]]] = []
        self._may_see_secrets = may_see_secrets or (lambda: False)
        self._secrets_allowed: bool | None = None

    # ---- secrets ----------------------------------------------------------------------------
    def may_see_secrets(self) -> bool:
        """Whether policy would let this request show secrets (the pipeline's answer for
        the same request with show_secrets; asked once)."""
        if self._secrets_allowed is None:
            self._secrets_allowed = bool(self._may_see_secrets())
        return self._secrets_allowed

    def check_selection(self, columns: Iterable[tuple[str, str]], what: str = "") -> None:
        """Refuse a comparison on a secret column (a selector, -w, a filter, a key) to a
        caller who may not see secrets: each answer would leak a bit of the secret (473
        requests recovered a BMC password with ``ipmi.password=~^prefix``)."""
        secret = sorted({f"{t}.{c}" for t, c in columns if is_secret(t, c)})
        if secret and not self.may_see_secrets():
            raise denied(f"Permission denied: comparing {what or ', '.join(secret)} needs the "
                         "right to see secrets (policy for show_secrets)")

    def select_nodes(self, attr: str, op: str, value: str) -> set[str]:
        self.check_selection([node_column(attr)], attr)
        return super().select_nodes(attr, op, value)

    def expand(self, noderange: str, *, verify: bool = True,
               env: dict[str, str] | None = None, allow_files: bool | None = None
               ) -> NodeRange:
        # ^file is read with the daemon's rights: only root's requests may name one (the
        # commands inline files on the client, with the user's own rights)
        return super().expand(noderange, verify=verify,
                              env=self.request.env if env is None else env,
                              allow_files=self.request.user == "root" if allow_files is None
                              else allow_files)
