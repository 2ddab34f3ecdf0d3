"""The local filters (xdshbak, xcoll): they read xdsh's ``node: line`` output on standard
input and print it regrouped, without xcatd; the grouping is xcatd.remote.gather's."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from xcatd.commands._cli import XcatCommand


class FilterCommand(XcatCommand):
    """A command that never asks xcatd (no --async); its usage errors exit ``usage_exit``
    (xCAT's xdshbak exits -1, that is 255)."""

    def __init__(self, *args: Any, usage_exit: int = 1, **kw: Any) -> None:
        kw["async_option"] = False
        super().__init__(*args, **kw)
        self.usage_exit = usage_exit

    def main(self, *args: Any, **kw: Any) -> Any:
        try:
            return super().main(*args, **kw)
        except SystemExit as exc:  # only a usage error exits 1: run_filter exits 0 or 130
            if exc.code == 1:
                raise SystemExit(self.usage_exit) from None
            raise


def run_filter(gather: Callable[[Iterator[str]], list[str]]) -> NoReturn:
    """Feed standard input's lines to ``gather``, print the lines it returns, exit 0.

    Bytes that are not UTF-8 pass through unchanged, and only ``\\n`` ends a line (a node's
    ``\\r`` stays in its line)."""
    for stream, opts in ((sys.stdin, {"newline": "\n"}), (sys.stdout, {})):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape", **opts)
    try:
        lines = gather(iter(sys.stdin))
        if lines:
            sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `xdshbak | head` is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted\n")
        sys.exit(130)
    sys.exit(0)
