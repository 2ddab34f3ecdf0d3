"""Options and argument splitting shared by lsdef, mkdef, chdef and rmdef."""
from __future__ import annotations

import re
import sys

import click

from xcatd.base.files import NotText, utf8

#: attr=value, with nodech's list operators: attr,=v (add), attr^=v (remove), and attr@=v
#: (plain assignment, whatever the value starts with).
_WORD = re.compile(r"([\w.:-]+?)([,^@]?)=(.*)", re.S)


def attr_words(words: list[str]) -> dict[str, str]:
    """'groups,=rack2' -> {'groups,': 'rack2'}: the request names the list operator in the
    attribute's key (xcatd.db.defchanges), so REST and the audit log see the same words."""
    attrs: dict[str, str] = {}
    for w in words:
        m = _WORD.fullmatch(w)
        if not m:
            raise click.UsageError(f"Incorrect 'attr=val' pair - {w}.")
        name, op, value = m.groups()
        attrs[name + (op if op in ",^" else "")] = value
    return attrs


def usage_if_empty(given: bool) -> None:
    """mkdef, chdef and rmdef called with nothing print their usage and exit 0, as xCAT's
    do."""
    if not given:
        ctx = click.get_current_context()
        click.echo(ctx.get_help())
        ctx.exit(0)


def split_words(words: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """'n[1-3] groups=all mgt=ipmi' -> ('n[1-3]', ['groups=all', 'mgt=ipmi'])."""
    noderange = None
    attrs = []
    for w in words:
        if "=" in w:
            attrs.append(w)
        elif noderange is None:
            noderange = w
        else:
            raise click.UsageError(f"Unexpected argument '{w}': only one noderange or object "
                                   "list may be given")
    return noderange, attrs


def type_option(f):
    return click.option("-t", "type_", help="Object type(s): node (default), group, osimage, "
                                             "network, site, policy, ...")(f)


def objects_option(f):
    return click.option("-o", "objects", help="Object names (a noderange for nodes).")(f)


def where_option(f):
    return click.option("-w", "where", multiple=True,
                        help="Select objects: attr==val, attr!=val, attr=~regex, attr!~regex.")(f)


def template_option(f):
    return click.option("--template", "template", is_flag=False, flag_value="", default=None,
                        help="An object definition template (lsdef --template lists them).")(f)


def stdin_if(flag: bool) -> str | None:
    """Standard input as text when ``flag`` (a stanza file): not UTF-8 is an error naming the
    line."""
    if not flag:
        return None
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # already text (a test's StringIO)
        return sys.stdin.read()
    try:
        return utf8(stream.read(), "standard input")
    except NotText as exc:
        raise click.UsageError(str(exc)) from None
