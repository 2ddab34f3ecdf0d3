"""Noderanges: xCAT's language for naming sets of nodes, and the set type behind it.

>>> ns = NodeSet.fromstring("n[01-04],n10")
>>> len(ns), "n03" in ns
(5, True)
>>> str(ns)
'n[01-04,10]'
>>> str(NodeSet.fromstring("rack[1-2]-n[1-3],-rack2-n2"))
'rack1-n[1-3],rack2-n[1,3]'
>>> str(NodeSet.fromstring("n1-n4@n[3-9]"))
'n[3-4]'
>>> sorted(NodeSet.fromstring("sn10+2"))
['sn10', 'sn11', 'sn12']

``NodeSet`` behaves like a built-in set; ``str()`` folds it back to compact form. ``expand``
resolves a full noderange against a cluster (groups, attribute selectors, regexes, files).
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Protocol

__all__ = ["NodeSet", "NodeRangeError", "InvalidNodes", "expand", "fold", "natural_key"]


class NodeRangeError(ValueError):
    """A noderange that does not parse; ``part`` is the offending token."""

    def __init__(self, message: str, part: str) -> None:
        super().__init__(message)
        self.part = part


class InvalidNodes(NodeRangeError):
    """Names in a noderange that are neither nodes nor groups."""

    def __init__(self, bad: Iterable[str]) -> None:
        self.bad = list(dict.fromkeys(bad))
        text = ",".join(self.bad)
        super().__init__(f"Invalid nodes and/or groups in noderange: {text}", text)


# ---- numbers and folding ------------------------------------------------------------------
_TAIL = re.compile(r"^(.*?)(\d+)(\D*)$")
_CHUNKS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders n2 before n10."""
    parts = _CHUNKS.split(name)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def _fold_numbers(digits: Iterable[str]) -> tuple[str, int]:
    """Fold digit strings into 'a-b,c' text; padded numbers keep their width."""
    by_width: dict[int, set[int]] = defaultdict(set)
    for d in digits:
        width = len(d) if (d[0] == "0" and len(d) > 1) else 0
        by_width[width].add(int(d))
    # An unpadded number as wide as a padded group belongs to it (n099,n100 -> n[099-100]).
    for width in [w for w in by_width if w]:
        fits = {v for v in by_width.get(0, ()) if len(str(v)) == width}
        if fits:
            by_width[width] |= fits
            by_width[0] -= fits
    runs: list[tuple[int, int, int]] = []  # (start, end, width)
    for width, values in by_width.items():
        if not values:
            continue
        ordered = sorted(values)
        start = prev = ordered[0]
        for v in ordered[1:]:
            if v != prev + 1:
                runs.append((start, prev, width))
                start = v
            prev = v
        runs.append((start, prev, width))
    runs.sort()
    count = sum(e - s + 1 for s, e, _ in runs)
    text = ",".join(
        f"{s:0{w}d}" if s == e else f"{s:0{w}d}-{e:0{w}d}" for s, e, w in runs
    )
    return text, count


