"""pping: ping the nodes of a noderange in parallel: ``n1: ping`` or ``n1: noping``."""
import sys

import click
from xcatd.commands._cli import run, xcat_command

USAGE = ("Usage: pping [-i|--interface interfaces][-f|--use_fping] noderange\n"
         "       pping -h|--help\n"
         "       pping -v|--version")


@xcat_command(help="Ping every node of a noderange at once; print n1: ping or n1: noping.")
@click.option("-i", "--interface", "interfaces", metavar="NICS",
              help="Ping these interfaces (comma-separated) instead: node-nic, from "
                   "nics.nicips or name resolution.")
@click.option("-f", "--use_fping", "use_fping", is_flag=True, help="Ping with fping.")
@click.argument("noderange", required=False)
def main(interfaces, use_fping, noderange):
    if not noderange:
        click.echo(USAGE)
        sys.exit(1)
    run("pping", noderange, {"interfaces": interfaces, "fping": use_fping})
