"""Generated files: written to a temporary file, checked (by its own program where one
exists), then renamed into place. A failed check leaves the live file untouched.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
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


def write_checked(path: Path, text: str, check: Callable[[Path], None] | None = None, *,
                  mode: int = 0o644) -> bool:
    """Replace ``path`` with ``text`` if ``check(tmpfile)`` passes. Returns False (and
    writes nothing) when the content is unchanged."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.read_text() == text and (os.stat(path).st_mode & 0o777) == mode:
            return False
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True
