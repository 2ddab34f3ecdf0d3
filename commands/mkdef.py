"""mkdef: create object definitions."""
import click
from xcatd.commands._cli import run, xcat_command
from xcatd.commands._defopts import (
    attr_words,
    objects_option,
    split_words,
    stdin_if,
    template_option,
    type_option,
    usage_if_empty,
    where_option,
)


@xcat_command(help="Create definitions: mkdef [-t type] [-o names | noderange] attr=val ... "
                   "[-f]; mkdef -z < stanzafile; mkdef -t group -d -w attr==val -o name; "
                   "mkdef --template name noderange attr=val ...; mkdef -u name "
                   "profile=P provmethod=M [osvers=V] [osarch=A]. attr,=v and attr^=v add "
                   "to and remove from a comma list.")
@type_option
@objects_option
@where_option
@template_option
@click.option("-f", "--force", is_flag=True, help="Replace existing definitions.")
@click.option("-z", "--stanza", is_flag=True, help="Read stanzas from standard input.")
@click.option("-d", "--dynamic", is_flag=True, help="A dynamic group (members chosen by -w).")
@click.option("-u", "setattr", is_flag=True,
              help="Fill in an osimage from its osvers, osarch, profile and provmethod.")
@click.option("-p", "--plus", is_flag=True, hidden=True)
@click.option("-m", "--minus", is_flag=True, hidden=True)
@click.argument("words", nargs=-1)
def main(type_, objects, where, template, force, stanza, dynamic, setattr, plus, minus,
         words):
    usage_if_empty(any((type_, objects, where, template is not None, force, stanza, dynamic,
                        setattr, plus, minus, words)))
    noderange, words = split_words(words)
    run("mkdef", noderange, {"type": type_, "objects": objects, "where": list(where),
                             "force": force, "stanza": stanza, "dynamic": dynamic,
                             "plus": plus, "minus": minus, "template": template,
                             "setattr": setattr, "attributes": attr_words(words)},
        stdin=stdin_if(stanza))
