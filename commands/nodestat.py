"""nodestat: what is running on each node (open application ports), else whether it pings."""
import sys

import click
from xcatd.commands._cli import retry_option, run, xcat_command

USAGE = ("Usage:\n"
         "  nodestat [noderange] [-m|--usemon] [-p|--powerstat] [-f|--usefping] "
         "[-u|--updatedb] [--ports LIST]\n"
         "  nodestat [-h|--help|-v|--version]")


@xcat_command(help="Probe every node at once: the open application ports (sshd, https, pbs, "
                   "xend, rdp, msrpc), else the deployment state of a node that pings, else "
                   "noping.")
@click.option("-u", "--updatedb", is_flag=True,
              help="Write the result to nodelist.status and nodelist.appstatus.")
@click.option("-p", "--powerstat", is_flag=True,
              help="Add the power state of the nodes that do not ping: noping(off).")
@click.option("-m", "--usemon", is_flag=True,
              help="Probe the applications the monsetting table names (name=xcatmon).")
@click.option("-f", "--usefping", is_flag=True, help="Ping with fping.")
@click.option("--ports", metavar="LIST",
              help="Probe these instead: name=port, port numbers or application names, "
                   "comma-separated (sshd=22,db=5432).")
@click.argument("noderange", required=False)
@retry_option
def main(updatedb, powerstat, usemon, usefping, ports, noderange):
    if not noderange:
        click.echo(USAGE)
        sys.exit(1)
    run("nodestat", noderange, {"updatedb": updatedb, "powerstat": powerstat,
                                "usemon": usemon, "usefping": usefping, "ports": ports})
