"""Generated files: written to a temporary file, checked (by its own program where one
exists), then renamed into place. A failed check leaves the live file untouched.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


class CheckFailed(Exception):
    """The real program rejected a generated file; ``output`` is what it said."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


def run_check(argv: Sequence[str], what: str, timeout: float = 60) -> None:
    """Run a checker (dhcpd -t, named-checkzone, ...); raise CheckFailed with its output."""
    try:
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                           check=False)
    except FileNotFoundError:
        raise CheckFailed(f"{argv[0]} is not installed: cannot check {what}") from None
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"{argv[0]} did not finish checking {what} in {timeout}s") from None
    if p.returncode != 0:
        lines = [ln for ln in (p.stdout + p.stderr).splitlines()
                 if ln.strip() and not _noise(ln)]
        raise CheckFailed(f"{argv[0]} rejected {what}", "\n".join(lines[-15:]))


def _noise(line: str) -> bool:
    return line.startswith(("Internet Systems Consortium", "Copyright", "License",
                            "For info, please", "All rights reserved", "ldap_gssapi"))


def write_atomic(path: Path, data: bytes | str, *, mode: int = 0o644,
                 owner: tuple[int, int] | None = None,
                 check: Callable[[Path], None] | None = None) -> None:
    """Write ``data`` to a fresh temporary file beside ``path`` (O_EXCL, never through a
    link someone planted), set its mode and owner on the descriptor, check it, rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            os.fchmod(fh.fileno(), mode)
            if owner is not None and os.geteuid() == 0:
                os.fchown(fh.fileno(), *owner)
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``'s generation (threads and processes alike), for a
    read-change-write of a file such as /etc/hosts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_checked(path: Path, text: str, check: Callable[[Path], None] | None = None, *,
                  mode: int = 0o644) -> bool:
    """Replace ``path`` with ``text`` if ``check(tmpfile)`` passes. Returns False (and
    writes nothing) when the content is unchanged. One writer at a time per path."""
    with locked(path):
        try:
            if path.read_text() == text and (os.stat(path).st_mode & 0o777) == mode:
                return False
        except OSError:
            pass
        write_atomic(path, text, mode=mode, check=check)
    return True


class NotText(ValueError):
    """Input that is not UTF-8 text; the message names the line and the column."""


def utf8(data: bytes, what: str) -> str:
    """``data`` decoded as UTF-8, or NotText naming ``what``, the line and the column of the
    first bad byte (a table file saved in Latin-1, say), never a traceback.

    >>> utf8(b"key,value\\n\\"domain\\",\\"caf\\xe9\\"\\n", "site.csv")
    Traceback (most recent call last):
    ...
    xcatd.base.files.NotText: site.csv: line 2 is not UTF-8 text (byte 0xe9 at column 14)
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise NotText(f"{what}: line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x} "
                      f"at column {column})") from None
