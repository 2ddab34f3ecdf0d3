"""rpower: power control through each node's management controller."""
import click
from xcatd.commands._cli import retry_option, run, xcat_command


@xcat_command(help="rpower <noderange> on|off|softoff|reset|boot|cycle|stat|state|status|nmi")
@click.argument("noderange")
@click.argument("action")
@retry_option
def main(noderange, action):
    run("rpower", noderange, {"action": action})
