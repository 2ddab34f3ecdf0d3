"""xcatexport: a picture of the management node, everything but the base distribution.

Tables are read in one snapshot; files are those the configuration is made of (see
``file_sources``). Secrets (the secret columns, private keys, users' client keys) are sealed
with the passphrase (``encrypt``), left out (``redact``) or kept in clear (``plain``); the
master key that encrypts them in the database never leaves the machine.
"""
from __future__ import annotations

import datetime
import io
import json
import os
import pwd
import re
import socket
import stat
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa
from cryptography import x509

from xcatd.base.paths import Paths
from xcatd.base.version import current as version_line
from xcatd.db.database import TABLES, Database, split_list
from xcatd.db.tablecsv import csv_header, csv_rows
from xcatd.provision.synclist import parse as parse_synclist
from xcatd.security.credentials import ca_files, client_dir
from xcatd.tables import is_secret
from xcatd.transfer.archive import Writer, is_secret_file, refused_place
from xcatd.transfer.secretbox import Box, sealed_size

FORMAT = 1
#: logs and history: exported with -a only (as dumpxCATdb -a)
LOG_TABLES = ("auditlog", "eventlog", "jobs", "jobresults", "nodeevents")

Progress = Callable[[str, int, int], None]


def schema_version() -> str:
    """A short digest of the schema (tables and their columns): an archive whose schema this
    pyxcat does not know names the tables and columns it lacks."""
    import hashlib
    text = ";".join(f"{t}:{','.join(TABLES[t].columns)}" for t in sorted(TABLES))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class ExportOptions:
    logs: bool = False
    images: bool = False
    media: bool = False
    secrets: str = "encrypt"      # encrypt | redact | plain
    box: Box | None = None


@dataclass
class Source:
    """A file to export: its archive name, its path here, and whether it is a secret."""

    name: str
    path: Path
    secret: bool = False
    user: str | None = None


@dataclass
class ExportResult:
    manifest: dict
    warnings: list[str] = field(default_factory=list)


# ---- what the management node is --------------------------------------------------------
def machine(site: dict[str, str]) -> dict:
    """The exporting management node's name and addresses (the manifest's ``source``)."""
    addrs: list[str] = []
    try:
        out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
        for iface in json.loads(out or "[]"):
            for a in iface.get("addr_info", []):
                if a.get("scope") == "global":
                    addrs.append(a["local"])
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    return {"hostname": socket.gethostname(), "fqdn": socket.getfqdn(),
            "master": site.get("master") or "", "domain": site.get("domain") or "",
            "addresses": sorted(set(addrs))}


# ---- tables -----------------------------------------------------------------------------
def _key(table: str, row: dict) -> tuple:
    tdef = TABLES[table]
    keys = tdef.keys if tdef.keys else tdef.columns[:1]
    return tuple("" if row.get(k) is None else str(row.get(k)) for k in keys)


def table_rows(db: Database, conn: sa.Connection, table: str) -> list[dict]:
    """Every row, disabled ones too, in the table's own order (xcatimport inserts them in
    that order, so tabdump lists them as it did here)."""
    rows = db.rows(table, conn, include_disabled=True)
    auto = TABLES[table].autoincrement
    if auto:
        return sorted(rows, key=lambda r: r.get(auto) or 0)
    return rows


def split_secrets(table: str, rows: list[dict]) -> tuple[list[dict], list[list]]:
    """Rows with their secret columns emptied, and the secrets as [key..., column, value]."""
    cols = [c for c in TABLES[table].columns if is_secret(table, c)]
    if not cols:
        return rows, []
    secrets: list[list] = []
    out = []
    for r in rows:
        r = dict(r)
        for c in cols:
            if r.get(c) not in (None, ""):
                secrets.append([*_key(table, r), c, r[c]])
                r[c] = None
        out.append(r)
    return out, secrets


def table_csv(table: str, rows: list[dict]) -> bytes:
    lines = [csv_header(table), *csv_rows(table, rows, True)]
    return ("\n".join(lines) + "\n").encode()


