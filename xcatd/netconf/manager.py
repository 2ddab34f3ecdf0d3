"""One lifecycle for every generated service configuration:

    collect (tables) -> render (text) -> validate (the service's own checker) -> write -> reload

``rebuild`` runs it whole (``makedhcp -n``); ``update`` changes only the named nodes on the
running service (``makedhcp n042``: OMAPI, Kea's control socket, a DNS update) and never
rebuilds everything for one node. Nothing half-written: every file of a rebuild is written
to a hidden temporary file beside its target and checked, all of them before any is renamed
into place, so a failed check leaves every live file and the running service untouched.
Files whose text and mode are unchanged are not rewritten.
"""
from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xcatd.base.files import CheckFailed, locked
from xcatd.base.noderange import NodeRange
from xcatd.base.request import ErrorKind, Response, XcatError
from xcatd.db.cluster import Cluster


@dataclass
class Generated:
    """One file of a configuration: where it goes, its text and mode, and the service's own
    check of it (called with the path of a temporary copy; raises CheckFailed)."""

    path: Path
    text: str
    mode: int = 0o644
    check: Callable[[Path], None] | None = None

    def unchanged(self) -> bool:
        try:
            return (self.path.read_text() == self.text
                    and (os.stat(self.path).st_mode & 0o777) == self.mode)
        except (OSError, UnicodeDecodeError):
            return False


class ConfigManager(ABC):
    """A service configuration generated from the tables (see the module docstring)."""

    #: the service, as the admin names it (dhcpd, kea, bind, hosts, tftpd-hpa)
    name: str = ""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    # ---- the full rebuild -------------------------------------------------------------------
    @abstractmethod
    def collect(self) -> Any:
        """What the configuration is made of, read from the tables in bulk; XcatError names
        what is wrong (two nodes with one MAC, an address outside every network, ...)."""

    @abstractmethod
    def render(self, data: Any) -> list[Generated]:
        """The files, rendered from ``data``."""

    def report(self, data: Any, written: list[Path]) -> Iterator[Response]:
        """What a rebuild says when it is done (warnings about skipped nodes, a summary)."""
        return iter(())

    def reload(self, written: list[Path]) -> None:
        """Make the running service take the new files. The default does nothing: these
        services are the admin's to (re)start, and live changes go through ``update``."""
        return None

    def rebuild(self) -> Iterator[Response]:
        data = self.collect()
        files = self.render(data)
        written = install(files, self.name)
        self.reload(written)
        yield from self.report(data, written)

    # ---- one node at a time on the running service -----------------------------------------
    def update(self, nodes: list[str], *, delete: bool = False) -> Iterator[Response]:
        """Add (or with ``delete`` remove) these nodes on the running service."""
        raise XcatError(f"{self.name}: per-node changes are not supported; rebuild instead")


def install(files: list[Generated], what: str) -> list[Path]:
    """Validate every changed file on a temporary copy, then rename them all into place;
    the paths written. A failed check raises XcatError naming the file and what the checker
    said, and nothing is changed."""
    todo = sorted((f for f in files if not f.unchanged()), key=lambda f: str(f.path))
    staged: list[tuple[Path, Generated]] = []
    with ExitStack() as stack:
        for f in todo:  # one writer at a time per file, in one order (no deadlock)
            stack.enter_context(locked(f.path))
        try:
            for f in todo:
                tmp = _stage(f)
                staged.append((tmp, f))
                if f.check is not None:
                    f.check(tmp)
        except CheckFailed as exc:
            _discard(staged)
            live = f"{todo[0].path} was" if len(todo) == 1 else f"the live {what} files were"
            raise XcatError(f"{exc}; {live} not changed:\n{exc.output}",
                            kind=ErrorKind.CONFLICT) from None
        except BaseException:
            _discard(staged)
            raise
        for tmp, f in staged:
            os.replace(tmp, f.path)
    return [f.path for f in todo]


def _stage(f: Generated) -> Path:
    f.path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{f.path.name}.", suffix=".new", dir=f.path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(f.text.encode())
            os.fchmod(fh.fileno(), f.mode)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def _discard(staged: list[tuple[Path, Generated]]) -> None:
    for tmp, _f in staged:
        tmp.unlink(missing_ok=True)


def missing_warning(what: str, nodes: list[str]) -> Response:
    return Response(warning=f"{what}: {NodeRange(nodes)}")
