"""Tables as CSV in xCAT's dialect (tabdump, dumpxCATdb, and the tables of an xcatexport
archive): a ``#col,col`` header, every value quoted, quotes doubled, empty for NULL."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from xcatd.db.database import TABLES, DBError, table_def
from xcatd.tables import SECRET_MASK, is_secret


def csv_value(value: object) -> str:
    if value is None or value == "":
        return ""
    return '"' + str(value).replace('"', '""') + '"'


def csv_header(table: str) -> str:
    return "#" + ",".join(TABLES[table].columns)


def csv_rows(table: str, rows: list[dict], show_secrets: bool) -> Iterator[str]:
    cols = TABLES[table].columns
    secret = {c for c in cols if is_secret(table, c)} if not show_secrets else set()
    if secret:
        for r in rows:
            yield ",".join(
                csv_value(SECRET_MASK if (c in secret and r.get(c) not in (None, ""))
                          else r.get(c)) for c in cols)
        return
    for r in rows:  # the common case, made cheap: thousands of rows per table
        yield ",".join(["" if v is None or v == "" else '"' + str(v).replace('"', '""') + '"'
                        for v in map(r.get, cols)])


def parse_csv(table: str, text: str) -> list[dict]:
    """Parse tabdump output back into rows; errors name the line (1-based, header included)."""
    tdef = table_def(table)
    lines = text.splitlines(keepends=True)
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines or not lines[0].startswith("#"):
        raise DBError("Data missing header line starting with #")
    header = [h.strip().strip('"') for h in lines[0][1:].strip().split(",")]
    for col in header:
        if col not in tdef.columns:
            raise DBError(f"The header line indicates that column '{col}' should exist, which "
                          f"is not defined in the schema for '{table}'")
    reader = csv.reader(io.StringIO("".join(lines[1:])), strict=True, skipinitialspace=False)
    rows = []
    auto = tdef.autoincrement
    try:
        for fields in reader:
            lineno = reader.line_num + 1
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if len(fields) > len(header):
                raise DBError(f"Too many fields on line {lineno}: {len(fields)} fields, the "
                              f"header names {len(header)}")
            row = {c: (v if v != "" else None) for c, v in zip(header, fields)}
            if auto:
                row.pop(auto, None)
            keys = [k for k in tdef.keys if k != auto]
            if keys and not row.get(keys[0]):
                raise DBError(f"Line {lineno}: key column '{keys[0]}' is empty")
            for key in keys[1:]:  # passwd key=ipmi with no username: an empty key part
                if row.get(key) is None:
                    row[key] = ""
            rows.append(row)
    except csv.Error as exc:
        raise DBError(f"CSV error on line {reader.line_num + 1}: {exc}") from None
    return rows
