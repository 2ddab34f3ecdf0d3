"""What xcatexport and xcatimport share on the command line: root only, the passphrase,
progress on a terminal."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click
from xcatd.commands._cli import StatusLine, fail

from xcatd.transfer.secretbox import PassphraseError, read_passphrase_file


def need_root(command: str) -> None:
    if os.geteuid() != 0:
        fail(f"{command} is for root: it reads and writes every secret of the management node")


def passphrase(path: str | None, *, confirm: bool) -> bytes:
    """From --passphrase-file, else asked on the terminal (twice when exporting)."""
    if path:
        try:
            return read_passphrase_file(path)
        except (OSError, PassphraseError) as exc:
            fail(f"--passphrase-file {path}: {getattr(exc, 'strerror', None) or exc}")
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        fail("the archive's secrets need a passphrase: give --passphrase-file FILE (mode "
             "0600), or run on a terminal to type it")
    text = click.prompt("Passphrase for the archive's secrets", hide_input=True,
                        confirmation_prompt=confirm, err=True)
    if not text:
        fail("the passphrase is empty")
    return text.encode()


def progress_drawer() -> tuple[Callable[[str, int, int], None] | None, StatusLine | None]:
    if not sys.stderr.isatty():
        return None, None
    status = StatusLine(sys.stderr)

    def draw(what: str, done: int, total: int) -> None:
        state: dict = {"what": what}
        if total:
            state.update(done=done, total=total, unit="bytes" if total > 10000 else "")
        status.draw(state)

    return draw, status
