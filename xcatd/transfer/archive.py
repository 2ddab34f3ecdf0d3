"""The archive of xcatexport: a directory, or one tar stream compressed with zstd, holding

- ``tables/<table>.csv``: every table in dumpxCATdb's CSV (secret columns left empty);
- ``secrets.json``: the secret columns' values, by table and row key (sealed with the
  passphrase unless the export was ``--secrets plain``; absent with ``redact``);
- ``files/<path>``: files of the management node, by their path under its root;
- ``homes/<user>/.xcat/<file>``: users' client certificates;
- ``manifest.json``, last: what the archive is, and the sha256, size and mode of every entry.

Writing and reading are streams: memory stays bounded whatever the archive's size (an entry
is hashed while it is copied; only sealed entries, which are small, are held whole).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import zstandard

MANIFEST = "manifest.json"
CHUNK = 1 << 20
#: the most a manifest may weigh (a million entries fit)
MANIFEST_MAX = 512 << 20
#: entries held whole in memory (sealed secrets, tables read back) may not exceed this
WHOLE_MAX = 256 << 20

_NAME = re.compile(r"^(tables/[a-z0-9_]+\.csv|secrets\.json|files/[^\0]+|homes/[^/\0]+/\.xcat/"
                   r"[^/\0]+)$")


class ArchiveError(Exception):
    """An archive that cannot be written or read as it is; the message names the entry."""


def check_name(name: str) -> str:
    """An entry name as the archive's layout allows it: no absolute path, no ``..``, no
    empty part (a crafted archive cannot write outside its places)."""
    parts = name.split("/")
    if name != MANIFEST and (not _NAME.match(name) or any(p in ("", ".", "..") for p in parts)):
        raise ArchiveError(f"{name!r} is not an entry an xcatexport archive holds")
    return name


@dataclass
class Entry:
    """One entry as the manifest records it."""

    name: str
    size: int
    sha256: str
    mode: int = 0o600
    mtime: int | None = None
    secret: bool = False   # a secret (private key, password): never left readable
    sealed: bool = False   # stored encrypted with the passphrase
    link: str | None = None  # a symbolic link's target (size and sha256 are of the target)

    def to_dict(self) -> dict:
        d = {"name": self.name, "size": self.size, "sha256": self.sha256,
             "mode": f"{self.mode:04o}"}
        if self.mtime is not None:
            d["mtime"] = self.mtime
        if self.secret:
            d["secret"] = True
        if self.sealed:
            d["sealed"] = True
        if self.link is not None:
            d["link"] = self.link
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Entry:
        try:
            return cls(name=check_name(str(d["name"])), size=int(d["size"]),
                       sha256=str(d["sha256"]), mode=int(str(d.get("mode", "0600")), 8) & 0o7777,
                       mtime=int(d["mtime"]) if d.get("mtime") is not None else None,
                       secret=bool(d.get("secret")), sealed=bool(d.get("sealed")),
                       link=str(d["link"]) if d.get("link") is not None else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveError(f"a manifest entry is malformed ({exc}): {d!r:.200}") from None


class _Hashing(io.RawIOBase):
    """A reader that hashes and counts what passes through, and stops at ``limit``."""

    def __init__(self, fh: BinaryIO, limit: int | None = None) -> None:
        self._fh = fh
        self.sha = hashlib.sha256()
        self.size = 0
        self._limit = limit

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        want = len(b)
        if self._limit is not None:
            want = min(want, self._limit - self.size)
            if want <= 0:
                return 0
        data = self._fh.read(want)
        n = len(data)
        b[:n] = data
        self.sha.update(data)
        self.size += n
        return n


# ---- writing ----------------------------------------------------------------------------
class Writer:
    """Where an export goes: ``-p`` a directory (created 0700, files 0600) or ``-f`` one
    ``.tar.zst`` file (0600), written under a temporary name and renamed when complete."""

    def __init__(self, target: Path, as_dir: bool, *, level: int = 3) -> None:
        self.target = target
        self.as_dir = as_dir
        self.entries: list[Entry] = []
        self._names: set[str] = set()
        if as_dir:  # written aside, renamed to its name when complete
            if target.exists() and (not target.is_dir() or any(target.iterdir())):
                raise ArchiveError(f"{target} exists and is not an empty directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part",
                                              dir=target.parent))  # 0700
            self._tar = None
            return
        if target.exists() and target.is_dir():
            raise ArchiveError(f"{target} is a directory (-p writes into a directory)")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                   dir=target.parent)
        os.fchmod(fd, 0o600)
        self._tmp = Path(tmp)
        self._raw = os.fdopen(fd, "wb")
        # one thread: memory stays bounded (zstd's workers buffer ~100 MB), and the
        # bulk of a large archive (images, media) is already compressed
        cctx = zstandard.ZstdCompressor(level=level, threads=0, write_checksum=True)
        self._zst = cctx.stream_writer(self._raw, closefd=False)
        self._tar = _TarOut(self._zst)

    def _claim(self, name: str) -> None:
        check_name(name)
        if name in self._names:
            raise ArchiveError(f"{name} would be written twice")
        self._names.add(name)

    def add_bytes(self, name: str, data: bytes, *, mode: int = 0o600, mtime: int | None = None,
                  secret: bool = False, sealed: bool = False) -> Entry:
        return self.add_stream(name, io.BytesIO(data), len(data), mode=mode, mtime=mtime,
                               secret=secret, sealed=sealed)

    def add_stream(self, name: str, fh: BinaryIO, size: int, *, mode: int = 0o600,
                   mtime: int | None = None, secret: bool = False, sealed: bool = False
                   ) -> Entry:
        """``size`` bytes read from ``fh``, hashed on the way."""
        self._claim(name)
        reader = _Hashing(fh, size)
        self._put(name, io.BufferedReader(reader, CHUNK), size)
        if reader.size != size:
            raise ArchiveError(f"{name}: {reader.size} bytes where {size} were announced")
        entry = Entry(name, size, reader.sha.hexdigest(), mode, mtime, secret, sealed)
        self.entries.append(entry)
        return entry

    def add_file(self, name: str, src: Path, st: os.stat_result,
                 progress: Callable[[int], None] | None = None) -> Entry:
        """A regular file, streamed; it must keep the size it had when it was listed."""
        self._claim(name)
        with open(src, "rb") as fh:
            reader = _Hashing(fh, st.st_size)
            self._put(name, io.BufferedReader(reader, CHUNK), st.st_size, progress)
            if reader.size != st.st_size or fh.read(1):
                raise ArchiveError(f"{src} changed size while it was exported")
        entry = Entry(name, st.st_size, reader.sha.hexdigest(), stat.S_IMODE(st.st_mode),
                      int(st.st_mtime))
        self.entries.append(entry)
        return entry

    def add_link(self, name: str, target: str) -> Entry:
        self._claim(name)
        data = target.encode()
        entry = Entry(name, len(data), hashlib.sha256(data).hexdigest(), 0o777, None,
                      link=target)
        if self._tar is not None:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            info.mode = 0o777
            self._tar.addfile(info)
        else:
            dest = self._dir / name
            dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.symlink(target, dest)
        self.entries.append(entry)
        return entry

    def _put(self, name: str, fh: BinaryIO, size: int,
             progress: Callable[[int], None] | None = None) -> None:
        if self._tar is not None:
            info = tarfile.TarInfo(name)
            info.size = size
            info.mode = 0o600
            self._tar.addfile(info, _Counting(fh, progress) if progress else fh)
            return
        dest = self._dir / name
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            while chunk := fh.read(CHUNK):
                out.write(chunk)
                if progress:
                    progress(len(chunk))

    def finish(self, manifest: bytes) -> None:
        """Write the manifest, and make the archive appear whole."""
        if self._tar is None:
            fd = os.open(self._dir / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(manifest)
                out.flush()
                os.fsync(out.fileno())
            if self.target.is_dir():
                self.target.rmdir()  # empty (checked at the start)
            os.rename(self._dir, self.target)
            return
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(manifest)
        info.mode = 0o600
        self._tar.addfile(info, io.BytesIO(manifest))
        self._tar.close()
        self._zst.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self._tmp, self.target)

    def abort(self) -> None:
        """Leave nothing behind but what was there (an interrupted export)."""
        if self._tar is None:
            import shutil
            shutil.rmtree(self._dir, ignore_errors=True)
            return
        for closing in (self._raw,):
            try:
                closing.close()
            except OSError:
                pass
        self._tmp.unlink(missing_ok=True)


class _TarOut:
    """A tar stream written straight into ``out``: each header from tarfile's own TarInfo
    (PAX), then the data in large chunks (tarfile's stream mode copies every block through
    Python buffers, which costs more than compressing it)."""

    def __init__(self, out) -> None:
        self._out = out

    def addfile(self, info: tarfile.TarInfo, fh: BinaryIO | None = None) -> None:
        self._out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if fh is None or info.size == 0:
            return
        left = info.size
        while left:
            chunk = fh.read(min(CHUNK, left))
            if not chunk:
                raise ArchiveError(f"{info.name} ended {left} bytes short")
            self._out.write(chunk)
            left -= len(chunk)
        pad = -info.size % tarfile.BLOCKSIZE
        if pad:
            self._out.write(b"\0" * pad)

    def close(self) -> None:
        self._out.write(b"\0" * (2 * tarfile.BLOCKSIZE))  # the end of the archive


class _Counting(io.RawIOBase):
    def __init__(self, fh: BinaryIO, progress: Callable[[int], None]) -> None:
        self._fh = fh
        self._progress = progress

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        data = self._fh.read(n)
        self._progress(len(data))
        return data


# ---- reading ----------------------------------------------------------------------------
@dataclass
class Staged:
    """An entry as read: where its bytes are now, and what they hash to."""

    name: str
    path: Path | None      # None for a symbolic link
    size: int
    sha256: str
    link: str | None = None
    own: bool = False      # a private staging copy (from a .tar.zst), not the archive itself


@dataclass
class Read:
    """What reading an archive gave: its manifest's bytes and every entry, hashed."""

    manifest: bytes
    staged: dict[str, Staged] = field(default_factory=dict)


