"""reventlog: read (newest N, or all) or clear the nodes' hardware event logs."""
import click
from xcatd.commands._cli import retry_option, run, xcat_command


@xcat_command(help="reventlog <noderange> [<number-of-entries>|all] [-s] | clear")
@click.option("-s", "sort", is_flag=True, help="Newest entries first.")
@click.argument("noderange", required=False, metavar="NODERANGE")
@click.argument("what", required=False, default="all")
@click.pass_context
@retry_option
def main(ctx, sort, noderange, what):
    if not noderange:  # xCAT's reventlog alone prints its usage and succeeds
        click.echo(ctx.get_help())
        ctx.exit(0)
    run("reventlog", noderange, {"what": what, "sort": sort})
