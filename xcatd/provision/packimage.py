"""packimage and rmimage: pack a diskless image's published tree into the file nodes fetch,
with its manifest, and remove an image's files.

genimage publishes ``<rootimgdir>/rootimg`` with ``kernel`` and ``initrd-stateless.gz`` beside
it (xCAT's names). packimage writes, beside them:

==========================  ==============================================================
``rootimg.sfs``             ``-m squashfs`` (the default), compressed with ``-c`` (zstd)
``rootimg.cpio.<gz|xz|zst>`` ``-m cpio``: ``cpio -H newc`` piped into the compressor
``rootimg.tar.<gz|xz|zst>``  ``-m tar``: GNU tar (POSIX format, xattrs kept), likewise
``manifest.json``           sha256 and size of kernel, initrd and root image, the packages
                            with versions, the image spec's hash
==========================  ==============================================================

Nothing is copied to a second place first (xCAT copies the whole tree for squashfs, and needs
twice the disk): mksquashfs reads the tree itself, with the exclusions as an exact list of
escaped names (``-wildcards -ef``; without ``-wildcards`` mksquashfs excludes by inode, so
excluding one hard link would drop every link to the file), and cpio and tar get the list of
kept paths on their standard input. Each output is written to a temporary file beside its
place and renamed into it, so a failed pack leaves the previous one in place.

The exclusion list (``linuximage.exlist``) is xCAT's: one ``find -path`` pattern a line
(``*`` matches ``/`` too), ``+pattern`` re-includes, ``#`` starts a comment,
``#INCLUDE:file#`` reads another list in its place:

>>> rules = ExList(excludes=("./usr/share/man*",), includes=("./usr/share/man/man1*",)).rules()
>>> [rules.keep(p) for p in (b"./usr/share/man/man8/x.8", b"./usr/share/man/man1/ls.1")]
[False, True]

A kept path keeps its directories, with their own owner and mode, even where a pattern
excludes them (xCAT's cpio would leave them out and let the node make them up).
"""
from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from xcatd.base.paths import Paths
from xcatd.base.request import ErrorKind, Response, XcatError
from xcatd.base.site import DEFAULT_INSTALLDIR, SiteValues
from xcatd.db.database import Database
from xcatd.provision.installfiles import crypt_password

_log = logging.getLogger("xcatd.provision.packimage")

#: the per-image lock genimage, packimage, liteimg and rmimage share (flock on this file in
#: the image's rootimgdir): one of them at a time on one image
LOCK_NAME = ".genimage.lock"
KERNEL = "kernel"
INITRDS = ("initrd-stateless.gz", "initrd-statelite.gz")
MANIFEST = "manifest.json"
#: genimage's record of what it built the tree from (its digest goes into the manifest)
GENIMAGE_SPEC = "genimage.json"
MANIFEST_FORMAT = 1

METHODS = ("squashfs", "cpio", "tar")
COMPRESSIONS = ("zstd", "xz", "gzip", "pigz")
#: xCAT's own exclusions: statelite's working copies never go into an image
STATELITE_EXCLUDES = ("./etc/init.d/statelite", "./etc/rc.sysinit.backup", "./.statelite*",
                      "./.default*", "./.statebackup*")
MAX_EXLIST_LINES = 100_000
MAX_INCLUDE_DEPTH = 16


@dataclass(frozen=True)
class Compressor:
    name: str
    argv: tuple[str, ...]   # compress standard input to standard output
    suffix: str             # of rootimg.cpio.<suffix> / rootimg.tar.<suffix>
    package: str            # the Debian package that has it
    squashfs: str           # mksquashfs -comp


COMPRESSORS = {
    "zstd": Compressor("zstd", ("zstd", "-q", "-c", "-T0"), "zst", "zstd", "zstd"),
    "xz": Compressor("xz", ("xz", "-c", "-T0"), "xz", "xz-utils", "xz"),
    "gzip": Compressor("gzip", ("gzip", "-c"), "gz", "gzip", "gzip"),
    "pigz": Compressor("pigz", ("pigz", "-c"), "gz", "pigz", "gzip"),
}


