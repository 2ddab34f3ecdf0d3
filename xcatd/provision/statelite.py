"""Statelite: which files of a diskless image a node may change, and where their contents
come from (the litefile, litetree and statelite tables), as xCAT defines them.

A litefile row names an image (the osimage, one of its ``osimage.groups``, or ``ALL``), a
path (a directory ends with '/') and options; the most specific row for a path wins (the
image over its group over ALL). litetree rows give, by priority, the directories a node
searches for those files' contents; statelite gives each node (or group) the NFS export
its persistent files live under (``<statemnt>/<node>/``). Directories and export paths may
name ``$table.column`` values (``$noderes.nfsserver``) and ``$node``, resolved per node.

>>> parse_options("")
'tmpfs'
>>> parse_options("ro, link")
'link,ro'
>>> check_entries([LiteFile("ALL", "/etc/x/", "con")])
["litefile entry 'ALL /etc/x/ con': con cannot be used on a directory (only on a file)"]
"""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from xcatd.base.files import write_atomic
from xcatd.base.request import ErrorKind, XcatError
from xcatd.db.database import Database, split_list
from xcatd.tables import TABLES

#: The options xCAT accepts, in its spelling (a blank column is tmpfs).
OPTIONS = ("tmpfs", "rw", "tmpfs,rw", "persistent", "ro", "con", "link", "link,ro",
           "link,persistent", "link,con", "localdisk")
PERSISTENT = ("persistent", "link,persistent")
ALL = "ALL"
TABLE_FILE = ".statelite/litefile.table"
DEFAULTS = ".default"


class LiteError(XcatError):
    """A statelite table or image problem, naming the entry."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.BAD_REQUEST) -> None:
        super().__init__(message, kind=kind)


@dataclass(frozen=True)
class LiteFile:
    """One litefile row as it applies to an image."""

    image: str
    file: str
    options: str

    @property
    def is_dir(self) -> bool:
        return self.file.endswith("/")

    @property
    def path(self) -> str:
        """The path without its trailing '/' (what two spellings of one file share)."""
        return self.file.rstrip("/") or "/"

    @property
    def link(self) -> bool:
        return self.options.split(",")[0] == "link"

    @property
    def persistent(self) -> bool:
        return self.options in PERSISTENT

    def label(self) -> str:
        return f"litefile entry '{self.image} {self.file} {self.options}'"


def parse_options(text: str | None) -> str:
    """The canonical spelling of an options column ('' is tmpfs; 'link' goes first), or
    the text as given when it is not one of xCAT's (check_entries names it)."""
    words = [w.strip() for w in (text or "").split(",") if w.strip()]
    if not words:
        return "tmpfs"
    canon = ",".join(sorted(words, key=lambda w: (w not in ("link", "tmpfs"), w)))
    return canon if canon in OPTIONS else ",".join(words)


# ---- which rows apply to an image ----------------------------------------------------------
def image_groups(db: Database, image: str) -> list[str]:
    rows = db.rows("osimage", keys=[image])
    return split_list(rows[0].get("groups")) if rows else []


def _rank(row_image: str, image: str, groups: list[str]) -> int | None:
    """How specific a row's image is for ``image``: 0 the image, 1 a group, 2 ALL."""
    if row_image == image:
        return 0
    if row_image in groups:
        return 1
    if row_image == ALL:
        return 2
    return None


def litefile_entries(db: Database, image: str) -> tuple[list[LiteFile], list[str]]:
    """The litefile rows that apply to ``image`` (the most specific one per path), sorted by
    path, and the errors of rows that say the same path twice at one level."""
    groups = image_groups(db, image)
    best: dict[str, tuple[int, LiteFile]] = {}
    errors: list[str] = []
    rows = sorted(db.rows("litefile"), key=lambda r: (r.get("image") or "", r.get("file") or ""))
    for row in rows:
        rank = _rank(row.get("image") or "", image, groups)
        if rank is None:
            continue
        entry = LiteFile(row["image"], (row.get("file") or "").strip(),
                         parse_options(row.get("options")))
        seen = best.get(entry.path)
        if seen is None or rank < seen[0]:
            best[entry.path] = (rank, entry)
        elif rank == seen[0]:
            errors.append(f"{entry.label()}: {entry.path} is already listed by "
                          f"{seen[1].label()}")
    return sorted((e for _, e in best.values()), key=lambda e: e.path), errors


