"""Install media: read a distribution's ISO image (without mounting it) or a copied directory,
recognise the distribution on it, and copy it into the install tree all at once.

xCAT names a distribution by its osvers (``rocky9.4``, ``alma8.10``, ``rhels9.4``,
``debian12.5.0``, ``ubuntu24.04.1``) and an architecture in its own spelling (``x86_64``, not
``amd64``); the copy lands in ``<installdir>/<osvers>/<arch>``.

Where the network install kernel sits on the media, and the architecture names, are the OS
family's (xcatd.provision.osfamily).

>>> osver_parts("alma8.10")
('alma', '8', '10')
"""
from __future__ import annotations

import configparser
import contextlib
import ctypes
import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from xcatd.base.files import locked
from xcatd.provision.osfamily import normalise_arch

#: Files are served to nodes over HTTP and TFTP; install trees hold no secrets.
FILE_MODE = 0o644
DIR_MODE = 0o755
CHUNK = 1 << 20
FINGERPRINT = ".fingerprint"

#: Debian's architecture words, as they appear in .disk/info and dists/*/Release.
DEBIAN_ARCHES = ("amd64", "arm64", "i386", "ppc64el", "s390x", "armhf", "armel", "mips64el",
                 "riscv64")


class MediaError(Exception):
    """The media cannot be read or copied; the message names the file and the bad part."""


def osver_parts(osvers: str) -> tuple[str, str, str]:
    """(basename, major, minor) as xCAT splits an osvers for the osdistro table."""
    m = re.match(r"(\D+)(\d*)\.*(\d*)", osvers)
    return (m.group(1), m.group(2), m.group(3)) if m else (osvers, "", "")


# ---- reading media -------------------------------------------------------------------------
@dataclass
class Entry:
    """One thing on the media: ``path`` is relative, '/'-separated, without a leading slash."""

    path: str
    kind: str  # "dir", "file" or "link"
    size: int = 0
    target: str | None = None  # a link's target
    handle: Any = None  # how the reader opens it


def _check_name(name: str, where: str) -> None:
    """Media names become file names here: refuse any that could step out of the tree."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise MediaError(f"{where}: the media holds an unsafe file name {name!r}")


class Media:
    """A source of install media; use as a context manager. ``entries`` lists parents before
    their children."""

    source: str
    #: What reading a file may raise besides MediaError (copying reports it as MediaError).
    read_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, source: str) -> None:
        self.source = source
        self._index: dict[str, Entry] = {}
        self._fold = False  # plain ISO 9660 names compare without case

    def __enter__(self) -> Media:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def _key(self, path: str) -> str:
        path = path.strip("/")
        return path.lower() if self._fold else path

    def _add(self, entry: Entry) -> None:
        self._index[self._key(entry.path)] = entry

    def entries(self) -> list[Entry]:
        return list(self._index.values())

    def get(self, path: str) -> Entry | None:
        return self._index.get(self._key(path))

    def listdir(self, path: str) -> list[str]:
        prefix = self._key(path)
        prefix = prefix + "/" if prefix else ""
        return sorted(e.path[len(prefix):] for k, e in self._index.items()
                      if k.startswith(prefix) and "/" not in k[len(prefix):])

    def read_text(self, path: str, limit: int = 1 << 16) -> str | None:
        """A small file's text (recognition reads .treeinfo and friends); None if absent."""
        entry = self.get(path)
        if entry is None or entry.kind != "file":
            return None
        try:
            with self.open(entry) as fh:
                return fh.read(limit).decode("utf-8", "replace")
        except self.read_errors as exc:
            raise MediaError(f"{self.source}: cannot read {entry.path}: {exc}") from None

    def open(self, entry: Entry) -> contextlib.AbstractContextManager[IO[bytes]]:
        raise NotImplementedError


