"""A command run in this process as its console script would run it (click's main, argv,
stdin, stdout and stderr captured, the exit code from SystemExit): the test suite's and the
labs' one way to call a command without starting Python again."""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


def run_command(cmd: str, *args: str, input: str | None = None) -> Result:
    """``cmd args...`` (a module of xcatd.commands) in this process; the caller sets the
    environment (XCATROOT, HOME, XCATBYPASS...) around it."""
    mod = importlib.import_module(f"xcatd.commands.{cmd}")
    out, err = io.StringIO(), io.StringIO()
    old_in = sys.stdin
    sys.stdin = io.StringIO(input or "")
    rc = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                mod.main.main(args=list(args), prog_name=cmd)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdin = old_in
    return Result(rc, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """This process's environment is exactly ``env`` for the block (a command reads its
    XCATROOT, HOME, XCATHOST... from there)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