class PackError(XcatError):
    """packimage or rmimage cannot go on; the message names the bad part."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.BAD_REQUEST) -> None:
        super().__init__(message, kind=kind)


# ---- the image ---------------------------------------------------------------------------
@dataclass(frozen=True)
class NetbootImage:
    """An osimage as packimage and rmimage read it."""

    name: str
    osvers: str
    arch: str
    profile: str
    provmethod: str
    rootimgdir: str          # a management-node path (under XCATROOT)
    exlist: str
    osimage: dict = field(default_factory=dict, compare=False)
    linuximage: dict = field(default_factory=dict, compare=False)


def default_rootimgdir(site: SiteValues, osvers: str, arch: str, profile: str) -> str:
    installdir = site.directory("installdir", DEFAULT_INSTALLDIR)
    return f"{installdir.rstrip('/')}/netboot/{osvers}/{arch}/{profile}"


def load_image(db: Database, site: SiteValues, name: str) -> NetbootImage:
    """The osimage ``name`` (osimage and linuximage rows), or PackError in xCAT's words."""
    rows = db.rows("osimage", keys=[name])
    if not rows:
        raise PackError(f"Cannot find image '{name}' from the osimage table.",
                        ErrorKind.NOT_FOUND)
    osimage = rows[0]
    linux = (db.rows("linuximage", keys=[name]) or [{}])[0]
    osvers, arch = osimage.get("osvers") or "", osimage.get("osarch") or ""
    profile, provmethod = osimage.get("profile") or "", osimage.get("provmethod") or ""
    if not (osvers and arch and profile and provmethod):
        raise PackError("osimage.osvers, osimage.osarch, osimage.profile and "
                        f"osimage.provmethod must be specified for the image {name} in the "
                        "database.")
    rootimgdir = linux.get("rootimgdir") or default_rootimgdir(site, osvers, arch, profile)
    check_mn_path(rootimgdir, f"linuximage.rootimgdir of {name}")
    return NetbootImage(name, osvers, arch, profile, provmethod, rootimgdir.rstrip("/"),
                        linux.get("exlist") or "", osimage, linux)


def check_mn_path(path: str, what: str) -> None:
    if not path.startswith("/") or "\x00" in path or "\n" in path:
        raise PackError(f"{what} '{path[:200]}' is not an absolute path")
    if any(part == ".." for part in path.split("/")):
        raise PackError(f"{what} '{path[:200]}' has a '..' in it")
    if path.rstrip("/") == "":
        raise PackError(f"{what} is the root directory")


# ---- the exclusion list --------------------------------------------------------------------
@dataclass(frozen=True)
class ExList:
    """linuximage.exlist read: find -path patterns that leave paths out, and ones that put
    them back (``+``)."""

    excludes: tuple[str, ...] = ()
    includes: tuple[str, ...] = ()
    files: tuple[str, ...] = ()   # the files read, includes too (the image spec's hash)

    def rules(self) -> Rules:
        return Rules(self.excludes + STATELITE_EXCLUDES, self.includes)


def read_exlist(paths: Paths, value: str) -> ExList:
    """linuximage.exlist (comma-separated management-node paths) read and parsed; a file
    that cannot be read, or a missing ``#INCLUDE:...#``, is an error naming it."""
    excludes: list[str] = []
    includes: list[str] = []
    files: list[str] = []
    for name in (v.strip() for v in value.split(",")):
        if not name:
            continue
        check_mn_path(name, "linuximage.exlist")
        for line in _exlist_lines(paths, paths.under(name), name, files, 0):
            line = re.sub(r"\s*#.*", "", line).strip()
            if not line:
                continue
            if line.startswith("+"):
                includes.append(_pattern(line[1:].strip()))
            else:
                excludes.append(_pattern(line[1:].strip() if line.startswith("-") else line))
    return ExList(tuple(excludes), tuple(includes), tuple(files))


def _pattern(text: str) -> str:
    """A pattern as find -path sees it: paths start with ./ (a leading / is taken as ./)."""
    if text.startswith("/"):
        return "." + text
    return text


_INCLUDE = re.compile(r"#INCLUDE:([^#\n]+)#")


