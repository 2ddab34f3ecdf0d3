"""Who may run what: the policy table, with xCAT's semantics, and what the audit log records.

Rows are tried in priority order (numerically); the first row whose name, host, commands,
noderange and parameters all match decides (allow, deny, trusted). No match: denied.

>>> rows = [{"priority": "1", "name": "root", "rule": "allow"},
...         {"priority": "5", "commands": "nodels", "rule": "allow"}]
>>> decide(rows, Identity("bob", "h1"), "nodels", None, "").allowed
True
>>> decide(rows, Identity("bob", "h1"), "noderm", None, "").allowed
False
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from xcatd.db.database import active, split_list
from xcatd.db.objects import object_types
from xcatd.tables import SECRET_COLUMNS, SECRET_MASK

DENIED = "Permission denied for request"

#: The request addresses nodes, but which could not be worked out: no allow row with a
#: noderange grants it, every deny row with a noderange refuses it (fail closed).
UNKNOWN_NODES: frozenset[str] = frozenset({"\0unknown"})
ALLOW_WORDS = {"allow", "accept", "permit", "trusted"}
DENY_WORDS = {"deny", "reject"}


@dataclass(frozen=True)
class Identity:
    """Who is asking: the certificate CN or unix user, from where, through which front."""

    user: str
    host: str
    clienttype: str = "cli"
    cert: str = ""        # a node: the SHA-256 of its certificate (xcatd.fronts.https)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str
    priority: str | None

    @property
    def trusted(self) -> bool:
        return self.rule == "trusted"


def _prio(row: dict) -> float:
    try:
        return float(row.get("priority") or "inf")
    except ValueError:
        return float("inf")


def _listed(field: str | None, value: str) -> bool:
    if not field or field.strip() in ("", "*", "ALL"):
        return True
    return value in split_list(field)


def decide(rows: Iterable[dict], who: Identity, command: str, nodes: set[str] | None,
           argtext: str, expand: Callable[[str], set[str]] | None = None) -> Decision:
    """The first matching active row's rule; deny when none matches."""
    for row in sorted((r for r in rows if active(r)), key=_prio):
        rule = (row.get("rule") or "").strip().lower()  # anything but an allow word denies
        if not _listed(row.get("name"), who.user) or not _listed(row.get("host"), who.host):
            continue
        if not _listed(row.get("commands"), command):
            continue
        if row.get("noderange"):
            if not nodes or expand is None:
                continue
            deny = rule not in ALLOW_WORDS
            if nodes is UNKNOWN_NODES:
                if deny:
                    return Decision(False, rule, row.get("priority"))
                continue
            try:
                row_nodes = expand(row["noderange"])
            except Exception:  # a broken policy noderange never grants anything
                if deny:
                    return Decision(False, rule, row.get("priority"))
                continue
            # allow: every node must be covered; deny: touching any of them is enough
            if (not nodes & row_nodes) if deny else (not nodes <= row_nodes):
                continue
        if row.get("parameters"):
            try:
                if not re.search(row["parameters"], argtext):
                    continue
            except re.error:
                continue
        return Decision(rule in ALLOW_WORDS, rule, row.get("priority"))
    return Decision(False, "default", None)


# ---- secrets in what gets recorded ---------------------------------------------------------
@lru_cache(maxsize=1)
def secret_names() -> frozenset[str]:
    """Attribute and table.column names whose values are secrets."""
    names = {f"{t}.{c}" for t, c in SECRET_COLUMNS}
    for t in object_types().values():
        for attr, defs in t.attrs.items():
            if any((d.table, d.column) in SECRET_COLUMNS for d in defs):
                names.add(attr)
    names |= {"password", "passwd", "secret", "key"}
    return frozenset(names)


_ASSIGN = re.compile(r"^([\w.-]+?)([+,^]?=)(.*)$", re.S)


def mask_word(word: str) -> str:
    """'bmcpassword=x' -> 'bmcpassword=********'; other words unchanged."""
    m = _ASSIGN.match(word)
    if m and m.group(1) in secret_names():
        return f"{m.group(1)}{m.group(2)}{SECRET_MASK}"
    return word


_IN_TEXT = re.compile(r"(?i)(\b[\w.-]*(?:password|passwd|secret|token)[\w.-]*\s*[=:]\s*)"
                      r"(\"[^\"]*\"|'[^']*'|[^\s;&|]+)")


_AS_OPTION = re.compile(r"(?i)(--?[\w-]*(?:password|passwd|secret|token)[\w-]*\s+)"
                        r"(\"[^\"]*\"|'[^']*'|[^\s;&|-][^\s;&|]*)")


def mask_text(text: str) -> str:
    """A command line (xdsh's) with the values of password-like assignments and options
    masked. What a command reads from its input or a file is out of sight.

    >>> mask_text("echo root:x | chpasswd; export DBPASSWORD='s3 cret' X=1")
    'echo root:x | chpasswd; export DBPASSWORD=******** X=1'
    >>> mask_text("mysql --password hunter2 -e 'select 1'")
    "mysql --password ******** -e 'select 1'"
    """
    text = _IN_TEXT.sub(lambda m: m.group(1) + SECRET_MASK, text)
    return _AS_OPTION.sub(lambda m: m.group(1) + SECRET_MASK, text)


def as_words(value: Any) -> Any:
    """Typed arguments back in the words of xCAT's command line, for the record and policy
    ``parameters`` rules: {attr: value} -> ['attr=value'], [table, column, op, value] ->
    'table.column=value'.

    >>> as_words({"bmcpassword": "x"}), as_words([["passwd", "password", "+=", "y"]])
    (['bmcpassword=x'], ['passwd.password+=y'])
    """
    if isinstance(value, dict):
        return [f"{k}={v}" for k, v in value.items()]
    if isinstance(value, list):
        return [f"{v[0]}.{v[1]}{v[2]}{v[3]}" if isinstance(v, list | tuple) and len(v) == 4
                and all(isinstance(x, str) for x in v) else v for v in value]
    return value


def mask_args(args: dict[str, Any]) -> dict[str, Any]:
    """The request options as they may be recorded: in xCAT's words, secret values masked."""
    out: dict[str, Any] = {}
    for key, value in args.items():
        value = as_words(value)
        if isinstance(value, bool):  # a flag (show_secrets) is no secret: policy matches it
            out[key] = value
        elif any(s in key.lower() for s in ("password", "secret", "token")) and value:
            out[key] = SECRET_MASK
        elif key == "command" and isinstance(value, str):   # a shell command line (xdsh)
            out[key] = mask_text(value)
        elif key == "env" and isinstance(value, list):      # xdsh -E's NAME=value
            out[key] = [mask_text(v) if isinstance(v, str) else v for v in value]
        elif key == "script" and isinstance(value, str):    # xdsh -e's script: its size only
            out[key] = f"({len(value.encode())} bytes)"
        elif isinstance(value, str):
            out[key] = mask_word(value)
        elif isinstance(value, list):
            out[key] = [mask_word(v) if isinstance(v, str) else v for v in value]
        else:
            out[key] = value
    return out


def args_text(args: dict[str, Any], stdin: str | None = None) -> str:
    """One line for the audit log and policy parameter matching (masked)."""
    masked = {k: v for k, v in mask_args(args).items() if v not in (None, False, [], "")}
    text = json.dumps(masked, sort_keys=True, separators=(",", ":"))
    if stdin:
        text += f" (+{len(stdin)} bytes of input)"
    return text
