"""Golden files: pin a generated file's whole text, compare it with a readable diff.

A test renders a file (dhcpd.conf, a zone, a kickstart, a boot script...), then calls
``check_golden(golden_path, text, replacements)``. What changes from run to run (the scratch
root, a callback token, a crypted password, an SOA serial) is first replaced by a readable
placeholder, by a short explicit list of ``(old, new)`` pairs applied in order: ``old`` is a
literal string, or a compiled ``re.Pattern`` whose ``new`` may use ``\\1``. Nothing is ever
dropped: every generated line is compared.

>>> import re
>>> normalise("root /tmp/x/root, serial 1796521467", [
...     ("/tmp/x/root", "@ROOT@"), (re.compile(r"serial \\d+"), "serial @SERIAL@")])
'root @ROOT@, serial @SERIAL@'

On a mismatch the test fails with a unified diff (golden file first, generated text second)
that names the golden file. A missing golden file fails the same way; it is only written
when asked to. After a deliberate change to the output, rewrite the golden files and review
them with ``git diff`` before committing:

    PYXCAT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/netconf/test_golden.py \\
        tests/provision/test_golden.py tests/netboot/test_golden.py

(golden files live beside their tests: tests/netconf/golden, tests/provision/golden,
tests/netboot/golden).
"""
from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

UPDATE_VAR = "PYXCAT_UPDATE_GOLDEN"
UPDATE_COMMAND = (f"{UPDATE_VAR}=1 .venv/bin/pytest tests/netconf/test_golden.py "
                  "tests/provision/test_golden.py tests/netboot/test_golden.py")

Old = str | re.Pattern[str]
Replacements = Mapping[Old, str] | Iterable[tuple[Old, str]]


def normalise(text: str, replacements: Replacements) -> str:
    """``text`` with each ``(old, new)`` applied in order (literal, or regex for a Pattern)."""
    pairs = replacements.items() if isinstance(replacements, Mapping) else replacements
    for old, new in pairs:
        if isinstance(old, re.Pattern):
            text = old.sub(new, text)
        else:
            if not old:
                raise ValueError(f"an empty string to replace by {new!r}")
            text = text.replace(old, new)
    return text


def updating() -> bool:
    return os.environ.get(UPDATE_VAR) == "1"


def check_golden(path: Path, text: str, replacements: Replacements = ()) -> None:
    """Compare normalised ``text`` with the golden file ``path``, or (re)write it when
    ``PYXCAT_UPDATE_GOLDEN=1``; fail with a unified diff that says how to update."""
    path = Path(path)
    actual = normalise(text, replacements)
    if updating():
        if not path.exists() or path.read_text() != actual:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual)
        return
    hint = (f"If the change is intended, rewrite the golden files with\n    {UPDATE_COMMAND}\n"
            "and review them with git diff.")
    if not path.exists():
        pytest.fail(f"No golden file {path}.\n{hint}", pytrace=False)
    expected = path.read_text()
    if expected == actual:
        return
    diff = "\n".join(difflib.unified_diff(
        expected.splitlines(), actual.splitlines(), fromfile=f"{path} (golden)",
        tofile="generated (normalised)", lineterm=""))
    if not diff:  # the same lines: only the final newline differs
        diff = (f"only the end differs: golden ends {expected[-20:]!r}, "
                f"generated ends {actual[-20:]!r}")
    pytest.fail(f"Generated text differs from the golden file {path}:\n{diff}\n{hint}",
                pytrace=False)