def _exlist_lines(paths: Paths, path: Path, shown: str, files: list[str],
                  depth: int) -> Iterator[str]:
    if depth > MAX_INCLUDE_DEPTH:
        raise PackError(f"exlist {shown}: includes nested more than {MAX_INCLUDE_DEPTH} deep "
                        "(an include cycle?)")
    try:
        text = path.read_text(errors="surrogateescape")
    except OSError as exc:
        raise PackError(f"exlist {shown}: cannot read it ({exc.strerror})") from None
    files.append(shown)
    lines = text.splitlines()
    if len(lines) > MAX_EXLIST_LINES:
        raise PackError(f"exlist {shown}: more than {MAX_EXLIST_LINES} lines")
    for number, line in enumerate(lines, 1):
        m = _INCLUDE.search(line)
        if not m:
            yield line
            continue
        inc = m.group(1).strip()
        inc_shown = inc if inc.startswith("/") else str(Path(shown).parent / inc)
        target = paths.under(inc) if inc.startswith("/") else path.parent / inc
        if not target.is_file():
            raise PackError(f"exlist {shown} line {number}: #INCLUDE:{inc}# names "
                            f"{inc_shown}, which does not exist")
        yield from _exlist_lines(paths, target, inc_shown, files, depth + 1)


class Rules:
    """Which paths of the tree go into the image: those no exclude pattern matches, and
    those an include pattern matches (xCAT's two finds, joined)."""

    def __init__(self, excludes: Iterable[str], includes: Iterable[str]) -> None:
        self.excludes = tuple(excludes)
        self.includes = tuple(includes)
        self._ex = _regex(self.excludes)
        self._in = _regex(self.includes)
        self._prefixes = tuple(_literal(p).encode("latin-1", "surrogateescape")
                               for p in self.excludes + self.includes)
        self._in_prefixes = tuple(_literal(p).encode("latin-1", "surrogateescape")
                                  for p in self.includes)
        # "<literal>*": every path under a directory it matches is excluded too
        self._subtree = tuple(p[:-1].encode("latin-1", "surrogateescape")
                              for p in self.excludes
                              if p.endswith("*") and _literal(p) == p[:-1])

    def keep(self, path: bytes) -> bool:
        return not (self._ex and self._ex.match(path)) or bool(self._in and self._in.match(path))

    def touches(self, directory: bytes) -> bool:
        """Whether a pattern may match ``directory`` or a path under it."""
        d = directory + b"/"
        return any(d.startswith(p) or p.startswith(d) or p == directory
                   for p in self._prefixes)

    def drops_subtree(self, directory: bytes) -> bool:
        """Whether everything under ``directory`` (itself excluded) is excluded as well."""
        if not any(directory.startswith(p) for p in self._subtree):
            return False
        d = directory + b"/"
        return not any(d.startswith(p) or p.startswith(d) or p == directory
                       for p in self._in_prefixes)


def _literal(pattern: str) -> str:
    m = re.search(r"[*?\[\\]", pattern)
    return pattern[:m.start()] if m else pattern


def _regex(patterns: tuple[str, ...]) -> re.Pattern[bytes] | None:
    if not patterns:
        return None
    # fnmatch's * matches "/" as find -path's does
    joined = "|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)
    return re.compile(joined.encode("latin-1", "surrogateescape"), re.DOTALL)


# ---- walking the tree ----------------------------------------------------------------------
def _entries(root: bytes, rel: bytes) -> list[os.DirEntry[bytes]]:
    try:
        with os.scandir(os.path.join(root, rel)) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise PackError(f"cannot read {os.fsdecode(os.path.join(root, rel))}: "
                        f"{exc.strerror}") from None


def _is_dir_here(entry: os.DirEntry[bytes], dev: int) -> bool:
    """A directory on the tree's own file system (find -xdev: a mount point is listed, not
    entered)."""
    return entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_dev == dev


