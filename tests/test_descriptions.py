"""``tabdump -d`` has something to say for every table and column, and says it about columns
that exist."""
from __future__ import annotations

import re

import pytest
from xcatd.tables import TABLES
from xcatd.tables.descriptions import COLUMN_DOCS, TABLE_DOCS

#: ``table.column`` in a description (site.<key> names a site setting, not a column)
_REF = re.compile(r"(?<![\w.])([a-z_]+)\.([a-z_]+)\b")


def _all_texts() -> list[tuple[str, str]]:
    """(where, text) of every description, shared ones included."""
    out = [(f"table {t}", d) for t, d in TABLE_DOCS.items()]
    out += [(f"{t}.{c}", d) for t, cols in COLUMN_DOCS.items() for c, d in cols.items()]
    return out


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_table_has_a_description(table):
    assert TABLES[table].description.strip(), f"table {table} has no description"


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_column_has_a_description(table):
    tdef = TABLES[table]
    missing = [c for c in tdef.columns if not tdef.column_doc(c).strip()]
    assert not missing, f"{table}: no description for {', '.join(missing)}"


def test_no_description_for_a_table_that_does_not_exist():
    assert set(TABLE_DOCS) <= set(TABLES)
    assert set(COLUMN_DOCS) - {"*"} <= set(TABLES)


def test_no_description_for_a_column_that_does_not_exist():
    stale = [f"{t}.{c}" for t, cols in COLUMN_DOCS.items() if t != "*"
             for c in cols if t in TABLES and c not in TABLES[t].columns]
    assert not stale, f"descriptions of columns that do not exist: {stale}"


def test_shared_descriptions_name_columns_some_table_has():
    every = {c for t in TABLES.values() for c in t.columns}
    assert set(COLUMN_DOCS["*"]) <= every


def test_descriptions_name_only_existing_table_columns():
    """A ``table.column`` written in any description is a real column of that table."""
    bad = [f"{where}: {t}.{c}" for where, text in _all_texts()
           for t, c in _REF.findall(text)
           if t in TABLES and t != "site" and c not in TABLES[t].columns]
    assert not bad, f"descriptions name columns that do not exist: {bad}"


def test_reference_check_catches_a_wrong_column():
    """The pattern the test above relies on finds table.column words in running text."""
    assert _REF.findall("falls back to noderes.xcatmaster, then hosts.ipaddr.") == [
        ("noderes", "xcatmaster"), ("hosts", "ipaddr")]
    assert _REF.findall("a $noderes.nfsserver value (see site.master)") == [
        ("noderes", "nfsserver"), ("site", "master")]


def test_descriptions_are_one_line():
    """tabdump -d separates entries by blank lines and prints each on one line."""
    multi = [where for where, text in _all_texts() if "\n" in text or text != text.strip()]
    assert not multi, f"descriptions with line breaks or edge blanks: {multi}"


def test_column_without_own_entry_takes_the_shared_one():
    assert "node" not in COLUMN_DOCS["hosts"]
    assert TABLES["hosts"].column_doc("node") == COLUMN_DOCS["*"]["node"]
    assert TABLES["nodelist"].column_doc("node") == COLUMN_DOCS["nodelist"]["node"]
