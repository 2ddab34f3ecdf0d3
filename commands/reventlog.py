"""reventlog: read (newest N, or all) or clear the nodes' hardware event logs."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="reventlog <noderange> [<number-of-entries>|all] [-s] | clear")
@click.option("-s", "sort", is_flag=True, help="Newest entries first.")
@click.argument("noderange")
@click.argument("what", required=False, default="all")
def main(sort, noderange, what):
    run("reventlog", noderange, {"what": what, "sort": sort})