class DirectoryMedia(Media):
    """A distribution tree already on disk (a mounted DVD, an rsync'd mirror)."""

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.root = Path(source)
        self._scan(self.root, "")

    def _scan(self, directory: Path, rel: str) -> None:
        try:
            items = sorted(os.scandir(directory), key=lambda d: d.name)
        except OSError as exc:
            raise MediaError(f"cannot read {directory}: {exc.strerror}") from None
        for item in items:
            path = f"{rel}/{item.name}" if rel else item.name
            if item.is_symlink():
                self._add(Entry(path, "link", target=os.readlink(item.path)))
            elif item.is_dir(follow_symlinks=False):
                self._add(Entry(path, "dir"))
                self._scan(Path(item.path), path)
            elif item.is_file(follow_symlinks=False):
                self._add(Entry(path, "file", item.stat(follow_symlinks=False).st_size,
                                handle=item.path))
            # sockets, fifos and devices are not install media

    def open(self, entry: Entry) -> contextlib.AbstractContextManager[IO[bytes]]:
        fd = os.open(entry.handle, os.O_RDONLY | os.O_NOFOLLOW)
        return os.fdopen(fd, "rb")


class IsoMedia(Media):
    """An ISO 9660 image read in place with pycdlib: Rock Ridge names (and symlinks) when the
    image has them, else Joliet names, else plain ISO 9660 names (';1' dropped, lower case,
    as Linux shows them)."""

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self._exc = PyCdlibException
        self.read_errors = (OSError, PyCdlibException)
        self.iso = pycdlib.PyCdlib()
        try:
            self.iso.open(source)
        except PyCdlibException as exc:
            raise MediaError(f"{source} is not a readable ISO 9660 image ({exc})") from None
        except OSError as exc:
            raise MediaError(f"cannot read {source}: {exc.strerror}") from None
        try:
            self._check_size()
            if self.iso.has_rock_ridge():
                self.kind = "rr_path"
            elif self.iso.has_joliet():
                self.kind = "joliet_path"
            else:
                self.kind, self._fold = "iso_path", True
            self._scan()
        except PyCdlibException as exc:
            self.close()
            raise MediaError(f"{source} is damaged: {exc}") from None
        except BaseException:
            self.close()
            raise

    def _check_size(self) -> None:
        """A download cut short keeps its directories but loses file data: say so first."""
        pvd = getattr(self.iso, "pvd", None)
        try:
            expected = pvd.space_size * pvd.logical_block_size()  # type: ignore[union-attr]
        except Exception:  # an older pycdlib: the per-file length check still catches it
            return
        st = os.stat(self.source)
        if stat.S_ISREG(st.st_mode) and st.st_size < expected:
            actual = st.st_size
            raise MediaError(f"{self.source} is truncated: {actual} bytes of the {expected} "
                             "its volume descriptor declares")

    def _name(self, raw: str) -> str:
        if self.kind != "iso_path":
            return raw
        name = raw.split(";", 1)[0]
        if name.endswith(".") and name != ".":
            name = name[:-1]
        return name.lower()

    def _scan(self) -> None:
        kw = self.kind
        for top, dirs, files in self.iso.walk(**{kw: "/"}):
            top = top.rstrip("/")
            rel_top = "/".join(self._name(p) for p in top.strip("/").split("/") if p)
            for name in dirs:
                _check_name(self._name(name), self.source)
                self._add(Entry(f"{rel_top}/{self._name(name)}".lstrip("/"), "dir"))
            for name in files:
                _check_name(self._name(name), self.source)
                raw = f"{top}/{name}"
                rec = self.iso.get_record(**{kw: raw})
                path = f"{rel_top}/{self._name(name)}".lstrip("/")
                if kw == "rr_path" and rec.is_symlink():
                    target = rec.rock_ridge.symlink_path().decode("utf-8", "surrogateescape")
                    self._add(Entry(path, "link", target=target))
                else:
                    self._add(Entry(path, "file", rec.get_data_length(), handle=raw))

    def open(self, entry: Entry) -> contextlib.AbstractContextManager[IO[bytes]]:
        try:
            return self.iso.open_file_from_iso(**{self.kind: entry.handle})
        except self._exc as exc:
            raise MediaError(f"{self.source}: cannot read {entry.path}: {exc}") from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.iso.close()


