r"""The postscript plan of each node: which scripts it runs, in which order, with which
timeouts and environment, as typed data a node agent fetches and checks.

The lists follow xCAT (Postage.pm): first the ``xcatdefaults`` row of the postscripts table,
then the node's osimage (``osimage.postscripts``), then the node's own value, resolved through
its groups like any attribute; the same for postbootscripts. An entry met again later is
dropped, the first one wins; as in xCAT, "again" means the same name with the same
arguments (``syslog`` twice runs once, ``confignetwork -s`` after ``confignetwork`` runs
both). The node's osimage is nodetype.provmethod when it names one, else
noderes.current_osimage. Postscripts run after an install or at a diskless boot,
postbootscripts at every boot.

An entry is ``name [args]``: ``name`` a file under ``<installdir>/postscripts``
(site.installdir), subdirectories allowed; ``args`` split as sh would. ``name@<time>`` overrides
the timeout for that entry (``hang@10``, ``otherpkgs@30m``, ``big@2h``; seconds without a
unit); every other entry gets site.postscripttimeout (DEFAULT_TIMEOUT seconds when unset).
An absolute name, ``..``, a hidden part, a name that leads outside the directory or a
missing file is an error of that node naming the entry, never a crash.

>>> e = parse_entry("custom/hello@90 a 'b c'")
>>> e.name, e.args, e.timeout
('custom/hello', ('a', 'b c'), 90)
>>> [x.text for x in merge_lists([("xcatdefaults", "syslog,remoteshell"),
...                               ("osimage img", "syslog, hello a"),
...                               ("n1", "hello b,remoteshell")])]
['syslog', 'remoteshell', 'hello a', 'hello b']
>>> parse_entry("../etc/shadow")
Traceback (most recent call last):
...
xcatd.provision.postscripts.EntryError: '../etc/shadow': '..' is not allowed in a postscript name
"""
from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path, PurePosixPath

from xcatd.base.noderange import natural_key
from xcatd.base.request import XcatError
from xcatd.base.site import SiteValueError
from xcatd.db.cluster import Cluster
from xcatd.db.database import split_list
from xcatd.provision.mypostscript import Renderer, node_osimage

DEFAULT_TIMEOUT = 300
MAX_TIMEOUT = 86_400
#: The two lists, by postscripts table column, and the kind their scripts have in a plan
KINDS = {"postscripts": "postscript", "postbootscripts": "postbootscript"}
DEFAULTS_ROW = "xcatdefaults"

