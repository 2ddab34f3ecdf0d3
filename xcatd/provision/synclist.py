r"""xCAT's synclists: the files of the management node that a node keeps in sync, and the
typed sync plan its agent applies (postscripts/xcatsync.py) for ``updatenode -F`` and the
``syncfiles`` postscript.

A synclist holds, one a line (xCAT's format, DSHCLI.pm):

- ``src -> dst``: a file to a file; ``src -> dir/`` (a trailing ``/``) or ``src1 src2 -> dir``:
  files into a directory, under their own names. A directory source sends its files
  (recursively) into the destination directory; a glob (``/etc/skel/*``) sends what it
  matches into it, a matched directory as a subdirectory of that name.
- ``src -> (noderange) dst``: the same, for the nodes of the noderange only.
- ``APPEND:``, then ``src -> dst`` lines: src's content is added at the end of dst, which
  already exists on the node. As xCAT's xdcpappend.sh does, the node keeps the original dst
  (``<nodesyncfiledir>/org<dst>``, saved the first time) and rebuilds dst as that original plus
  src, so a second sync does not append twice.
- ``MERGE:``, then ``src -> dst`` lines, dst being /etc/passwd, /etc/shadow, /etc/group or
  /etc/gshadow: src's entries replace dst's entries of the same name and the others are added.
- ``EXECUTE:``, then management-node paths of scripts: a script runs on a node after the sync
  when a file it goes with changed there: the script itself when the synclist syncs it, and
  ``<file>`` for a script named ``<file>.post`` (xCAT's convention). A script the synclist does
  not sync is copied to ``<nodesyncfiledir>/execute<path>`` to run.
- ``EXECUTEALWAYS:``, then paths of scripts the synclist syncs: they run after every sync.
- ``#`` comments (whole lines, or after a blank), blank lines. A section runs to the next
  section header, so file lines come before the first one.

Paths on the left are management-node paths (read under XCATROOT, as pkglist.py does); those
on the right are paths on the node. A node's synclists are osimage.synclists (a comma list) of
its osimage (nodetype.provmethod when it names one, else noderes.current_osimage). Without
one, a node provisioned the legacy way (provmethod install, netboot or statelite) uses xCAT's
default file ``<installdir>/custom/<install|netboot>/<platform>/<profile>.<os>.<arch>.synclist``
(down to ``<profile>.synclist``; found as install templates are, osfamily.find_os_file, so the
platform is pyxcat's: rh, debian, ubuntu).

Where this differs from xCAT, on purpose: a bad line is an error naming the file, the line
and the bad part (xCAT reads a section header anywhere in a line and a later file line as a
script); when two lines give one destination the later one wins (xCAT's rsync order is a hash
order); ``#INCLUDE:file#`` is a comment, as in xCAT, whose synclists have no includes; files
keep their mode but not their owner (node and management node may number users differently).

>>> sl = parse('''/etc/hosts -> /etc/hosts
... /srv/a.conf /srv/b.conf -> (compute,-n3) /opt/app/   # two files into a directory
... EXECUTE:
... /srv/a.conf.post
... MERGE:
... /srv/users -> /etc/passwd
... ''', "compute.synclist")
>>> for f in sl.files:
...     print(f.sources, f.noderange, f.dest, f.todir)
('/etc/hosts',) None /etc/hosts False
('/srv/a.conf', '/srv/b.conf') compute,-n3 /opt/app True
>>> [s.path for s in sl.execute], [(m.source, m.dest) for m in sl.merge]
(['/srv/a.conf.post'], [('/srv/users', '/etc/passwd')])
>>> print(parse("APPEND:\n/srv/motd -> motd\n", "x.synclist").errors[0])
x.synclist:2: the destination must be a full path on the node: 'motd'
"""
from __future__ import annotations