def check_entries(entries: Iterable[LiteFile]) -> list[str]:
    """xCAT's rules for one image's list; each error names its entry."""
    entries = sorted(entries, key=lambda e: e.path)
    errors = []
    for e in entries:
        if not e.file.startswith("/"):
            errors.append(f"{e.label()}: the file must be an absolute path")
        elif "\x00" in e.file or "\n" in e.file or ".." in e.file.split("/") \
                or "//" in e.file or "/./" in e.file + "/":
            errors.append(f"{e.label()}: the path must not have '..', '.' or empty parts")
        elif e.path == "/":
            errors.append(f"{e.label()}: the root directory cannot be a litefile")
        elif any(c.isspace() for c in e.file):
            errors.append(f"{e.label()}: the path must not hold white space")
        if e.options not in OPTIONS:
            errors.append(f"{e.label()}: unknown option '{e.options}' (use one of "
                          f"{', '.join(OPTIONS)})")
        elif e.options in ("con", "link,con") and e.is_dir:
            errors.append(f"{e.label()}: {e.options} cannot be used on a directory "
                          "(only on a file)")
    dirs = [e for e in entries if e.is_dir and e.options in OPTIONS]
    for e in entries:
        if e.options not in OPTIONS:
            continue
        for parent in dirs:
            if parent is e or not e.path.startswith(parent.path.rstrip("/") + "/"):
                continue
            if parent.persistent and not e.persistent:
                errors.append(f"{e.label()}: its parent {parent.file} is {parent.options}, "
                              "so it must be persistent too")
            if parent.link != e.link:
                need = "a link option" if parent.link else "no link option"
                errors.append(f"{e.label()}: its parent {parent.file} is {parent.options}, "
                              f"so it must have {need}")
    return errors


def load_entries(db: Database, image: str) -> list[LiteFile]:
    """The checked litefile list of ``image``, or a LiteError listing every bad entry."""
    entries, errors = litefile_entries(db, image)
    errors += check_entries(entries)
    if errors:
        raise LiteError("; ".join(errors))
    return entries


# ---- litetree and statelite: per node ------------------------------------------------------
@dataclass(frozen=True)
class TreeDir:
    priority: str
    image: str
    directory: str
    mntopts: str


def _priority(value: str) -> tuple[float, str]:
    try:
        return float(value), value
    except ValueError:
        return float("inf"), value


def litetree_dirs(db: Database, image: str | None) -> list[TreeDir]:
    """The litetree rows for ``image`` (its own, its groups', ALL's and those with no
    image), by priority (smallest first); None: every row."""
    groups = image_groups(db, image) if image else []
    out = []
    for row in db.rows("litetree"):
        img = row.get("image") or ""
        if image is None or img in ("", ALL, image) or img in groups:
            out.append(TreeDir(row.get("priority") or "", img, row.get("directory") or "",
                               row.get("mntopts") or ""))
    return sorted(out, key=lambda t: _priority(t.priority))


_VAR = re.compile(r"\$(node\b|[A-Za-z_]\w*\.[A-Za-z_]\w*)")


def _columns(text: str, what: str) -> dict[str, set[str]]:
    """The ``$table.column`` references of ``text``; an unknown one is an error naming it."""
    wanted: dict[str, set[str]] = {}
    for m in _VAR.finditer(text):
        if m.group(1) == "node":
            continue
        table, column = m.group(1).split(".")
        if table not in TABLES or column not in TABLES[table].columns:
            raise LiteError(f"{what}: '${table}.{column}' is not a table column")
        wanted.setdefault(table, set()).add(column)
    return wanted


def substitute(db: Database, node: str, text: str, what: str,
               values: dict | None = None) -> str:
    """``text`` with ``$node`` and each ``$table.column`` replaced by the node's value (group
    inheritance and regex values as everywhere; ``values``: the node's, resolved already);
    an unknown column or an unset value is an error naming it and ``what``. (``#CMD=...#``
    is the node's own to run: left as it is.)"""
    wanted = _columns(text, what)
    if values is None:
        values = db.resolve([node], {t: sorted(c) for t, c in wanted.items()}).get(node, {}) \
            if wanted else {}

    def value(m: re.Match) -> str:
        if m.group(1) == "node":
            return node
        table, column = m.group(1).split(".")
        found = values.get((table, column))
        if not found:
            raise LiteError(f"{what}: {table}.{column} is not set for {node}",
                            ErrorKind.NOT_FOUND)
        return found

    return _VAR.sub(value, text)


