"""snmove: move nodes to another service node."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="snmove <noderange> [-V] [-l] [-d sn2] [-D sn2n] [-i] [-P scripts|all] | "
                   "snmove [-V] [-l] -s sn1 [-S sn1n] [-d sn2] [-D sn2n] [-i] [-P scripts|all]")
@click.option("-s", "--source", help="Move every node this service node serves.")
@click.option("-S", "--sourcen", help="The source service node's name as the nodes know it.")
@click.option("-d", "--dest", help="The destination service node, as the management node "
              "knows it (default: each node's backup, the next in its servicenode pool).")
@click.option("-D", "--destn", help="The destination's name as the nodes know it "
              "(xcatmaster).")
@click.option("-i", "--ignorenodes", is_flag=True, help="Change the database only; do not "
              "tell the nodes.")
@click.option("-l", "--liteonly", is_flag=True, help="AIX statelite files only (not for Linux).")
@click.option("-P", "--postscripts", help="Postscripts to run on the nodes after the move.")
@click.option("-V", "--verbose", is_flag=True, help="Say what was moved for each node.")
@click.argument("noderange", required=False)
def main(source, sourcen, dest, destn, ignorenodes, liteonly, postscripts, verbose, noderange):
    run("snmove", noderange, {"source": source, "sourcen": sourcen, "dest": dest,
                              "destn": destn, "ignorenodes": ignorenodes,
                              "liteonly": liteonly, "postscripts": postscripts,
                              "verbose": verbose})
