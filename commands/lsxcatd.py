"""lsxcatd: what the daemon is: its version, management or service node, its database."""
import sys

import click
from xcatd.commands._cli import run, xcat_command

USAGE = """Usage: lsxcatd [-v|--version]
       lsxcatd [-h|--help]
       lsxcatd [-d|--database]
       lsxcatd [-t|--nodetype]
       lsxcatd [-a|--all]"""


@xcat_command(help="List the daemon's version, whether this is a management or a service "
                   "node, its database and its port.")
@click.option("-v", "--version", "version", is_flag=True, help="The daemon's version.")
@click.option("-d", "--database", is_flag=True,
              help="The database in use (engine, location; never its password).")
@click.option("-t", "--nodetype", "--type", "nodetype", is_flag=True,
              help="Whether this is a management node or a service node.")
@click.option("-a", "--all", "all_", is_flag=True,
              help="Everything above, and the daemon's port.")
def main(version, database, nodetype, all_):
    if not (version or database or nodetype or all_):
        click.echo(USAGE, err=True)
        sys.exit(1)
    run("lsxcatd", None, {"version": version, "database": database, "nodetype": nodetype,
                          "all": all_})
