"""Stanza files (``mkdef -z``, ``lsdef -z``) and the object definition templates shipped as
stanza files (``lsdef --template``, ``mkdef --template``, as in xCAT 2.14).

A template is a stanza whose values may be ``MANDATORY:<what>`` (mkdef must be given the
attribute) or ``OPTIONAL:<what>`` (left unset unless given). The shipped templates are data:
``share/templates/objects/<type>/*.stanza``, installed as the ``xcatd.objtemplates`` package.

>>> parse_stanzas('n1:\\n  objtype=node\\n  ip="MANDATORY:the address"\\n')
[('n1', 'node', {'ip': 'MANDATORY:the address'})]
>>> t = Template("t", "node", {"mgt": "ipmi", "bmc": "MANDATORY:x", "mac": "OPTIONAL:y"})
>>> t.fill({"bmc": "10.0.0.1"})
({'mgt': 'ipmi', 'bmc': '10.0.0.1'}, [])
>>> t.fill({})
({'mgt': 'ipmi'}, ['bmc'])
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from xcatd.base.request import XcatError

STANZA_HEADER = "# <xCAT data object stanza file>"
MANDATORY = "MANDATORY:"
OPTIONAL = "OPTIONAL:"


def _unquote(value: str) -> str:
    """xCAT strips one pair of double quotes around a stanza value."""
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1].strip()
    return value


def parse_stanzas(text: str) -> list[tuple[str, str, dict[str, str]]]:
    """xCAT stanza files: 'name:' then indented 'attr=value' lines; '#' comments."""
    out: list[tuple[str, dict[str, str]]] = []
    current: dict[str, str] | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line and line.endswith(":"):
            current = {}
            out.append((line[:-1].strip(), current))
            continue
        if current is None:
            raise XcatError(f"Stanza line {lineno}: '{line}' is outside any object stanza")
        name, sep, value = line.partition("=")
        if not sep:
            raise XcatError(f"Stanza line {lineno}: '{line}' is not attr=value")
        current[name.strip()] = _unquote(value)
    result = []
    for name, attrs in out:
        objt = attrs.pop("objtype", "")
        if not objt:
            raise XcatError(f"No objtype value was specified for '{name}'. Cannot create "
                            "object definition.")
        result.append((name, objt, attrs))
    return result


@dataclass(frozen=True)
class Template:
    name: str
    objtype: str
    attrs: dict[str, str]

    def fill(self, given: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """The attributes of an object made from this template and ``given`` (which win),
        and the mandatory attributes ``given`` lacks."""
        out: dict[str, str] = {}
        missing = []
        for attr, value in self.attrs.items():
            if value.startswith(MANDATORY):
                if not given.get(attr):
                    missing.append(attr)
                continue
            if value.startswith(OPTIONAL) or value == "":
                continue
            out[attr] = value
        out.update({k: v for k, v in given.items() if v != "" or k not in out})
        return out, missing


@lru_cache(maxsize=1)
def templates() -> dict[str, Template]:
    """Every shipped template by name, in name order."""
    found: dict[str, Template] = {}
    root = resources.files("xcatd.objtemplates").joinpath("objects")
    for typedir in sorted(root.iterdir(), key=lambda p: p.name):
        if not typedir.is_dir():
            continue
        for f in sorted(typedir.iterdir(), key=lambda p: p.name):
            if not f.name.endswith(".stanza"):
                continue
            for name, objtype, attrs in parse_stanzas(f.read_text(encoding="utf-8")):
                found[name] = Template(name, objtype, attrs)
    return dict(sorted(found.items()))


def templates_of(types: list[str] | None) -> dict[str, Template]:
    """The templates of these object types (every type for None)."""
    return {n: t for n, t in templates().items() if types is None or t.objtype in types}