def open_media(source: str) -> Media:
    """A reader for an ISO image, a block device holding one, or a directory."""
    if not os.path.exists(source) or not os.access(source, os.R_OK):
        raise MediaError(f"The management server was unable to find/read {source}. Ensure "
                         "that file exists on the server at the specified location.")
    if os.path.isdir(source):
        return DirectoryMedia(source)
    return IsoMedia(source)


# ---- recognising the distribution ----------------------------------------------------------
@dataclass(frozen=True)
class Distro:
    """What the media says it is; ``osvers`` or ``arch`` is None when it does not say."""

    osvers: str | None
    arch: str | None
    discno: str = ""
    #: the family's template platform (xcatd.provision.osfamily): rh, debian or ubuntu
    platform: str = ""


#: Release names in .treeinfo/.discinfo -> xCAT's osvers prefix (longest names first).
RH_NAMES = (("red hat enterprise linux", "rhels"), ("rocky linux", "rocky"), ("rocky", "rocky"),
            ("almalinux", "alma"), ("alma linux", "alma"), ("centos linux", "centos"),
            ("centos", "centos"), ("oracle linux", "ol"), ("fedora", "fedora"))


def identify(media: Media) -> Distro | None:
    """The distribution on the media, or None when nothing on it names one."""
    return _identify_rh(media) or _identify_debian(media)


def _rh_prefix(name: str) -> str | None:
    low = name.strip().lower()
    for label, prefix in RH_NAMES:
        if low.startswith(label):
            return prefix
    return None


def _identify_rh(media: Media) -> Distro | None:
    name = version = arch = None
    text = media.read_text(".treeinfo")
    if text:
        ti = _treeinfo(text)
        name = ti.get("release.name") or ti.get("general.family")
        version = ti.get("release.version") or ti.get("general.version")
        arch = ti.get("tree.arch") or ti.get("general.arch")
    discno = ""
    disc = media.read_text(".discinfo")
    if disc:
        lines = [ln.strip() for ln in disc.splitlines()]
        if len(lines) > 1 and not (name and version):
            m = re.match(r"(.*?)\s*(\d+(?:\.\d+)*)$", lines[1])
            if m:
                name, version = name or m.group(1), version or m.group(2)
        if len(lines) > 2 and lines[2] and not arch:
            arch = lines[2]
        if len(lines) > 3:
            discno = lines[3]
    prefix = _rh_prefix(name or "") if name else None
    if not (text or disc):
        return None
    osvers = None
    if prefix and version:
        parts = version.split(".")
        osvers = prefix + ".".join(parts[:2])  # 8.0.0 -> 8.0, as xCAT's discinfo parser does
    return Distro(osvers, normalise_arch(arch) if arch else None, discno, "rh")


def _treeinfo(text: str) -> dict[str, str]:
    """.treeinfo as {'section.key': value}; a damaged file gives what could be read."""
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    with contextlib.suppress(configparser.Error):
        cp.read_string(text)
    return {f"{s}.{k}": v for s in cp.sections() for k, v in cp.items(s) if v}


def _arch_word(words: list[str]) -> str | None:
    return next((w for w in words if w in DEBIAN_ARCHES), None)


