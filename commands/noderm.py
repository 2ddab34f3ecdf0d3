"""noderm: remove nodes and every row that belongs to them."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="Remove the nodes in a noderange from every table.")
@click.argument("noderange")
def main(noderange):
    run("noderm", noderange, {})
