"""xcatconfig: initialise (or complete) a management node under XCATROOT."""
import sys

import click
from xcatd.commands._cli import xcat_command

from xcatd.base.paths import Paths
from xcatd.daemon.initialize import initialize, place_loaders


@xcat_command(help="Initialise the management node: directories, database, site defaults and "
                   "default policy under $XCATROOT (default /). Safe to run again.")
@click.option("-f", "--force", is_flag=True, help="Reset the site table's defaults.")
@click.option("--dburl", help="SQLAlchemy database URL to record in etc/xcat/cfgloc "
                              "(default: SQLite under var/lib/xcat).")
def main(force, dburl):
    paths = Paths()
    try:
        for line in initialize(paths, db_url=dburl, force=force):
            click.echo(line)
        done, errors = place_loaders(paths)
    except Exception as exc:  # say what failed, never a traceback
        click.echo(f"Error: xcatconfig failed: {exc}", err=True)
        sys.exit(1)
    for line in done:
        click.echo(line)
    for line in errors:  # the rest is done: say which loaders nodes cannot get yet
        click.echo(f"Error: {line}", err=True)
    if errors:
        click.echo("Error: some boot loaders are missing: install the packages named above "
                   "and run mknb x86_64", err=True)
        sys.exit(1)
