"""xcatimport: make this management node the one an archive pictures.

In order, and nothing changes before step 5:
1. read the archive into a private staging directory (a ``.tar.zst`` is streamed; a ``-p``
   directory is read where it is), hashing every entry;
2. check the manifest: its format, its MAC and the passphrase (when secrets are sealed), then
   every entry's sha256 and size against it (a flipped byte fails the import, naming the
   entry);
3. read the tables, put the secrets back into their columns, apply ``--remap``;
4. compare with this management node: what ``--dry-run`` prints, object by object; refuse to
   overwrite nodes unless ``--replace``;
5. write every changed file beside its destination under a temporary name; in ONE database
   transaction write every table, rename the files into place (see placing.py: the files
   replaced are kept until the commit, and put back if it does not happen, a kill included),
   commit. A kill before the commit leaves the database and the files as they were;
6. after the commit: the server certificate reissued for the remapped names, client
   certificates placed, and the generated configuration (hosts, DHCP, DNS, boot files)
   regenerated through the request pipeline.
"""
from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from xcatd.base.noderange import fold
from xcatd.base.paths import Paths
from xcatd.db.database import TABLES, Database, DBError
from xcatd.db.servicenodes import boot_states
from xcatd.db.tablecsv import parse_csv
from xcatd.security.credentials import (
    ca_files,
    ca_key_present,
    client_dir,
    issue_client_cert,
    reissue_server_cert,
    server_files,
    server_names,
)
from xcatd.tables import is_secret
from xcatd.transfer.archive import (
    MANIFEST,
    ArchiveError,
    Entry,
    Read,
    read_dir,
    read_tar,
    refused_place,
)
from xcatd.transfer.exporting import FORMAT, LOG_TABLES, audit_row, canonical, machine
from xcatd.transfer.placing import PlaceError, Placer, alive, as_user, copy_checked, recover
from xcatd.transfer.remap import Remap
from xcatd.transfer.secretbox import Box, PassphraseError

Progress = Callable[[str, int, int], None]
#: what --merge keeps of this management node: its identity (a merge adds objects; it does
#: not make this node the archive's)
IDENTITY = ("files/etc/xcat/ca/", "files/etc/xcat/cert/", "files/root/.ssh/", "homes/")


class ImportError_(Exception):
    """The import cannot go on; nothing was changed. The message names the cause."""


@dataclass
class ImportOptions:
    remap: Remap = field(default_factory=Remap)
    dry_run: bool = False
    mode: str = "fresh"             # fresh | merge | replace
    passphrase: bytes | Callable[[], bytes] | None = None  # a callable asks when needed
    user: str = "root"


@dataclass
class FilePlan:
    entry: Entry
    dest: Path
    state: str                      # new | changed | same
    owner: tuple[int, int] | None = None


@dataclass
class Outcome:
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ---- steps 1 and 2: read and verify --------------------------------------------------------
def staging_dir(paths: Paths) -> Path:
    """A private directory for this import under var/lib/xcat; those of imports that died
    are removed first."""
    base = paths.var_lib
    base.mkdir(parents=True, exist_ok=True)
    for old in base.glob("xcatimport.*"):
        try:
            pid = int(old.name.split(".", 1)[1])
        except ValueError:
            continue
        if not alive(pid):
            shutil.rmtree(old, ignore_errors=True)
    d = base / f"xcatimport.{os.getpid()}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(mode=0o700)
    return d


