"""makedns: BIND configuration and zones, and dynamic updates of a running named."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="makedns -n [noderange]: write and check named.conf and the zones; "
                   "makedns <noderange> / makedns -d <noderange>: add or remove the nodes' "
                   "records on the running named (RFC 2136, TSIG).")
@click.option("-n", "new", is_flag=True, help="Rebuild the configuration and the zones.")
@click.option("-d", "delete", is_flag=True, help="Remove the nodes' records.")
@click.argument("noderange", required=False)
def main(new, delete, noderange):
    if new and delete:
        raise click.UsageError("-n and -d cannot be used together")
    if not new and not noderange:
        raise click.UsageError("give -n or a noderange")
    run("makedns", noderange, {"new": new, "delete": delete})