def read_dir(source: Path, progress: Callable[[int], None] | None = None) -> Read:
    """An archive written with -p: every file is hashed where it is (nothing copied yet)."""
    try:
        manifest = (source / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise ArchiveError(f"{source} has no {MANIFEST}: not an xcatexport directory, or an "
                           "export that did not finish") from None
    out = Read(manifest)
    for path in sorted(_walk(source)):
        name = path.relative_to(source).as_posix()
        if name == MANIFEST or name.startswith(f".{MANIFEST}"):
            continue
        check_name(name)
        if path.is_symlink():
            target = os.readlink(path)
            data = target.encode()
            out.staged[name] = Staged(name, None, len(data), hashlib.sha256(data).hexdigest(),
                                      target)
            continue
        sha = hashlib.sha256()
        size = 0
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                sha.update(chunk)
                size += len(chunk)
                if progress:
                    progress(len(chunk))
        out.staged[name] = Staged(name, path, size, sha.hexdigest())
    return out


def _walk(top: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(top):
        base = Path(dirpath)
        for d in list(dirnames):
            if (base / d).is_symlink():
                dirnames.remove(d)
                yield base / d
        for f in filenames:
            yield base / f


def read_tar(source: Path, staging: Path,
             progress: Callable[[int], None] | None = None) -> Read:
    """A ``.tar.zst`` archive, streamed: each entry is written into ``staging`` (0600) and
    hashed on the way; nothing is placed anywhere else."""
    manifest = None
    out = Read(b"")
    name = "the archive's first entry"
    try:
        fh = open(source, "rb")  # noqa: SIM115 (the with below closes it)
    except OSError as exc:
        raise ArchiveError(f"cannot read {source}: {exc.strerror}") from None
    with fh:
        try:
            reader = zstandard.ZstdDecompressor().stream_reader(fh, read_size=CHUNK)
            # tarfile's own (small) record size: an error is then seen at the entry it is in
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                for n, member in enumerate(tar):
                    name = member.name
                    if name == MANIFEST and member.isfile():
                        if member.size > MANIFEST_MAX:
                            raise ArchiveError(f"{MANIFEST} is larger than {MANIFEST_MAX} bytes")
                        manifest = tar.extractfile(member).read()  # type: ignore[union-attr]
                        continue
                    check_name(name)
                    if name in out.staged:
                        raise ArchiveError(f"{name} is in the archive twice")
                    if member.issym():
                        data = member.linkname.encode()
                        out.staged[name] = Staged(name, None, len(data),
                                                  hashlib.sha256(data).hexdigest(),
                                                  member.linkname)
                        continue
                    if not member.isfile():
                        raise ArchiveError(f"{name} is not a regular file or a link in the "
                                           "archive")
                    dest = staging / f"{n:08d}"
                    src = tar.extractfile(member)
                    sha = hashlib.sha256()
                    size = 0
                    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as outfh:
                        while chunk := src.read(CHUNK):  # type: ignore[union-attr]
                            sha.update(chunk)
                            size += len(chunk)
                            outfh.write(chunk)
                            if progress:
                                progress(len(chunk))
                    out.staged[name] = Staged(name, dest, size, sha.hexdigest(), own=True)
            name = "the end of the archive"
            while reader.read(CHUNK):  # to the end, where zstd checks the frame's checksum
                pass
        except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
            if "checksum" in str(exc):  # seen at the end of the stream: anywhere in it
                raise ArchiveError(f"{source} is damaged: its zstd checksum does not match "
                                   "what it holds (a changed or corrupted archive)") from None
            raise ArchiveError(f"{source} is damaged or incomplete at {name} ({exc})") from None
    if manifest is None:
        raise ArchiveError(f"{source} has no {MANIFEST}: not an xcatexport archive, or one "
                           "that was cut short")
    out.manifest = manifest
    return out


def is_secret_file(path: Path, st: os.stat_result) -> bool:
    """A file the management node keeps from others (no read for group or others: the house
    rule for secrets), or one that holds a private key whatever its mode."""
    if not st.st_mode & 0o044:
        return True
    if st.st_size > 1 << 20:
        return False
    try:
        with open(path, "rb") as fh:
            return _PEM_KEY.search(fh.read(1 << 16)) is not None
    except OSError:
        return False


_PEM_KEY = re.compile(rb"^-----BEGIN [A-Z ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/=]{16,}", re.M)


#: Top-level directories of the base distribution: none of their files is the management
#: node's configuration (a synclist naming /etc/passwd syncs the node's own copy; the new
#: machine has its own), so none is exported or placed
DISTRO_TOPS = frozenset({"etc", "usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "boot",
                         "dev", "proc", "sys", "run", "var", "tmp", "home", "root", "mnt",
                         "media", "lost+found", "snap"})
#: Files under etc/xcat that belong to one machine: its database location and master key
MACHINE_FILES = frozenset({"etc/xcat/cfgloc", "etc/xcat/masterkey"})


def refused_place(rel: str, installdir: str = "install") -> str | None:
    """Why the file at ``rel`` (a path under the management node's root) is not one an
    archive carries, or None. The management node's own trees are carried (etc/xcat but its
    machine files, root's ssh keys, the install directory), and site paths such as /opt or
    /srv; the base distribution's are not.

    >>> refused_place("etc/xcat/ca/ca.pem"), refused_place("opt/site/x.pkglist")
    (None, None)
    >>> refused_place("etc/passwd")
    'a file of the base distribution'
    """
    rel = rel.strip("/")
    if rel in MACHINE_FILES:
        return "this machine's own (its database location or master key)"
    installdir = installdir.strip("/") or "install"
    if rel == installdir or rel.startswith((installdir + "/", "etc/xcat/", "root/.ssh/")):
        return None
    if rel.split("/", 1)[0] in DISTRO_TOPS:
        return "a file of the base distribution"
    return None