def read_archive(source: Path, staging: Path, progress: Progress | None) -> Read:
    total = source.stat().st_size if source.is_file() else 0
    done = 0

    def moved(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress("reading", done, total)

    if source.is_dir():
        return read_dir(source, moved)
    if not source.exists():
        raise ImportError_(f"{source}: no such file or directory")
    return read_tar(source, staging, moved)


Passphrase = bytes | Callable[[], bytes] | None


def check_manifest(read: Read, passphrase: Passphrase) -> tuple[dict, Box | None]:
    """The manifest, checked: format, passphrase, MAC, and every entry's hash and size."""
    try:
        manifest = json.loads(read.manifest)
        fmt = manifest["format"]
        entries = [Entry.from_dict(e) for e in manifest["entries"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ImportError_(f"{MANIFEST} is not an xcatexport manifest ({exc})") from None
    if not isinstance(fmt, int) or fmt > FORMAT:
        raise ImportError_(f"the archive's format {fmt} is newer than this pyxcat reads "
                           f"(format {FORMAT}): install the pyxcat version that wrote it "
                           f"({manifest.get('pyxcat', 'unknown')}), or newer, and import "
                           "again")
    box = None
    if not manifest.get("encryption") and isinstance(passphrase, bytes):
        raise ImportError_(f"a passphrase was given but the archive's secrets are not "
                           f"encrypted (it says --secrets {manifest.get('secrets', '?')}): an "
                           "archive that should be encrypted may have been replaced; import "
                           "it without --passphrase-file if you trust it")
    if manifest.get("encryption"):
        if passphrase is None:
            raise ImportError_("the archive's secrets are encrypted: give the passphrase "
                               "with --passphrase-file FILE (or type it on a terminal)")
        if callable(passphrase):
            passphrase = passphrase()
        try:
            box = Box.from_params(passphrase, manifest["encryption"])
            box.check()
        except PassphraseError as exc:
            raise ImportError_(str(exc)) from None
        if not box.verify(canonical(manifest), manifest.get("mac", "")):
            raise ImportError_(f"{MANIFEST} was changed after the export (its MAC does not "
                               "match)")
    names = {e.name for e in entries}
    for e in entries:
        got = read.staged.get(e.name)
        if got is None:
            raise ImportError_(f"{e.name} is in the manifest but not in the archive")
        if got.size != e.size or got.sha256 != e.sha256 or (got.link or None) != e.link:
            raise ImportError_(f"{e.name}: its sha256 or size does not match the manifest: "
                               "the archive was changed or damaged")
    extra = sorted(set(read.staged) - names)
    if extra:
        raise ImportError_(f"{extra[0]} is in the archive but not in its manifest")
    manifest["_entries"] = entries
    return manifest, box


def _entry_bytes(read: Read, entry: Entry, box: Box | None) -> bytes:
    staged = read.staged[entry.name]
    assert staged.path is not None
    if staged.size > 256 << 20:
        raise ImportError_(f"{entry.name} is too large to read whole")
    data = staged.path.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry.sha256:  # changed since it was hashed
        raise ImportError_(f"{entry.name} changed while it was imported")
    if entry.sealed:
        if box is None:
            raise ImportError_(f"{entry.name} is sealed but the manifest says no passphrase")
        try:
            return box.open_bytes(entry.name, data)
        except PassphraseError as exc:
            raise ImportError_(str(exc)) from None
    return data


# ---- step 3: tables ----------------------------------------------------------------------
def load_tables(read: Read, manifest: dict, box: Box | None, remap: Remap
                ) -> dict[str, list[dict]]:
    entries = {e.name: e for e in manifest["_entries"]}
    listed = manifest.get("tables") or {}
    unknown = sorted(t for t in listed if t not in TABLES)
    if unknown:
        raise ImportError_("the archive has tables this pyxcat does not know "
                           f"({', '.join(unknown)}): "
                           f"it was written by {manifest.get('pyxcat', 'a newer pyxcat')}; "
                           "import it with that version or newer")
    for t, info in listed.items():
        extra = [c for c in info.get("columns", []) if c not in TABLES[t].columns]
        if extra:
            raise ImportError_(f"the archive's table {t} has columns this pyxcat does not know "
                               f"({', '.join(extra)}): import it with a newer pyxcat")
    secrets: dict[str, list[list]] = {}
    if "secrets.json" in entries:
        try:
            secrets = json.loads(_entry_bytes(read, entries["secrets.json"], box))
        except ValueError:
            raise ImportError_("secrets.json is not JSON") from None
    tables: dict[str, list[dict]] = {}
    for t in sorted(listed):
        name = f"tables/{t}.csv"
        if name not in entries:
            raise ImportError_(f"{name} is listed in the manifest's tables but not an entry")
        try:
            rows = parse_csv(t, _entry_bytes(read, entries[name], box).decode("utf-8"))
        except (DBError, UnicodeDecodeError) as exc:
            raise ImportError_(f"{name}: {exc}") from None
        _restore_secrets(t, rows, secrets.get(t, []))
        if remap and t not in LOG_TABLES:
            rows = [{c: (remap.apply(v) if isinstance(v, str) and not is_secret(t, c) else v)
                     for c, v in r.items()} for r in rows]
        tables[t] = rows
    return tables


def _key(table: str, row: dict) -> tuple:
    return tuple("" if row.get(k) is None else str(row.get(k)) for k in TABLES[table].keys)


def _restore_secrets(table: str, rows: list[dict], secrets: list[list]) -> None:
    if not secrets:
        return
    ncols = len(TABLES[table].keys)
    by_key = {_key(table, r): r for r in rows}
    for item in secrets:
        key, col, value = tuple(item[:ncols]), item[ncols], item[ncols + 1]
        if not is_secret(table, col) or key not in by_key:
            raise ImportError_(f"secrets.json names {table}.{col} of a row the table lacks")
        by_key[key][col] = value


# ---- step 4: compare ---------------------------------------------------------------------
_OBJECT = {"site": "site", "policy": "policy", "networks": "network", "osimage": "osimage",
           "linuximage": "osimage", "osdistro": "osdistro", "passwd": "passwd",
           "nodegroup": "group"}


class _Obj:
    __slots__ = ("detail", "diffs", "here", "there")

    def __init__(self) -> None:
        self.here = self.there = False
        self.diffs: set[str] = set()
        self.detail: list[str] = []


def diff_tables(db: Database, tables: dict[str, list[dict]], mode: str, conn
                ) -> tuple[list[str], dict[str, int], set[str], set[str], list[str]]:
    """What the import changes, object by object (a node or group gathers its rows of every
    table): lines for --dry-run, counts, this node's nodes, the archive's nodes, and the
    objects other than nodes and site keys that both sides define differently (what
    --merge refuses)."""
    here_nodes = {r["node"] for r in db.rows("nodelist", conn, include_disabled=True)}
    new_nodes = {r["node"] for r in tables.get("nodelist", [])}
    everyone = here_nodes | new_nodes
    objs: dict[tuple[str, str], _Obj] = {}

    def obj(t: str, key: tuple) -> _Obj:
        k = _object(t, key, everyone)
        o = objs.get(k)
        if o is None:
            o = objs[k] = _Obj()
        return o

    for t, rows in tables.items():
        if t in LOG_TABLES:
            continue
        current = {_key(t, r): r for r in db.rows(t, conn, include_disabled=True)}
        if mode == "merge" and t == "site":  # a merge keeps this node's site values
            rows = [r for r in rows if _key(t, r) not in current]
            current = {}
        if not current:  # nothing here to compare with (most tables of a fresh node)
            by_node = TABLES[t].keys[0] == "node"
            names = {(r["node"],) for r in rows} if by_node else {_key(t, r) for r in rows}
            for name in names:
                o = obj(t, name)
                o.there = True
                o.diffs.add(t)
            continue
        for r in rows:
            key = _key(t, r)
            o = obj(t, key)
            o.there = True
            old = current.pop(key, None)
            if old is None:
                o.diffs.add(f"{t} (new)")
                continue
            o.here = True
            cols = [c for c in TABLES[t].columns if c != TABLES[t].autoincrement
                    and (r.get(c) or None) != (old.get(c) or None)]
            o.diffs.update(f"{t}.{c}" for c in cols)
            if t == "site" and cols == ["value"]:
                o.detail.append(f"{old.get('value') or ''} -> {r.get('value') or ''}")
        for key in current:  # rows only this node has
            o = obj(t, key)
            o.here = True
            if mode != "merge":
                o.diffs.add(f"{t} (removed)")
    lines = []
    counts = {"new": 0, "changed": 0, "removed": 0}
    clashes = []
    for (kind, name), o in sorted(objs.items()):
        if not o.diffs:
            continue
        state = "changed" if o.here and o.there else "new" if o.there else "removed"
        counts[state] += 1
        if state == "changed" and kind not in ("node", "site"):
            clashes.append(f"{kind} {name}")
        if state == "changed":
            text = "; ".join(o.detail) or ", ".join(sorted(o.diffs))
            lines.append(f"{kind} {name}: changed ({text})")
        else:
            lines.append(f"{kind} {name}: {state}")
    return lines, counts, here_nodes, new_nodes, clashes


def _object(table: str, key: tuple, nodes: set[str]) -> tuple[str, str]:
    if TABLES[table].keys[0] == "node":  # a node's (or group's) row, whatever other keys
        return ("node" if key[0] in nodes else "group", key[0])
    kind = _OBJECT.get(table, table)
    return (kind, ",".join(k for k in key if k) if len(key) > 1 else key[0])


def plan_files(paths: Paths, manifest: dict, tables: dict[str, list[dict]], opts: ImportOptions,
               opened: Callable[[Entry], bytes]) -> tuple[list[FilePlan], list[str]]:
    """Where each file entry goes, and whether it changes anything there."""
    plans: list[FilePlan] = []
    warnings: list[str] = []
    site = {r["key"]: r.get("value") for r in tables.get("site", [])}
    installdir = (site.get("installdir") or "/install").strip("/")
    # without the CA's key, the archive's CA certificate would sit beside this node's own
    # key: this node keeps its own CA whole (and the certificates it signed)
    keep_ca = "files/etc/xcat/ca/ca-key.pem" in (manifest.get("redacted") or [])
    if keep_ca:
        warnings.append("the archive holds no CA key (--secrets redact): this management "
                        "node keeps its own CA and certificates, so the certificates the "
                        "exporting node issued (users', nodes') do not verify here: issue "
                        "them again (xcatclientcert, updatenode -k)")
    if opts.mode == "merge":
        warnings.append("--merge keeps this management node's CA, server certificate, ssh "
                        "keys and users' certificates: the merged nodes need new certificates "
                        "(updatenode -k) and root's keys (xdsh -K)")
    for e in manifest["_entries"]:
        if opts.mode == "merge" and e.name.startswith(IDENTITY):
            continue
        if keep_ca and (e.name.startswith(("files/etc/xcat/ca/", "files/etc/xcat/cert/"))
                        or (e.name.startswith("homes/") and e.name.endswith("/.xcat/ca.pem"))):
            continue
        owner = None
        if e.name.startswith("files/"):
            rel = e.name[len("files/"):]
            why = refused_place(rel, installdir)
            if why:  # never written by xcatexport: a crafted archive
                raise ImportError_(f"{e.name} is {why}: not a file xcatimport places")
            dest = paths.root / rel
            _inside(paths, dest, e.name)
        elif e.name.startswith("homes/"):
            who, rest = e.name[len("homes/"):].split("/", 1)
            if who == opts.user:
                dest = client_dir() / rest.split("/", 1)[1]
            else:
                try:
                    pw = pwd.getpwnam(who)
                except KeyError:
                    warnings.append(f"{who} has no account on this machine: their client "
                                    "certificate was not placed (it stays valid here: the CA "
                                    "was imported)")
                    continue
                dest = client_dir(pw.pw_dir) / rest.split("/", 1)[1]
                owner = (pw.pw_uid, pw.pw_gid)
        else:
            continue
        plans.append(FilePlan(e, dest, _state(dest, e, opened), owner))
    return plans, warnings


def _inside(paths: Paths, dest: Path, name: str) -> None:
    """No entry is placed through a symbolic link that leads out of the root."""
    root = paths.root.resolve()
    parent = dest.parent
    while not parent.exists():
        parent = parent.parent
    if not (parent.resolve() == root or root in parent.resolve().parents):
        raise ImportError_(f"{name} would be written outside the management node's root "
                           f"(through {parent})")


#: sealed files larger than this are not opened twice to compare (they are placed)
COMPARE_MAX = 16 << 20


def _state(dest: Path, e: Entry, opened: Callable[[Entry], bytes]) -> str:
    try:
        st = dest.lstat()
    except OSError:
        return "new"
    if e.link is not None:
        return "same" if dest.is_symlink() and os.readlink(dest) == e.link else "changed"
    if not dest.is_file() or dest.is_symlink() or (st.st_mode & 0o7777) != _mode(e):
        return "changed"
    if e.sealed:
        if st.st_size > COMPARE_MAX:
            return "changed"
        try:
            return "same" if dest.read_bytes() == opened(e) else "changed"
        except OSError:
            return "changed"
    if st.st_size != e.size:
        return "changed"
    sha = hashlib.sha256()
    with open(dest, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
    return "same" if sha.hexdigest() == e.sha256 else "changed"


def _mode(e: Entry) -> int:
    """The mode a file is placed with: the archive's, without set-id bits; a secret is
    readable by its owner alone."""
    return e.mode & (0o700 if e.secret else 0o1777)


# ---- step 5: apply -------------------------------------------------------------------------
def stage_file(placer: Placer, read: Read, plan: FilePlan, box: Box | None) -> None:
    """Write one changed file beside its destination (see placing.py)."""
    e = plan.entry
    tmp = placer.temp_for(plan.dest, plan.owner, e.secret)
    if e.link is not None:
        with as_user(plan.owner):
            os.symlink(e.link, tmp)
        return
    staged = read.staged[e.name]
    assert staged.path is not None
    if not e.sealed and plan.owner is None and staged.own:
        try:  # our private staging copy, hashed as it was written: moved, not copied
            os.rename(staged.path, tmp)
        except OSError:  # another file system: copied below
            pass
        else:
            os.chmod(tmp, _mode(e))
            if e.mtime is not None:
                os.utime(tmp, (e.mtime, e.mtime))
            return

    def fill(fd: int) -> None:
        if e.sealed:
            assert box is not None
            with open(staged.path, "rb") as fh:  # type: ignore[arg-type]
                try:
                    for chunk in box.open_stream(e.name, fh, e.size):
                        _write_all(fd, chunk)
                except PassphraseError as exc:
                    raise ImportError_(str(exc)) from None
        else:
            try:
                copy_checked(staged.path, fd, e.sha256, e.name)  # type: ignore[arg-type]
            except PlaceError as exc:
                raise ImportError_(str(exc)) from None
        os.fchmod(fd, _mode(e))
        if e.mtime is not None:
            os.utime(fd, (e.mtime, e.mtime))

    placer.write(tmp, plan.owner, fill)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_tables(db: Database, conn, tables: dict[str, list[dict]], mode: str) -> None:
    for t in sorted(tables):
        rows = tables[t]  # as parse_csv made them: every column of the archive's header
        if t in LOG_TABLES:
            db.replace_rows(conn, t, rows, append=mode == "merge")
        elif mode in ("replace", "fresh"):
            db.replace_rows(conn, t, rows)
        else:
            keys = TABLES[t].keys
            if t == "site":  # a merge keeps this node's site values, adds the others
                have = {r["key"] for r in db.rows("site", conn, include_disabled=True)}
                rows = [r for r in rows if r.get("key") not in have]
            cols = [c for c in TABLES[t].columns if c not in keys and c != TABLES[t].autoincrement]
            db.set_rows(conn, t, {tuple(r.get(k) if r.get(k) is not None else ""
                                        for k in keys):
                                  {c: r.get(c) for c in cols}  # a column it lacks is cleared
                                  for r in rows})


# ---- the import ---------------------------------------------------------------------------
class Importer:
    def __init__(self, paths: Paths, db: Database, source: Path, opts: ImportOptions,
                 progress: Progress | None = None) -> None:
        self.paths, self.db, self.source, self.opts = paths, db, source, opts
        self.progress = progress
        self.out = Outcome()

    def run(self) -> Outcome:
        self.db.check_ready()
        self.out.lines += recover(self.paths.var_lib, self._committed)
        staging = staging_dir(self.paths)
        try:
            return self._run(staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _committed(self, import_id: str) -> bool:
        """Whether the import ``import_id`` committed (its auditlog row is there)."""
        return self.db.has_audit_comment(f"import {import_id} ")

    def _say(self, line: str) -> None:
        self.out.lines.append(line)

    def _run(self, staging: Path) -> Outcome:
        opts = self.opts
        try:
            read = read_archive(self.source, staging, self.progress)
        except ArchiveError as exc:
            raise ImportError_(str(exc)) from None
        manifest, box = check_manifest(read, opts.passphrase)
        src = manifest.get("source") or {}
        entries: list[Entry] = manifest["_entries"]
        self._say(f"Archive {self.source}: format {manifest['format']}, "
                  f"{manifest.get('pyxcat', 'unknown')}, from {src.get('hostname', '?')} "
                  f"({', '.join(src.get('addresses') or []) or 'no address recorded'}), "
                  f"created {manifest.get('created', '?')}")
        self._say(f"Verified {len(entries)} entries ({_amount(sum(e.size for e in entries))})")
        if manifest.get("secrets") == "redact":
            self.out.warnings.append("the archive was exported with --secrets redact: "
                                     "passwords and private keys are not in it")
        tables = load_tables(read, manifest, box, opts.remap)
        self._check_master(tables)
        with self.db.connect() as conn:
            lines, counts, here, incoming, clashes = diff_tables(self.db, tables, opts.mode,
                                                                 conn)
        if opts.mode == "fresh" and here:
            raise ImportError_(f"this management node already has {len(here)} nodes "
                               f"({_few(here)}): give --merge to add the archive's objects "
                               "beside them, or --replace to replace this node's "
                               "configuration with the archive's")
        if opts.mode == "merge":
            both = here & incoming
            if both:
                raise ImportError_(f"{len(both)} of the archive's nodes are defined here "
                                   f"already ({_few(both)}): --replace overwrites them")
            if clashes:  # a group's or image's change would change this node's own objects
                raise ImportError_(f"{len(clashes)} objects are defined here and in the "
                                   f"archive with different values ({_few(set(clashes))}): "
                                   "--merge only adds; make them agree, or --replace")
        files, warnings = plan_files(self.paths, manifest, tables, opts,
                                     lambda e: _entry_bytes(read, e, box))
        self.out.warnings += warnings
        for old, n in (opts.remap.counts.items() if opts.remap else ()):
            new = dict(opts.remap.rules)[old]
            self._say(f"Remapped {old} -> {new} in {n} values")
        if opts.dry_run:
            for line in lines:
                self._say(line)
            for f in files:
                if f.state != "same":
                    self._say(f"file {f.dest}: {f.state}")
            changed = sum(1 for f in files if f.state != "same")
            self._say(f"Would import: {counts['new']} new, {counts['changed']} changed and "
                      f"{counts['removed']} removed objects; {changed} of {len(files)} "
                      "files new or changed. Nothing was changed (--dry-run).")
            return self.out
        self._apply(read, box, tables, files, manifest)
        placed = sum(1 for f in files if f.state != "same")
        self._say(f"Imported {counts['new']} new, {counts['changed']} changed and "
                  f"{counts['removed']} removed objects; placed {placed} of its "
                  f"{len(files)} files (the others were already the same here)")
        self._after(manifest)
        return self.out

    def _check_master(self, tables: dict[str, list[dict]]) -> None:
        """Warn when site.master (after --remap) is not an address of this machine."""
        site = {r["key"]: r.get("value") for r in tables.get("site", [])}
        master = site.get("master") or ""
        here = _my_addresses()
        if master and master not in here and not master.startswith("127."):
            self.out.warnings.append(f"site.master is {master}, which is not an address of "
                                     f"this machine: give --remap {master}=<this management "
                                     "node's address> (or chdef -t site master=...)")

    def _apply(self, read: Read, box: Box | None, tables: dict[str, list[dict]],
               files: list[FilePlan], manifest: dict) -> None:
        import_id = uuid.uuid4().hex
        placer = Placer(self.paths.var_lib, import_id)
        committed = False
        try:
            todo = [f for f in files if f.state != "same"]
            for i, f in enumerate(todo):
                if self.progress:
                    self.progress("placing files", i, len(todo))
                if f.owner is None:
                    stage_file(placer, read, f, box)
                    continue
                try:  # a user's home: what the user does there is not the import's failure
                    stage_file(placer, read, f, box)
                except OSError as exc:
                    placer.drop(f.dest)
                    self.out.warnings.append(f"{f.dest} was not placed ({exc.strerror}): "
                                             "issue that user's certificate again "
                                             "(xcatclientcert)")
            if self.progress:
                self.progress("writing tables", 0, 0)
            with self.db.begin() as conn:
                write_tables(self.db, conn, tables, self.opts.mode)
                self.db.insert_row(conn, "auditlog", audit_row(
                    self.opts.user, "xcatimport", _audit_args(self.opts, self.source),
                    f"import {import_id} from "
                    f"{(manifest.get('source') or {}).get('hostname', '?')}"))
                placer.commit()  # renames, the replaced files kept; the commit follows
            committed = True
        except PlaceError as exc:
            placer.abort()
            raise ImportError_(str(exc)) from None
        except BaseException:
            if not committed:
                placer.abort()
            raise
        placer.finish()
        for f in files:  # same content: the archive's time too (xdcp and rsync look at it)
            if f.state == "same" and f.entry.mtime is not None and f.entry.link is None:
                try:
                    if int(f.dest.stat().st_mtime) != f.entry.mtime:
                        with as_user(f.owner):
                            os.utime(f.dest, (f.entry.mtime, f.entry.mtime))
                except OSError:
                    pass

    def _after(self, manifest: dict) -> None:
        """After the commit: certificates for this machine, then the generated files."""
        paths = self.paths
        if not ca_key_present(paths):
            self.out.warnings.append("the archive holds no CA key (--secrets redact): this "
                                     "management node cannot issue certificates until one is "
                                     "placed in " + str(ca_files(paths)[0]))
            return
        if server_files(paths).cred.is_file():
            try:
                names = server_names(paths)
            except (OSError, ValueError):
                names = []
            want = [self.opts.remap.apply(n) or n for n in names] if self.opts.remap else names
            site = self.db.site()
            mine = [socket.gethostname(), socket.getfqdn(), "localhost", "127.0.0.1", "::1",
                    *([site.get("master")] if site.get("master") else [])]
            new = list(dict.fromkeys([*(want or mine[:1]), *mine]))
            if new != names:
                reissue_server_cert(paths, new)
                self._say("Reissued the server certificate for "
                          f"{', '.join(new)} (signed by the imported CA)")
        me = self.opts.user
        if not any(e.name.startswith(f"homes/{me}/") for e in manifest["_entries"]):
            issue_client_cert(paths, me, client_dir(), force=True)
            self._say(f"Issued {me}'s client certificate from the imported CA in {client_dir()}")


def _audit_args(opts: ImportOptions, source: Path) -> str:
    args = [f"-{'p' if source.is_dir() else 'f'} {source}"]
    args += [f"--remap {a}={b}" for a, b in opts.remap.rules]
    if opts.mode != "fresh":
        args.append(f"--{opts.mode}")
    return " ".join(args)


def _my_addresses() -> set[str]:
    return set(machine({})["addresses"]) | {"127.0.0.1"}


def _few(names: set[str], n: int = 5) -> str:
    s = sorted(names)
    return ", ".join(s[:n]) + (f" and {len(s) - n} more" if len(s) > n else "")


def _amount(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} bytes"


def regenerate_requests(db: Database) -> Iterator[tuple[str, str | None, dict]]:
    """What rebuilds the generated files from the imported tables: (command, noderange,
    args), in order: the boot loaders in the TFTP root (site.tftpdir may differ from this
    node's), hosts, DHCP, DNS, then each node's boot files in its current state."""
    yield "mknb", None, {"arch": "x86_64"}
    yield "makehosts", None, {}
    yield "makedhcp", None, {"new": True}
    yield "makedns", None, {"new": True}
    for state, nodes in boot_states(db).items():
        yield "nodeset", ",".join(nodes), {"state": state}


def regenerate(db: Database, user: str) -> Iterator[tuple[str, list[str]]]:
    """Run each regeneration request through the request pipeline in this process (policy,
    audit and job records as for any request); (the command as typed, its errors)."""
    from xcatd.base.request import Request
    from xcatd.daemon.pipeline import run_local
    for command, noderange, args in regenerate_requests(db):
        shown = fold(noderange.split(",")) if noderange else None
        typed = " ".join([command, *([shown] if shown else []),
                          *(["-n"] if args.get("new") else []),
                          *([args["arch"]] if "arch" in args else []),
                          *([args["state"]] if "state" in args else [])])
        errors = []
        req = Request(command=command, noderange=noderange, args=args, user=user,
                      client=socket.gethostname())
        for resp in run_local(req, user=user):
            if resp.error:
                errors.append(f"{resp.node}: {resp.error}" if resp.node else resp.error)
        yield typed, errors
