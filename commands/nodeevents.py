"""nodeevents: the newest events each node reported (phase, script, exit code, output)."""
import sys

import click
from xcatd.commands._cli import run, xcat_command

USAGE = ("Usage:\n"
         "  nodeevents <noderange> [-n N] [--json]\n"
         "  nodeevents [-h|--help|-v|--version]")


@xcat_command(help="Print the newest events each node reported while it booted, installed "
                   "and ran its postscripts, oldest first, with the output of the ones that "
                   "failed.")
@click.option("-n", "count", type=click.IntRange(min=1), default=None, metavar="N",
              help="How many events per node (default 10).")
@click.argument("noderange", required=False)
def main(count, noderange):
    if not noderange:
        click.echo(USAGE)
        sys.exit(1)
    args = {"count": count} if count is not None else {}
    run("nodeevents", noderange, args)