def _identify_debian(media: Media) -> Distro | None:
    info = (media.read_text(".disk/info") or "").strip().splitlines()
    words = info[0].split() if info else []
    osvers = arch = None
    discno = ""
    if words and words[0] == "Debian" and len(words) > 2:
        osvers, arch = "debian" + words[2], _arch_word(words)
        discno = next((w.split("-", 1)[1] for w in words if w.startswith("Binary-")), "")
    elif words and words[0] in ("Ubuntu", "Ubuntu-Server") and len(words) > 1:
        osvers, arch = "ubuntu" + words[1], _arch_word(words)
        m = re.search(r"DISKNUM\s+(\d+)", media.read_text("README.diskdefines") or "")
        discno = m.group(1) if m else ""
    release = _dists_release(media)
    if release:
        origin = release.get("origin", "").lower()
        if osvers is None and origin in ("debian", "ubuntu") and release.get("version"):
            osvers = origin + release["version"]
        arches = release.get("architectures", "").split()
        if arch is None and len(arches) == 1:
            arch = arches[0]
    if osvers is None and arch is None:
        return None
    platform = "ubuntu" if (osvers or "").startswith("ubuntu") or (
        release or {}).get("origin", "").lower() == "ubuntu" else "debian"
    return Distro(osvers, normalise_arch(arch) if arch else None, discno, platform)


def _dists_release(media: Media) -> dict[str, str] | None:
    """The fields of dists/<codename>/Release (the first real directory, not a suite link)."""
    for name in media.listdir("dists"):
        entry = media.get(f"dists/{name}")
        if entry is None or entry.kind != "dir":
            continue
        text = media.read_text(f"dists/{name}/Release")
        if text:
            fields = {}
            for line in text.splitlines():
                key, sep, value = line.partition(":")
                if sep and not line[:1].isspace():
                    fields[key.strip().lower()] = value.strip()
            return fields
    return None


# ---- copying -------------------------------------------------------------------------------
def fingerprint(media: Media) -> str:
    """xCAT's media fingerprint: the md5 of the sorted list of paths on it. copycds -w finds it
    in the copied tree's .fingerprint to know this very disc is in already."""
    names = sorted(["."] + ["./" + e.path for e in media.entries()])
    return hashlib.md5("".join(names).encode("utf-8", "surrogateescape"),
                       usedforsecurity=False).hexdigest()


def copied_fingerprints(dest: Path) -> list[str]:
    try:
        text = (dest / FINGERPRINT).read_text()
    except OSError:
        return []
    return [f for f in text.replace("\n", ",").split(",") if f]


@dataclass
class CopyResult:
    files: int = 0
    bytes: int = 0
    skipped_links: list[str] | None = None  # links on the media that lead out of the tree
    #: links a merged previous copy held that lead out of the tree (removed from the copy)
    removed_links: list[str] | None = None


def copy_media(media: Media, dest: Path, *, merge: bool = False,
               fingerprints: list[str] | None = None) -> CopyResult:
    """Copy everything on ``media`` to ``dest``: into a temporary directory beside it, then
    renamed into place in one step, so a failed or interrupted copy leaves no half tree and
    the previous tree as it was. With ``merge`` the previous tree's files stay (a later disc
    of a set adds to the first); ``fingerprints`` go into the tree's .fingerprint."""
    steps = copying(media, dest, merge=merge, fingerprints=fingerprints)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def media_bytes(media: Media) -> int:
    """The bytes of the files on ``media``: what a copy of it writes."""
    return sum(e.size for e in media.entries() if e.kind == "file")