import glob
import hashlib
import os
import posixpath
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from xcatd.base.noderange import NodeRange, NodeRangeError, natural_key
from xcatd.base.request import XcatError
from xcatd.base.site import SiteValueError
from xcatd.db.cluster import Cluster
from xcatd.db.database import split_list
from xcatd.provision.mypostscript import LEGACY_PROVMETHODS, node_osimage
from xcatd.provision.osfamily import find_os_file, shipped_dir
from xcatd.provision.postscripts import DEFAULT_TIMEOUT, script_timeout

__all__ = ["FileLine", "PairLine", "ScriptLine", "SyncFile", "SyncPair", "SyncPlan",
           "SyncPlanner", "Synclist", "SynclistError", "parse", "plan_for"]

SECTIONS = ("EXECUTE", "EXECUTEALWAYS", "APPEND", "MERGE")
#: the only files MERGE may change (xCAT's list, DSHCLI.pm bld_and_run_merge)
MERGEABLE = ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow")
#: site.nodesyncfiledir's default: where a node keeps its copies for APPEND, MERGE, EXECUTE
DEFAULT_NODESYNCFILEDIR = "/var/xcat/node/syncfiles"
#: a synclist larger than this is not read (it would be a mistake, not a list)
MAX_SYNCLIST_BYTES = 4 << 20


class SynclistError(ValueError):
    """A line of a synclist that cannot be used: ``source`` and ``line`` say where, ``part``
    is the bad part."""

    def __init__(self, source: str, line: int, part: str, problem: str) -> None:
        super().__init__(f"{source}:{line}: {problem}: '{part}'")
        self.source, self.line, self.part, self.problem = source, line, part, problem


@dataclass(frozen=True)
class FileLine:
    """``src... -> [(noderange)] dst``."""

    sources: tuple[str, ...]   # management-node paths, normalised (globs kept)
    dest: str                  # node path, normalised
    noderange: str | None
    todir: bool                # dst is a directory (trailing / or several sources)
    where: str                 # file:line


@dataclass(frozen=True)
class PairLine:
    """An ``APPEND:`` or ``MERGE:`` line, ``src -> dst``."""

    source: str
    dest: str
    where: str


@dataclass(frozen=True)
class ScriptLine:
    """An ``EXECUTE:`` or ``EXECUTEALWAYS:`` line: a management-node path."""

    path: str
    where: str


