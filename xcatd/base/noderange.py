"""Noderanges: xCAT's language for naming sets of nodes, and the set type behind it.

>>> ns = NodeRange.fromstring("n[01-04],n10")
>>> len(ns), "n03" in ns
(5, True)
>>> str(ns)
'n[01-04,10]'
>>> str(NodeRange.fromstring("rack[1-2]-n[1-3],-rack2-n2"))
'rack1-n[1-3],rack2-n[1,3]'
>>> str(NodeRange.fromstring("n1-n4@n[3-9]"))
'n[3-4]'
>>> sorted(NodeRange.fromstring("sn10+2"))
['sn10', 'sn11', 'sn12']

``NodeRange`` behaves like a built-in set; ``str()`` folds it back to compact form. ``expand``
resolves a full noderange against a cluster (groups, attribute selectors, regexes, files).
"""
from __future__ import annotations

import contextvars
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Protocol

from xcatd.base.patterns import PatternError, PatternTimeout, compile_pattern, fullmatch

__all__ = ["InvalidNodes", "NodeRange", "NodeRangeError", "TooManyNodes", "expand", "fold",
           "natural_key"]


class NodeRangeError(ValueError):
    """A noderange that does not parse; ``part`` is the offending token."""

    def __init__(self, message: str, part: str) -> None:
        super().__init__(message)
        self.part = part


class InvalidNodes(NodeRangeError):
    """Names in a noderange that are neither nodes nor groups; the message lists the first
    few and counts the rest (a bad range can name millions).

    >>> str(InvalidNodes(f"x{i}" for i in range(1, 13)))
    'Invalid nodes and/or groups in noderange: x1,x2,x3,x4,x5,x6,x7,x8,x9,x10 and 2 more'
    """

    SHOWN = 10

    def __init__(self, bad: Iterable[str]) -> None:
        self.bad = list(dict.fromkeys(bad))
        text = ",".join(self.bad[:self.SHOWN])
        more = len(self.bad) - self.SHOWN
        super().__init__("Invalid nodes and/or groups in noderange: " + text
                         + (f" and {more:,} more" if more > 0 else ""), text)


class TooManyNodes(NodeRangeError):
    """A noderange that names more nodes than one request may expand (site.noderangemax)."""


#: Names one expansion may create from ranges, brackets and comma terms together, counted
#: before any is made (site.noderangemax in xcatd).
DEFAULT_LIMIT = 1_000_000


class _Budget:
    def __init__(self, limit: int) -> None:
        self.limit, self.left = limit, limit


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("noderange_budget",
                                                                        default=None)


def _charge(count: int, token: str) -> None:
    """Count ``count`` names about to be made for ``token`` against the expansion's limit."""
    b = _budget.get()
    if b is None:
        b = _Budget(DEFAULT_LIMIT)
        if count <= b.left:
            return
    if count > b.left:
        raise TooManyNodes(f"The noderange names more than {b.limit:,} nodes (at {token!r}: "
                           f"{count:,} more); site.noderangemax sets the limit", token)
    b.left -= count


# ---- names as (prefix, suffix, padding) + integer ------------------------------------------
# A name is split at its last number: "rack2-n07" -> key ("rack2-n", "", 2), number 7. The
# mapping is one-to-one (a number without a leading zero has padding 0; a name without a
# number has padding -1), so set algebra on ranges is integer set algebra, and strings are
# made only when someone asks for them.
Key = tuple[str, str, int]
Groups = dict[Key, set[int]]

