"""``--remap old=new``: the old management node's host name, addresses and domain, rewritten
wherever they appear in a value, all rules at once (a rule's result is never remapped again).

An address matches only as a whole address (``10.0.0.1`` is not in ``10.0.0.10`` or in
``110.0.0.1``); a name matches only as a whole name or label sequence (``mna`` is in
``mna.cluster`` but not in ``mna2``), so a domain rule rewrites the fully qualified names in
it as well.

>>> r = Remap.parse(["10.0.0.1=10.9.0.1", "mna=mnb", "cluster.a=cluster.b"])
>>> r.apply("10.0.0.1,10.0.0.10 mna.cluster.a mna2 http://10.0.0.1:80/install")
'10.9.0.1,10.0.0.10 mnb.cluster.b mna2 http://10.9.0.1:80/install'
>>> Remap.parse(["10.0.0.1=mnb"])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
xcatd.transfer.remap.RemapError: --remap 10.0.0.1=mnb: an address maps to an address ...
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class RemapError(ValueError):
    """A --remap rule that cannot be applied; the message quotes it."""


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass
class Remap:
    rules: list[tuple[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, specs: Iterable[str]) -> Remap:
        rules: list[tuple[str, str]] = []
        seen: set[str] = set()
        for spec in specs:
            old, eq, new = spec.partition("=")
            old, new = old.strip(), new.strip()
            if not eq or not old or not new:
                raise RemapError(f"--remap {spec}: write old=new (a host name, address or "
                                 "domain of the exporting management node, and its "
                                 "replacement)")
            a, b = _ip(old), _ip(new)
            if (a is None) != (b is None) or (a is not None and b is not None
                                              and a.version != b.version):
                raise RemapError(f"--remap {spec}: an address maps to an address of the "
                                 "same family")
            if a is None and not (_NAME.match(old) and _NAME.match(new)):
                raise RemapError(f"--remap {spec}: not a host name or domain")
            if old == new:
                raise RemapError(f"--remap {spec}: the old and new values are the same")
            if old in seen:
                raise RemapError(f"--remap {spec}: {old} is remapped twice")
            seen.add(old)
            rules.append((old, new))
        r = cls(rules)
        r._compile()
        return r

    def _compile(self) -> None:
        parts = []
        self._new: dict[str, str] = {}
        # longer first, so a longer rule wins over one that is part of it
        for i, (old, new) in enumerate(sorted(self.rules, key=lambda r: -len(r[0]))):
            ip = _ip(old)
            if ip is not None and ip.version == 4:  # "10.0.0.1:80" and "10.0.0.1/24" match
                pat = rf"(?<![0-9.]){re.escape(old)}(?![0-9]|\.[0-9])"
            elif ip is not None:
                pat = rf"(?<![0-9A-Fa-f:]){re.escape(old)}(?![0-9A-Fa-f:])"
            else:
                pat = rf"(?<![A-Za-z0-9_-]){re.escape(old)}(?![A-Za-z0-9_-])"
            parts.append(f"(?P<r{i}>{pat})")
            self._new[f"r{i}"] = new
            self.counts.setdefault(old, 0)
        self._re = re.compile("|".join(parts)) if parts else None
        self._old = {f"r{i}": old for i, (old, _n) in
                     enumerate(sorted(self.rules, key=lambda r: -len(r[0])))}

    def __bool__(self) -> bool:
        return bool(self.rules)

    def apply(self, value: str | None) -> str | None:
        if not value or self._re is None:
            return value

        def sub(m: re.Match) -> str:
            group = m.lastgroup or ""
            self.counts[self._old[group]] += 1
            return self._new[group]

        return self._re.sub(sub, value)

    def olds(self) -> list[str]:
        return [old for old, _new in self.rules]
