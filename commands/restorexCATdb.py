"""restorexCATdb: restore every <table>.csv in a directory, all tables or none."""
import os

import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="restorexCATdb [-a] [-V] -p <directory>")
@click.option("-p", "--path", "path", help="Directory holding the table files.")
@click.option("-a", "--all", "all_", is_flag=True, help="Include auditlog and eventlog.")
@click.option("-V", "--verbose", "verbose", is_flag=True,
              help="Say what is restored and skipped.")
def main(path, all_, verbose):
    run("restorexCATdb", None, {"path": os.path.abspath(path) if path else None, "all": all_,
                                "verbose": verbose})
