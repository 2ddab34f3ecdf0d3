"""lslite: show the statelite setup of an osimage or of nodes."""
import click
from xcatd.commands._cli import fail, run, xcat_command


@xcat_command(help="\b\nlslite [-h | --help]\nlslite [-V | --verbose] [-i imagename] | "
                   "[noderange]")
@click.option("-V", "--verbose", is_flag=True, help="Verbose mode.")
@click.option("-i", "imagename", metavar="IMAGENAME", help="An osimage's litefile list.")
@click.argument("noderange", required=False)
def main(verbose, imagename, noderange):
    if imagename and noderange:
        fail("lslite: give either -i imagename or a noderange, not both")
    if not imagename and not noderange:
        fail("Usage: lslite [-h | --help] | [-V | --verbose] [-i imagename] | [noderange]")
    run("lslite", noderange, {"imagename": imagename})
