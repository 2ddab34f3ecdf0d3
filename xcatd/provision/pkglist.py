"""xCAT's package list format (linuximage.pkglist, otherpkglist): what genimage installs, and
removes, in which passes.

One package a line, or several on a line separated by commas or spaces; ``#`` starts a
comment; ``#INCLUDE:<file>#`` reads another list in its place; ``#NEW_INSTALL_LIST#`` starts a
new pass (installed after the previous one, so a pass may need what an earlier one put in);
``-name`` (and xCAT's ``--name``, remove after the other packages) removes a package in the
current pass; ``#ENV:NAME=value#`` is an environment setting for the installer in that pass.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "base.pkglist").write_text("bash, coreutils\\n")
>>> _ = (d / "compute.pkglist").write_text(
...     "#INCLUDE:base.pkglist#\\nopenssh-server   # to log in\\n-nano\\n"
...     "#NEW_INSTALL_LIST#\\n@^minimal-environment\\n")
>>> for p in read_pkglist(d / "compute.pkglist"):
...     print(p.install, p.remove)
('bash', 'coreutils', 'openssh-server') ('nano',)
('@^minimal-environment',) ()
>>> read_pkglist(d / "nope.pkglist")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
xcatd.provision.pkglist.PkgListError: .../nope.pkglist: cannot read the package list: ...

``@group`` and ``@^environment`` names are kept as written: dnf resolves them. Debian and
Ubuntu have no package groups, so genimage refuses ``@`` names for them with an error naming
the group (``group_names`` finds them); write the packages, or a task's metapackage
(``task-ssh-server``), instead. A group name may hold spaces (``@Development Tools``): an
``@`` entry runs to the next comma or the end of the line.

Where this differs from xCAT, on purpose: xCAT skips an unreadable include with a warning
and reads an include's own includes from the top file's directory; here a missing include is
an error naming it and the line that asks for it, an include is found next to the file that
includes it (then in ``search``), and an include cycle is an error instead of a hang.
Management-node paths (``/install/custom/...``) are read under the management node's root
(``root``), so a scratch ``XCATROOT`` finds its own files. Environment variables in include
names (xCAT expands ``$VAR`` from genimage's environment) are not expanded: the list would
depend on who runs genimage.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xcatd.base.paths import Paths

__all__ = ["PkgListError", "PkgPass", "group_names", "read_pkglist", "read_pkglists"]

#: at most this many lines are read for one list, includes counted (a list whose includes
#: multiply each other would otherwise be read for ever)
MAX_LINES = 200_000
MAX_DEPTH = 32

_INCLUDE = re.compile(r"#INCLUDE:([^#\n]+)#")
_ENV = re.compile(r"#ENV:([A-Za-z_][A-Za-z0-9_]*=[^#\n]*)#")
_NEW_PASS = "#NEW_INSTALL_LIST#"
# a package spec as dnf and apt take them: name, name-version, name=version, name/suite,
# name.arch, globs (kernel*), epochs (1:2.3); subdir/name in an otherpkglist
_NAME = re.compile(r"[A-Za-z0-9_+*?\[][A-Za-z0-9._+:~/*?\[\]=<>-]*")
_GROUP = re.compile(r"@\^?[A-Za-z0-9_][A-Za-z0-9._+ :()-]*")


class PkgListError(ValueError):
    """A package list that cannot be used; the message names the file and the line."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class PkgPass:
    """One installer run: what it installs, then what it removes (each in list order, once).

    ``env`` holds the pass's ``#ENV:NAME=value#`` settings (``NAME=value`` strings); it is
    empty unless the list has some, so ``PkgPass(install=..., remove=...)`` compares equal to
    a pass read from a list without them."""

    install: tuple[str, ...]
    remove: tuple[str, ...]
    env: tuple[str, ...] = field(default=())


class _Pass:
    def __init__(self) -> None:
        self.install: dict[str, None] = {}
        self.remove: dict[str, None] = {}
        self.env: dict[str, None] = {}

    def extend(self, other: _Pass) -> None:
        self.install.update(other.install)
        self.remove.update(other.remove)
        self.env.update(other.env)

    def empty(self) -> bool:
        return not (self.install or self.remove or self.env)

    def frozen(self) -> PkgPass:
        return PkgPass(tuple(self.install), tuple(self.remove), tuple(self.env))


