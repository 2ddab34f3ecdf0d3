"""Commands that save what a request returns into a file (tabdump -f, tabprune -f).

The file is written by the command, with the caller's own rights, beside its target and
renamed into place only once the request has succeeded: an error leaves the old file (or
none), never half a table. The temporary file is made before the request is sent, so a
path that cannot be written is refused before anything changes.
"""
from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from xcatd.base.request import Request, Response
from xcatd.fronts.client import submit


class OutputFile:
    """A file being written aside: ``write`` lines, then ``commit`` or ``discard``."""

    def __init__(self, path: str, *, private: bool) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise IsADirectoryError(path)
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".new",
                                    dir=self.path.parent)
        self.tmp = Path(name)
        if not private:  # as a shell redirection would make it; secrets stay 0600
            umask = os.umask(0o022)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        self.fh = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, line: str) -> None:
        self.fh.write(line + "\n")

    def commit(self) -> None:
        self.fh.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


def save_output(request: Request, out: OutputFile, *,
                saved: Callable[[Response], bool] = lambda r: True,
                echo: bool = False) -> int:
    """Send ``request``; lines ``saved`` picks go to ``out`` (and to stdout with ``echo``),
    the others to stdout, errors to stderr. Returns the exit code; the file is kept only
    when nothing failed."""
    code = 0
    try:
        for resp in submit(request):
            stream, text = resp.render()
            if resp.failed:
                code = code or (resp.errorcode or 1)
            if stream == "err":
                sys.stdout.flush()
                sys.stderr.write(text + "\n")
                continue
            if saved(resp):
                out.write(text)
                if not echo:
                    continue
            sys.stdout.write(text + "\n")
        if code:
            out.discard()
        else:
            out.commit()
    except KeyboardInterrupt:
        out.discard()
        sys.stderr.write("Interrupted\n")
        return 130
    except BaseException:
        out.discard()
        raise
    sys.stdout.flush()
    return code
