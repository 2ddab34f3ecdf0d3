"""Placing an import's files so that the import is all or nothing, a kill included.

Each changed file is first written beside its destination under a temporary name (nothing
visible changes). Inside the import's database transaction, just before its commit, a
journal is written, each file the import replaces is kept as a hard link, and the new files
are renamed in. After the commit the kept files go; if the transaction fails they are renamed
back. A process killed in between leaves the journal: the next import (``recover``) finds in
the database whether that import committed (its auditlog row names it) and either drops the
kept files or puts them back.

Files in a user's home (client certificates) are written with that user's identity, so a
link the user planted cannot make root write or chown anything else.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TEMP_MARK = ".xcatimport."
KEPT_MARK = ".xcatimport-old."


class PlaceError(Exception):
    """A file that cannot be placed; nothing was changed."""


@dataclass
class Move:
    tmp: Path
    dest: Path
    owner: tuple[int, int] | None
    kept: Path | None = None
    done: bool = False


@contextmanager
def as_user(owner: tuple[int, int] | None) -> Iterator[None]:
    """Act as ``owner`` (uid, gid) for file operations in that user's home (root only)."""
    if owner is None or os.geteuid() != 0:
        yield
        return
    groups = os.getgroups()
    os.setgroups([owner[1]])
    os.setegid(owner[1])
    os.seteuid(owner[0])
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Placer:
    def __init__(self, journal_dir: Path, import_id: str) -> None:
        self.journal = journal_dir / f"xcatimport.journal.{os.getpid()}"
        self.id = import_id
        self.moves: list[Move] = []
        self._dests: set[Path] = set()
        self._cleaned: set[Path] = set()
        self.made_dirs: list[tuple[Path, tuple[int, int] | None]] = []

    def temp_for(self, dest: Path, owner: tuple[int, int] | None, secret: bool) -> Path:
        """Where to write ``dest``'s new content: checked (no directory in its way, not
        placed twice), its directory made, stale temporary files of killed imports gone."""
        if dest in self._dests:
            raise PlaceError(f"{dest} would be written twice")
        self._dests.add(dest)
        if dest.is_dir() and not dest.is_symlink():
            raise PlaceError(f"{dest} is a directory here; the archive has a file there")
        with as_user(owner):
            self._mkdirs(dest.parent, owner, secret)
            if dest.parent not in self._cleaned:
                self._cleaned.add(dest.parent)
                _clean_stale(dest.parent)
            tmp = dest.parent / f".{dest.name}{TEMP_MARK}{os.getpid()}"
            if os.path.lexists(tmp):
                os.unlink(tmp)
        self.moves.append(Move(tmp, dest, owner))
        return tmp

    def drop(self, dest: Path) -> None:
        """Give up placing ``dest`` (before the commit; its temporary file removed)."""
        for m in self.moves:
            if m.dest == dest:
                self.moves.remove(m)
                self._dests.discard(dest)
                with as_user(m.owner):
                    try:
                        _unlink(m.tmp)
                    except OSError:
                        pass
                return

    def _mkdirs(self, d: Path, owner: tuple[int, int] | None, secret: bool) -> None:
        missing = []
        while not os.path.lexists(d):
            missing.append(d)
            d = d.parent
        for m in reversed(missing):
            m.mkdir(mode=0o700 if owner or secret else 0o755)
            self.made_dirs.append((m, owner))

    def write(self, tmp: Path, owner: tuple[int, int] | None,
              fill: Callable[[int], None]) -> None:
        """Create ``tmp`` (never through a link) and let ``fill`` write into its fd."""
        with as_user(owner):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            fill(fd)
        finally:
            os.close(fd)

    def commit(self) -> None:
        """Inside the transaction, just before it commits: journal, keep, rename."""
        for m in self.moves:
            if os.path.lexists(m.dest):
                m.kept = m.dest.parent / f".{m.dest.name}{KEPT_MARK}{os.getpid()}"
        self._write_journal()
        for m in self.moves:
            with as_user(m.owner):
                if m.kept is not None:
                    if os.path.lexists(m.kept):
                        os.unlink(m.kept)
                    os.link(m.dest, m.kept, follow_symlinks=False)
                os.replace(m.tmp, m.dest)
            m.done = True

    def finish(self) -> None:
        """After the commit: the kept files and the journal go."""
        for m in self.moves:
            if m.kept is not None:
                with as_user(m.owner):
                    _unlink(m.kept)
        _unlink(self.journal)

    def abort(self) -> None:
        """The transaction failed: every file as it was, temporary files and new
        directories gone."""
        for m in reversed(self.moves):
            with as_user(m.owner):
                if m.done:
                    if m.kept is not None:
                        os.replace(m.kept, m.dest)
                    else:
                        _unlink(m.dest)
                else:
                    _unlink(m.tmp)
                    if m.kept is not None:
                        _unlink(m.kept)
        for d, owner in reversed(self.made_dirs):
            with as_user(owner):
                try:
                    d.rmdir()
                except OSError:
                    pass
        _unlink(self.journal)

    def _write_journal(self) -> None:
        data = json.dumps({"id": self.id, "moves": [
            [str(m.dest), str(m.kept) if m.kept else None, list(m.owner) if m.owner else None]
            for m in self.moves]}).encode()
        tmp = self.journal.with_name(self.journal.name + ".part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.journal)


def recover(journal_dir: Path, committed: Callable[[str], bool]) -> list[str]:
    """Finish what killed imports left: for each journal of a dead process, drop the kept
    files if its import committed (``committed(id)``), else put them back. Returns a line
    per journal."""
    said = []
    for journal in sorted(journal_dir.glob("xcatimport.journal.*")):
        pid = journal.name.rsplit(".", 1)[-1]
        if not pid.isdigit() or alive(int(pid)):
            continue
        try:
            data = json.loads(journal.read_text())
            moves = data["moves"]
            done = committed(str(data["id"]))
        except (OSError, ValueError, KeyError, TypeError):
            said.append(f"{journal} is unreadable: left for you to look at")
            continue
        for dest, kept, owner in moves:
            with as_user(tuple(owner) if owner else None):
                if done:
                    if kept:
                        _unlink(Path(kept))
                elif kept and os.path.lexists(kept):
                    os.replace(kept, dest)
                elif not kept:
                    _unlink(Path(dest))  # a new file of an import that did not commit
        _unlink(journal)
        what = "committed: its files were kept" if done else \
            "not committed: the files it had replaced were put back"
        said.append(f"An import killed earlier (pid {pid}) had {what}")
    return said


def _clean_stale(d: Path) -> None:
    """Temporary and kept files of imports that died (their pid is gone)."""
    try:
        names = os.listdir(d)
    except OSError:
        return
    for name in names:
        if name.startswith(".") and TEMP_MARK in name:
            pid = name.rsplit(".", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
                _unlink(d / name)


def _unlink(p: Path) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


def copy_checked(src: Path, fd: int, sha256: str, name: str) -> None:
    """Copy ``src`` into ``fd``, checking on the way that it still hashes as the manifest
    says (a -p directory could change after it was verified)."""
    import hashlib
    h = hashlib.sha256()
    with open(src, "rb") as fh, os.fdopen(os.dup(fd), "wb") as out:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            out.write(chunk)
    if h.hexdigest() != sha256:
        raise PlaceError(f"{name} changed after it was verified")
