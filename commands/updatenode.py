"""updatenode: sync files, update software, run postscripts, re-deliver keys on running nodes,
through each node's agent."""
import sys

import click
from xcatd.commands._cli import run, xcat_command

USAGE = ("Usage:\n"
         "  updatenode <noderange> [-V|--verbose] [-F|--sync] [-f|--snsync] [-S|--sw] "
         "[-P|--scripts [script1,script2...]] [--fanout=N] [-t timeout]\n"
         "  updatenode <noderange> [-k|--security] [-t timeout]\n"
         "  updatenode <noderange> [-V|--verbose] [-t timeout] [script1,script2...]\n"
         "  updatenode [-h|--help|-v|--version]")


@xcat_command(help="Update running nodes through their node agents: -F syncs the synclist's "
                   "files, -S installs otherpkgs, -P runs postscripts (all of the node's, or "
                   "the ones listed), -k renews the node's certificate and re-delivers ssh "
                   "keys. With none of them: -F, -S, then -P. No ssh from the management "
                   "node is needed.")
@click.option("-F", "--sync", is_flag=True, help="Sync the files of the node's synclists.")
@click.option("-f", "--snsync", is_flag=True,
              help="Sync files to the service nodes (there are none yet: an error).")
@click.option("-S", "--sw", is_flag=True,
              help="Install the osimage's otherpkgs (the otherpkgs postscript).")
@click.option("-P", "--scripts", "scripts", is_flag=False, flag_value="", default=None,
              metavar="[SCRIPT,...]",
              help="Run postscripts: the listed ones, or the node's whole plan with "
                   "UPDATENODE=1.")
@click.option("-k", "--security", is_flag=True,
              help="Renew the node's certificate and re-deliver its ssh keys (remoteshell).")
@click.option("-V", "--verbose", is_flag=True, help="Say more.")
@click.option("--fanout", type=click.IntRange(min=1), metavar="N",
              help="Nodes updated at the same time (default 64).")
@click.option("-t", "--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Longest time one node's update may take (default 1800).")
@click.argument("noderange", required=False)
@click.argument("script_list", required=False, metavar="[SCRIPT,...]")
def main(sync, snsync, sw, scripts, security, verbose, fanout, timeout, noderange,
         script_list):
    if not noderange:
        click.echo(USAGE)
        sys.exit(1)
    args = {"sync": sync, "snsync": snsync, "sw": sw, "security": security,
            "verbose": verbose, "fanout": fanout, "timeout": timeout}
    if scripts is not None or script_list:   # -P [list], or updatenode <nr> script1,script2
        args["postscripts"] = True
        listed = ",".join(x for x in (scripts, script_list) if x)
        if listed:
            args["scripts"] = listed
    run("updatenode", noderange, args)
