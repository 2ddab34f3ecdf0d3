"""dumpxCATdb: write every table to <path>/<table>.csv (mode 0600: dumps keep secrets)."""
import os

import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="dumpxCATdb [-a] [-V] -p <directory>")
@click.option("-p", "--path", "path",
              help="Directory to write the table files into (created if it does not exist).")
@click.option("-a", "--all", "all_", is_flag=True, help="Include auditlog and eventlog.")
@click.option("-V", "--verbose", "verbose", is_flag=True, help="Say what is dumped and skipped.")
def main(path, all_, verbose):
    # XCAT_SKIPTABLES, when set, names the tables to skip instead of site.skiptables
    run("dumpxCATdb", None, {"path": os.path.abspath(path) if path else None, "all": all_,
                             "verbose": verbose,
                             "skiptables": os.environ.get("XCAT_SKIPTABLES") or None})
