"""xcatconfig: initialise (or complete) a management node under XCATROOT."""
import sys

import click
from xcatd.commands._cli import xcat_command

from xcatd.base.paths import Paths
from xcatd.daemon.initialize import initialize


@xcat_command(help="Initialise the management node: directories, database, site defaults and "
                   "default policy under $XCATROOT (default /). Safe to run again.")
@click.option("-f", "--force", is_flag=True, help="Reset the site table's defaults.")
@click.option("--dburl", help="SQLAlchemy database URL to record in etc/xcat/cfgloc "
                              "(default: SQLite under var/lib/xcat).")
def main(force, dburl):
    try:
        for line in initialize(Paths(), db_url=dburl, force=force):
            click.echo(line)
    except Exception as exc:  # say what failed, never a traceback
        click.echo(f"Error: xcatconfig failed: {exc}", err=True)
        sys.exit(1)
