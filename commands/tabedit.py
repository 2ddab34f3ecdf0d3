"""tabedit: edit a table in $TABEDITOR / $EDITOR / vi, then restore it if it changed."""
import hashlib
import os
import shlex
import subprocess
import sys
import tempfile

import click
from xcatd.commands._cli import run, xcat_command

from xcatd.base.files import NotText, utf8
from xcatd.base.request import Request
from xcatd.fronts.client import submit

LOG_TABLES = ("auditlog", "eventlog")


@xcat_command(help="tabedit <tablename>")
@click.argument("table")
def main(table):
    if table in LOG_TABLES:
        sys.stderr.write("Error: The auditlog and eventlog tables may not be edited. Use the "
                         "tabprune command.\n")
        sys.exit(1)
    lines, errors = [], []
    for resp in submit(Request("tabdump", args={"table": table})):
        (errors if resp.failed else lines).append(resp.render()[1])
    if errors:
        sys.stderr.write("\n".join(errors) + "\n")
        sys.exit(1)
    editor = os.environ.get("TABEDITOR") or os.environ.get("EDITOR") or "vi"
    with tempfile.TemporaryDirectory(prefix="tabedit.") as tmp:
        path = os.path.join(tmp, f"{table}.csv")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        before = _digest(path)
        while True:
            if subprocess.call([*shlex.split(editor), path]) != 0:
                sys.stderr.write("Error: the editor failed; the table is unchanged.\n")
                sys.exit(1)
            if _digest(path) == before:
                click.echo("No file modifications detected, not restoring.")
                return
            with open(path, "rb") as fh:
                try:
                    text = utf8(fh.read(), f"{table}.csv")
                except NotText as exc:
                    text, bad = "", str(exc)
                else:
                    bad = ""
            if bad:
                sys.stderr.write(f"Error: {bad}\n")
                if not sys.stdin.isatty():
                    sys.exit(1)
                click.prompt("Hit enter to edit again, or ctrl-c to abort", default="",
                             show_default=False)
                continue
            failed = [r.render()[1] for r in submit(Request("tabrestore", args={"table": table},
                                                            stdin=text)) if r.failed]
            if not failed:
                return
            sys.stderr.write("\n".join(failed) + "\n")
            if not sys.stdin.isatty():
                sys.exit(1)
            click.prompt("Above errors occurred, hit enter to edit, or ctrl-c to abort",
                         default="", show_default=False)


def _digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.md5(fh.read()).hexdigest()  # change detection only


__all__ = ["main", "run"]