def kept_paths(root: Path, rules: Rules) -> Iterator[bytes]:
    """Every path of the tree that goes into the image (``./...``, directories before what
    they hold), for cpio and tar."""
    broot = os.fsencode(root)
    dev = os.lstat(broot).st_dev
    yield b"."
    pending: list[bytes] = []  # excluded directories holding a kept path: emitted with it

    def walk(rel: bytes, checking: bool) -> Iterator[bytes]:
        for entry in _entries(broot, rel):
            path = rel + b"/" + entry.name
            keep = not checking or rules.keep(path)
            if keep:
                yield from pending
                pending.clear()
                yield path
            if not _is_dir_here(entry, dev):
                continue
            if not keep and rules.drops_subtree(path):
                continue
            sub_checking = checking and rules.touches(path)
            if keep:
                yield from walk(path, sub_checking)
            else:
                pending.append(path)
                yield from walk(path, sub_checking)
                if pending and pending[-1] == path:
                    pending.pop()

    yield from walk(b".", True)


def squashfs_excludes(root: Path, rules: Rules) -> list[bytes]:
    """The paths mksquashfs leaves out (relative to the tree, a directory standing for all
    it holds): what ``kept_paths`` keeps, as exclusions."""
    broot = os.fsencode(root)
    dev = os.lstat(broot).st_dev
    out: list[bytes] = []

    def walk(rel: bytes) -> tuple[list[bytes], bool]:
        """(exclusions under rel, whether anything under rel is kept)"""
        excluded: list[bytes] = []
        kept_any = False
        for entry in _entries(broot, rel):
            path = rel + b"/" + entry.name
            keep = rules.keep(path)
            if _is_dir_here(entry, dev) and rules.touches(path):
                if not keep and rules.drops_subtree(path):
                    excluded.append(path)
                    continue
                sub, sub_kept = walk(path)
                if keep or sub_kept:
                    excluded.extend(sub)
                    kept_any = True
                else:
                    excluded.append(path)
            elif keep:
                kept_any = True
            else:
                excluded.append(path)
        return excluded, kept_any

    if rules.touches(b"."):
        out, _ = walk(b".")
    return [p[2:] for p in out]


def _squashfs_escape(path: bytes) -> bytes:
    """A path as an exact -wildcards exclusion: every character that means something to
    mksquashfs's matching is escaped."""
    if b"\n" in path:
        raise PackError(f"{os.fsdecode(path)!r}: a file name with a newline cannot be "
                        "excluded by mksquashfs")
    out = bytearray()
    for c in path:
        ch = bytes((c,))
        if ch.isalnum() or ch in b"/._-" or c >= 0x80:
            out += ch
        else:
            out += b"\\" + ch
    return bytes(out)