# ---- files ------------------------------------------------------------------------------
def _tree(top: Path, skip: Callable[[Path], bool] = lambda p: False) -> Iterator[Path]:
    if top.is_symlink() or not top.is_dir():
        if top.exists() or top.is_symlink():
            yield top
        return
    for dirpath, dirnames, filenames in os.walk(top):
        base = Path(dirpath)
        dirnames.sort()
        for d in list(dirnames):
            if (base / d).is_symlink():
                dirnames.remove(d)
                yield base / d
            elif skip(base / d):
                dirnames.remove(d)
        for f in sorted(filenames):
            if not skip(base / f):
                yield base / f


_INCLUDE = re.compile(r"#INCLUDE:([^#\n]+)#")


def _closure(paths: Paths, first: Path, warnings: list[str], what: str) -> list[Path]:
    """A list file and every file its ``#INCLUDE:f#`` lines name, found as genimage finds
    them (beside the including file, or a management-node path under the root)."""
    out: list[Path] = []
    todo = [first]
    while todo:
        f = todo.pop()
        if f in out:
            continue
        out.append(f)
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        for m in _INCLUDE.finditer(text):
            name = m.group(1).strip()
            if "$" in name:
                continue
            inc = paths.under(name) if name.startswith("/") else f.parent / name
            if inc.is_file():
                todo.append(inc)
            else:
                warnings.append(f"{what}: {f} includes {name}, which is not on this "
                                "management node; not exported")
    return out


def _mn_file(paths: Paths, value: str) -> Path | None:
    """A table's management-node path as a file under the root (shipped files, which every
    installation has, are not exported)."""
    value = value.strip()
    if value.startswith("s:"):  # partitionfile=s:/path: a script
        value = value[2:]
    if not value.startswith("/"):
        return None
    p = paths.under(value)
    return p if p.exists() else None


def osimage_files(paths: Paths, db: Database, conn, warnings: list[str]) -> list[Path]:
    """Every osimage's own files: package, other-package and exclude lists, postinstall
    scripts, partition files and templates with their include closure, and its synclists
    with the management-node files they send."""
    found: list[Path] = []
    for r in db.rows("linuximage", conn):
        what = f"osimage {r['imagename']}"
        for col in ("pkglist", "otherpkglist", "exlist", "postinstall", "partitionfile",
                    "template"):
            for value in split_list(r.get(col)):
                f = _mn_file(paths, value)
                if f is None:
                    continue
                found += _closure(paths, f, warnings, what) if f.is_file() else [f]
    for r in db.rows("osimage", conn):
        for value in split_list(r.get("synclists")):
            f = _mn_file(paths, value)
            if f is None or not f.is_file():
                continue
            found.append(f)
            try:
                sl = parse_synclist(f.read_text(errors="replace"), str(f))
            except OSError:
                continue
            srcs = [s for line in sl.files for s in line.sources]
            srcs += [p.source for p in sl.append + sl.merge]
            srcs += [s.path for s in sl.execute + sl.executealways]
            for s in srcs:
                if any(ch in s for ch in "*?["):
                    continue
                g = _mn_file(paths, s)
                if g is not None:
                    found.append(g)
    return found


def image_dirs(paths: Paths, db: Database, conn) -> list[Path]:
    """Built images: the packed files in each osimage's rootimgdir (kernel, initrd, packed
    root image, manifest), not the unpacked tree genimage builds them from."""
    out = []
    for r in db.rows("linuximage", conn):
        d = r.get("rootimgdir")
        if d and paths.under(d).is_dir():
            out.append(paths.under(d))
    return out


def media_dirs(paths: Paths, db: Database, conn) -> list[Path]:
    out = []
    for r in db.rows("osdistro", conn):
        for d in split_list(r.get("dirpaths")):
            if paths.under(d).is_dir():
                out.append(paths.under(d))
    return out


