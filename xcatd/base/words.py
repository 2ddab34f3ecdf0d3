"""xCAT's command-line word forms, parsed once on the client into typed values, so handlers
get data (a dict, a list of assignments), never argv to parse again, whatever the front.

>>> attr_values(["groups=compute,all", "mgt=ipmi"])
{'groups': 'compute,all', 'mgt': 'ipmi'}
>>> column_assignments(["nodehm.mgt=ipmi", "nodelist.groups,=gpu"])
[['nodehm', 'mgt', '=', 'ipmi'], ['nodelist', 'groups', ',=', 'gpu']]
>>> key_values("node=n1,key=x")
{'node': 'n1', 'key': 'x'}
>>> attr_values(["mgt"])
Traceback (most recent call last):
...
xcatd.base.words.WordError: Invalid argument 'mgt': expected attr=value
"""
from __future__ import annotations

import re

_ATTR = re.compile(r"[\w.-]+")


class WordError(ValueError):
    """A word that is not in the form its command takes; the message quotes it."""


def attr_values(words: list[str]) -> dict[str, str]:
    """``attr=value`` words (mkdef, chdef) as {attr: value}."""
    attrs: dict[str, str] = {}
    for w in words:
        name, sep, value = w.partition("=")
        if not sep or not name or not _ATTR.fullmatch(name):
            raise WordError(f"Invalid argument '{w}': expected attr=value")
        attrs[name] = value
    return attrs


def column_assignments(words: list[str]) -> list[list[str]]:
    """``table.column=value`` words (chtab), also ``+=`` (append to a list), ``,=`` and
    ``^=`` (add to / remove from a comma list), as [table, column, op, value]."""
    out = []
    for w in words:
        name, sep, value = w.partition("=")
        if not sep or not name:
            raise WordError(f'Incorrect argument "{w}".')
        op = "="
        if name.endswith(("+", ",", "^")):
            op, name = name[-1] + "=", name[:-1]
        table, dot, column = name.partition(".")
        if not dot or not table or not column:
            raise WordError(f'Incorrect argument "{w}".')
        out.append([table, column, op, value])
    return out


def key_values(spec: str) -> dict[str, str]:
    """``key=value[,key=value]`` (chtab's keys) as {key: value}."""
    keys = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        col, sep, value = part.partition("=")
        if not sep or not col:
            raise WordError(f'Incorrect argument "{part}".')
        keys[col] = value
    return keys
