"""mkdef: create object definitions."""
import click
from xcatd.commands._cli import fail, run, xcat_command
from xcatd.commands._defopts import objects_option, split_words, stdin_if, type_option, where_option

from xcatd.base.words import WordError, attr_values


@xcat_command(help="Create definitions: mkdef [-t type] [-o names | noderange] attr=val ... "
                   "[-f]; mkdef -z < stanzafile; mkdef -t group -d -w attr==val -o name")
@type_option
@objects_option
@where_option
@click.option("-f", "--force", is_flag=True, help="Replace existing definitions.")
@click.option("-z", "--stanza", is_flag=True, help="Read stanzas from standard input.")
@click.option("-d", "--dynamic", is_flag=True, help="A dynamic group (members chosen by -w).")
@click.option("-p", "--plus", is_flag=True, hidden=True)
@click.option("-m", "--minus", is_flag=True, hidden=True)
@click.argument("words", nargs=-1)
def main(type_, objects, where, force, stanza, dynamic, plus, minus, words):
    noderange, words = split_words(words)
    try:
        attrs = attr_values(words)
    except WordError as exc:
        fail(str(exc))
    run("mkdef", noderange, {"type": type_, "objects": objects, "where": list(where),
                             "force": force, "stanza": stanza, "dynamic": dynamic,
                             "plus": plus, "minus": minus, "attributes": attrs},
        stdin=stdin_if(stanza))
