"""makenetworks: define networks from the management node's interfaces."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="makenetworks [-d]: create networks rows from this node's interfaces.")
@click.option("-d", "display", is_flag=True, help="Show the definitions; write nothing.")
def main(display):
    run("makenetworks", None, {"display": display})
