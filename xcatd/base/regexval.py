r"""Regular-expression table values, computed per node at read time (xCAT semantics).

A value stored on a group row can describe every member's value at once:

>>> compute(r"|\D+(\d+)|10.0.0.($1+100)|", "n7")
'10.0.0.107'
>>> compute(r"/n(\d+)/bmc$1/", "n042")
'bmc042'
>>> compute(r"|rack(\d+)n(\d+)|10.$1.($2*2).($2*2+1)|", "rack3n05")
'10.3.10.11'
>>> compute("|10.($1+0).0.($2+1)|", "rack02n07")
'10.2.0.8'
>>> compute("|(.*)|($1).cluster.net|", "node01")
'node01.cluster.net'
>>> compute("plain", "n1")
'plain'

The substitution is applied to the node name like Perl's ``s///``: the first match is
replaced and the rest of the name is kept. In the ``|pat|repl|`` form every parenthesised
part of the replacement is integer arithmetic (``+ - * / %``, ``/`` rounds down), evaluated by
a small parser here, never by ``eval``; a part that is only a group whose text is not a
number (``($1)`` of ``node01``) is that text, as xCAT gives it.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Union

_GROUP_REF = re.compile(r"\$\{(\d+)\}|\$(\d+)|\\(\d)")


class RegexValueError(ValueError):
    """A regex value that cannot be compiled or evaluated; ``part`` is the offending text."""

    def __init__(self, message: str, part: str) -> None:
        super().__init__(message)
        self.part = part


def is_regex_value(value: str | None) -> bool:
    if not value or len(value) < 3:
        return False
    return (value[0] == "/" and value[-1] == "/" and value.count("/") == 3) or (
        value[0] == "|" and value[-1] == "|" and value.count("|") >= 2
    )


def compute(value: str | None, node: str) -> str | None:
    """The value as node ``node`` sees it."""
    if not is_regex_value(value):
        return value
    return compile_value(value)(node)


# ---- arithmetic ---------------------------------------------------------------------------
# An expression is a tree of tuples: ("num", n) | ("grp", i) | ("neg", e) | (op, l, r).
Expr = tuple

_TOKEN = re.compile(r"\s*(?:(\d+)|\$\{(\d+)\}|\$(\d+)|([-+*/%()]))")


def _tokenize(text: str) -> list[tuple[str, int | str]]:
    tokens: list[tuple[str, int | str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise RegexValueError(f"unexpected {text[pos:]!r} in arithmetic ({text})", text)
        num, g1, g2, op = m.groups()
        if num is not None:
            tokens.append(("num", int(num)))
        elif g1 or g2:
            tokens.append(("grp", int(g1 or g2)))
        else:
            tokens.append(("op", op))
        pos = m.end()
    return tokens


def parse_arithmetic(text: str) -> Expr:
    """Parse integer arithmetic with group references ($1, ${2}) into a tree.

    >>> evaluate(parse_arithmetic("($1+1)*2"), ["", "4"])
    10
    """
    tokens = _tokenize(text)
    pos = 0

    def peek() -> tuple[str, int | str] | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> tuple[str, int | str]:
        nonlocal pos
        if pos >= len(tokens):
            raise RegexValueError(f"incomplete arithmetic ({text})", text)
        pos += 1
        return tokens[pos - 1]

    def atom() -> Expr:
        kind, val = take()
        if kind == "num":
            return ("num", val)
        if kind == "grp":
            return ("grp", val)
        if val == "-":
            return ("neg", atom())
        if val == "+":
            return atom()
        if val == "(":
            e = expr()
            if take() != ("op", ")"):
                raise RegexValueError(f"missing ')' in arithmetic ({text})", text)
            return e
        raise RegexValueError(f"unexpected {val!r} in arithmetic ({text})", text)

    def term() -> Expr:
        e = atom()
        while peek() in (("op", "*"), ("op", "/"), ("op", "%")):
            op = take()[1]
            e = (op, e, atom())
        return e

    def expr() -> Expr:
        e = term()
        while peek() in (("op", "+"), ("op", "-")):
            op = take()[1]
            e = (op, e, term())
        return e

    tree = expr()
    if pos != len(tokens):
        raise RegexValueError(f"unexpected {tokens[pos][1]!r} in arithmetic ({text})", text)
    return tree


def evaluate(e: Expr, groups: list[str]) -> int:
    kind = e[0]
    if kind == "num":
        return e[1]
    if kind == "grp":
        try:
            raw = groups[e[1]]
        except IndexError:
            raise RegexValueError(f"no group ${e[1]} in the pattern", f"${e[1]}") from None
        try:
            return int(raw or 0)
        except ValueError:
            raise RegexValueError(f"group ${e[1]} is {raw!r}, not a number", raw) from None
    if kind == "neg":
        return -evaluate(e[1], groups)
    left, right = evaluate(e[1], groups), evaluate(e[2], groups)
    if kind == "+":
        return left + right
    if kind == "-":
        return left - right
    if kind == "*":
        return left * right
    if right == 0:
        raise RegexValueError("division by zero in arithmetic", "0")
    return left // right if kind == "/" else left % right


# ---- replacement templates ----------------------------------------------------------------
Segment = Union[str, tuple]


def _split_literal(text: str) -> list[Segment]:
    """Literal text with $1 / ${1} / \\1 references."""
    out: list[Segment] = []
    pos = 0
    for m in _GROUP_REF.finditer(text):
        if m.start() > pos:
            out.append(text[pos:m.start()])
        out.append(("grp", int(m.group(1) or m.group(2) or m.group(3))))
        pos = m.end()
    if pos < len(text):
        out.append(text[pos:])
    return out


def _split_arithmetic(text: str) -> list[Segment]:
    """Replacement of the |pat|repl| form: each top-level (...) is arithmetic."""
    out: list[Segment] = []
    depth, start, lit_start = 0, 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            if depth == 0:
                out.extend(_split_literal(text[lit_start:i]))
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise RegexValueError(f"unbalanced ')' in {text!r}", text)
            if depth == 0:
                out.append(("expr", parse_arithmetic(text[start:i + 1])))
                lit_start = i + 1
    if depth:
        raise RegexValueError(f"unbalanced '(' in {text!r}", text)
    out.extend(_split_literal(text[lit_start:]))
    return out


def _render(segments: list[Segment], groups: list[str]) -> str:
    parts = []
    for seg in segments:
        if isinstance(seg, str):
            parts.append(seg)
        elif seg[0] == "grp":
            try:
                parts.append(groups[seg[1]] or "")
            except IndexError:
                raise RegexValueError(f"no group ${seg[1]} in the pattern", f"${seg[1]}") from None
        elif seg[1][0] == "grp" and not _is_number(_group(groups, seg[1][1])):
            parts.append(_group(groups, seg[1][1]))  # ($1) of a name: text, not arithmetic
        else:
            parts.append(str(evaluate(seg[1], groups)))
    return "".join(parts)


def _group(groups: list[str], i: int) -> str:
    try:
        return groups[i] or ""
    except IndexError:
        raise RegexValueError(f"no group ${i} in the pattern", f"${i}") from None


def _is_number(text: str) -> bool:
    return re.fullmatch(r"\s*[0-9]*\s*", text) is not None


def _perl_to_python(pattern: str) -> str:
    """The few Perl regex spellings admins use that Python spells differently."""
    return pattern.replace("\\z", "\\Z")


@lru_cache(maxsize=4096)
def compile_value(value: str) -> Callable[[str], str]:
    """Compile a regex value once into a function of the node name."""
    if value[0] == "/":
        pattern, repl = value[1:-1].split("/", 1)
        segments = _split_literal(repl)
    else:
        body = value[1:-1]
        if "|" in body:
            pattern, repl = body.split("|", 1)
        else:  # easy form: one group per number in the node name
            return _easy_form(_split_arithmetic(body))
        segments = _split_arithmetic(repl)
    try:
        rx = re.compile(_perl_to_python(pattern))
    except re.error as exc:
        raise RegexValueError(f"bad pattern {pattern!r} in {value!r}: {exc}", pattern) from None

    def apply(node: str) -> str:
        m = rx.search(node)
        if not m:
            return node
        groups = [m.group(0), *m.groups()]
        return node[:m.start()] + _render(segments, groups) + node[m.end():]

    return apply


def _easy_form(segments: list[Segment]) -> Callable[[str], str]:
    """``|10.0.0.($1+0)|``: $1, $2, ... are the numbers in the node name, in order."""

    def apply(node: str) -> str:
        numbers = re.findall(r"\d+", node)
        m = re.match(r"[\D0]*(\d+)" * len(numbers) + ".*$", node)
        groups = [node, *(m.groups() if m else ())]
        return _render(segments, groups)

    return apply
