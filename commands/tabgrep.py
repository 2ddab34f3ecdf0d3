"""tabgrep: list the tables that have a row for a node."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="tabgrep nodename")
@click.argument("node")
def main(node):
    run("tabgrep", None, {"node": node})
