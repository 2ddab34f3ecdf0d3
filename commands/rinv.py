"""rinv: hardware inventory from the nodes' management controllers."""
import click
from xcatd.commands._cli import retry_option, run, xcat_command


@xcat_command(help="rinv <noderange> [all|model|serial|vpd|firm|mprom|deviceid|guid|uuid|mac|"
                   "dimm|asset|misc]")
@click.argument("noderange")
@click.argument("what", required=False, default="all")
@retry_option
def main(noderange, what):
    run("rinv", noderange, {"what": what})