@dataclass(frozen=True)
class Synclist:
    """One synclist file as understood; bad lines are left out and listed in ``errors``."""

    source: str
    files: tuple[FileLine, ...] = ()
    append: tuple[PairLine, ...] = ()
    merge: tuple[PairLine, ...] = ()
    execute: tuple[ScriptLine, ...] = ()
    executealways: tuple[ScriptLine, ...] = ()
    errors: tuple[SynclistError, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


# ---- the parser -------------------------------------------------------------------------------
def parse(text: str, source_name: str) -> Synclist:
    """The synclist in ``text``; ``source_name`` (its file) names it in the errors."""
    parts: dict[str, list] = {"files": [], "APPEND": [], "MERGE": [], "EXECUTE": [],
                              "EXECUTEALWAYS": []}
    errors: list[SynclistError] = []
    section = "files"
    for number, raw in enumerate(text.splitlines(), 1):
        line = _uncomment(raw)
        if not line:
            continue
        try:
            head, colon, rest = line.partition(":")
            if colon and head.strip() in SECTIONS:
                if rest.strip():
                    raise SynclistError(source_name, number, line,
                                        f"the {head.strip()}: header stands alone on its line")
                section = head.strip()
                continue
            parts[section].append(_parse_line(section, line, source_name, number))
        except SynclistError as exc:
            errors.append(exc)
    return Synclist(source_name, tuple(parts["files"]), tuple(parts["APPEND"]),
                    tuple(parts["MERGE"]), tuple(parts["EXECUTE"]),
                    tuple(parts["EXECUTEALWAYS"]), tuple(errors))


def _uncomment(raw: str) -> str:
    """The line without its comment and blanks ('' for a comment or blank line)."""
    line = raw.strip()
    if line.startswith("#"):
        return ""
    for blank in (" #", "\t#"):
        cut = line.find(blank)
        if cut >= 0:
            line = line[:cut].rstrip()
    return line


def _parse_line(section: str, line: str, source: str, number: int
                ) -> FileLine | PairLine | ScriptLine:
    def bad(part: str, problem: str) -> SynclistError:
        return SynclistError(source, number, part, problem)

    if section in ("EXECUTE", "EXECUTEALWAYS"):
        words = line.split()
        if "->" in line or len(words) != 1:
            raise bad(line, f"{section}: lists one script a line (file lines come before "
                            "the first section)")
        return ScriptLine(_path(words[0], "the script", bad), f"{source}:{number}")
    left, arrow, right = line.partition("->")
    if not arrow:
        raise bad(line, "not a 'source -> destination' line")
    if "->" in right:
        raise bad(line, "more than one '->'")
    sources = left.split()
    if not sources:
        raise bad(line, "no source before '->'")
    right = right.strip()
    noderange = None
    if right.startswith("("):
        close = right.find(")")
        if close < 0:
            raise bad(right, "no ')' closes the noderange")
        noderange = "".join(right[1:close].split())
        if not noderange:
            raise bad(right, "empty noderange")
        right = right[close + 1:].strip()
    dests = right.split()
    if not dests:
        raise bad(line, "no destination after '->'")
    if len(dests) > 1:
        raise bad(right, "one destination a line")
    where = f"{source}:{number}"
    srcs = tuple(_path(s, "the source", bad, where="on the management node") for s in sources)
    dest = _path(dests[0], "the destination", bad)
    if section == "files":
        return FileLine(srcs, dest, noderange, dests[0].endswith("/") or len(srcs) > 1, where)
    if noderange is not None:
        raise bad(f"({noderange})", f"a noderange is not allowed in {section}: lines")
    if len(srcs) != 1:
        raise bad(left.strip(), f"{section}: takes one source a line")
    if dests[0].endswith("/"):
        raise bad(dests[0], f"{section}: needs a file, not a directory")
    if section == "MERGE" and dest not in MERGEABLE:
        raise bad(dests[0], "MERGE: changes only " + ", ".join(MERGEABLE))
    if _magic(srcs[0]):
        raise bad(srcs[0], f"{section}: takes one file, not a pattern")
    return PairLine(srcs[0], dest, where)


def _path(text: str, what: str, bad, where: str = "on the node") -> str:
    if not text.startswith("/"):
        raise bad(text, f"{what} must be a full path {where}")
    if "\x00" in text:
        raise bad(text, f"{what} holds a NUL character")
    return "/" + posixpath.normpath(text).lstrip("/") if text.strip("/") else "/"


def _magic(path: str) -> bool:
    return glob.has_magic(path)


# ---- the plan -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyncFile:
    """A file a node keeps: ``path`` to fetch on the management node, ``dest`` on the node."""

    path: str
    dest: str
    sha256: str
    size: int
    mode: int
    source: str          # the management-node path as the synclist names it
    stage: bool = False  # a copy xcatsync keeps for itself (an EXECUTE script)

    def as_dict(self) -> dict:
        d = {"path": self.path, "dest": self.dest, "sha256": self.sha256, "size": self.size,
             "mode": self.mode}
        if self.stage:
            d["stage"] = True
        return d


@dataclass(frozen=True)
class SyncPair:
    """An APPEND or MERGE: ``path``'s content goes into ``dest``; ``stage`` is where the node
    keeps the content it applied (a sync with the same content does nothing), ``original``
    (APPEND) the node's dest as it was before the first append."""

    path: str
    dest: str
    sha256: str
    size: int
    stage: str
    original: str | None = None

    def as_dict(self) -> dict:
        d = {"path": self.path, "dest": self.dest, "sha256": self.sha256, "size": self.size,
             "stage": self.stage}
        if self.original is not None:
            d["original"] = self.original
        return d


@dataclass
class SyncPlan:
    """What one node keeps in sync, typed for its agent. A node applies the planned part of
    a plan with errors and reports them."""

    node: str
    synclists: list[str] = field(default_factory=list)
    nodesyncfiledir: str = DEFAULT_NODESYNCFILEDIR
    timeout: int = DEFAULT_TIMEOUT
    files: list[SyncFile] = field(default_factory=list)
    append: list[SyncPair] = field(default_factory=list)
    merge: list[SyncPair] = field(default_factory=list)
    execute: list[str] = field(default_factory=list)
    executealways: list[str] = field(default_factory=list)
    #: {EXECUTE script's dest: the dests whose change runs it}
    triggers: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @cached_property
    def _fetchable(self) -> frozenset[str]:
        return frozenset(x.path for x in (*self.files, *self.append, *self.merge))

    def allows(self, path: str) -> bool:
        """Whether the node may fetch the management-node file ``path``: only a file its plan
        lists, named as the plan names it."""
        return isinstance(path, str) and path in self._fetchable

    def as_dict(self) -> dict:
        return {"node": self.node, "synclists": list(self.synclists),
                "nodesyncfiledir": self.nodesyncfiledir, "timeout": self.timeout,
                "files": [f.as_dict() for f in self.files],
                "append": [a.as_dict() for a in self.append],
                "merge": [m.as_dict() for m in self.merge],
                "execute": list(self.execute), "executealways": list(self.executealways),
                "triggers": {k: list(v) for k, v in self.triggers.items()},
                "errors": list(self.errors), "warnings": list(self.warnings)}


@dataclass
class _Line:
    """A file line with its sources found (once, whatever the number of nodes)."""

    line: FileLine
    files: list[SyncFile]
    errors: list[str]


@dataclass
class _Compiled:
    """A synclist read, parsed and its files found and hashed."""

    synclist: Synclist
    lines: list[_Line]
    append: list[SyncPair | str]
    merge: list[SyncPair | str]
    sources: set[str]  # every source its file lines sync (to any node)


class SyncPlanner:
    """Sync plans of many nodes: a fixed number of queries whatever the number of nodes,
    every synclist read once and every file hashed once."""

    def __init__(self, cluster: Cluster, nodes: Iterable[str],
                 synclists: list[str] | None = None) -> None:
        self.cluster = cluster
        #: the synclists of every node, whatever their osimages say (xdcp -F)
        self.given = synclists
        self.paths = cluster.paths
        self.nodes = sorted(set(nodes), key=natural_key)
        self._known = set(self.nodes)
        db = cluster.db
        groups = cluster.node_groups_if_loaded(self.nodes) or db.node_groups(self.nodes)
        self.values = db.resolve(self.nodes, {"nodetype": ["provmethod", "os", "arch",
                                                           "profile"],
                                              "noderes": ["current_osimage"]}, groups=groups)
        self.images = {n: node_osimage(self._v(n, "nodetype", "provmethod"),
                                       self._v(n, "noderes", "current_osimage"))
                       for n in self.nodes}
        used = sorted({i for i in self.images.values() if i})
        self.osimages = {r["imagename"]: r for r in db.rows("osimage", keys=used)}
        self._compiled: dict[str, _Compiled | str] = {}
        self._defaults: dict[tuple[str, str, str, str], str | None] = {}
        self._hashes: dict[str, tuple[str, int, int] | str] = {}
        self._trees: dict[str, list[tuple[str, str]] | str] = {}
        self._ranges: dict[str, tuple[NodeRange, str | None]] = {}

    def _v(self, node: str, table: str, col: str) -> str | None:
        return self.values.get(node, {}).get((table, col))

    @cached_property
    def timeout(self) -> int:
        """site.postscripttimeout, the EXECUTE scripts' timeout too."""
        return script_timeout(self.cluster)

    @cached_property
    def nodesyncfiledir(self) -> str:
        try:
            return self.cluster.site.directory("nodesyncfiledir", DEFAULT_NODESYNCFILEDIR)
        except SiteValueError as exc:
            raise XcatError(str(exc)) from None

    # ---- where a node's synclists are ---------------------------------------------------------
    def synclists(self, node: str) -> list[str]:
        """The management-node paths of the node's synclists, in order (may be none)."""
        if self.given is not None:
            return list(self.given)
        image = self.images.get(node)
        row = self.osimages.get(image) if image else None
        if row and row.get("synclists"):
            return split_list(row["synclists"])
        provmethod = self._v(node, "nodetype", "provmethod")
        if provmethod and provmethod not in LEGACY_PROVMETHODS:
            return []       # an osimage node: only its osimage says (xCAT)
        found = self._default_synclist(node, provmethod)
        return [found] if found else []

    def _default_synclist(self, node: str, provmethod: str | None) -> str | None:
        profile, os_, arch = (self._v(node, "nodetype", c) for c in ("profile", "os", "arch"))
        if not (profile and os_ and arch):
            return None
        kind = "netboot" if provmethod in ("netboot", "statelite") else "install"
        key = (kind, profile, os_, arch)
        if key not in self._defaults:
            found = find_os_file(self.paths, self.cluster.site, kind, profile, os_, arch,
                                 "synclist")
            if found is not None and shipped_dir(kind) in found.parents:
                found = None
            self._defaults[key] = None if found is None else _as_mn_path(self.paths.root,
                                                                         found)
        return self._defaults[key]

    # ---- reading and finding, once ------------------------------------------------------------
    def _compile(self, name: str) -> _Compiled | str:
        got = self._compiled.get(name)
        if got is None:
            got = self._compiled[name] = self._read_and_find(name)
        return got

    def _read_and_find(self, name: str) -> _Compiled | str:
        real = self._under(name)
        try:
            with open(real, "rb") as fh:
                data = fh.read(MAX_SYNCLIST_BYTES + 1)
        except FileNotFoundError:
            return f"synclist {name}: no such file"
        except IsADirectoryError:
            return f"synclist {name}: is a directory"
        except OSError as exc:
            return f"synclist {name}: cannot read it: {exc.strerror or exc}"
        if len(data) > MAX_SYNCLIST_BYTES:
            return f"synclist {name}: larger than {MAX_SYNCLIST_BYTES} bytes"
        synclist = parse(data.decode("utf-8", "replace"), name)
        lines, sources = [], set()
        for fl in synclist.files:
            files, errors = self._line_files(fl)
            lines.append(_Line(fl, files, errors))
            sources.update(f.source for f in files)
        nsfd = self.nodesyncfiledir
        append = [self._pair(p, f"{nsfd}/append{p.source}", f"{nsfd}/org{p.dest}", "APPEND")
                  for p in synclist.append]
        merge = [self._pair(p, f"{nsfd}/merge/mergefiles{p.source}", None, "MERGE")
                 for p in synclist.merge]
        return _Compiled(synclist, lines, append, merge, sources)

    def _under(self, mn_path: str) -> str:
        return str(self.paths.under("/" + posixpath.normpath("/" + mn_path).lstrip("/")))

    def _line_files(self, fl: FileLine) -> tuple[list[SyncFile], list[str]]:
        """The files a line syncs (source, dest) with their hashes, and its errors."""
        out: list[SyncFile] = []
        errors: list[str] = []
        for src in fl.sources:
            found: list[tuple[str, str]] = []   # (source, dest)
            if _magic(src):
                matches = self._glob(src)
                if not matches:
                    errors.append(f"{fl.where}: {src}: matches no file on the management node")
                for m in matches:
                    if os.path.isdir(self._under(m)):
                        found += self._tree(m, posixpath.join(fl.dest, posixpath.basename(m)),
                                            fl.where, errors)
                    else:
                        found.append((m, posixpath.join(fl.dest, posixpath.basename(m))))
            elif os.path.isdir(self._under(src)):
                found += self._tree(src, fl.dest, fl.where, errors)
            else:
                found.append((src, posixpath.join(fl.dest, posixpath.basename(src))
                              if fl.todir else fl.dest))
            for source, dest in found:
                got = self._hash(source)
                if isinstance(got, str):
                    errors.append(f"{fl.where}: {got}")
                else:
                    out.append(SyncFile(self._under(source), dest, *got, source=source))
        return out, errors

    def _glob(self, pattern: str) -> list[str]:
        root = str(self.paths.root).rstrip("/")
        matches = glob.glob(glob.escape(root) + pattern)
        return sorted(m[len(root):] or "/" for m in matches)

    def _tree(self, top: str, dest: str, where: str, errors: list[str]
              ) -> list[tuple[str, str]]:
        """(source, dest) of every file under the directory ``top``, recursively (links
        followed, each directory once)."""
        got = self._trees.get(top)
        if got is None:
            got = self._trees[top] = _walk(self._under(top), top)
        if isinstance(got, str):
            errors.append(f"{where}: {got}")
            return []
        return [(src, posixpath.join(dest, rel)) for src, rel in got]

    def _hash(self, source: str) -> tuple[str, int, int] | str:
        """(sha256, size, mode) of a source file, or what is wrong with it (once a file)."""
        real = self._under(source)
        try:
            key = os.path.realpath(real)
        except (OSError, ValueError):
            key = real
        got = self._hashes.get(key)
        if got is None:
            got = self._hashes[key] = _hash_file(real, source)
        return got

    def _pair(self, p: PairLine, stage: str, original: str | None, section: str
              ) -> SyncPair | str:
        got = self._hash(p.source)
        if isinstance(got, str):
            return f"{p.where}: {section}: {got}"
        return SyncPair(self._under(p.source), p.dest, got[0], got[1], stage, original)

    def _members(self, noderange: str, where: str) -> tuple[NodeRange, str | None]:
        """The nodes of a line's noderange (once a noderange) and a warning about it."""
        got = self._ranges.get(noderange)
        if got is None:
            warning = None
            try:
                members = self.cluster.expand(noderange)
            except NodeRangeError as exc:
                try:
                    members = self.cluster.expand(noderange, verify=False)
                    warning = f"{where}: ({noderange}): {exc}"
                except NodeRangeError as exc2:
                    members, warning = NodeRange(), f"{where}: ({noderange}): {exc2}"
            got = self._ranges[noderange] = (members, warning)
        return got

    # ---- a node's plan ------------------------------------------------------------------------
    def plan(self, node: str) -> SyncPlan:
        if node not in self._known:
            raise ValueError(f"{node} is not one of the nodes this planner read")
        plan = SyncPlan(node, self.synclists(node), self.nodesyncfiledir, self.timeout)
        compiled: list[_Compiled] = []
        for name in plan.synclists:
            got = self._compile(name)
            if isinstance(got, str):
                plan.errors.append(got)
            else:
                compiled.append(got)
                plan.errors += [str(e) for e in got.synclist.errors]
        files: dict[str, SyncFile] = {}
        for c in compiled:
            for ln in c.lines:
                if ln.line.noderange is not None:
                    members, warning = self._members(ln.line.noderange, ln.line.where)
                    if warning and warning not in plan.warnings:
                        plan.warnings.append(warning)
                    if node not in members:
                        continue
                plan.errors += ln.errors
                for f in ln.files:
                    files.pop(f.dest, None)     # the later line wins, in its place
                    files[f.dest] = f
            for items, out in ((c.append, plan.append), (c.merge, plan.merge)):
                for item in items:
                    if isinstance(item, str):
                        plan.errors.append(item)
                    elif item not in out:
                        out.append(item)
        self._scripts(plan, compiled, files)
        plan.files = list(files.values())
        return plan

    def _scripts(self, plan: SyncPlan, compiled: list[_Compiled],
                 files: dict[str, SyncFile]) -> None:
        by_source: dict[str, list[str]] = {}
        for f in files.values():
            by_source.setdefault(f.source, []).append(f.dest)
        synced_anywhere = set().union(*(c.sources for c in compiled))
        for c in compiled:
            for s in c.synclist.execute:
                base = s.path[:-len(".post")] if s.path.endswith(".post") else None
                triggers = by_source.get(s.path, []) + (by_source.get(base, []) if base else [])
                if not triggers:
                    continue     # neither the script nor its file goes to this node
                own = by_source.get(s.path)
                if own:
                    dest = own[0]
                else:
                    dest = f"{plan.nodesyncfiledir}/execute{s.path}"
                    got = self._hash(s.path)
                    if isinstance(got, str):
                        plan.errors.append(f"{s.where}: EXECUTE: {got}")
                        continue
                    files[dest] = SyncFile(self._under(s.path), dest, *got, source=s.path,
                                           stage=True)
                    triggers = [*triggers, dest]
                if dest not in plan.execute:
                    plan.execute.append(dest)
                    plan.triggers[dest] = list(dict.fromkeys(triggers))
            for s in c.synclist.executealways:
                own = by_source.get(s.path)
                if own:
                    if own[0] not in plan.executealways:
                        plan.executealways.append(own[0])
                elif s.path not in synced_anywhere:
                    warning = (f"{s.where}: EXECUTEALWAYS: {s.path} is not synced by the "
                               "synclist, so it runs nowhere (list it as a file too)")
                    if warning not in plan.warnings:
                        plan.warnings.append(warning)

    def plans(self) -> dict[str, SyncPlan]:
        return {n: self.plan(n) for n in self.nodes}


def plan_for(cluster: Cluster, node: str) -> SyncPlan:
    """The sync plan of one node (what its agent's ``GET /xcat/agent/synclist`` returns)."""
    return SyncPlanner(cluster, [node]).plan(node)


# ---- files ----------------------------------------------------------------------------------
def _as_mn_path(root: Path, found: Path) -> str:
    try:
        return "/" + found.relative_to(root).as_posix()
    except ValueError:
        return str(found)


def _walk(real_top: str, top: str) -> list[tuple[str, str]] | str:
    """[(source, path relative to top)] of the files under a directory, sorted; symbolic
    links are followed (xCAT's rsync -L), a directory met again through a link is skipped."""
    out: list[tuple[str, str]] = []
    seen: set[tuple[int, int]] = set()
    errors: list[str] = []

    def onerror(exc: OSError) -> None:
        errors.append(f"{exc.filename}: {exc.strerror or exc}")

    for dirpath, dirnames, filenames in os.walk(real_top, onerror=onerror, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, real_top)
        for name in sorted(filenames):
            rel = name if rel_dir == "." else posixpath.join(rel_dir, name)
            out.append((posixpath.join(top, rel), rel))
    if errors:
        return f"{top}: cannot read the directory ({errors[0]})"
    return out


#: sha256 of files by (device, inode, size, mtime, mode), kept between plans: every node's
#: agent asks for its plan, and a file that did not change is not read again for each
_HASHES: dict[tuple[int, int, int, int, int], str] = {}
_HASHES_MAX = 100_000


def _hash_file(real: str, source: str) -> tuple[str, int, int] | str:
    try:
        st = os.stat(real)
        if not stat.S_ISREG(st.st_mode):   # checked before open: a FIFO would block it
            return f"{source} is not a regular file"
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)
        known = _HASHES.get(key)
        if known is not None:
            return known, st.st_size, stat.S_IMODE(st.st_mode)
        with open(real, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                return f"{source} is not a regular file"
            digest = hashlib.sha256()
            size = 0
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        return f"{source}: no such file on the management node"
    except OSError as exc:
        return f"{source}: cannot read it: {exc.strerror or exc}"
    if size == st.st_size:   # not written to while it was read
        if len(_HASHES) >= _HASHES_MAX:
            _HASHES.clear()
        _HASHES[(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)] = \
            digest.hexdigest()
    return digest.hexdigest(), size, stat.S_IMODE(st.st_mode)
