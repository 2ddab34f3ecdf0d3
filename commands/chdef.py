"""chdef: change object definitions (creating missing ones)."""
import click
from xcatd.commands._cli import run, xcat_command
from xcatd.commands._defopts import (
    attr_words,
    objects_option,
    split_words,
    stdin_if,
    type_option,
    usage_if_empty,
    where_option,
)


@xcat_command(help="Change definitions: chdef [-t type] [-o names | noderange] attr=val ... "
                   "[-p | -m]; chdef -n newname; chdef -z < stanzafile; chdef -t group -o g "
                   "[-d | -p | -m] -w attr==val. attr,=v and attr^=v add to and remove from "
                   "a comma list.")
@type_option
@objects_option
@where_option
@click.option("-p", "--plus", is_flag=True, help="Add the values to comma lists.")
@click.option("-m", "--minus", is_flag=True, help="Remove the values from comma lists.")
@click.option("-n", "newname", help="Rename the object.")
@click.option("-z", "--stanza", is_flag=True, help="Read stanzas from standard input.")
@click.option("-d", "--dynamic", is_flag=True, help="A dynamic group (members chosen by -w).")
@click.option("-u", "setattr", is_flag=True,
              help="Fill in an osimage from its osvers, osarch, profile and provmethod.")
@click.option("-f", "--force", is_flag=True, hidden=True)
@click.argument("words", nargs=-1)
def main(type_, objects, where, plus, minus, newname, stanza, dynamic, setattr, force, words):
    usage_if_empty(any((type_, objects, where, plus, minus, newname, stanza, dynamic, setattr,
                        force, words)))
    noderange, words = split_words(words)
    run("chdef", noderange, {"type": type_, "objects": objects, "where": list(where),
                             "plus": plus, "minus": minus, "newname": newname,
                             "stanza": stanza, "dynamic": dynamic, "force": force,
                             "setattr": setattr, "attributes": attr_words(words)},
        stdin=stdin_if(stanza))
