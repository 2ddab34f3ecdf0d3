"""makedhcp: the DHCP server configuration (ISC dhcpd; Kea by site.dhcpbackend)."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="makedhcp -n: write and check the DHCP configuration for every node; "
                   "makedhcp <noderange> | -a: add or update nodes on the running server; "
                   "-d <noderange>: remove them; -q <noderange>: show what it holds.")
@click.option("-n", "new", is_flag=True, help="Write a new configuration.")
@click.option("-a", "all_", is_flag=True, help="All nodes, on a running server.")
@click.option("-d", "delete", is_flag=True, help="Delete the nodes from a running server.")
@click.option("-q", "query", is_flag=True, help="Query the nodes on a running server.")
@click.argument("noderange", required=False)
def main(new, all_, delete, query, noderange):
    run("makedhcp", noderange, {"new": new, "all": all_, "delete": delete, "query": query})