# ---- the lock ------------------------------------------------------------------------------
@contextlib.contextmanager
def image_lock(rootimgdir: Path, image: str, command: str) -> Iterator[None]:
    """The image's lock, or PackError (busy) at once when another command holds it."""
    rootimgdir.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd = os.open(rootimgdir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PackError(f"{command}: osimage {image} is being built, packed or removed by "
                            f"another command (it holds {rootimgdir / LOCK_NAME}): try again "
                            "when it has finished", ErrorKind.BUSY) from None
        yield
    finally:
        os.close(fd)


# ---- the root password ---------------------------------------------------------------------
def root_hash(db: Database, site: SiteValues) -> str | None:
    """The image's root password hash: ``*`` (locked) with site.secureroot=1, else passwd
    key=system username=root crypted; None when there is none."""
    if (site.get("secureroot") or "").strip() == "1":
        return "*"
    rows = db.match("passwd", {"key": "system", "username": "root"})
    if not rows or not rows[0].get("password"):
        return None
    hashed = crypt_password(rows[0]["password"], rows[0].get("cryptmethod"))
    if ":" in hashed or "\n" in hashed:
        raise PackError("passwd key=system username=root: the crypted password has "
                        "characters crypt(3) never writes")
    return hashed


def set_root_password(rootimg: Path, hashed: str) -> None:
    """Put ``hashed`` into the tree's /etc/shadow root entry (the entry's other fields kept;
    one made as xCAT makes it when there is none), written beside and renamed, with the
    file's own mode and owner. Never through a symbolic link."""
    etc = rootimg / "etc"
    shadow = etc / "shadow"
    for p in (etc, shadow):
        if p.is_symlink():
            raise PackError(f"{p} is a symbolic link: refusing to write the root password "
                            "through it")
    if not etc.is_dir():
        raise PackError(f"{etc} is not a directory: is {rootimg} an image tree?")
    try:
        st: os.stat_result | None = os.lstat(shadow)
        lines = shadow.read_text(errors="surrogateescape").splitlines()
    except FileNotFoundError:
        st, lines = None, []
    days = str(int(time.time() // 86400))
    out, done = [], False
    for line in lines:
        if line.startswith("root:") and not done:
            fields = line.split(":") + [""] * 9
            fields = fields[:max(9, len(line.split(":")))]
            fields[1] = hashed
            fields[2] = fields[2] or days
            out.append(":".join(fields))
            done = True
        else:
            out.append(line)
    if not done:
        out.insert(0, f"root:{hashed}:{days}:0:99999:7:::")
    mode = stat.S_IMODE(st.st_mode) if st else 0o600
    owner = (st.st_uid, st.st_gid) if st else (0, 0)
    data = ("\n".join(out) + "\n").encode(errors="surrogateescape")
    fd, name = tempfile.mkstemp(prefix=".shadow.", suffix=".new", dir=etc)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            if os.geteuid() == 0:
                os.fchown(fh.fileno(), *owner)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(name, shadow)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


# ---- packing -------------------------------------------------------------------------------
def output_name(method: str, compression: Compressor) -> str:
    return "rootimg.sfs" if method == "squashfs" else f"rootimg.{method}.{compression.suffix}"


def pack_names() -> set[str]:
    """Every file name a pack may have (rmimage removes them; a new pack removes the
    others, so one image has one packed root)."""
    names = {"rootimg.sfs", "rootimg.gz"}
    for method in ("cpio", "tar"):
        names |= {f"rootimg.{method}.{c.suffix}" for c in COMPRESSORS.values()}
    return names


def need(program: str, package: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise PackError(f"Command {program} does not exist, please make sure it is "
                        f"installed (Debian package {package}).", ErrorKind.CONFLICT)
    return found


@dataclass
class Packed:
    file: Path
    sha256: str
    size: int
    excluded: int = 0


def pack(rootimg: Path, destdir: Path, method: str, compression: Compressor, rules: Rules,
         log: Callable[[str], None] = lambda s: None) -> Packed:
    """Pack ``rootimg`` into ``destdir/<output_name>``: written to a temporary file beside
    it and renamed into place when every step has succeeded."""
    out = destdir / output_name(method, compression)
    fd, tmpname = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=destdir)
    tmp = Path(tmpname)
    excluded = 0
    try:
        if method == "squashfs":
            os.close(fd)
            excluded = _mksquashfs(rootimg, tmp, compression, rules, log)
        else:
            with os.fdopen(fd, "wb") as fh:
                _archive(rootimg, fh, method, compression, rules)
        os.chmod(tmp, 0o644)
        digest, size = file_sha256(tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Packed(out, digest, size, excluded)


def _mksquashfs(rootimg: Path, tmp: Path, compression: Compressor, rules: Rules,
                log: Callable[[str], None]) -> int:
    exe = need("mksquashfs", "squashfs-tools")
    argv = [exe, str(rootimg), str(tmp), "-noappend", "-comp", compression.squashfs,
            "-one-file-system", "-quiet", "-no-progress"]
    if compression.squashfs == "zstd":
        argv += ["-Xcompression-level", "3"]
    excludes = squashfs_excludes(rootimg, rules)
    with tempfile.NamedTemporaryFile(prefix=".exclude.", dir=tmp.parent) as ef:
        if excludes:
            ef.write(b"".join(_squashfs_escape(p) + b"\n" for p in excludes))
            ef.flush()
            argv += ["-wildcards", "-ef", ef.name]
        _run(argv, "mksquashfs", log)
    return len(excludes)


def _run(argv: list[str], what: str, log: Callable[[str], None]) -> None:
    with tempfile.TemporaryFile() as err:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, check=False)
        err.seek(0)
        output = err.read().decode(errors="replace")
    for line in output.splitlines():
        log(f"{what}: {line}")
    if p.returncode != 0:
        tail = "; ".join(ln for ln in output.splitlines()[-5:] if ln.strip())
        raise PackError(f"{what} failed (exit {p.returncode}){': ' + tail if tail else ''}")


def _archive(rootimg: Path, out, method: str, compression: Compressor, rules: Rules) -> None:
    """find | cpio (or tar) | compressor > out, the list made here."""
    comp_exe = need(compression.argv[0], compression.package)
    if method == "cpio":
        argv = [need("cpio", "cpio"), "-o", "-H", "newc", "-0", "--quiet"]
    else:
        argv = [need("tar", "tar"), "--create", "--file=-", "--no-recursion", "--null",
                "--files-from=-", "--numeric-owner", "--format=posix", "--xattrs",
                "--xattrs-include=*"]
    with tempfile.TemporaryFile() as err1, tempfile.TemporaryFile() as err2:
        archiver = subprocess.Popen(argv, cwd=rootimg, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err1)
        compressor = subprocess.Popen([comp_exe, *compression.argv[1:]], stdin=archiver.stdout,
                                      stdout=out, stderr=err2)
        assert archiver.stdout is not None and archiver.stdin is not None
        archiver.stdout.close()
        broken = False
        try:
            for path in kept_paths(rootimg, rules):
                try:
                    archiver.stdin.write(path + b"\0")
                except BrokenPipeError:
                    broken = True
                    break
            with contextlib.suppress(BrokenPipeError):
                archiver.stdin.close()
        except BaseException:
            archiver.kill()
            compressor.kill()
            archiver.wait()
            compressor.wait()
            raise
        rc1, rc2 = archiver.wait(), compressor.wait()
        for rc, name, errf in ((rc1, argv[0], err1), (rc2, comp_exe, err2)):
            if rc != 0 or (broken and name == argv[0]):
                errf.seek(0)
                tail = "; ".join(ln for ln in errf.read().decode(errors="replace")
                                 .splitlines()[-5:] if ln.strip())
                raise PackError(f"{os.path.basename(name)} failed (exit {rc})"
                                f"{': ' + tail if tail else ''}")


def remove_other_packs(destdir: Path, keep: str) -> list[str]:
    removed = []
    for name in sorted(pack_names() - {keep}):
        p = destdir / name
        if p.is_file() and not p.is_symlink():
            p.unlink()
            removed.append(name)
    return removed


def file_sha256(path: Path) -> tuple[str, int]:
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
        return digest, os.fstat(fh.fileno()).st_size


# ---- the manifest --------------------------------------------------------------------------
def installed_packages(rootimg: Path) -> tuple[str | None, list[dict[str, str]]]:
    """(the package manager, [{name, version, arch}]) of the tree: dpkg's status file, or
    the RPM database through ``rpm --root``."""
    status = rootimg / "var/lib/dpkg/status"
    if status.is_file() and not status.is_symlink():
        return "dpkg", dpkg_packages(status.read_text(errors="replace"))
    for dbpath in ("var/lib/rpm", "usr/lib/sysimage/rpm"):
        if (rootimg / dbpath).is_dir() and shutil.which("rpm"):
            p = subprocess.run(["rpm", "--root", str(rootimg), "--dbpath", "/" + dbpath, "-qa",
                                "--qf", r"%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\t%{ARCH}\n"],
                               capture_output=True, text=True, check=False, timeout=300)
            if p.returncode == 0:
                pkgs = []
                for line in p.stdout.splitlines():
                    name, version, arch = (line.split("\t") + ["", ""])[:3]
                    pkgs.append({"name": name, "version": version.removeprefix("0:"),
                                 "arch": arch})
                return "rpm", sorted(pkgs, key=lambda x: (x["name"], x["arch"]))
    return None, []


def dpkg_packages(text: str) -> list[dict[str, str]]:
    """The installed packages of a dpkg status file.

    >>> dpkg_packages("Package: a\\nStatus: install ok installed\\nVersion: 1.0\\n"
    ...               "Architecture: amd64\\n\\nPackage: b\\nStatus: deinstall ok config-files\\n"
    ...               "Version: 2\\n")
    [{'name': 'a', 'version': '1.0', 'arch': 'amd64'}]
    """
    out = []
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in para.splitlines():
            if line[:1] not in (" ", "\t") and ":" in line:
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
        if fields.get("package") and fields.get("status", "").split()[-1:] == ["installed"]:
            out.append({"name": fields["package"], "version": fields.get("version", ""),
                        "arch": fields.get("architecture", "")})
    return sorted(out, key=lambda x: (x["name"], x["arch"]))


def image_spec_hash(paths: Paths, image: NetbootImage) -> str:
    """sha256 over what defines the image: its osimage and linuximage rows and the content
    of the files they name (package lists, exclusion lists, postinstall scripts, synclists;
    ``#INCLUDE:...#`` files too). Two images with the same hash are built the same way."""
    skip = {"comments", "disable"}
    spec: dict[str, object] = {
        "osimage": {k: v for k, v in sorted(image.osimage.items()) if k not in skip and v},
        "linuximage": {k: v for k, v in sorted(image.linuximage.items())
                       if k not in skip and v},
    }
    files: dict[str, str] = {}
    for table, column in (("linuximage", "pkglist"), ("linuximage", "otherpkglist"),
                          ("linuximage", "exlist"), ("linuximage", "postinstall"),
                          ("osimage", "synclists")):
        row = image.linuximage if table == "linuximage" else image.osimage
        for name in (v.strip() for v in (row.get(column) or "").split(",")):
            if name.startswith("/"):
                _hash_file(paths, name, paths.under(name), files, 0)
    spec["files"] = dict(sorted(files.items()))
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _hash_file(paths: Paths, shown: str, path: Path, files: dict[str, str], depth: int) -> None:
    if shown in files or depth > MAX_INCLUDE_DEPTH:
        return
    try:
        data = path.read_bytes()
    except OSError:
        files[shown] = "missing"
        return
    files[shown] = hashlib.sha256(data).hexdigest()
    for m in _INCLUDE.finditer(data.decode(errors="replace")):
        inc = m.group(1).strip()
        target = paths.under(inc) if inc.startswith("/") else path.parent / inc
        _hash_file(paths, inc if inc.startswith("/") else str(Path(shown).parent / inc),
                   target, files, depth + 1)


def file_entry(path: Path) -> dict[str, object] | None:
    if not path.is_file():
        return None
    digest, size = file_sha256(path)
    return {"file": path.name, "sha256": digest, "size": size}


def _genimage_digest(destdir: Path) -> str | None:
    try:
        digest = json.loads((destdir / GENIMAGE_SPEC).read_text()).get("digest")
    except (OSError, ValueError, AttributeError):
        return None
    return digest if isinstance(digest, str) else None


def write_manifest(destdir: Path, image: NetbootImage, method: str, compression: Compressor,
                   packed: Packed, spec_hash: str, exlist: ExList,
                   packages: tuple[str | None, list[dict[str, str]]]) -> dict:
    manager, pkgs = packages
    manifest = {
        "format": MANIFEST_FORMAT,
        "imagename": image.name,
        "osvers": image.osvers, "arch": image.arch, "profile": image.profile,
        "provmethod": image.provmethod,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rootimg": {"file": packed.file.name, "method": method,
                    "compression": compression.squashfs if method == "squashfs"
                    else compression.name,
                    "sha256": packed.sha256, "size": packed.size},
        "kernel": file_entry(destdir / KERNEL),
        "initrd": next((e for e in (file_entry(destdir / n) for n in INITRDS) if e), None),
        "spec_sha256": spec_hash,
        "genimage_digest": _genimage_digest(destdir),
        "exlist": {"files": list(exlist.files), "exclude": list(exlist.excludes),
                   "include": list(exlist.includes)},
        "package_manager": manager,
        "packages": pkgs,
    }
    data = json.dumps(manifest, indent=1, sort_keys=False) + "\n"
    fd, name = tempfile.mkstemp(prefix=f".{MANIFEST}.", suffix=".new", dir=destdir)
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o644)
            fh.write(data)
        os.replace(name, destdir / MANIFEST)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    return manifest


# ---- rmimage -------------------------------------------------------------------------------
def inside(path: Path, parent: Path) -> bool:
    """Whether ``path`` (resolved) is strictly below ``parent`` (resolved)."""
    p, d = os.path.realpath(path), os.path.realpath(parent)
    return p != d and p.startswith(d.rstrip("/") + "/")


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (resolved), from /proc/self/mountinfo."""
    real = os.path.realpath(path)
    found = []
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 4:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4])
            if point == real or point.startswith(real.rstrip("/") + "/"):
                found.append(point)
    return found


def image_files(destdir: Path) -> list[Path]:
    """What rmimage removes in an image's directory: the tree (and genimage's previous
    generation and scratch builds), the packed roots, kernel, initrds (and their previous
    generation), genimage's record and the manifest."""
    names = {"rootimg", KERNEL, MANIFEST, GENIMAGE_SPEC, *INITRDS, *pack_names()}
    prefixes = ("rootimg.", ".rootimg.", "kernel.", "initrd-", ".build-", f".{MANIFEST}.",
                f".{GENIMAGE_SPEC}.")
    out = []
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(os.scandir(destdir), key=lambda e: e.name):
            if entry.name in names or entry.name.startswith(prefixes):
                out.append(Path(entry.path))
    return out


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# ---- packimage (and liteimg): pack an image, say what was done -------------------------------
def pack_osimage(ctx, image: NetbootImage, method: str, compressor: Compressor, *,
                 nosyncfiles: bool = False) -> Iterator[Response]:
    """Pack a diskless osimage's tree (``rootimg`` under its rootimgdir) with its root
    password hash and exlist, write its manifest, and say so as packimage does (liteimg
    packs a statelite image the same way)."""
    name = image.name
    compress = compressor.name
    destdir = ctx.paths.under(image.rootimgdir)
    rootimg = destdir / "rootimg"
    if not rootimg.is_dir():
        raise PackError(f"{image.rootimgdir}/rootimg does not exist, run genimage {name} on "
                        "a server with matching architecture", ErrorKind.NOT_FOUND)
    if rootimg.is_symlink() and not inside(rootimg, destdir):
        raise PackError(f"{image.rootimgdir}/rootimg leads out of {image.rootimgdir}: "
                        "refusing to pack it")
    exlist = read_exlist(ctx.paths, image.exlist)
    hashed = root_hash(ctx.db, ctx.site)
    if image.osimage.get("synclists") and not nosyncfiles:
        yield Response(warning=f"osimage {name} has synclists: packimage does not sync files "
                               "into the image yet (they are not in it)")
    tree = Path(os.path.realpath(rootimg))
    with image_lock(destdir, name, "packimage"):
        if hashed is None:
            yield Response(warning="No root password in passwd key=system username=root: "
                                   "the image's root account is left as it is")
        else:
            set_root_password(tree, hashed)
        yield Response(data=f"Packing contents of {image.rootimgdir}/rootimg")
        yield Response(data=f"archive method:{method}")
        yield Response(data=f"compress method:{compress}")
        packed = pack(tree, destdir, method, compressor, exlist.rules(),
                      lambda line: _log.info("packimage %s: %s", name, line))
        for old in remove_other_packs(destdir, packed.file.name):
            yield Response(data=f"Removed the previous pack {image.rootimgdir}/{old}")
        manifest = write_manifest(destdir, image, method, compressor, packed,
                                  image_spec_hash(ctx.paths, image), exlist,
                                  installed_packages(tree))
    for what in ("kernel", "initrd"):
        if manifest[what] is None:
            yield Response(warning=f"No {what} beside the image in {image.rootimgdir}: "
                                   "run genimage before nodeset")
    yield Response(data=f"{mn_path(ctx.paths, packed.file)}: {packed.size} bytes, sha256 "
                        f"{packed.sha256}", obj={"file": mn_path(ctx.paths, packed.file),
                                                 "size": packed.size,
                                                 "sha256": packed.sha256})



def mn_path(paths, path: Path) -> str:
    """A path as the admin knows it (relative to XCATROOT)."""
    try:
        return "/" + path.relative_to(paths.root).as_posix()
    except ValueError:
        return str(path)
