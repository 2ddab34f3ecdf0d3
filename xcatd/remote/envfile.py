"""xdsh -E's environment file, read by the command line with the caller's rights (kept
apart from the engine, so a command sent to xcatd does not load ssh or the database).

>>> env_file("export A=1\\nB='x y'\\n")
{'A': '1', 'B': 'x y'}
"""
from __future__ import annotations

import re


def env_file(text: str, name: str = "environment file") -> dict[str, str]:
    """xdsh -E: ``NAME=value`` lines (``export`` allowed, quotes removed, comments and blank
    lines skipped); ValueError naming the bad line."""
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"(?:export\s+)?([A-Za-z_]\w*)=(.*)", line)
        if not m:
            raise ValueError(f"{name}, line {number}: expected NAME=value: {line[:60]!r}")
        value = m.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[m.group(1)] = value
    return out