_TAIL = re.compile(r"^(.*?)(\d+)(\D*)$")
_CHUNKS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders n2 before n10."""
    parts = _CHUNKS.split(name)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def _parse_into(groups: Groups, names: Iterable[str]) -> None:
    match = _TAIL.match
    for name in names:
        m = match(name)
        if m is None:
            groups.setdefault((name, "", -1), set()).add(0)
            continue
        pre, digits, suf = m.groups()
        width = len(digits) if digits[0] == "0" and len(digits) > 1 else 0
        groups.setdefault((pre, suf, width), set()).add(int(digits))


def _add_range(groups: Groups, pre: str, suf: str, width: int, lo: int, hi: int) -> None:
    """Add pre<lo..hi>suf; numbers that need no padding go to the unpadded key."""
    if width > 0:
        limit = 10 ** (width - 1)
        if lo < limit:
            groups.setdefault((pre, suf, width), set()).update(range(lo, min(hi, limit - 1) + 1))
        lo = max(lo, limit)
    if lo <= hi:
        target = groups.setdefault((pre, suf, 0), set())
        if target:
            target.update(range(lo, hi + 1))
        else:
            groups[(pre, suf, 0)] = set(range(lo, hi + 1))


def _materialise(key: Key, ints: Iterable[int]) -> list[str]:
    pre, suf, width = key
    if width < 0:
        return [pre]
    if width == 0:
        return [pre + s + suf for s in map(str, ints)]
    return [f"{pre}{i:0{width}d}{suf}" for i in ints]


# ---- folding -------------------------------------------------------------------------------
def _fold_ints(by_width: dict[int, set[int]]) -> tuple[str, int]:
    """{width: numbers} -> ('01-04,10', count); padded numbers keep their width."""
    by_width = {w: set(v) for w, v in by_width.items()}
    # An unpadded number as wide as a padded group joins it (n099,n100 -> n[099-100]).
    for width in [w for w in by_width if w > 0]:
        unpadded = by_width.get(0)
        if unpadded:
            lo, hi = 10 ** (width - 1), 10 ** width - 1
            fits = {v for v in unpadded if lo <= v <= hi}
            if fits:
                by_width[width] |= fits
                unpadded -= fits
    runs: list[tuple[int, int, int]] = []
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
    text = ",".join(f"{s:0{w}d}" if s == e else f"{s:0{w}d}-{e:0{w}d}" for s, e, w in runs)
    return text, count


def _fold_groups(groups: Groups) -> str:
    by_ps: dict[tuple[str, str], dict[int, set[int]]] = defaultdict(dict)
    singles: list[str] = []
    for (pre, suf, width), ints in groups.items():
        if not ints:
            continue
        if width < 0:
            singles.append(pre)
        else:
            by_ps[(pre, suf)][width] = ints
    match = _TAIL.match
    outer: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
    folded: list[str] = []
    for (prefix, suffix), by_width in by_ps.items():
        text, count = _fold_ints(by_width)
        m = match(prefix) if count > 1 else None
        if m:  # second dimension: rack1-n[1-40],rack2-n[1-40] -> rack[1-2]-n[1-40]
            outer[(m.group(1), m.group(3), text, suffix)].append(m.group(2))
        elif count == 1:
            singles.append(f"{prefix}{text}{suffix}")
        else:
            folded.append(f"{prefix}[{text}]{suffix}")
    for (pre, mid, text, suffix), digits in outer.items():
        if len(digits) == 1:
            folded.append(f"{pre}{digits[0]}{mid}[{text}]{suffix}")
            continue
        sub: Groups = {}
        _parse_into(sub, digits)
        otext, ocount = _fold_ints({w: v for (_, _, w), v in sub.items()})
        folded.append(f"{_bracket(pre, otext, mid, ocount)}[{text}]{suffix}")
    if len(singles) > 1:
        singles = _fold_inner(singles)
    folded.extend(singles)
    folded.sort(key=natural_key)
    return ",".join(folded)


def fold(names: Iterable[str]) -> str:
    """Fold node names into xCAT's compact bracket form, in natural order."""
    groups: Groups = {}
    _parse_into(groups, names)
    return _fold_groups(groups)


def _fold_inner(names: list[str]) -> list[str]:
    """Fold names that differ in a number other than the last (n1-eth0,n2-eth0)."""
    parsed = {n: _CHUNKS.split(n) for n in names}
    out: list[str] = []
    rest = list(names)
    depth = max(len(p) for p in parsed.values())
    for pos in range(depth - 2, 0, -2):  # odd indices hold the numbers, right to left
        buckets: dict[tuple, list[str]] = defaultdict(list)
        keep: list[str] = []
        for n in rest:
            chunks = parsed[n]
            if pos <= len(chunks) - 2:
                buckets[(len(chunks), *chunks[:pos], *chunks[pos + 1:])].append(n)
            else:
                keep.append(n)
        for members in buckets.values():
            if len(members) == 1:
                keep.extend(members)
                continue
            chunks = parsed[members[0]]
            sub: Groups = {}
            _parse_into(sub, [parsed[n][pos] for n in members])
            text, count = _fold_ints({w: v for (_, _, w), v in sub.items()})
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
_ENDS_WITH_DIGIT = re.compile(r"\d$")