def client_certs(paths: Paths, warnings: list[str]) -> list[tuple[str, Path]]:
    """(user, ~user/.xcat) of the users holding a client certificate of this CA: the one
    running the export and every local account."""
    try:
        ca = x509.load_pem_x509_certificate(ca_files(paths)[1].read_bytes())
    except (OSError, ValueError):
        return []
    seen: dict[str, Path] = {}
    me = pwd.getpwuid(os.geteuid()).pw_name if _has_uid(os.geteuid()) else str(os.geteuid())
    candidates = [(me, client_dir())]
    candidates += [(p.pw_name, client_dir(p.pw_dir)) for p in pwd.getpwall()
                   if p.pw_dir not in ("", "/", "/nonexistent")]
    for user, d in candidates:
        if user in seen or not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*", user):
            continue
        cred = d / "client-cred.pem"
        try:
            cert = x509.load_pem_x509_certificate(cred.read_bytes())
        except (OSError, ValueError):
            continue
        if cert.issuer == ca.subject:
            seen[user] = d
    return sorted(seen.items())


def _has_uid(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


def file_sources(paths: Paths, db: Database, conn, opts: ExportOptions,
                 warnings: list[str]) -> list[Source]:
    """Every file the archive takes, each once, in a stable order."""
    site = db.site(conn)
    install = site.installdir(paths)
    etc = paths.etc

    def etc_skip(p: Path) -> bool:
        return p.parent == etc and p.name.startswith(".")

    picked: list[Path] = []
    picked += _tree(etc, etc_skip)
    picked += _tree(paths.under("/root/.ssh"))
    picked += _tree(install / "postscripts")
    picked += _tree(install / "custom")
    picked += osimage_files(paths, db, conn, warnings)
    if opts.images:
        for d in image_dirs(paths, db, conn):
            picked += [p for p in _tree(d) if p.parent == d and not p.name.endswith(
                ".previous") and (p.is_file() or p.is_symlink())]
    if opts.media:
        for d in media_dirs(paths, db, conn):
            picked += _tree(d)
    out: dict[str, Source] = {}
    root = Path(os.path.normpath(paths.root.absolute()))
    installdir = str(site.installdir(paths).relative_to(paths.root)) \
        if site.installdir(paths).is_relative_to(paths.root) else "install"
    for p in picked:
        p = Path(os.path.normpath(p.absolute()))  # an include's ../ resolved
        try:
            rel = p.relative_to(root)
        except ValueError:
            warnings.append(f"{p} is outside the management node's root; not exported")
            continue
        why = refused_place(rel.as_posix(), installdir)
        if why:
            if rel.as_posix() not in ("etc/xcat/cfgloc", "etc/xcat/masterkey"):
                warnings.append(f"{p} is {why}: not exported (the new machine has its own)")
            continue
        name = f"files/{rel.as_posix()}"
        if name in out:
            continue
        try:
            st = p.lstat()
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            out[name] = Source(name, p)
        elif stat.S_ISREG(st.st_mode):
            out[name] = Source(name, p, is_secret_file(p, st))
        elif not stat.S_ISDIR(st.st_mode):
            warnings.append(f"{p} is not a regular file or a link; not exported")
    for user, d in client_certs(paths, warnings):
        for f in ("client-cred.pem", "ca.pem"):
            if (d / f).is_file():
                name = f"homes/{user}/.xcat/{f}"
                out[name] = Source(name, d / f, f == "client-cred.pem", user)
    return [out[k] for k in sorted(out)]


# ---- the export ---------------------------------------------------------------------------
def export(paths: Paths, db: Database, writer: Writer, opts: ExportOptions,
           progress: Progress | None = None) -> ExportResult:
    """Write the archive; the writer is finished (or aborted) by the caller."""
    warnings: list[str] = []
    report = progress or (lambda what, done, total: None)
    tables = sorted(t for t in TABLES if opts.logs or t not in LOG_TABLES)
    with db.snapshot() as conn:  # one state of every table
        site = {r["key"]: r["value"] for r in db.rows("site", conn)}
        secrets: dict[str, list[list]] = {}
        counts: dict[str, int] = {}
        for i, table in enumerate(tables):
            report(f"table {table}", i, len(tables))
            rows, hidden = split_secrets(table, table_rows(db, conn, table))
            if hidden:
                secrets[table] = hidden
            counts[table] = len(rows)
            writer.add_bytes(f"tables/{table}.csv", table_csv(table, rows), mode=0o600)
        sources = file_sources(paths, db, conn, opts, warnings)
    if secrets and opts.secrets != "redact":
        data = json.dumps(secrets, sort_keys=True, separators=(",", ":")).encode()
        _add_secret(writer, "secrets.json", io.BytesIO(data), len(data), 0o600, None, opts)
    total = sum(_size(s.path) for s in sources)
    done = 0
    redacted: list[str] = []
    for s in sources:
        report(s.name, done, total)
        st = s.path.lstat()
        if stat.S_ISLNK(st.st_mode):
            writer.add_link(s.name, os.readlink(s.path))
            continue
        if s.secret:
            if opts.secrets == "redact":
                redacted.append(s.name)
                continue
            with open(s.path, "rb") as fh:
                _add_secret(writer, s.name, fh, st.st_size, stat.S_IMODE(st.st_mode),
                            int(st.st_mtime), opts)
            done += st.st_size
            continue

        def moved(n: int, name: str = s.name) -> None:
            nonlocal done
            done += n
            report(name, done, total)

        writer.add_file(s.name, s.path, st, moved)
    if secrets and opts.secrets == "redact":
        redacted.append("secrets.json")
    manifest = {
        "format": FORMAT,
        "pyxcat": version_line(),
        "schema": schema_version(),
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": machine(site),
        "secrets": opts.secrets,
        "options": {"logs": opts.logs, "images": opts.images, "media": opts.media},
        "tables": {t: {"rows": counts[t], "columns": list(TABLES[t].columns)}
                   for t in tables},
        "entries": [e.to_dict() for e in sorted(writer.entries, key=lambda e: e.name)],
    }
    if redacted:
        manifest["redacted"] = sorted(redacted)
    if opts.box is not None:
        manifest["encryption"] = opts.box.params()
    return ExportResult(manifest, warnings)


def audit_row(user: str, command: str, args: str, comments: str) -> dict:
    """The auditlog row of an export or import (root's tools, outside the pipeline, are
    audited all the same)."""
    from xcatd.db.jobs import now
    return {"audittime": now(), "userid": user, "clientname": socket.gethostname(),
            "clienttype": "cli", "command": command, "args": args, "status": "Allowed",
            "comments": comments}


def manifest_bytes(manifest: dict, box: Box | None) -> bytes:
    """The manifest as written: canonical JSON, with its MAC when secrets are sealed (so a
    changed manifest is found, not only a changed entry)."""
    body = {k: v for k, v in manifest.items() if k != "mac"}
    if box is not None:
        body["mac"] = box.mac(canonical(body))
    return json.dumps(body, indent=1, sort_keys=True).encode() + b"\n"


def canonical(manifest: dict) -> bytes:
    return json.dumps({k: v for k, v in manifest.items() if k != "mac"}, sort_keys=True,
                      separators=(",", ":")).encode()


def _add_secret(writer: Writer, name: str, fh: BinaryIO, size: int, mode: int,
                mtime: int | None, opts: ExportOptions) -> None:
    """A secret entry, streamed: sealed chunk by chunk with the passphrase, or in clear."""
    if opts.secrets == "encrypt":
        assert opts.box is not None
        sealed = _Chunks(opts.box.seal_stream(name, fh))
        writer.add_stream(name, sealed, sealed_size(size), mode=mode, mtime=mtime,
                          secret=True, sealed=True)
    else:
        writer.add_stream(name, fh, size, mode=mode, mtime=mtime, secret=True)


class _Chunks(io.RawIOBase):
    """An iterator of byte strings read as a file."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _size(p: Path) -> int:
    try:
        st = p.lstat()
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def plan_names(sources: Iterable[Source]) -> list[str]:
    return [s.name for s in sources]
