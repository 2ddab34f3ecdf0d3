"""rvitals: sensor readings (temperatures, voltages, fans, power) and the power state."""
import click
from xcatd.commands._cli import retry_option, run, xcat_command


@xcat_command(help="rvitals <noderange> [temp|voltage|wattage|fanspeed|power|leds|all] ...")
@click.argument("noderange")
@click.argument("what", nargs=-1)
@retry_option
def main(noderange, what):
    run("rvitals", noderange, {"what": list(what) or ["all"]})
