"""nodeadd: add nodes to the nodelist and set their attributes."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="Add nodes: nodeadd <noderange> groups=<groupnames> [table.column=value] ...")
@click.argument("noderange")
@click.argument("assignments", nargs=-1)
def main(noderange, assignments):
    run("nodeadd", noderange, {"assignments": list(assignments)})