Span = tuple[int, int, int]  # lo, hi, width


def _spans(text: str, token: str) -> list[Span]:
    """'1-3,07-09' -> [(1, 3, 0), (7, 9, 2)]: padding comes from the written numbers."""
    out: list[Span] = []
    for piece in text.split(","):
        piece = piece.strip()
        a, sep, b = piece.partition("-")
        if not sep:
            a, sep, b = piece.partition(":")
        if not _DIGITS.match(a) or (sep and not _DIGITS.match(b)):
            raise NodeRangeError(f"Invalid range {piece!r} in {token!r}", token)
        b = b if sep else a
        lo, hi = int(a), int(b)
        if hi < lo:
            raise NodeRangeError(f"Invalid range {piece!r} in {token!r}: end before start", token)
        width = len(a) if a[0] == "0" and len(a) > 1 else 0
        out.append((lo, hi, width))
    return out


def _span_strings(spans: list[Span]) -> list[str]:
    return [f"{i:0{w}d}" for lo, hi, w in spans for i in range(lo, hi + 1)]


def expand_pattern(token: str) -> NodeRange | None:
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
        return _from_spans([prefix], [(int(start), int(start) + int(extra), width)], suffix,
                           token)
    for sep in (":", "-"):
        if sep in token:
            result = _expand_dash(token, sep)
            if result is not None:
                return result
    return None


def _from_spans(prefixes: list[str], spans: list[Span], suffix: str,
                token: str = "", charged: bool = False) -> NodeRange:
    """Names prefix + number + suffix; integer-only when the split is the canonical one."""
    if not charged:
        _charge(len(prefixes) * sum(hi - lo + 1 for lo, hi, _w in spans), token or suffix)
    groups: Groups = {}
    if not _CHUNKS.search(suffix):
        for pre in prefixes:
            if _ENDS_WITH_DIGIT.search(pre):
                break
            for lo, hi, w in spans:
                _add_range(groups, pre, suffix, w, lo, hi)
        else:
            return NodeRange._of(groups)
        groups = {}
    nums = _span_strings(spans)
    _parse_into(groups, (p + n + suffix for p in prefixes for n in nums))
    return NodeRange._of(groups)


def _expand_brackets(token: str) -> NodeRange:
    pieces: list[str | list[Span]] = []
    pos = 0
    for m in _BRACKET.finditer(token):
        literal = token[pos:m.start()]
        if "[" in literal or "]" in literal:
            raise NodeRangeError(f"Unbalanced brackets in {token!r}", token)
        pieces.append(literal)
        pieces.append(_spans(m.group(1), token))
        pos = m.end()
    tail = token[pos:]
    if "[" in tail or "]" in tail:
        raise NodeRangeError(f"Unbalanced brackets in {token!r}", token)
    # the product of every bracket's size, counted before a single name is made
    total = 1
    for piece in pieces:
        if not isinstance(piece, str):
            total *= sum(hi - lo + 1 for lo, hi, _w in piece)
    _charge(total, token)
    prefixes = [""]
    for piece in pieces[:-1]:
        if isinstance(piece, str):
            prefixes = [p + piece for p in prefixes]
        else:
            nums = _span_strings(piece)
            prefixes = [p + n for p in prefixes for n in nums]
    return _from_spans(prefixes, pieces[-1], tail, token, charged=True)  # type: ignore[arg-type]


def _expand_dash(token: str, sep: str) -> NodeRange | None:
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
        return _from_spans([prefix], _spans(f"{a}-{b}", token), suffix, token)
    return None


