"""Gathering the output of many nodes into blocks, as xCAT's xdshbak and xcoll print it.

xdsh prints ``node: line`` as the lines arrive, the nodes interleaved. A ``Gatherer`` keeps
each node's lines in order (``add``, one line at a time) and renders them at the end: one
block per node, or one block per distinct output with its nodes folded into a noderange.

>>> g = Gatherer()
>>> for text in ["n2: Linux", "n10: Linux", "n3: FreeBSD", "n1: Linux", "no prefix"]:
...     pair = split_xdshbak(text)
...     if pair:
...         g.add(*pair)
>>> print(*g.render_xdshbak(collapse=True)[:5], sep="\\n")
HOSTS -------------------------------------------------------------------------
n[1-2,10]
-------------------------------------------------------------------------------
Linux
<BLANKLINE>
>>> g.render_xdshbak(compact=True)[:3]
['n1: Linux', 'n2: Linux', 'n3: FreeBSD']
>>> [line for line in g.render_xcoll(count=True) if not line.startswith("==")]
['n3', 'Node count = 1 ', 'FreeBSD', '', 'n[1-2,10]', 'Node count = 3 ', 'Linux', '']

The formats follow xCAT's xdshbak and xcoll, with two differences: a node whose lines come
interleaved with other nodes' keeps all of them (xCAT's xdshbak keeps only its last run),
and a collapsed block is headed by the folded noderange (``n[001-200]``) where xdshbak lists
every name and xcoll asks xcatd to abbreviate the names by group.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from xcatd.base.noderange import fold

__all__ = ["Gatherer", "split_xcoll", "split_xdshbak", "version_cmp", "version_sorted"]

#: xdshbak's header lines: "HOST:name" over at most 63 dashes; "HOSTS" and its two rules.
HOST_RULE_MAX = 63
HOSTS_HEAD = "HOSTS " + "-" * 73
HOSTS_RULE = "-" * 79
#: xcoll's rule above and below each header.
XCOLL_RULE = "=" * 36
#: xcoll's node for a line that names none.
UNKNOWN = "UNKNOWN"


def _chomp(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


def split_xdshbak(text: str) -> tuple[str, str] | None:
    """``node: line`` -> (node, line), split at the first ``": "``; None for a line without
    one, which xdshbak leaves out.

    >>> split_xdshbak("n1: a: b\\n"), split_xdshbak("n1:a"), split_xdshbak("n1:  x")
    (('n1', 'a: b'), None, ('n1', ' x'))
    """
    node, sep, line = _chomp(text).partition(": ")
    return (node, line) if sep else None


def split_xcoll(text: str) -> tuple[str, str]:
    """``node:line`` -> (node, line), split at the first colon, one space after it dropped;
    a line without a colon belongs to the node UNKNOWN.

    >>> split_xcoll("n1: up"), split_xcoll("n1:up"), split_xcoll("just text\\n")
    (('n1', 'up'), ('n1', 'up'), ('UNKNOWN', 'just text'))
    """
    text = _chomp(text)
    node, sep, line = text.partition(":")
    if not sep:
        return UNKNOWN, text
    return node, line[1:] if line.startswith(" ") else line


# ---- ordering ------------------------------------------------------------------------------
_PIECES = re.compile(r"[-.]|[0-9]+|[^-.0-9]+")


def version_cmp(a: str, b: str) -> int:
    """Compare names as Perl's Sort::Versions does (xdshbak's order): piece by piece, ``-``
    then ``.`` before anything else, numbers by value unless one has a leading zero (then as
    text), other text without regard to case; a name that is a prefix comes first.

    >>> version_sorted(["n10", "n9", "N1", "n1-eth0", "n01"])
    ['n01', 'N1', 'n1-eth0', 'n9', 'n10']
    """
    pa, pb = _PIECES.findall(a), _PIECES.findall(b)
    for x, y in zip(pa, pb):
        if x == y:
            continue
        for sep in "-.":
            if x == sep or y == sep:
                return -1 if x == sep else 1
        if x.isdigit() and y.isdigit() and x[0] != "0" and y[0] != "0":
            diff = int(x) - int(y)
        else:
            x, y = x.upper(), y.upper()
            diff = (x > y) - (x < y)
        if diff:
            return -1 if diff < 0 else 1
    return (len(pa) > len(pb)) - (len(pa) < len(pb))


def version_sorted(names: Iterable[str]) -> list[str]:
    return sorted(names, key=functools.cmp_to_key(version_cmp))


_LEADING_NUMBER = re.compile(r"\s*([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")


def _xcoll_key(header: str) -> tuple[float, str]:
    """xcoll's order: by the number a header starts with (Perl's ``<=>``: 0 for none), then
    as text (``cmp``)."""
    m = _LEADING_NUMBER.match(header)
    return (float(m.group(1)) if m else 0.0, header)


# ---- gathering -----------------------------------------------------------------------------
class Gatherer:
    """Each node's output lines, in the order they came; rendered at the end."""

    def __init__(self) -> None:
        self.output: dict[str, list[str]] = {}

    def add(self, node: str, line: str) -> None:
        """One line of ``node``'s output (its newline, if any, is dropped)."""
        lines = self.output.get(node)
        if lines is None:
            lines = self.output[node] = []
        lines.append(_chomp(line))

    def __len__(self) -> int:
        return len(self.output)

    def groups(self) -> list[tuple[list[str], list[str]]]:
        """(nodes, lines) for each distinct output, in the order its first node came."""
        by_output: dict[tuple[str, ...], list[str]] = {}
        for node, lines in self.output.items():
            by_output.setdefault(tuple(lines), []).append(node)
        return [(nodes, list(lines)) for lines, nodes in by_output.items()]

    def render_xdshbak(self, collapse: bool = False, compact: bool = False, bare: bool = False,
                       fold_names: bool = True) -> list[str]:
        """xdshbak's output lines: a ``HOST:`` block per node in version order; with
        ``collapse`` (-c) a ``HOSTS`` block per distinct output, its nodes folded (or, with
        ``fold_names=False``, listed as xCAT lists them); with ``compact`` (-x) no headers,
        each line prefixed by its node (not with ``bare``, -b)."""
        out: list[str] = []
        if collapse:
            for nodes, lines in self.groups():
                if out:
                    out.append("")
                names = fold(nodes) if fold_names else ", ".join(version_sorted(nodes))
                out += [HOSTS_HEAD, names, HOSTS_RULE, *lines]
            return out
        for node in version_sorted(self.output):
            lines = self.output[node]
            if bare:
                out += lines
            elif compact:  # xCAT splits the node's text on newlines: trailing empty lines go
                end = len(lines)
                while end and not lines[end - 1]:
                    end -= 1
                out += [f"{node}: {line}" for line in lines[:end]]
            else:
                if out:
                    out.append("")
                out += [f"HOST:{node}", "-" * min(6 + len(node), HOST_RULE_MAX), *lines]
        return out

    def render_xcoll(self, names: bool = False, count: bool = False,
                     individual: bool = False) -> list[str]:
        """xcoll's output lines: a block per distinct output headed by its folded nodes (with
        ``names``, -n: the names joined by commas), ``count`` (-c) adding the node count; with
        ``individual`` (-i) a block per node. Each block ends with an empty line."""
        if individual:
            blocks = [(node, None, lines) for node, lines in self.output.items()]
        else:
            blocks = [(",".join(sorted(nodes)) if names else fold(nodes), len(nodes), lines)
                      for nodes, lines in self.groups()]
        out: list[str] = []
        for header, many, lines in sorted(blocks, key=lambda b: _xcoll_key(b[0])):
            out += [XCOLL_RULE, header, XCOLL_RULE]
            if count and many is not None:
                out += [f"Node count = {many} ", XCOLL_RULE]
            out += [*lines, ""]
        return out