class _Reader:
    """One list read with its includes; ``passes`` grows as ``#NEW_INSTALL_LIST#`` asks."""

    def __init__(self, search: Sequence[Path], root: Path | None) -> None:
        self.search = [Path(s) for s in search]
        self.root = root
        self.passes = [_Pass()]
        self.lines = 0

    def read(self, path: Path, stack: tuple[Path, ...] = ()) -> None:
        real = Path(os.path.realpath(path))
        if real in stack:
            chain = " -> ".join(str(p) for p in (*stack, real))
            raise PkgListError(path, f"include cycle: {chain}")
        if len(stack) >= MAX_DEPTH:
            raise PkgListError(path, f"includes nested more than {MAX_DEPTH} deep")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise PkgListError(path, f"not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise PkgListError(path, f"cannot read the package list: "
                                     f"{exc.strerror or exc}") from None
        for number, line in enumerate(text.splitlines(), 1):
            self.lines += 1
            if self.lines > MAX_LINES:
                raise PkgListError(path, f"more than {MAX_LINES} lines with its includes",
                                   number)
            self._line(path, number, line.strip(), (*stack, real))

    def _line(self, path: Path, number: int, line: str, stack: tuple[Path, ...]) -> None:
        if not line:
            return
        if line.startswith("#"):
            self._directive(path, number, line, stack)
            return
        line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0]  # a comment after the names
        current = self.passes[-1]
        for part in line.split(","):
            part = part.strip()
            if not part:
                continue
            words = [part] if part.lstrip("-").startswith("@") else part.split()
            for word in words:
                self._word(path, number, word, current)

    def _directive(self, path: Path, number: int, line: str, stack: tuple[Path, ...]) -> None:
        if line.startswith("#INCLUDE:"):
            m = _INCLUDE.match(line)
            if m is None or line[m.end():].strip():
                raise PkgListError(path, f"malformed include {line!r}: write "
                                         "#INCLUDE:<file>#, alone on its line", number)
            self.read(self._include(path, number, m.group(1).strip()), stack)
        elif line.startswith(_NEW_PASS):
            self.passes.append(_Pass())
        elif line.startswith("#ENV:"):
            m = _ENV.match(line)
            if m is None:
                raise PkgListError(path, f"malformed environment setting {line!r}: write "
                                         "#ENV:NAME=value#", number)
            self.passes[-1].env[m.group(1)] = None
        # any other line starting with # is a comment

    def _include(self, path: Path, number: int, name: str) -> Path:
        if name.startswith("/"):
            candidates = [Paths(self.root).under(name) if self.root else Path(name)]
        else:
            candidates = [path.parent / name] + [d / name for d in self.search]
        for c in candidates:
            if c.is_file():
                return c
        looked = ", ".join(str(c) for c in candidates)
        raise PkgListError(path, f"included file {name} not found (looked for {looked})",
                           number)

    def _word(self, path: Path, number: int, word: str, current: _Pass) -> None:
        target = current.install
        name = word
        if word.startswith("-"):
            target, name = current.remove, word[2:] if word.startswith("--") else word[1:]
        pattern = _GROUP if name.startswith("@") else _NAME
        if not pattern.fullmatch(name):
            raise PkgListError(path, f"invalid package name {word!r}", number)
        target[name.strip()] = None


def _read(path: Path, search: Sequence[Path], root: Path | None) -> list[_Pass]:
    reader = _Reader(search, root)
    reader.read(path)
    return reader.passes


def _finish(passes: Iterable[_Pass]) -> list[PkgPass]:
    return [p.frozen() for p in passes if not p.empty()]


def read_pkglist(path: Path | str, *, search: Sequence[Path] = (),
                 root: Path | None = None) -> list[PkgPass]:
    """The passes of one package list file (empty passes left out).

    ``#INCLUDE:f#`` is looked for beside the including file, then in each ``search``
    directory; an absolute include is a management-node path, read under ``root`` when it is
    given."""
    return _finish(_read(Path(path), search, root))


def read_pkglists(value: str, *, root: Path, search: Sequence[Path] = ()) -> list[PkgPass]:
    """The passes of a linuximage.pkglist value: management-node paths separated by commas,
    read under ``root`` (the management node's XCATROOT); pass N of every file goes into
    pass N, as xCAT merges them.

    >>> read_pkglists(" , ", root=Path("/"))
    []
    >>> read_pkglists("install/x.pkglist", root=Path("/"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xcatd.provision.pkglist.PkgListError: install/x.pkglist: a package list is named by ...
    """
    merged: list[_Pass] = []
    for name in (n.strip() for n in value.split(",")):
        if not name:
            continue
        if not name.startswith("/"):
            raise PkgListError(name, "a package list is named by its full path on the "
                                     "management node (/install/...)")
        for i, p in enumerate(_read(Paths(root).under(name), search, root)):
            if i == len(merged):
                merged.append(_Pass())
            merged[i].extend(p)
    return _finish(merged)


def group_names(passes: Iterable[PkgPass]) -> list[str]:
    """The ``@group`` names of some passes, installed or removed (Debian has no groups, so
    genimage refuses them there).

    >>> group_names([PkgPass(("bash", "@core"), ("@^gnome",))])
    ['@core', '@^gnome']
    """
    return [n for p in passes for n in (*p.install, *p.remove) if n.startswith("@")]
