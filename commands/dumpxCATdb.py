"""dumpxCATdb: write every table to <path>/<table>.csv (mode 0600: dumps keep secrets)."""
import os

import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="dumpxCATdb [-a] [-V] -p <directory>")
@click.option("-p", "path", help="Directory to write the table files into (must exist).")
@click.option("-a", "all_", is_flag=True, help="Include auditlog and eventlog.")
@click.option("-V", "verbose", is_flag=True, help="Say what is dumped and skipped.")
def main(path, all_, verbose):
    run("dumpxCATdb", None, {"path": os.path.abspath(path) if path else None, "all": all_,
                             "verbose": verbose})