def lite_sources(ctx, node: str, image: str) -> list[str]:
    """The directories ``node`` searches, in order, for the contents of ``image``'s
    litefiles: litetree's, with the node's values put in."""
    return [substitute(ctx.db, node, t.directory, f"litetree priority {t.priority}")
            for t in litetree_dirs(ctx.db, image)]


@dataclass(frozen=True)
class StateMount:
    statemnt: str       # server:/path as resolved for the node
    mntopts: str
    location: str       # where the node's persistent files live: <statemnt>/<node>


def state_mount(db: Database, node: str, got: dict | None = None,
                values: dict | None = None) -> StateMount | None:
    """The node's persistent area (statelite row of the node or its first group listing
    one), or None when it has none (``got``: its statelite values, ``values``: those its
    statemnt names, resolved already)."""
    if got is None:
        got = db.resolve([node], {"statelite": ["statemnt", "mntopts"]}).get(node, {})
    raw = got.get(("statelite", "statemnt"))
    if not raw:
        return None
    statemnt = substitute(db, node, raw, f"statelite.statemnt of {node}", values)
    if ":" not in statemnt or not statemnt.split(":", 1)[1].startswith("/"):
        raise LiteError(f"statelite.statemnt of {node} is '{statemnt}': it must be "
                        "server:/path")
    return StateMount(statemnt, got.get(("statelite", "mntopts")) or "",
                      f"{statemnt.rstrip('/')}/{node}")


# ---- the node's plan: what its initrd mounts and places at boot ----------------------------
def _host_path(db: Database, text: str, default_server: str, what: str,
               cache: dict[str, str] | None = None) -> tuple[str, str]:
    """(server address, path) of ``server:/path`` (a bare ``/path`` is on
    ``default_server``); a server named by host name is resolved here (once per ``cache``),
    since the initrd mounts by address."""
    host, sep, path = text.rpartition(":")
    if not sep:
        host, path = default_server, text
    if not path.startswith("/") or any(c.isspace() for c in path) or ".." in path.split("/"):
        raise LiteError(f"{what} is '{text}': the path must be absolute, with no white space "
                        "or '..'")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        return host, path
    except ValueError:
        pass
    cache = {} if cache is None else cache
    if host not in cache:
        got = db.resolve([host], {"hosts": ["ip"]}).get(host, {}).get(("hosts", "ip")) \
            if db.rows("nodelist", keys=[host]) else None
        if not got:
            try:
                got = socket.getaddrinfo(host, None, socket.AF_INET,
                                         socket.SOCK_STREAM)[0][4][0]
            except (OSError, UnicodeError):
                got = ""
        cache[host] = str(got)
    if not cache[host]:
        raise LiteError(f"{what} is '{text}': cannot resolve the server '{host}'",
                        ErrorKind.NOT_FOUND)
    return cache[host], path


def node_plan(db: Database, node: str, image: str, default_server: str) -> str:
    """The text the node's initrd follows, one directive a line (fields never hold white
    space): ``state <server> <path> <node> <mntopts|->`` (its persistent area is
    ``<path>/<node>`` on that NFS server), ``tree <server> <path> <mntopts|->`` for each
    litetree directory by priority, ``file <options> <path>`` for each litefile entry, parents
    first. LiteError names what stops it: a bad entry, an unset value, persistent entries
    without a statelite row."""
    plan = node_plans(db, [node], image, {node: default_server})[node]
    if isinstance(plan, LiteError):
        raise plan
    return plan


