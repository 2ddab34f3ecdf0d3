"""xcatimport: make this management node the one an xcatexport archive pictures."""
import getpass
import os
from pathlib import Path

import click
from xcatd.commands._cli import fail, xcat_command
from xcatd.commands._transfer import need_root, passphrase, progress_drawer

from xcatd.base.paths import Paths
from xcatd.db.database import Database, DBError
from xcatd.transfer.archive import ArchiveError
from xcatd.transfer.importing import Importer, ImportError_, ImportOptions, regenerate
from xcatd.transfer.remap import Remap, RemapError


@xcat_command(async_option=False,
              help="xcatimport [-p dir | -f file] [--remap old=new ...] [--dry-run] "
                   "[--merge | --replace] [--passphrase-file F]")
@click.option("-p", "--path", "path", type=click.Path(), help="Import from this directory "
              "(written by xcatexport -p).")
@click.option("-f", "--file", "file", type=click.Path(), help="Import from this file "
              "(written by xcatexport -f).")
@click.option("--remap", multiple=True, metavar="OLD=NEW",
              help="Rewrite the exporting management node's host name, address or domain "
                   "wherever it appears (repeat for each).")
@click.option("--dry-run", is_flag=True, help="Show what would change, object by object, "
              "and change nothing.")
@click.option("--merge", is_flag=True, help="Add the archive's objects beside this node's "
              "(nodes defined on both sides are refused).")
@click.option("--replace", is_flag=True, help="Replace this node's configuration with the "
              "archive's, nodes included.")
@click.option("--passphrase-file", type=click.Path(dir_okay=False),
              help="Read the passphrase from the first line of this file (mode 0600).")
def main(path, file, remap, dry_run, merge, replace, passphrase_file):
    need_root("xcatimport")
    if bool(path) == bool(file):
        fail("give one of -p <directory> or -f <file>")
    if merge and replace:
        fail("--merge and --replace exclude each other")
    try:
        rules = Remap.parse(remap)
    except RemapError as exc:
        fail(str(exc))
    source = Path(os.path.abspath(path or file))
    if path and not source.is_dir():
        fail(f"-p {path}: not a directory")
    if file and not source.is_file():
        fail(f"-f {file}: no such file")
    paths = Paths()
    try:
        db = Database.open(paths)
        db.check_ready()
    except DBError as exc:
        fail(str(exc))
    secret = passphrase(passphrase_file, confirm=False) if passphrase_file else \
        (lambda: passphrase(None, confirm=False))  # asked only if the archive needs it
    user = getpass.getuser()
    opts = ImportOptions(remap=rules, dry_run=dry_run,
                         mode="merge" if merge else "replace" if replace else "fresh",
                         passphrase=secret, user=user)
    draw, status = progress_drawer()
    try:
        out = Importer(paths, db, source, opts, draw).run()
    except (ImportError_, ArchiveError, DBError) as exc:
        if status:
            status.clear()
        fail(f"{exc}; nothing was imported")
    except OSError as exc:
        if status:
            status.clear()
        fail(f"{exc.filename or ''}: {exc.strerror or exc}; nothing was imported")
    if status:
        status.clear()
    for line in out.lines:
        click.echo(line)
    for w in out.warnings:
        click.echo(f"Warning: {w}", err=True)
    if dry_run:
        return
    for typed, errors in regenerate(db, user):
        if errors:
            first = errors[0].splitlines()[0][:300]
            click.echo(f"Warning: {typed} after the import: {first}"
                       + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
                       + f"; run '{typed}' again once that is fixed", err=True)
        else:
            click.echo(f"Regenerated: {typed}")
    try:
        pid = int(paths.daemon_pidfile.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return
    click.echo(f"xcatd (pid {pid}) is running: restart it so that it serves with the "
               "imported CA and certificates", err=True)
