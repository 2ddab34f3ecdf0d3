"""xcatexport: write the management node (everything but the base distribution) into one
archive that xcatimport restores on another machine."""
import getpass
import os
import sys
from pathlib import Path

import click
from xcatd.commands._cli import fail, xcat_command
from xcatd.commands._transfer import need_root, passphrase, progress_drawer

from xcatd.base.paths import Paths
from xcatd.db.database import Database, DBError
from xcatd.transfer.archive import ArchiveError, Writer
from xcatd.transfer.exporting import ExportOptions, audit_row, export, manifest_bytes
from xcatd.transfer.secretbox import Box


@xcat_command(async_option=False,
              help="xcatexport [-p dir | -f file.tar.zst] [-a] [--with-images] "
                   "[--with-media] [--secrets encrypt|redact|plain] [--passphrase-file F]")
@click.option("-p", "--path", "path", type=click.Path(), help="Write the archive into this "
              "directory (created, mode 0700; it must be empty).")
@click.option("-f", "--file", "file", type=click.Path(), help="Write the archive into this "
              "file (.tar.zst, mode 0600).")
@click.option("-a", "--all", "logs", is_flag=True,
              help="Include the logs and job history (auditlog, eventlog, jobs, nodeevents).")
@click.option("--with-images", is_flag=True, help="Include built diskless images (the "
              "packed files of each osimage's rootimgdir).")
@click.option("--with-media", is_flag=True, help="Include the copycds trees (osdistro).")
@click.option("--secrets", type=click.Choice(["encrypt", "redact", "plain"]),
              default="encrypt", show_default=True,
              help="encrypt: passwords and private keys sealed with a passphrase; redact: "
                   "left out; plain: in clear (the archive is then as secret as they are).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False),
              help="Read the passphrase from the first line of this file (mode 0600); "
                   "without it the passphrase is asked on the terminal.")
@click.option("-V", "--verbose", is_flag=True, help="Say what is exported.")
def main(path, file, logs, with_images, with_media, secrets, passphrase_file, verbose):
    need_root("xcatexport")
    if bool(path) == bool(file):
        fail("give one of -p <directory> or -f <file.tar.zst>")
    if passphrase_file and secrets != "encrypt":
        fail(f"--passphrase-file goes with --secrets encrypt, not --secrets {secrets}")
    paths = Paths()
    try:
        db = Database.open(paths)
        db.check_ready()
    except DBError as exc:
        fail(str(exc))
    box = None
    if secrets == "encrypt":
        box = Box.new(passphrase(passphrase_file, confirm=True))
    elif secrets == "plain":
        click.echo("Warning: --secrets plain: the archive holds every password and private "
                   "key of this management node in clear; keep it as you would keep them",
                   err=True)
    target = Path(os.path.abspath(path or file))
    try:
        writer = Writer(target, bool(path))
    except (ArchiveError, OSError) as exc:
        fail(f"{target}: {getattr(exc, 'strerror', None) or exc}")
    draw, status = progress_drawer()
    opts = ExportOptions(logs=logs, images=with_images, media=with_media, secrets=secrets,
                         box=box)
    try:
        result = export(paths, db, writer, opts, draw)
        writer.finish(manifest_bytes(result.manifest, box))
    except (ArchiveError, DBError, OSError) as exc:
        writer.abort()
        if status:
            status.clear()
        why = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.strerror \
            else str(exc)
        fail(f"xcatexport failed, no archive was written: {why}")
    except KeyboardInterrupt:
        writer.abort()
        if status:
            status.clear()
        click.echo("Interrupted: no archive was written", err=True)
        sys.exit(130)
    if status:
        status.clear()
    with db.begin() as conn:
        db.insert_row(conn, "auditlog", audit_row(
            getpass.getuser(), "xcatexport",
            f"-{'p' if path else 'f'} {target} --secrets {secrets}"
            + "".join(f" {o}" for o, on in (("-a", logs), ("--with-images", with_images),
                                            ("--with-media", with_media)) if on),
            f"{len(result.manifest['entries'])} entries"))
    for w in result.warnings:
        click.echo(f"Warning: {w}", err=True)
    entries = result.manifest["entries"]
    if verbose:
        for e in entries:
            click.echo(f"{e['name']} {e['size']} {e['mode']}{' sealed' if e.get('sealed') else ''}")
    tables = len(result.manifest["tables"])
    files = sum(1 for e in entries if not e["name"].startswith(("tables/", "secrets")))
    size = sum(e["size"] for e in entries)
    sealed = sum(1 for e in entries if e.get("sealed"))
    how = {"encrypt": f"{sealed} secret entries encrypted with the passphrase",
           "redact": "secrets left out", "plain": "secrets in clear"}[secrets]
    click.echo(f"Exported {tables} tables and {files} files ({size:,} bytes; {how}) to "
               f"{target}")
