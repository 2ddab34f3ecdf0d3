"""makeknownhosts: the nodes' entries in root's ~/.ssh/known_hosts (under XCATROOT)."""
import click
from xcatd.commands._cli import fail, run, xcat_command


@xcat_command(help="makeknownhosts <noderange> [-r|-d] [-V]: replace (or with -r, remove) "
                   "the nodes' entries in root's ~/.ssh/known_hosts.")
@click.option("-r", "--remove", "remove", is_flag=True, help="Only remove the nodes' entries.")
@click.option("-d", "--delete", "delete", is_flag=True, help="The same as -r.")
@click.option("-V", "--verbose", "verbose", is_flag=True,
              help="Print each node's names and the file written.")
@click.argument("noderange", required=False)
def main(remove, delete, verbose, noderange):
    if not noderange:
        fail("The Noderange is missing.")  # xCAT's words
    run("makeknownhosts", noderange, {"remove": remove or delete, "verbose": verbose})
