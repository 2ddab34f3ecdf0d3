"""rpower: power control through each node's management controller."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="rpower <noderange> on|off|softoff|reset|boot|cycle|stat|state|status|nmi")
@click.argument("noderange")
@click.argument("action")
@click.option("--retry", is_flag=True,
              help="Nodes whose service node fails during the request run again on the next "
                   "service node in their pool (noderes.servicenode).")
def main(noderange, action, retry):
    run("rpower", noderange, {"action": action, **({"retry": True} if retry else {})})