def node_plans(db: Database, nodes: list[str], image: str,
               servers: dict[str, str]) -> dict[str, str | LiteError]:
    """node_plan for many nodes (nodeset): the image's lists read once and every node's
    values in one resolve, whatever the number of nodes; a node's own problem is its
    LiteError, a bad list raises for all."""
    entries = load_entries(db, image)
    trees = litetree_dirs(db, image)
    lite = db.resolve(nodes, {"statelite": ["statemnt", "mntopts"]})
    wanted: dict[str, set[str]] = {}
    for text in [t.directory for t in trees] + [
            (v.get(("statelite", "statemnt")) or "") for v in lite.values()]:
        try:
            for table, cols in _columns(text, "").items():
                wanted.setdefault(table, set()).update(cols)
        except LiteError:
            pass  # named for each node below
    values = db.resolve(nodes, {t: sorted(c) for t, c in wanted.items()}) if wanted else {}
    hosts: dict[str, str] = {}
    persistent = any(e.persistent for e in entries)
    files = [f"file {e.options} {e.file}" for e in entries]
    out: dict[str, str | LiteError] = {}
    for node in nodes:
        mine = values.get(node, {})
        try:
            lines = [f"# statelite of {node} ({image})"]
            mount = state_mount(db, node, lite.get(node, {}), mine)
            if mount is not None:
                server, path = _host_path(db, mount.statemnt, servers[node],
                                          f"statelite.statemnt of {node}", hosts)
                lines.append(f"state {server} {path} {node} {_opts(mount.mntopts)}")
            elif persistent:
                raise LiteError(f"{image} has persistent litefile entries, but {node} has no "
                                "statelite.statemnt (server:/path) to keep them on",
                                ErrorKind.NOT_FOUND)
            for t in trees:
                what = f"litetree priority {t.priority}"
                server, path = _host_path(db, substitute(db, node, t.directory, what, mine),
                                          servers[node], what, hosts)
                lines.append(f"tree {server} {path} {_opts(t.mntopts)}")
            out[node] = "\n".join(lines + files) + "\n"
        except LiteError as exc:
            out[node] = exc
    return out


def _opts(text: str) -> str:
    opts = ",".join(w.strip() for w in (text or "").split(",") if w.strip())
    if any(c.isspace() for c in opts):
        raise LiteError(f"mount options '{text}' must not hold white space")
    return opts or "-"


# ---- liteimg: the lists and the defaults into the image root -------------------------------
def _inside(root: Path, rel: str) -> Path | None:
    """Where ``rel`` (an absolute path in the image) is in the tree ``root``, following
    links as the node would (an absolute target starts at the image's root), never out of
    it; None when it does not exist."""
    parts = [p for p in rel.split("/") if p]
    cur = root
    hops = 0
    while parts:
        name = parts.pop(0)
        nxt = cur / name
        if nxt.is_symlink() and parts:  # a link in the middle: follow it inside the image
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(nxt)
            base = root if target.startswith("/") else cur
            parts = [p for p in target.split("/") if p] + parts
            cur = base
            continue
        if name == "..":
            cur = cur.parent if cur != root else root
            continue
        cur = nxt
    return cur if cur.is_symlink() or cur.exists() else None


def _copy(src: Path, dst: Path) -> None:
    """Copy a file, link or directory keeping modes, owners and times."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True, copy_function=_copy_one)
        _owner(src, dst)
        for dirpath, dirnames, _files in os.walk(src):
            for name in dirnames:
                s = Path(dirpath) / name
                _owner(s, dst / s.relative_to(src))
    else:
        _copy_one(str(src), str(dst))


def _copy_one(src: str, dst: str) -> None:
    shutil.copy2(src, dst, follow_symlinks=False)
    _owner(Path(src), Path(dst))


def _owner(src: Path, dst: Path) -> None:
    st = src.lstat()
    try:
        os.lchown(dst, st.st_uid, st.st_gid)
    except PermissionError:  # not root (tests): the owner stays ours
        pass


def write_image_lists(rootimg: Path, entries: list[LiteFile]) -> list[str]:
    """Write ``.statelite/litefile.table`` (one ``image file options`` per line) and a fresh
    ``.default/`` holding the image's own copy of each listed path, built aside and swapped
    in; returns the listed paths the image does not have (the node starts without them)."""
    missing = []
    aside = rootimg / (DEFAULTS + ".new")
    if aside.exists():
        shutil.rmtree(aside)
    aside.mkdir(mode=0o755)
    for e in entries:
        src = _inside(rootimg, e.path)
        if src is None:
            missing.append(e.file)
            continue
        _copy(src, aside / e.path.lstrip("/"))
    old = rootimg / (DEFAULTS + ".old")
    if old.exists():
        shutil.rmtree(old)
    current = rootimg / DEFAULTS
    if current.exists():
        current.rename(old)
    aside.rename(current)
    if old.exists():
        shutil.rmtree(old)
    (rootimg / ".statelite").mkdir(mode=0o755, exist_ok=True)
    text = "".join(f"{e.image} {e.file} {e.options}\n" for e in entries)
    write_atomic(rootimg / TABLE_FILE, text, mode=0o644)
    return missing
