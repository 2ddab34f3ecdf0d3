"""nodegrpch: set attributes on groups; members' own values of those columns are cleared."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="nodegrpch <group1,group2,...> table.column=value [...]")
@click.argument("groups")
@click.argument("assignments", nargs=-1)
def main(groups, assignments):
    run("nodegrpch", None, {"groups": groups, "assignments": list(assignments)})
