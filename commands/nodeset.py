"""nodeset: what nodes do the next time they boot from the network."""
import click
from xcatd.commands._cli import fail, json_mode, retry_option, run, xcat_command

#: xCAT's usage line, printed after an "Invalid argument" error
USAGE = ("Usage: nodeset <noderange> [shell|boot|runcmd=bmcsetup|osimage[=<imagename>]|offline|"
         "shutdown|stat]")


@xcat_command(help="nodeset <noderange> osimage[=<imagename>]|boot|shell|standby|"
                   "runcmd=<cmd>|runimage=<url>|shutdown|offline|next|stat, or a comma "
                   "chain of them (osimage=<imagename>,runimage=<url>)")
@click.option("--noupdateinitrd", is_flag=True, expose_value=False,
              help="Accepted for xCAT scripts; pyxcat never rebuilds the installer's initrd.")
@click.option("--ignorekernelchk", is_flag=True, expose_value=False,
              help="Accepted for xCAT scripts; pyxcat injects no drivers.")
@click.option("-V", "--verbose", is_flag=True, expose_value=False,
              help="Accepted for xCAT scripts (xCAT's trace log).")
@click.argument("noderange")
@click.argument("state", nargs=-1)
@retry_option
def main(noderange, state):
    if len(state) != 1:  # xCAT: exactly one state word, else its error and usage
        if json_mode():
            fail(f"Invalid argument: '{' '.join(state)}'")
        click.echo(f"Error: Invalid argument: '{' '.join(state)}'", err=True)
        click.echo(USAGE)
        raise SystemExit(1)
    run("nodeset", noderange, {"state": state[0]})