# ---- the set type -------------------------------------------------------------------------
class NodeRange:
    """A set of node names with set algebra and compact display.

    >>> a = NodeRange.fromstring("n[1-10]"); b = NodeRange.fromstring("n[5-20]")
    >>> str(a & b), str(a - b), len(a | b)
    ('n[5-10]', 'n[1-4]', 20)
    """

    __slots__ = ("_cache", "_g")

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._g: Groups = {}
        self._cache: set[str] | None = None
        if isinstance(names, NodeRange):
            self._g = {k: set(v) for k, v in names._g.items()}
        elif isinstance(names, str):
            self._g = NodeRange.fromstring(names)._g
        else:
            _parse_into(self._g, names)

    @classmethod
    def _of(cls, groups: Groups) -> NodeRange:
        ns = cls.__new__(cls)
        ns._g = {k: v for k, v in groups.items() if v}
        ns._cache = None
        return ns

    @classmethod
    def fromlist(cls, names: Iterable[str]) -> NodeRange:
        return cls(list(names))

    @classmethod
    def fromstring(cls, text: str) -> NodeRange:
        """Expand a pattern-only noderange: ranges, brackets, ``,`` ``,-`` ``@`` ``()``."""
        return expand(text, None, verify=False)

    # set protocol
    def __len__(self) -> int:
        return sum(len(v) for v in self._g.values())

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        g: Groups = {}
        _parse_into(g, (name,))
        (key, ints), = g.items()
        return key in self._g and next(iter(ints)) in self._g[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.sorted())

    def __bool__(self) -> bool:
        return any(self._g.values())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NodeRange):
            return self._g == other._g
        if isinstance(other, (set, frozenset)):
            return self.names == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like set

    @staticmethod
    def _other(other: Iterable[str]) -> Groups:
        if isinstance(other, NodeRange):
            return other._g
        if isinstance(other, str):
            return NodeRange.fromstring(other)._g
        g: Groups = {}
        _parse_into(g, other)
        return g

    def __or__(self, other: Iterable[str]) -> NodeRange:
        out = self.copy()
        out.update(other)
        return out

    def __and__(self, other: Iterable[str]) -> NodeRange:
        og = self._other(other)
        return NodeRange._of({k: v & og[k] for k, v in self._g.items() if k in og})

    def __sub__(self, other: Iterable[str]) -> NodeRange:
        og = self._other(other)
        return NodeRange._of({k: (v - og[k] if k in og else set(v)) for k, v in self._g.items()})

    def __xor__(self, other: Iterable[str]) -> NodeRange:
        og = self._other(other)
        keys = set(self._g) | set(og)
        return NodeRange._of({k: self._g.get(k, set()) ^ og.get(k, set()) for k in keys})

    union, intersection, difference, symmetric_difference = __or__, __and__, __sub__, __xor__

    def update(self, other: Iterable[str]) -> None:
        for k, v in self._other(other).items():
            mine = self._g.get(k)
            if mine is None:
                self._g[k] = set(v)
            else:
                mine |= v
        self._cache = None

    def difference_update(self, other: Iterable[str]) -> None:
        self._g = (self - other)._g
        self._cache = None

    def intersection_update(self, other: Iterable[str]) -> None:
        self._g = (self & other)._g
        self._cache = None

    def add(self, name: str) -> None:
        self.update([name])

    def discard(self, name: str) -> None:
        self.difference_update([name])

    def issubset(self, other: Iterable[str]) -> bool:
        og = self._other(other)
        return all(k in og and v <= og[k] for k, v in self._g.items())

    def issuperset(self, other: Iterable[str]) -> bool:
        return NodeRange._of(dict(self._other(other))).issubset(self)

    def copy(self) -> NodeRange:
        return NodeRange._of({k: set(v) for k, v in self._g.items()})

    @property
    def names(self) -> set[str]:
        """The names as a plain set of strings (made once, then cached)."""
        if self._cache is None:
            out: set[str] = set()
            for key, ints in self._g.items():
                out.update(_materialise(key, ints))
            self._cache = out
        return self._cache

    def sorted(self) -> list[str]:
        """Names in natural order (n2 before n10)."""
        if len(self._g) == 1:
            (key, ints), = self._g.items()
            return _materialise(key, sorted(ints))
        return sorted(self.names, key=natural_key)

    def __str__(self) -> str:
        return _fold_groups(self._g)

    def __repr__(self) -> str:
        return f"NodeRange({str(self)!r})"


