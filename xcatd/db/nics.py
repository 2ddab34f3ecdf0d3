r"""Per-interface values of the nics table, and the object attributes that address one
interface (``nicips.eth0``), as xCAT's object commands have them.

A nics column holds ``<nic>!<value>[|<value>...]`` entries separated by commas; one entry's
value may be a regex value (computed for each node, so a group row can give every member its
own address):

>>> split_nics(r"eth0!10.0.0.1|10.0.0.2,ib0!|\D+(\d+)|10.1.0.($1+0)|")
[('eth0', '10.0.0.1|10.0.0.2'), ('ib0', '|\\D+(\\d+)|10.1.0.($1+0)|')]
>>> nic_values(r"eth0!10.0.0.1|10.0.0.2,ib0!|\D+(\d+)|10.1.0.($1+0)|", "n7")
{'eth0': ['10.0.0.1', '10.0.0.2'], 'ib0': ['10.1.0.7']}
>>> merge("eth0!10.0.0.1,ib0!10.1.0.1", {"ib0": "", "eth1": "10.2.0.1"})
'eth0!10.0.0.1,eth1!10.2.0.1'
>>> sub_attr("nicips.eth0"), sub_attr("nicips"), sub_attr("bmc")
(('nicips', 'eth0'), None, None)
"""
from __future__ import annotations

import re

from xcatd.base.regexval import compute as compute_regex
from xcatd.base.regexval import is_regex_value

#: Node and group attributes kept per interface in the nics table (xCAT's nic* attributes).
NIC_ATTRS = ("nicips", "nichostnamesuffixes", "nichostnameprefixes", "nictypes",
             "niccustomscripts", "nicnetworks", "nicaliases", "nicextraparams", "nicdevices",
             "nicsadapter")

#: A comma starts a new entry only where a '<nic>!' follows (a regex may hold commas).
_ENTRY = re.compile(r",(?=[^,!|]*!)")
_NIC_NAME = re.compile(r"[^\s,!|=]+")


class NicAttrError(ValueError):
    """A nic sub-attribute that cannot be stored; the message names it."""


def sub_attr(attr: str) -> tuple[str, str] | None:
    """'nicips.eth0' -> ('nicips', 'eth0'); None for any other attribute name."""
    base, dot, nic = attr.partition(".")
    if not dot or base not in NIC_ATTRS:
        return None
    return base, nic


def check_nic(attr: str, nic: str) -> None:
    if not _NIC_NAME.fullmatch(nic):
        raise NicAttrError(f"'{attr}' is not a valid attribute name: the interface name "
                           "after the dot may not be empty or hold spaces, ',', '!', '|' "
                           "or '='.")


def split_nics(value: str | None) -> list[tuple[str, str]]:
    """A nics column as [(nic, value)], in stored order; entries without '!' are skipped."""
    out = []
    for part in _ENTRY.split(value or ""):
        nic, sep, rest = part.partition("!")
        if sep and nic.strip():
            out.append((nic.strip(), rest.strip()))
    return out


def join_nics(pairs: list[tuple[str, str]]) -> str | None:
    text = ",".join(f"{nic}!{value}" for nic, value in pairs if value != "")
    return text or None


def merge(current: str | None, updates: dict[str, str]) -> str | None:
    """The column after setting some interfaces' values ("" removes that interface)."""
    pairs = split_nics(current)
    have = {nic for nic, _ in pairs}
    pairs = [(nic, updates.get(nic, value)) for nic, value in pairs]
    pairs += [(nic, value) for nic, value in updates.items() if nic not in have]
    return join_nics(pairs)


def computed(value: str | None, node: str) -> str | None:
    """The column as ``node`` sees it: each interface's regex value computed."""
    if not value or "!" not in value:
        return value
    pairs = split_nics(value)
    if not any(is_regex_value(v) for _, v in pairs):
        return value
    return join_nics([(nic, compute_regex(v, node) if is_regex_value(v) else v)
                      for nic, v in pairs])


def nic_values(value: str | None, node: str | None = None) -> dict[str, list[str]]:
    """{nic: [value per address]}; with ``node``, regex values are computed for it."""
    out: dict[str, list[str]] = {}
    for nic, v in split_nics(value):
        if is_regex_value(v):
            if node is None:
                out[nic] = [v]
                continue
            v = compute_regex(v, node) or ""
        out[nic] = [x.strip() for x in v.split("|")]
    return out