_TIMEOUT = re.compile(r"^(.*?)@(\d+)([smh]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


class EntryError(ValueError):
    """An entry that cannot be run; the message names it."""

    def __init__(self, text: str, problem: str) -> None:
        super().__init__(f"'{text}': {problem}")
        self.text = text
        self.problem = problem


@dataclass(frozen=True)
class Entry:
    """One entry of a list, as written and as understood."""

    text: str                  # as written (blanks trimmed)
    name: str                  # the file, relative to the postscripts directory
    args: tuple[str, ...] = ()
    timeout: int | None = None  # the entry's own; None: site.postscripttimeout
    origin: str = ""           # xcatdefaults, osimage <name>, or the node or group

    @property
    def key(self) -> tuple[str, ...]:
        """What makes two entries the same one (xCAT: the same name and arguments)."""
        return (self.name, *self.args)


def parse_entry(text: str, origin: str = "") -> Entry:
    """One ``name[@time] [args]`` entry; EntryError says what is wrong with it."""
    text, name, args, timeout = _parse(" ".join(text.split()))
    return Entry(text, name, args, timeout, origin)


@lru_cache(maxsize=4096)
def _parse(text: str) -> tuple[str, str, tuple[str, ...], int | None]:
    """parse_entry's work, done once per distinct entry (10,000 nodes share a few)."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise EntryError(text, f"cannot split its arguments ({exc})") from None
    if not words:
        raise EntryError(text, "empty entry")
    name, timeout = words[0], None
    m = _TIMEOUT.match(name)
    if m:
        name = m.group(1)
        timeout = int(m.group(2)) * _UNITS[m.group(3)]
        if not 1 <= timeout <= MAX_TIMEOUT:
            raise EntryError(text, f"the timeout must be from 1 s to {MAX_TIMEOUT} s")
    return text, check_name(text, name), tuple(words[1:]), timeout


def check_name(text: str, name: str) -> str:
    """``name`` normalised (no ``./``), or EntryError: absolute, ``..``, hidden parts."""
    if not name:
        raise EntryError(text, "no script name")
    if "\x00" in name or "\\" in name:
        raise EntryError(text, "the name holds a character a file name may not")
    p = PurePosixPath(name)
    if p.is_absolute():
        raise EntryError(text, "a postscript is named relative to the postscripts "
                               "directory, not by an absolute path")
    if ".." in p.parts:
        raise EntryError(text, "'..' is not allowed in a postscript name")
    if any(part.startswith(".") for part in p.parts):
        raise EntryError(text, "hidden names are not served to nodes")
    return p.as_posix()


def merge_lists(sources: Iterable[tuple[str, str | None]]) -> list[Entry | EntryError]:
    """The entries of several comma lists (origin, value) in order, each entry once: the
    first wins. A bad entry stays in its place as its EntryError (once too)."""
    seen: set[tuple[str, ...]] = set()
    out: list[Entry | EntryError] = []
    for origin, value in sources:
        for text in split_list(value):
            item: Entry | EntryError
            try:
                item = parse_entry(text, origin)
                key = item.key
            except EntryError as exc:
                item, key = exc, ("\0bad", exc.text)
            if key not in seen:
                seen.add(key)
                out.append(item)
    return out


@dataclass(frozen=True)
class Script:
    """One script of a plan: what a node agent downloads, checks and runs."""

    name: str
    args: tuple[str, ...]
    path: str                  # relative to the postscripts directory
    sha256: str
    size: int
    kind: str                  # postscript | postbootscript
    timeout: int               # seconds
    origin: str

    def as_dict(self) -> dict:
        d = asdict(self)
        d["args"] = list(self.args)
        return d


@dataclass
class NodePlan:
    """A node's plan: its scripts in order (postscripts, then postbootscripts), the
    environment text the scripts run with, and what is wrong with it. A node with errors
    must not run its plan: an entry is missing, or the environment could not be made."""

    node: str
    osimage: str | None
    timeout: int
    scripts: list[Script] = field(default_factory=list)
    env: str | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def of_kind(self, kind: str) -> list[Script]:
        return [s for s in self.scripts if s.kind == kind]

    def as_dict(self) -> dict:
        return {"node": self.node, "osimage": self.osimage, "timeout": self.timeout,
                "scripts": [s.as_dict() for s in self.scripts], "env": self.env,
                "errors": list(self.errors), "warnings": list(self.warnings)}


class PlanBuilder:
    """Plans of many nodes: every table read once (a fixed number of queries, whatever the
    number of nodes) and every script file hashed once."""

    def __init__(self, cluster: Cluster, nodes: Iterable[str], *, updatenode: bool = False,
                 nodesetstate: str | None = None) -> None:
        self.cluster = cluster
        self.nodes = sorted(set(nodes), key=natural_key)
        self.updatenode = updatenode
        self.nodesetstate = nodesetstate
        self.scriptdir = cluster.installdir / "postscripts"
        db = cluster.db
        self.groups = cluster.node_groups_if_loaded(self.nodes) or db.node_groups(self.nodes)
        cols = list(KINDS)
        self.values = db.resolve(self.nodes, {"postscripts": cols, "nodetype": ["provmethod"],
                                              "noderes": ["current_osimage"]},
                                 groups=self.groups)
        defaults = db.rows("postscripts", keys=[DEFAULTS_ROW])
        self.defaults = defaults[0] if defaults else {}
        self.images = {n: node_osimage(self._v(n, "nodetype", "provmethod"),
                                       self._v(n, "noderes", "current_osimage"))
                       for n in self.nodes}
        used = sorted({i for i in self.images.values() if i})
        self.osimages = {r["imagename"]: r for r in db.rows("osimage", keys=used)}
        self._files: dict[str, tuple[str, int] | str] = {}
        self._renderer: Renderer | None = None

    @cached_property
    def timeout(self) -> int:
        """site.postscripttimeout (a bad value fails the plans, not lsdef)."""
        return script_timeout(self.cluster)

    def _v(self, node: str, table: str, col: str) -> str | None:
        return self.values.get(node, {}).get((table, col))

    # ---- the lists ------------------------------------------------------------------------
    def entries(self, node: str) -> dict[str, list[Entry | EntryError]]:
        """{postscripts|postbootscripts: entries in order (bad ones as EntryError)}."""
        image = self.images.get(node)
        row = self.osimages.get(image) if image else None
        return {col: merge_lists([(DEFAULTS_ROW, self.defaults.get(col)),
                                  (f"osimage {image}", row.get(col) if row else None),
                                  (node, self._v(node, "postscripts", col))])
                for col in KINDS}

    def lists(self, node: str) -> dict[str, list[str]]:
        """The effective lists as written (what ``lsdef -i postscripts`` shows)."""
        return {col: [item.text for item in items]
                for col, items in self.entries(node).items()}

    # ---- the files ------------------------------------------------------------------------
    def check_file(self, rel: str) -> tuple[str, int] | str:
        """(sha256, size) of a script file, or what is wrong with it (cached)."""
        got = self._files.get(rel)
        if got is None:
            got = self._files[rel] = _hash_file(self.scriptdir, rel)
        return got

    def scripts(self, node: str, entries: dict[str, list[Entry | EntryError]] | None = None
                ) -> tuple[list[Script], list[str]]:
        """The node's scripts with their files checked, and its errors."""
        scripts, errors = [], []
        for col, items in (entries or self.entries(node)).items():
            kind = KINDS[col]
            for e in items:
                if isinstance(e, EntryError):
                    errors.append(f"{kind} {e}")
                    continue
                got = self.check_file(e.name)
                if isinstance(got, str):
                    errors.append(f"{kind} '{e.text}' (from {e.origin}): {got}")
                    continue
                scripts.append(Script(e.name, e.args, e.name, got[0], got[1], kind,
                                      e.timeout or self.timeout, e.origin))
        return scripts, errors

    # ---- the plan -------------------------------------------------------------------------
    @property
    def renderer(self) -> Renderer:
        if self._renderer is None:
            self._renderer = Renderer(self.cluster, self.nodes, updatenode=self.updatenode,
                                      nodesetstate=self.nodesetstate, groups=self.groups)
        return self._renderer

    @property
    def warnings(self) -> list[str]:
        """Warnings about the template and the site (once, not per node)."""
        return list(self.renderer.warnings)

    def plan(self, node: str, *, env: bool = True) -> NodePlan:
        if node not in self.values:
            raise ValueError(f"{node} is not one of the nodes this plan builder read")
        entries = self.entries(node)
        scripts, errors = self.scripts(node, entries)
        plan = NodePlan(node, self.images.get(node), self.timeout, scripts, errors=errors)
        if env:
            lists = {col: [e.text for e in items if isinstance(e, Entry)]
                     for col, items in entries.items()}
            plan.env, env_errors, plan.warnings = self.renderer.render(node, lists)
            plan.errors += env_errors
        return plan

    def plan_of(self, node: str, scripts: str | None = None) -> NodePlan:
        """The node's plan, or (updatenode -P a,b) a plan of the scripts listed, whether
        its lists name them or not, with the node's environment."""
        plan = self.plan(node)
        if scripts:
            entries = {"postscripts": merge_lists([("updatenode -P", scripts)]),
                       "postbootscripts": []}
            found, errors = self.scripts(node, entries)
            plan.scripts = found
            plan.errors = errors + [e for e in plan.errors
                                    if not e.startswith(("postscript ", "postbootscript "))]
        return plan

    def plans(self, *, env: bool = True) -> dict[str, NodePlan]:
        return {n: self.plan(n, env=env) for n in self.nodes}


def script_file(cluster: Cluster, rel: str) -> tuple[Path, tuple[str, int] | str]:
    """(path, (sha256, size) or what is wrong) of one file of the postscripts directory,
    ``rel`` already checked by check_name: what a node agent fetches."""
    base = cluster.installdir / "postscripts"
    return base / rel, _hash_file(base, rel)


def script_timeout(cluster: Cluster) -> int:
    """site.postscripttimeout: seconds a postscript (or a synclist's EXECUTE script) may
    run; XcatError naming a bad value."""
    try:
        return cluster.site.integer("postscripttimeout", DEFAULT_TIMEOUT, low=1,
                                    high=MAX_TIMEOUT)
    except SiteValueError as exc:
        raise XcatError(str(exc)) from None


def effective_lists(cluster: Cluster, nodes: Iterable[str]) -> dict[str, dict[str, str]]:
    """{node: {postscripts: 'a,b', postbootscripts: 'c'}}: the lists each node runs,
    xcatdefaults and osimage entries included, in order, each once."""
    builder = PlanBuilder(cluster, nodes)
    return {n: {col: ",".join(texts) for col, texts in builder.lists(n).items()}
            for n in builder.nodes}


#: (file, inode, size, mtime, ctime) -> sha256: a script is hashed again only when it changed
_HASHES: dict[tuple, str] = {}
_HASHES_MAX = 4096


def _hash_file(base: Path, rel: str) -> tuple[str, int] | str:
    path = base / rel
    try:
        real = path.resolve(strict=True)
        if not real.is_relative_to(base.resolve(strict=True)):
            return f"{path} leads outside {base}"
        if not real.is_file():
            return f"{path} is not a regular file"
        st = real.stat()
        key = (str(real), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        known = _HASHES.get(key)
        if known is not None:
            return known, st.st_size
        digest = hashlib.sha256()
        size = 0
        with open(real, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        return f"no such file {path}"
    except (OSError, RuntimeError) as exc:
        return f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
    if size == st.st_size:
        if len(_HASHES) >= _HASHES_MAX:
            _HASHES.clear()
        _HASHES[key] = digest.hexdigest()
    return digest.hexdigest(), size
