"""nodeset: what nodes do the next time they boot from the network."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="nodeset <noderange> osimage[=<imagename>]|boot|shell|standby|"
                   "runcmd=<cmd>|runimage=<url>|shutdown|offline|next|stat, or a comma "
                   "chain of them (osimage=<imagename>,runimage=<url>)")
@click.option("--noupdateinitrd", is_flag=True, expose_value=False,
              help="Accepted for xCAT scripts; pyxcat never rebuilds the installer's initrd.")
@click.option("--ignorekernelchk", is_flag=True, expose_value=False,
              help="Accepted for xCAT scripts; pyxcat injects no drivers.")
@click.argument("noderange")
@click.argument("state")
def main(noderange, state):
    run("nodeset", noderange, {"state": state})