def copying(media: Media, dest: Path, *, merge: bool = False,
            fingerprints: list[str] | None = None) -> Generator[int, None, CopyResult]:
    """copy_media, step by step: yields the bytes copied so far, after each chunk, and
    returns the CopyResult. Closed before its end, it leaves no half tree and the previous
    tree as it was, as a failed copy does."""
    check_destination(media, dest)
    dest.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    with locked(dest):
        _remove_stale(dest)
        check_destination(media, dest)  # again, now that no other copy can change it
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.copycds-", dir=dest.parent))
        try:
            os.chmod(tmp, DIR_MODE)
            if merge and dest.is_dir():
                _link_tree(dest, tmp)
            result = yield from _fill(media, tmp)
            if fingerprints:
                _write_bytes(tmp / FINGERPRINT, (",".join(fingerprints) + ",").encode())
            _swap_into_place(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return result


def check_destination(media: Media, dest: Path) -> None:
    """Refuse what a copy must not do: replace anything but a directory (-p /etc/passwd must
    not swap the file for a DVD), replace a directory copycds did not make (a -p typo must
    not swap /usr for a DVD) or copy a directory into itself. A link to a directory (the one
    copycds makes at the default path for a -p copy) is replaced, never what it leads to."""
    if os.path.exists(dest) and not dest.is_dir():
        raise MediaError(f"{dest} exists and is not a directory: not replacing it; choose a "
                         "directory (copycds copies the media into it)")
    if (dest.is_dir() and not dest.is_symlink() and not (dest / FINGERPRINT).is_file()
            and any(dest.iterdir())):
        raise MediaError(f"{dest} holds files copycds did not copy there (it has no "
                             f"{FINGERPRINT}): not replacing it; move it away or choose "
                             "another path")
    if isinstance(media, DirectoryMedia):
        src = media.root.resolve()
        target = dest.parent.resolve() / dest.name
        if target != src and src in target.parents:
            raise MediaError(f"the destination {dest} lies inside the source "
                             f"{media.source}")


def inside_tree(path: Path, tree: Path) -> bool:
    """True only if ``path`` is a regular file, not itself a symlink, whose real path (every
    component resolved) lies inside the real path of ``tree``. Callers that hand a copied
    tree's files to nodes (nodeset's kernel and initrd) check with it first: media, or an
    admin, may have put a link there that leads to the management node's own files."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        real = Path(os.path.realpath(path, strict=True))
        top = Path(os.path.realpath(tree, strict=True))
    except (OSError, ValueError):
        return False
    return top in real.parents and stat.S_ISREG(os.lstat(real).st_mode)


def _remove_stale(dest: Path) -> None:
    """Temporary trees of copies that died (we hold the destination's lock); a previous tree
    set aside by a swap that died half way goes back into place."""
    aside = _aside(dest)
    if os.path.lexists(aside) and not os.path.lexists(dest):
        os.rename(aside, dest)
    for old in dest.parent.glob(f".{dest.name}.copycds-*"):
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)


def _aside(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.copycds-old")


def _fill(media: Media, root: Path) -> Generator[int, None, CopyResult]:
    result = CopyResult(skipped_links=[], removed_links=[])
    links = []
    for entry in media.entries():
        for part in entry.path.split("/"):
            _check_name(part, media.source)
        target = root / entry.path
        if entry.kind == "dir":
            _make_dir(target)
        elif entry.kind == "file":
            copied = yield from _copy_file(media, entry, target, result.bytes)
            result.bytes += copied
            result.files += 1
        else:
            links.append(entry)
    made = set()
    for entry in links:  # last: nothing is ever written through a link
        if _link_stays_inside(media, entry):
            _replace(root / entry.path)
            os.symlink(entry.target, root / entry.path)  # type: ignore[arg-type]
            made.add(entry.path)
        else:
            result.skipped_links.append(f"{entry.path} -> {entry.target}")  # type: ignore[union-attr]
    for path, target in _drop_escaping_links(root):
        (result.skipped_links if path in made else result.removed_links).append(
            f"{path} -> {target}")
    return result


#: Links followed while resolving one target before giving up (the kernel's limit).
MAX_LINK_HOPS = 40


def _link_stays_inside(media: Media, entry: Entry) -> bool:
    """A link is recreated only if it points inside the tree: the tree is served to nodes,
    and a link to /etc would serve the management node's own files. The target is resolved
    as the kernel will, through the other links on the media: a link back to the top makes
    a later '..' climb out of the tree although the target's words look inside."""
    return _resolve_on_media(media, entry, MAX_LINK_HOPS)[0] is not None


def _resolve_on_media(media: Media, entry: Entry,
                      hops: int) -> tuple[list[str] | None, int]:
    """Where ``entry``'s target leads, as path components from the top of the media, and
    the link hops left; None when it leaves the media at any step (an absolute target, a
    '..' above the top) or loops."""
    target = entry.target or ""
    if not target or target.startswith("/") or "\0" in target:
        return None, hops
    where: list[str] | None = entry.path.split("/")[:-1]
    for part in target.split("/"):
        if where is None:
            break
        if part in ("", "."):
            continue
        if part == "..":
            if not where:
                return None, hops
            where.pop()
            continue
        found = media.get("/".join([*where, part]))
        if found is None or found.kind != "link":
            where.append(part)  # past a missing name or a file the kernel stops: harmless
            continue
        hops -= 1
        if hops < 0:
            return None, hops
        where, hops = _resolve_on_media(media, found, hops)
    return where, hops


def _drop_escaping_links(root: Path) -> list[tuple[str, str]]:
    """Remove every link in the finished tree whose real target leaves it; (path, target)
    of each, the path relative to the tree. This sees what reasoning about the media alone
    cannot: links a merged previous tree brings, and anything the file system resolves
    differently from the media's own view."""
    top = os.path.realpath(root)
    escaping = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) and not _really_inside(path, top):
                escaping.append(path)
    dropped = []
    for path in escaping:
        dropped.append((Path(path).relative_to(root).as_posix(), os.readlink(path)))
        os.unlink(path)
    return dropped


def _really_inside(path: str, top: str) -> bool:
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError):
        return False
    return real == top or real.startswith(top + "/")