def fold(names: Iterable[str]) -> str:
    """Fold node names into xCAT's compact bracket form, in natural order."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    singles: list[str] = []
    match = _TAIL.match
    for name in names:
        m = match(name)
        if m:
            groups[(m.group(1), m.group(3))].append(m.group(2))
        else:
            singles.append(name)
    items: list[tuple[str, str, str, int]] = []  # prefix, ranges, suffix, count
    for (prefix, suffix), digits in groups.items():
        text, count = _fold_numbers(digits)
        items.append((prefix, text, suffix, count))
    # Second dimension: rack1-n[1-40],rack2-n[1-40] -> rack[1-2]-n[1-40].
    outer: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
    folded: list[str] = []
    for prefix, text, suffix, count in items:
        m = match(prefix) if count > 1 else None
        if m:
            outer[(m.group(1), m.group(3), text, suffix)].append(m.group(2))
        elif count == 1:
            singles.append(f"{prefix}{text}{suffix}")
        else:
            folded.append(_bracket(prefix, text, suffix, count))
    for (pre, mid, text, suffix), digits in outer.items():
        if len(digits) == 1:
            folded.append(f"{pre}{digits[0]}{mid}[{text}]{suffix}")
            continue
        otext, ocount = _fold_numbers(digits)
        folded.append(f"{_bracket(pre, otext, mid, ocount)}[{text}]{suffix}")
    if len(singles) > 1:
        singles = _fold_inner(singles)
    folded.extend(singles)
    folded.sort(key=natural_key)
    return ",".join(folded)


def _fold_inner(names: list[str]) -> list[str]:
    """Fold names that differ in a number other than the last (n1-eth0,n2-eth0)."""
    parsed = {n: _CHUNKS.split(n) for n in names}
    out: list[str] = []
    rest = list(names)
    depth = max(len(p) for p in parsed.values())
    for pos in range(depth - 2, 0, -2):  # odd indices hold the numbers, right to left
        groups: dict[tuple, list[str]] = defaultdict(list)
        keep: list[str] = []
        for n in rest:
            chunks = parsed[n]
            if pos <= len(chunks) - 2:
                groups[(len(chunks), *chunks[:pos], *chunks[pos + 1:])].append(n)
            else:
                keep.append(n)
        for members in groups.values():
            if len(members) == 1:
                keep.extend(members)
                continue
            chunks = parsed[members[0]]
            text, count = _fold_numbers([parsed[n][pos] for n in members])
            out.append(_bracket("".join(chunks[:pos]), text, "".join(chunks[pos + 1:]), count))
        rest = keep
    return out + rest


def _bracket(prefix: str, text: str, suffix: str, count: int) -> str:
    return f"{prefix}{text}{suffix}" if count == 1 else f"{prefix}[{text}]{suffix}"


# ---- pure patterns (no cluster needed) ----------------------------------------------------
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")
_PLUS = re.compile(r"^(.*?)(\d+)(\D*)\+(\d+)$")
_DIGITS = re.compile(r"^\d+$")


def _number_range(text: str, token: str) -> list[str]:
    """'1-3,07-09' -> ['1','2','3','07','08','09'] (padding from the first number)."""
    out: list[str] = []
    for piece in text.split(","):
        piece = piece.strip()
        a, sep, b = piece.partition("-")
        if not _DIGITS.match(a) or (sep and not _DIGITS.match(b)):
            raise NodeRangeError(f"Invalid range {piece!r} in {token!r}", token)
        if not sep:
            out.append(a)
            continue
        lo, hi = int(a), int(b)
        if hi < lo:
            raise NodeRangeError(f"Invalid range {piece!r} in {token!r}: end before start", token)
        if hi - lo > 10_000_000:
            raise NodeRangeError(f"Range {piece!r} in {token!r} is too large", token)
        width = len(a) if a[0] == "0" and len(a) > 1 else (len(a) if len(a) == len(b) else 0)
        out.extend([f"{i:0{width}d}" for i in range(lo, hi + 1)] if width else
                   [str(i) for i in range(lo, hi + 1)])
    return out


def expand_pattern(token: str) -> list[str] | None:
    """Expand a range token that needs no cluster knowledge, or return None if it is a name.

    Handles ``pre[1-3]suf`` (several brackets, lists inside), ``n1-n5``, ``n1:n5``,
    ``n10+3``. Raises NodeRangeError for malformed ranges.
    """
    if "[" in token or "]" in token:
        return _expand_brackets(token)
    m = _PLUS.match(token)
    if m:
        prefix, start, suffix, extra = m.groups()
        width = len(start) if start[0] == "0" and len(start) > 1 else 0
        lo = int(start)
        return [f"{prefix}{i:0{width}d}{suffix}" for i in range(lo, lo + int(extra) + 1)]
    for sep in (":", "-"):
        if sep not in token:
            continue
        result = _expand_dash(token, sep)
        if result is not None:
            return result
    return None


def _expand_brackets(token: str) -> list[str]:
    pieces: list[list[str]] = []
    pos = 0
    for m in _BRACKET.finditer(token):
        literal = token[pos:m.start()]
        if "[" in literal or "]" in literal:
            raise NodeRangeError(f"Unbalanced brackets in {token!r}", token)
        pieces.append([literal])
        pieces.append(_number_range(m.group(1), token))
        pos = m.end()
    tail = token[pos:]
    if "[" in tail or "]" in tail:
        raise NodeRangeError(f"Unbalanced brackets in {token!r}", token)
    pieces.append([tail])
    if len(pieces) == 3:  # the common case: one bracket, a plain f-string loop
        pre, nums, suf = pieces[0][0], pieces[1], pieces[2][0]
        return [pre + n + suf for n in nums]
    names = [""]
    for options in pieces:
        if len(options) == 1:
            lit = options[0]
            names = [n + lit for n in names]
        else:
            names = [n + o for n in names for o in options]
    return names


def _expand_dash(token: str, sep: str) -> list[str] | None:
    """``n01-n10`` / ``n1:n10`` / ``n1-10``; None if no split of the token forms a range."""
    positions = [i for i, ch in enumerate(token) if ch == sep]
    for i in positions:
        left, right = token[:i], token[i + 1:]
        lm = _NUMBERED.match(left)
        if not lm:
            continue
        if _DIGITS.match(right) and not lm.group(3):  # n1-10
            prefix, a, suffix, b = lm.group(1), lm.group(2), "", right
        else:
            rm = _NUMBERED.match(right)
            if not rm or rm.group(1) != lm.group(1) or rm.group(3) != lm.group(3):
                continue
            prefix, a, suffix, b = lm.group(1), lm.group(2), lm.group(3), rm.group(2)
        if int(b) < int(a):
            raise NodeRangeError(f"Invalid range {token!r}: end before start", token)
        return [prefix + n + suffix for n in _number_range(f"{a}-{b}", token)]
    return None


# ---- the set type -------------------------------------------------------------------------
class NodeSet:
    """A set of node names with set algebra and compact display.

    >>> a = NodeSet.fromstring("n[1-10]"); b = NodeSet.fromstring("n[5-20]")
    >>> str(a & b), str(a - b), len(a | b)
    ('n[5-10]', 'n[1-4]', 20)
    """

    __slots__ = ("_names",)

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._names: set[str] = names if isinstance(names, set) else set(names)

    @classmethod
    def fromlist(cls, names: Iterable[str]) -> "NodeSet":
        return cls(set(names))

    @classmethod
    def fromstring(cls, text: str) -> "NodeSet":
        """Expand a pattern-only noderange: ranges, brackets, ``,`` ``,-`` ``@`` ``()``."""
        return expand(text, None, verify=False)

    # set protocol
    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._names, key=natural_key))

    def __bool__(self) -> bool:
        return bool(self._names)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NodeSet):
            return self._names == other._names
        if isinstance(other, (set, frozenset)):
            return self._names == other
        return NotImplemented

    def __hash__(self) -> int:  # mutable, like set
        raise TypeError("unhashable type: 'NodeSet'")

    def _other(self, other: Iterable[str]) -> set[str]:
        if isinstance(other, NodeSet):
            return other._names
        if isinstance(other, str):
            return NodeSet.fromstring(other)._names
        return set(other)

    def __or__(self, other: Iterable[str]) -> "NodeSet":
        return NodeSet(self._names | self._other(other))

    def __and__(self, other: Iterable[str]) -> "NodeSet":
        return NodeSet(self._names & self._other(other))

    def __sub__(self, other: Iterable[str]) -> "NodeSet":
        return NodeSet(self._names - self._other(other))

    def __xor__(self, other: Iterable[str]) -> "NodeSet":
        return NodeSet(self._names ^ self._other(other))

    union, intersection, difference, symmetric_difference = __or__, __and__, __sub__, __xor__

    def update(self, other: Iterable[str]) -> None:
        self._names |= self._other(other)

    def difference_update(self, other: Iterable[str]) -> None:
        self._names -= self._other(other)

    def intersection_update(self, other: Iterable[str]) -> None:
        self._names &= self._other(other)

    def add(self, name: str) -> None:
        self._names.add(name)

    def discard(self, name: str) -> None:
        self._names.discard(name)

    def issubset(self, other: Iterable[str]) -> bool:
        return self._names <= self._other(other)

    def issuperset(self, other: Iterable[str]) -> bool:
        return self._names >= self._other(other)

    def copy(self) -> "NodeSet":
        return NodeSet(set(self._names))

    @property
    def names(self) -> set[str]:
        """The underlying plain set (hot paths use it directly)."""
        return self._names

    def sorted(self) -> list[str]:
        return sorted(self._names, key=natural_key)

    def __str__(self) -> str:
        return fold(self._names)

    def __repr__(self) -> str:
        return f"NodeSet({str(self)!r})"


# ---- the full language against a cluster -------------------------------------------------
class Cluster(Protocol):
    """What noderange expansion needs to know about a cluster (xcatd.db provides it)."""

    def all_nodes(self) -> set[str]: ...

    def group_members(self, name: str) -> set[str] | None: ...

    def select_nodes(self, attr: str, op: str, value: str) -> set[str]: ...

    def excludenodes(self) -> str | None: ...


_SELECTOR = re.compile(r"^([A-Za-z_][\w.-]*?)(==|!=|=~|!~|=)(.*)$")


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside brackets and parentheses."""
    if "[" not in text and "(" not in text:
        return text.split(sep)
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
            if depth < 0:
                raise NodeRangeError(f"Unbalanced '{ch}' in noderange {text!r}", text)
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise NodeRangeError(f"Unbalanced brackets or parentheses in noderange {text!r}", text)
    parts.append(text[start:])
    return parts


