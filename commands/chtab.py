"""chtab: add or change table rows by key; -d deletes them."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="chtab key=value[,key=value] table.column=value [table.column+=value] ...; "
                   "chtab -d key=value[,...] table [table ...]")
@click.option("-d", "--delete", is_flag=True, help="Delete the rows that match the keys.")
@click.argument("keys")
@click.argument("assignments", nargs=-1)
def main(delete, keys, assignments):
    run("chtab", None, {"delete": delete, "keys": keys, "assignments": list(assignments)})