# ---- the full language against a cluster -------------------------------------------------
class Cluster(Protocol):
    """What noderange expansion needs to know about a cluster (xcatd.db.database provides it)."""

    def all_nodes(self) -> set[str]: ...

    def known_nodes(self, names: set[str]) -> set[str]:
        """The ones of ``names`` that are nodes (cheaper than all_nodes for a few names)."""
        ...

    def group_members(self, name: str) -> set[str] | None: ...

    def group_names(self) -> set[str]:
        """Every group's name (static and dynamic), for ranges of groups."""
        ...

    def select_nodes(self, attr: str, op: str, value: str) -> set[str]: ...

    def excludenodes(self) -> str | None: ...


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")  # a name that cannot be a range or pattern
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


def file_lines(path: str) -> list[str]:
    """The noderanges a ^file holds: first token of each line, '#' and '^' lines skipped."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise NodeRangeError(f"Cannot read noderange file {path!r}: {exc.strerror}",
                             path) from None
    out = []
    for line in lines:
        line = line.strip()
        if line and line[0] not in "#^":
            out.append(re.split(r"[:\s]", line, maxsplit=1)[0])
    return out


def inline_files(noderange: str, _seen: tuple[str, ...] = ()) -> str:
    """Replace top-level ^file elements by the file's noderanges, read with the caller's own
    permissions: commands do this before a request leaves for the daemon.

    >>> inline_files("n1,n2")
    'n1,n2'
    """
    if "^" not in noderange:
        return noderange
    parts = []
    for element in _split_top(noderange, ","):
        e = element.strip()
        neg = e.startswith("-^")
        if e.startswith("^") or neg:
            path = e[2:] if neg else e[1:]
            if path in _seen:
                raise NodeRangeError(f"Noderange file {path!r} includes itself", path)
            inner = ",".join(inline_files(x, (*_seen, path)) for x in file_lines(path))
            if inner:
                parts.append(f"-({inner})" if neg else f"({inner})")
        else:
            parts.append(element)
    return ",".join(parts)


class _Expander:
    def __init__(self, cluster: Cluster | None, verify: bool,
                 env: dict[str, str] | None = None, allow_files: bool = True) -> None:
        self.cluster = cluster
        self.allow_files = allow_files
        self.verify = verify and cluster is not None
        self.bad: list[str] = []
        self._all: NodeRange | None = None
        self._groups: NodeRange | None = None
        env = os.environ if env is None else env
        self.prefix = env.get("XCAT_NODE_PREFIX", "node")
        self.suffix = env.get("XCAT_NODE_SUFFIX", "")
        self._files: list[str] = []

    @property
    def all_nodes(self) -> NodeRange:
        if self._all is None:
            self._all = NodeRange(self.cluster.all_nodes() if self.cluster else ())
        return self._all

    @property
    def group_names(self) -> NodeRange:
        if self._groups is None:
            self._groups = NodeRange(self.cluster.group_names() if self.cluster else ())
        return self._groups

    def expression(self, text: str) -> NodeRange:
        text = text.strip()
        include, exclude = NodeRange(), NodeRange()
        if not text:
            return include
        elements = [e.strip() for e in _split_top(text, ",")]
        # bare names are checked with one lookup and parsed once, together
        known = self.known([e for e in elements if _PLAIN.match(e)])
        plain: list[str] = []
        for element in elements:
            if not element:
                continue
            if element in known:
                plain.append(element)
            elif element.startswith("-") and len(element) > 1:
                exclude.update(self.intersection(element[1:]))
            else:
                include.update(self.intersection(element))
        if plain:
            include.update(plain)
        return include - exclude if exclude else include

    def known(self, names: Iterable[str]) -> set[str]:
        names = set(names)
        if self.cluster is None or not names:
            return names
        if self._all is not None or len(names) > 500:
            return names & self.all_nodes.names
        return self.cluster.known_nodes(names)

    def intersection(self, element: str) -> NodeRange:
        parts = _split_top(element, "@") if "@" in element else [element]
        result = self.atom(parts[0])
        for part in parts[1:]:
            result = result & self.atom(part)
        return result

    def atom(self, atom: str) -> NodeRange:
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
            if atom in self.known((atom,)):
                return NodeRange((atom,))
            members = cluster.group_members(atom)
            if members is not None:
                return NodeRange(members)
            m = _SELECTOR.match(atom)
            if m:
                return NodeRange(cluster.select_nodes(*m.groups()))
        if _DIGITS.match(atom) or _is_digit_range(atom):
            return self.checked(self._digits(atom))
        names = expand_pattern(atom)
        if names is None:  # a name: neither a node nor a group (both were looked for above)
            return self.checked(NodeRange((atom,)), groups=False)
        return self.checked(names)

    def _digits(self, atom: str) -> NodeRange:
        """All-digit atoms take XCAT_NODE_PREFIX / XCAT_NODE_SUFFIX."""
        pre, suf = self.prefix, self.suffix
        if _DIGITS.match(atom):
            return NodeRange((f"{pre}{atom}{suf}",))
        a, _, b = atom.partition("-") if "-" in atom else atom.partition(":")
        return NodeRange(f"{pre}{n}{suf}" for n in _span_strings(_spans(f"{a}-{b}", atom)))

    def checked(self, names: NodeRange, groups: bool = True) -> NodeRange:
        """Names made by a range: a node is itself; a name that is no node but a group
        stands for the group's members (``grp1-grp3``, as xCAT); with verification, a name
        that is neither is recorded and dropped. Names are matched against the nodes and
        the groups as sets, never one by one; a verified range of nodes reads no group."""
        if self.cluster is None or (not self.verify and not groups):
            return names
        if not self.verify:  # new names stay: only those that are groups are looked at
            if self._all is None and len(names) <= 500:  # a keyed read, not the groups'
                names_left = names - NodeRange(self.known(names.names))
                if not names_left:
                    return names
                found = names_left & self.group_names
            else:
                found = names & self.group_names
                if found:
                    found = found - NodeRange(self.known(found.names))
            return self._with_members(names - found, found) if found else names
        if self._all is None and len(names) <= 500:
            known = NodeRange(self.known(names.names))
        else:
            known = self.all_nodes
        missing = names - known
        if not missing:
            return names
        found = (missing & self.group_names) if groups else NodeRange()
        missing = missing - found if found else missing
        if missing:
            self.bad.extend(missing.sorted())
        return self._with_members(names & known, found)

    def _with_members(self, nodes: NodeRange, groups: NodeRange) -> NodeRange:
        for group in groups.sorted():
            nodes.update(self.cluster.group_members(group) or ())  # type: ignore[union-attr]
        return nodes

    def regex(self, pattern: str) -> NodeRange:
        try:
            compile_pattern(pattern)
        except PatternTimeout:
            raise
        except PatternError as exc:
            raise NodeRangeError(str(exc), pattern) from None
        # with the request's time budget, without holding the interpreter (patterns)
        return NodeRange(n for n in self.all_nodes.names if fullmatch(pattern, n))

    def from_file(self, path: str) -> NodeRange:
        if not self.allow_files:
            raise NodeRangeError("Noderange files (^file) are read by the command on the "
                                 "client, not by xcatd", path)
        if path in self._files:
            raise NodeRangeError(f"Noderange file {path!r} includes itself", path)
        self._files.append(path)
        try:
            out = NodeRange()
            for atom in file_lines(path):
                out.update(self.expression(atom))
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
           env: dict[str, str] | None = None, allow_files: bool = True,
           limit: int = DEFAULT_LIMIT) -> NodeRange:
    """Expand a noderange. With a cluster, names must be nodes or groups (else InvalidNodes);
    ``site.excludenodes`` is removed from the result. All-digit atoms take
    ``XCAT_NODE_PREFIX`` (default ``node``) and ``XCAT_NODE_SUFFIX`` from ``env``. Ranges,
    brackets and comma terms together may make at most ``limit`` names (TooManyNodes,
    raised before they are made)."""
    token = _budget.set(_Budget(limit))
    try:
        return _expand(noderange, cluster, verify, env, allow_files)
    finally:
        _budget.reset(token)


def _expand(noderange: str, cluster: Cluster | None, verify: bool,
            env: dict[str, str] | None, allow_files: bool) -> NodeRange:
    exp = _Expander(cluster, verify, env, allow_files)
    result = exp.expression(noderange)
    if exp.bad:
        raise InvalidNodes(exp.bad)
    if cluster is not None and verify:
        excluded = cluster.excludenodes()
        if excluded and result:
            result = result - _Expander(cluster, verify=False, env=env,
                                        allow_files=allow_files).expression(excluded)
    return result