class _Expander:
    def __init__(self, cluster: Cluster | None, verify: bool,
                 env: dict[str, str] | None = None) -> None:
        self.cluster = cluster
        self.verify = verify and cluster is not None
        self.bad: list[str] = []
        self._all: set[str] | None = None
        env = os.environ if env is None else env
        self.prefix = env.get("XCAT_NODE_PREFIX", "node")
        self.suffix = env.get("XCAT_NODE_SUFFIX", "")
        self._files: list[str] = []

    @property
    def all_nodes(self) -> set[str]:
        if self._all is None:
            self._all = self.cluster.all_nodes() if self.cluster else set()
        return self._all

    def expression(self, text: str) -> set[str]:
        text = text.strip()
        if not text:
            return set()
        include: set[str] = set()
        exclude: set[str] = set()
        for element in _split_top(text, ","):
            element = element.strip()
            if not element:
                continue
            if element.startswith("-") and len(element) > 1:
                exclude |= self.intersection(element[1:])
            else:
                include |= self.intersection(element)
        return include - exclude if exclude else include

    def intersection(self, element: str) -> set[str]:
        parts = _split_top(element, "@") if "@" in element else [element]
        result = self.atom(parts[0])
        for part in parts[1:]:
            result = result & self.atom(part)
        return result

    def atom(self, atom: str) -> set[str]:
        atom = atom.strip()
        if not atom:
            raise NodeRangeError("Empty element in noderange", atom)
        if atom.startswith("(") and atom.endswith(")"):
            return self.expression(atom[1:-1])
        if atom.startswith("^"):
            return self.from_file(atom[1:])
        if atom.startswith("/"):
            return self.regex(atom[1:])
        cluster = self.cluster
        if cluster is not None:
            if atom in self.all_nodes:
                return {atom}
            members = cluster.group_members(atom)
            if members is not None:
                return set(members)
            m = _SELECTOR.match(atom)
            if m:
                return cluster.select_nodes(*m.groups())
        if _DIGITS.match(atom) or _is_digit_range(atom):
            return self.names(self._digits(atom), atom)
        names = expand_pattern(atom)
        if names is None:
            return self.names([atom], atom)
        return self.names(names, atom)

    def _digits(self, atom: str) -> list[str]:
        """All-digit atoms take XCAT_NODE_PREFIX / XCAT_NODE_SUFFIX."""
        pre, suf = self.prefix, self.suffix
        if _DIGITS.match(atom):
            return [f"{pre}{atom}{suf}"]
        a, _, b = atom.partition("-") if "-" in atom else atom.partition(":")
        return [f"{pre}{n}{suf}" for n in _number_range(f"{a}-{b}", atom)]

    def names(self, names: list[str], token: str) -> set[str]:
        if not self.verify:
            return set(names)
        known = self.all_nodes
        result = set(names)
        missing = result - known
        if missing:
            self.bad.extend(sorted(missing, key=natural_key))
            result -= missing
        return result

    def regex(self, pattern: str) -> set[str]:
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise NodeRangeError(f"Invalid regular expression {pattern!r}: {exc}", pattern) from None
        return {n for n in self.all_nodes if rx.fullmatch(n)}

    def from_file(self, path: str) -> set[str]:
        if path in self._files:
            raise NodeRangeError(f"Noderange file {path!r} includes itself", path)
        try:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except OSError as exc:
            raise NodeRangeError(f"Cannot read noderange file {path!r}: {exc.strerror}", path) from None
        self._files.append(path)
        try:
            out: set[str] = set()
            for line in lines:
                line = line.strip()
                if not line or line[0] in "#^":
                    continue
                out |= self.expression(re.split(r"[:\s]", line, maxsplit=1)[0])
            return out
        finally:
            self._files.pop()


def _is_digit_range(atom: str) -> bool:
    for sep in ("-", ":"):
        a, s, b = atom.partition(sep)
        if s and _DIGITS.match(a) and _DIGITS.match(b):
            return True
    return False


def expand(noderange: str, cluster: Cluster | None, *, verify: bool = True,
           env: dict[str, str] | None = None) -> NodeSet:
    """Expand a noderange. With a cluster, names must be nodes or groups (else InvalidNodes);
    ``site.excludenodes`` is removed from the result. All-digit atoms take
    ``XCAT_NODE_PREFIX`` (default ``node``) and ``XCAT_NODE_SUFFIX`` from ``env``."""
    exp = _Expander(cluster, verify, env)
    result = exp.expression(noderange)
    if exp.bad:
        raise InvalidNodes(exp.bad)
    if cluster is not None and verify:
        excluded = cluster.excludenodes()
        if excluded and result:
            result -= _Expander(cluster, verify=False).expression(excluded)
    return NodeSet(result)
