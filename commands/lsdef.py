"""lsdef: list object definitions."""
import click
from xcatd.commands._cli import run, xcat_command
from xcatd.commands._defopts import (
    objects_option,
    split_words,
    template_option,
    type_option,
    where_option,
)


@xcat_command(help="List object definitions: lsdef [-t type] [-o names | noderange] [-l|-s] "
                   "[-i attr,...] [-c] [-z] [-w attr==val] [-S] [-a] [--nics]; lsdef "
                   "--template [name]; lsdef -t auditlog|eventlog [-l recid]")
@type_option
@objects_option
@where_option
@template_option
@click.option("-l", "--long", "long_", is_flag=True, help="Show every attribute.")
@click.option("-s", "--short", is_flag=True, help="Names only.")
@click.option("-i", "info", help="Show only these attributes (comma list).")
@click.option("-c", "--compress", is_flag=True, help="One 'name: attr=value' line per attribute.")
@click.option("-z", "--stanza", is_flag=True, help="Print in stanza format (input for mkdef -z).")
@click.option("-S", "show_hidden", is_flag=True, help="Also list hidden nodes.")
@click.option("-a", "--all", "all_", is_flag=True, help="Every object of every type.")
@click.option("--nics", is_flag=True, help="Show the nic attributes (-i nicips,...).")
@click.option("--show-secrets", is_flag=True, help="Print passwords in clear (audited).")
@click.argument("words", nargs=-1)
def main(type_, objects, where, template, long_, short, info, compress, stanza, show_hidden,
         all_, nics, show_secrets, words):
    noderange, attrs = split_words(words)
    if attrs:
        raise click.UsageError(f"lsdef takes no attr=value arguments: {' '.join(attrs)}")
    run("lsdef", noderange, {"type": type_, "objects": objects, "where": list(where),
                             "long": long_, "short": short, "info": info,
                             "compress": compress, "stanza": stanza,
                             "show_hidden": show_hidden, "all": all_, "nics": nics,
                             "template": template, "show_secrets": show_secrets})
