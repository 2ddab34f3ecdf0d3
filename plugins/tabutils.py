"""Table commands: tabdump, tabrestore, chtab (and tabch), gettab, tabgrep, tabprune,
dumpxCATdb, restorexCATdb. Output formats and messages follow xCAT's."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from xcatd.tables import SECRET_MASK, is_secret

from xcatd.base.files import NotText, utf8, write_atomic
from xcatd.base.request import Request, Response, XcatError, not_found
from xcatd.db.database import (
    TABLES,
    DBError,
    active,
    apply_list_op,
    check_column,
    parse_where,
    split_list,
    where_clause,
)
from xcatd.db.jobs import count_finished, delete_oldest
from xcatd.db.tablecsv import csv_header, csv_rows, parse_csv
from xcatd.handler import ASSIGNMENTS, ATTRS, FLAG, NUMBER, TEXT, TEXTS, Context, command, root_only

LOG_TABLES = ("auditlog", "eventlog")
#: Our own job history: not configuration, dumped and restored only with -a.
HISTORY_TABLES = ("jobs", "jobresults")


def _keep_masked_secrets(ctx: Context, conn, table: str, rows: list[dict]) -> None:
    """A masked secret in restored data means 'keep the stored one', never '********'."""
    secret_cols = [c for c in TABLES[table].columns if is_secret(table, c)]
    if not secret_cols or not any(r.get(c) == SECRET_MASK for r in rows for c in secret_cols):
        return
    keys = TABLES[table].keys
    all_rows = ctx.db.rows(table, conn, include_disabled=True)
    stored = {tuple(r[k] for k in keys): r for r in all_rows}
    by_first: dict[str, list[dict]] = {}
    for r in all_rows:
        by_first.setdefault(r[keys[0]], []).append(r)
    for i, r in enumerate(rows):
        for c in secret_cols:
            if r.get(c) == SECRET_MASK:
                old = stored.get(tuple(r.get(k) for k in keys))
                if old is None and len(keys) > 1 and len(by_first.get(r.get(keys[0]), [])) == 1:
                    old = by_first[r[keys[0]]][0]  # e.g. passwd: username edited, same key
                if old is None or old.get(c) in (None, ""):
                    raise DBError(f"{table}.{c} of row {i + 1} is masked ({SECRET_MASK}) and "
                                  "no stored value exists to keep; give the real value")
                r[c] = old[c]


def _check_duplicate_keys(ctx: Context, conn, table: str, rows: list[dict],
                          append: bool) -> None:
    """Name the duplicated key, rather than let the database say 'constraint failed'."""
    tdef = TABLES[table]
    keys = [k for k in tdef.keys if k != tdef.autoincrement]
    if not keys:
        return
    seen: dict[tuple, int] = {}
    if append:
        for r in ctx.db.rows(table, conn, include_disabled=True):
            seen[tuple(r.get(k) for k in keys)] = 0
    for i, r in enumerate(rows, 1):
        key = tuple(r.get(k) for k in keys)
        if key in seen:
            where = f"data rows {seen[key]} and {i}" if seen[key] else \
                f"data row {i} (already in the table)"
            text = ",".join(f"{k}={v}" for k, v in zip(keys, key))
            raise DBError(f"Duplicate key {text} in {table}: {where}")
        seen[key] = i


def restore_table(ctx: Context, conn, table: str, text: str, append: bool) -> int:
    rows = parse_csv(table, text)
    _check_duplicate_keys(ctx, conn, table, rows, append)
    _keep_masked_secrets(ctx, conn, table, rows)
    ctx.db.replace_rows(conn, table, rows, append=append)
    return len(rows)


# ---- tabdump -------------------------------------------------------------------------------
@command("tabdump", args={"table": TEXT, "describe": FLAG, "where": TEXTS, "number": NUMBER,
                         "show_secrets": FLAG})
def tabdump(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    a = req.args
    table = a.get("table")
    last = a.get("number")
    where = a.get("where") or []
    if last is not None and a.get("describe"):
        raise XcatError("You  cannot use the -n and -d flag together. ")
    if last is not None and where:
        raise XcatError("You  cannot use the -n and -w flag together. ")
    if a.get("describe"):
        yield from _describe(table)
        return
    if not table:
        for name in sorted(TABLES):
            yield Response(data=name, obj={"table": name})
        return
    if table not in TABLES:
        raise not_found(f"No such table: {table}")
    if last is not None and table not in LOG_TABLES:
        raise XcatError(f"{table} table is not supported in tabdump -n. You may only use "
                        "this option on the auditlog or the eventlog.")
    if where:
        selected = [parse_where(w)[0] for w in where]
        for col in selected:
            if col not in TABLES[table].columns:
                raise XcatError(f'No column "{col}" in table "{table}"')
        ctx.check_selection([(table, col) for col in selected])
        rows = ctx.db.rows(table, where=where_clause(table, where))
    else:
        rows = ctx.db.rows(table, include_disabled=True)
    if last is not None:
        if not rows:
            yield Response(data=f"Nothing to display from {table}.")
            return
        rows = sorted(rows, key=lambda r: int(r["recid"]))[-int(last):] if int(last) > 0 else []
    yield Response(data=csv_header(table), obj={"columns": list(TABLES[table].columns)})
    show = bool(a.get("show_secrets"))
    cols = TABLES[table].columns
    for row, line in zip(rows, csv_rows(table, rows, show)):
        yield Response(data=line, obj={"row": {c: _shown(table, c, row.get(c), show)
                                                for c in cols}})


def _shown(table: str, column: str, value, show: bool):
    if value not in (None, "") and not show and is_secret(table, column):
        return SECRET_MASK
    return value


def _describe(table: str | None) -> Iterator[Response]:
    """xCAT's layout: ``name:`` and a tab or two, the text; a blank line between entries,
    sorted as text (the tables), or in schema order (a table's columns)."""
    if table:
        if table not in TABLES:
            raise not_found(f"table {table} does not exist.")
        tdef = TABLES[table]
        entries = [f"{c}:{_tabs(c)}{tdef.column_doc(c)}" for c in tdef.columns]
        docs = {c: tdef.column_doc(c) for c in tdef.columns}
    else:
        entries = sorted(f"{n}:{_tabs(n)}{TABLES[n].description}" for n in TABLES)
        docs = {n: TABLES[n].description for n in sorted(TABLES)}
    yield Response(data="\n\n".join(entries), obj={"descriptions": docs})


def _tabs(name: str) -> str:
    return "\t\t" if len(name) < 7 else "\t"


# ---- tabrestore ----------------------------------------------------------------------------
@command("tabrestore", writes=True, args={"table": TEXT, "append": FLAG})
def tabrestore(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    table = req.args.get("table") or ""
    if table not in TABLES:
        raise XcatError(f"No such table: {table}")
    with ctx.db.begin() as conn:
        restore_table(ctx, conn, table, req.stdin or "", bool(req.args.get("append")))
    return iter(())


# ---- chtab ---------------------------------------------------------------------------------
_OPS = ("=", "+=", ",=", "^=")


def _keys(args: dict) -> dict[str, str]:
    keys = args.get("keys") or {}
    if not isinstance(keys, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) for k, v in keys.items()):
        raise XcatError("keys must be an object of key column names and string values")
    return keys


def _assignments(args: dict) -> list[tuple[str, str, str, str]]:
    """[table, column, op, value] lists (the CLI parses table.column=value words, REST sends
    them as JSON)."""
    out = []
    for item in args.get("assignments") or []:
        if not (isinstance(item, list | tuple) and len(item) == 4
                and all(isinstance(x, str) for x in item) and item[2] in _OPS):
            raise XcatError("assignments must be [table, column, op, value] lists, op one of "
                            + ", ".join(_OPS))
        out.append(tuple(item))
    return out


CHTAB_ARGS = {"keys": ATTRS, "assignments": ASSIGNMENTS, "delete": FLAG, "tables": TEXTS}


@command("tabch", writes=True, args=CHTAB_ARGS)
@command("chtab", writes=True, args=CHTAB_ARGS)
def chtab(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    """chtab, and tabch (xCAT's name for the same change made through the daemon)."""
    a = req.args
    keys = _keys(a)
    if not keys:
        raise XcatError("Missing key=value argument.")
    with ctx.db.begin() as conn:
        if a.get("delete"):
            tables = a.get("tables") or []
            if not tables:
                raise XcatError("Missing table name.")
            for table in tables:
                _check_keys(table, keys)
            ctx.check_selection([(table, k) for table in tables for k in keys])
            for table in tables:
                ctx.db.delete_match(conn, table, keys)
            return iter(())
        per_table: dict[str, dict[str, tuple[str, str]]] = {}
        for table, col, op, value in _assignments(a):
            _check_keys(table, keys)
            if col not in TABLES[table].columns:
                raise XcatError(f"{table}.{col} not a valid table.column description")
            per_table.setdefault(table, {})[col] = (op, value)
        if not per_table:
            raise XcatError("Missing table.column=value argument.")
        ctx.check_selection([(table, k) for table in per_table for k in keys])
        for table, cols in per_table.items():
            _chtab_one(ctx, conn, table, keys, cols)
    return iter(())


def _check_keys(table: str, keys: dict[str, str]) -> None:
    """The table exists and has every key column, in xCAT's words."""
    if table not in TABLES:
        raise not_found(f"Table {table} does not exist.")
    for k in keys:
        if k not in TABLES[table].columns:
            raise XcatError(f'No column "{k}" in table "{table}"')


def _chtab_one(ctx: Context, conn, table: str, keys: dict[str, str],
               cols: dict[str, tuple[str, str]]) -> None:
    rows = ctx.db.match(table, keys, conn, include_disabled=True)
    if not rows:
        values = dict(keys)
        for col, (op, value) in cols.items():
            if op == "^=":
                continue  # nothing to remove from a row that does not exist
            values[col] = value if value != "" else None
        keycols = [k for k in TABLES[table].keys if k != TABLES[table].autoincrement]
        missing = [k for k in keycols if not values.get(k)]
        if missing and len(missing) == len(keycols):
            raise XcatError(f"Cannot add a row to {table}: give its key "
                            f"({', '.join(missing)}=...).")
        for k in missing:  # passwd key=ipmi without a username: an empty one, as xCAT
            values[k] = ""
        ctx.db.insert_row(conn, table, values)
        return
    for row in rows:
        values = {}
        for col, (op, value) in cols.items():
            if op == "+=":
                current = split_list(row.get(col))
                values[col] = ",".join(current + [v for v in split_list(value)
                                                  if v not in current])
            elif op in (",=", "^="):
                values[col] = apply_list_op(row.get(col), op, value)
            else:
                values[col] = value if value != "" else None
        ctx.db.update_match(conn, table, {k: row[k] for k in TABLES[table].keys
                                          if row.get(k) is not None}, values)


# ---- gettab --------------------------------------------------------------------------------
@command("gettab", args={"keys": ATTRS, "columns": TEXTS, "with_fieldname": FLAG,
                        "show_secrets": FLAG})
def gettab(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    a = req.args
    keys = _keys(a)
    targets = a.get("columns") or []
    if not keys or not targets:
        raise XcatError("Usage: gettab [-H|--with-fieldname] key=value,...  table.attribute ...")
    labelled = bool(a.get("with_fieldname")) or len(targets) > 1
    for target in targets:
        table, dot, col = target.partition(".")
        if not dot or table not in TABLES:
            raise XcatError(f"{target} is not a valid table.column")
        check_column(table, col)
        for k in keys:
            if k not in TABLES[table].columns:
                raise XcatError(f"Unknown key {k} to {table}")
        ctx.check_selection([(table, k) for k in keys])
        rows = ctx.db.match(table, keys)
        for r in rows:
            value = r.get(col) or ""
            if value and is_secret(table, col) and not a.get("show_secrets"):
                value = SECRET_MASK
            yield Response(data=f"{target}: {value}" if labelled else value,
                           obj={target: value})


# ---- tabgrep -------------------------------------------------------------------------------
@command("tabgrep", args={"node": TEXT})
def tabgrep(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    node = req.args.get("node")
    if not node:
        raise XcatError("Usage: tabgrep nodename")
    with ctx.db.connect() as conn:
        for name, tdef in sorted(TABLES.items()):
            # (job history is not configuration)
            if "node" in tdef.columns and name != "jobresults" and \
                    ctx.db.has_value(conn, name, "node", node):
                yield Response(data=name)


# ---- tabprune ------------------------------------------------------------------------------
PRUNE_FLAGS = {"all": "a", "number": "n", "recid": "i", "percent": "p", "days": "d"}


@command("tabprune", writes=True,
         args={"table": TEXT, "verbose": FLAG, "all": FLAG, "number": NUMBER, "recid": NUMBER,
               "percent": NUMBER, "days": NUMBER, "save": FLAG})
def tabprune(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    """Remove records by one criterion. -V prints them (and nothing else, so the output is a
    CSV file); ``save`` sends them too, marked as rows, for the command's -f file."""
    a = req.args
    table = (a.get("table") or "").strip()
    if not table:
        raise XcatError("Table name required.")
    chosen = [o for o in PRUNE_FLAGS if a.get(o) is not None and a.get(o) is not False]
    if table == "jobresults":
        raise XcatError("jobresults rows go with the jobs they belong to: prune the jobs "
                        "table instead (tabprune jobs -n, -p, -d or -a).")
    pruned_by_age = table in LOG_TABLES or table == "jobs"
    if not pruned_by_age:  # only -a, which xCAT takes on any table
        if "all" not in chosen:
            raise XcatError(f"Table {table} not supported, see tabprune -h for supported "
                            "tables.")
        if table not in TABLES:
            raise not_found(f"Table {table} does not exist.")
        if "days" in chosen:
            raise XcatError(f"Table {table} not supported for the -d option.")
    if not chosen:
        raise XcatError("One option -p or -i or -n or -a or -d must be supplied.")
    if len(chosen) > 1:
        raise XcatError("Only one option -p or -i or -n or -a maybe used at a time.")
    opt = chosen[0]
    if opt != "all" and (a[opt] < 0 or (opt == "percent" and a[opt] > 100)):
        raise XcatError("-p takes a percentage between 0 and 100." if opt == "percent" else
                        f"-{PRUNE_FLAGS[opt]} takes a number of 0 or more, not {a[opt]}.")
    if table == "jobs":
        deleted = _prune_jobs(ctx, opt, a)
    elif table in LOG_TABLES:
        deleted = _prune_log(ctx, table, opt, a)
    else:  # -a, which xCAT takes on any table
        with ctx.db.begin() as conn:
            deleted = ctx.db.rows(table, conn, include_disabled=True)
            ctx.db.replace_rows(conn, table, [])
    verbose, save = bool(a.get("verbose")), bool(a.get("save"))
    if deleted is None:  # -n or -p of a table with nothing in it
        yield Response(data=f"Nothing to prune from {table}.")
    if verbose or save:
        if deleted is not None or save:
            yield Response(data=csv_header(table), obj={"columns": list(TABLES[table].columns)})
        cols = TABLES[table].columns
        for row, line in zip(deleted or [], csv_rows(table, deleted or [], False)):
            yield Response(data=line, obj={"row": {c: _shown(table, c, row.get(c), False)
                                                    for c in cols}})
    if not verbose:
        yield Response(data=f"tabprune of {table} complete.")


def _prune_log(ctx: Context, table: str, opt: str, a: dict) -> list[dict] | None:
    """The removed auditlog/eventlog records; None when -n or -p found the table empty."""
    if opt == "all":
        criterion: dict = {"everything": True}
    elif opt == "days":
        criterion = {"older_than": _days_ago(a["days"])}
    elif opt == "percent":
        criterion = {"percent": float(a["percent"])}
    else:
        criterion = {"oldest" if opt == "number" else "below_recid": int(a[opt])}
    with ctx.db.begin() as conn:
        deleted = ctx.db.prune_log(conn, table, **criterion)
    if deleted is None and opt not in ("number", "percent"):
        return []
    return deleted


def _days_ago(days: float) -> str:
    """The local time ``days`` ago, as the log tables write it (no earlier than year 1)."""
    then = max(time.time() - min(days, 10**6) * 86400, -62_000_000_000)
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(then))
    except (OverflowError, OSError, ValueError):
        return "0001-01-01 00:00:00"


def _prune_jobs(ctx: Context, opt: str, a: dict) -> list[dict] | None:
    """tabprune jobs: finished jobs (never queued or running ones), oldest first (by when
    they ended), each with its results (jobresults), a bounded transaction at a time."""
    if opt == "recid":
        raise XcatError("-i removes records below a recid, and jobs have none (job ids are "
                        "random): use -n, -p, -d or -a.")
    before = None
    if opt == "days":
        before = _days_ago(a["days"])
    total, older = count_finished(ctx.db, before)
    if not total:
        return None if opt in ("number", "percent") else []
    count = {"all": total, "number": int(a.get("number") or 0), "days": older,
             "percent": int(total * float(a.get("percent") or 0) / 100)}[opt]
    _, deleted = delete_oldest(ctx.db, count, rows=bool(a.get("verbose") or a.get("save")))
    return deleted


# ---- dumpxCATdb / restorexCATdb ------------------------------------------------------------
def _skipped(ctx: Context, include_logs: bool, skiptables: str | None = None) -> set[str]:
    """Tables to leave out: site.skiptables (or the command's XCAT_SKIPTABLES), and the logs
    and job history unless -a."""
    skip = set(split_list(ctx.site.get("skiptables") if skiptables is None else skiptables))
    if not include_logs:
        skip.update(LOG_TABLES + HISTORY_TABLES)
    return skip


@command("dumpxCATdb", args={"path": TEXT, "all": FLAG, "verbose": FLAG, "skiptables": TEXT})
def dumpxcatdb(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    root_only(req, "dumpxCATdb")
    if not req.args.get("path"):
        raise XcatError(" Requires -p with path to directory to hold db files.")
    path = _full_path(req.args["path"])
    if path.exists() and not path.is_dir():
        raise XcatError(f" Input path is not a directory: {path}")
    skip = _skipped(ctx, bool(req.args.get("all")), req.args.get("skiptables"))
    verbose = req.args.get("verbose")
    if not path.exists():
        try:  # only root reads a dump: it holds every password
            path.mkdir(mode=0o700, parents=True)
        except OSError as exc:
            raise XcatError(f"Error creating {path}: {exc.strerror}") from None
        yield Response(data=f" Creating {path} for database dump")
    with ctx.db.connect() as conn:  # one snapshot for every table
        for table in sorted(TABLES):
            if table in skip:
                if verbose:
                    yield Response(data=f"Skipping {table}")
                continue
            rows = ctx.db.rows(table, conn, include_disabled=True)
            text = "\n".join([csv_header(table), *csv_rows(table, rows, True)]) + "\n"
            _write_private(path / f"{table}.csv", text)
            if verbose:
                yield Response(data=f"Dumping {table}")
    yield Response(data="Backup Complete.")


def _full_path(text: str) -> Path:
    """A request's path (the command line sends it made absolute: xcatd does not share the
    caller's working directory, so a relative one would land in the daemon's)."""
    path = Path(text)
    if not path.is_absolute():
        raise XcatError(f" {text}: give a full path (the daemon does not share your working "
                        "directory)")
    return path


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (dumps hold secrets), atomically."""
    write_atomic(path, text, mode=0o600)


@command("restorexCATdb", writes=True, args={"path": TEXT, "all": FLAG, "verbose": FLAG})
def restorexcatdb(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    root_only(req, "restorexCATdb")
    if not req.args.get("path"):
        raise XcatError(" -p with path to database files is required")
    path = _full_path(req.args["path"])
    if not path.is_dir():
        raise XcatError(f" Input path must exist: {path}")
    skip = _skipped(ctx, bool(req.args.get("all")))
    files = sorted(path.glob("*.csv"))
    if not files:
        raise XcatError(f"No table files (*.csv) in {path}")
    messages = []
    verbose = req.args.get("verbose")
    with ctx.db.begin() as conn:  # all tables or none
        for f in files:
            table = f.name.split(".", 1)[0]
            if table not in TABLES:
                raise XcatError(f"{f.name}: no table named {table}")
            if table in skip:
                if verbose:
                    messages.append(f"Skipping {table}")
                continue
            try:
                restore_table(ctx, conn, table, utf8(f.read_bytes(), f.name), False)
            except (DBError, NotText) as exc:
                raise XcatError(f"{f.name}: {exc}; nothing was restored") from None
            if verbose:
                messages.append(f"Restoring {table}.")
    for m in messages:
        yield Response(data=m)
    yield Response(data="Restore of Database Complete.")


def active_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if active(r)]