def _replace(path: Path) -> None:
    """Make room for a new entry at ``path`` (only a merged previous tree has one there)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _make_dir(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        return
    _replace(path)
    path.mkdir(mode=DIR_MODE)
    os.chmod(path, DIR_MODE)


def _copy_file(media: Media, entry: Entry, target: Path,
               before: int = 0) -> Generator[int, None, int]:
    """Stream one file (ISOs are gigabytes: never whole in memory), yielding ``before`` plus
    the bytes copied so far after each chunk; returns its size. A short read means the
    media is damaged. Write errors (a full disk) stay OSErrors naming the target."""
    _replace(target)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    copied = 0
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), FILE_MODE)
        with _reading(media, entry):
            src_cm = media.open(entry)
        with src_cm as src:
            while True:
                with _reading(media, entry):
                    chunk = src.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                copied += len(chunk)
                yield before + copied
    if copied != entry.size:
        raise MediaError(f"{media.source} is truncated or damaged: {entry.path} ends after "
                         f"{copied} of its {entry.size} bytes")
    return copied


@contextlib.contextmanager
def _reading(media: Media, entry: Entry) -> Iterator[None]:
    try:
        yield
    except media.read_errors as exc:
        raise MediaError(f"{media.source}: cannot read {entry.path}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None


def _write_bytes(path: Path, data: bytes) -> None:
    _replace(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), FILE_MODE)
        out.write(data)


def _link_tree(src: Path, dst: Path) -> None:
    """dst mirrors src with hard links (no data copied); new files replace links, never
    write through them, so src stays as it was until the swap."""
    for dirpath, dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        for d in dirnames:
            s = Path(dirpath) / d
            if s.is_symlink():
                os.symlink(os.readlink(s), dst / rel / d)
            else:
                (dst / rel / d).mkdir(mode=DIR_MODE)
        for f in filenames:
            s = Path(dirpath) / f
            if s.is_symlink():
                os.symlink(os.readlink(s), dst / rel / f)
            elif f != FINGERPRINT:
                os.link(s, dst / rel / f)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_into_place(tmp: Path, dest: Path) -> None:
    if not os.path.lexists(dest):
        os.rename(tmp, dest)
        return
    if _exchange(tmp, dest):
        old = tmp  # the previous tree now sits at the temporary name
    else:
        old = _aside(dest)
        os.rename(dest, old)
        try:
            os.rename(tmp, dest)
        except OSError:
            os.rename(old, dest)
            raise
    if old.is_symlink() or not old.is_dir():
        old.unlink()
    else:
        shutil.rmtree(old, ignore_errors=True)

