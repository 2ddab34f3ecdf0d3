"""makehosts: write /etc/hosts (under XCATROOT) from the hosts and nics tables."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="makehosts [-n] [-l] [-d] [noderange]: add or update the nodes' entries in "
                   "/etc/hosts (all nodes without a noderange).")
@click.option("-n", "new", is_flag=True, help="Rebuild the file, keeping only localhost lines.")
@click.option("-l", "longnamefirst", is_flag=True, help="Put the long (domain) name first.")
@click.option("-d", "delete", is_flag=True, help="Remove the nodes' entries.")
@click.argument("noderange", required=False)
def main(new, longnamefirst, delete, noderange):
    if new and delete:
        raise click.UsageError("-n and -d cannot be used together")
    run("makehosts", noderange, {"new": new, "longnamefirst": longnamefirst, "delete": delete})
