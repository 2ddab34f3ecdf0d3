"""rmdef: remove object definitions."""
import click
from xcatd.commands._cli import run, xcat_command
from xcatd.commands._defopts import (
    objects_option,
    split_words,
    type_option,
    usage_if_empty,
    where_option,
)


@xcat_command(help="Remove definitions: rmdef [-t type] [-o names | noderange]; rmdef -a -f")
@type_option
@objects_option
@where_option
@click.option("-a", "--all", "all_", is_flag=True, help="Every definition (needs -f).")
@click.option("-f", "--force", is_flag=True, help="Confirm -a.")
@click.argument("words", nargs=-1)
def main(type_, objects, where, all_, force, words):
    usage_if_empty(any((type_, objects, where, all_, force, words)))
    noderange, attrs = split_words(words)
    if attrs:
        raise click.UsageError(f"rmdef takes no attr=value arguments: {' '.join(attrs)}")
    run("rmdef", noderange, {"type": type_, "objects": objects, "where": list(where),
                             "all": all_, "force": force})
