"""The table database: SQLAlchemy Core over SQLite (WAL) or PostgreSQL, with xCAT's semantics.

Reads ignore disabled rows. Node attributes resolve like xCAT: the node's own row wins, then
the first group in ``nodelist.groups`` order that has a value; regex values are computed for
the node at read time. Resolving any attributes for N nodes costs one query per table.
Secret columns are sealed on the way in and opened on the way out (xcatd.db.sealed) when the
root has a master key; selections on them are made in Python, on the clear values.
"""
from __future__ import annotations

import os
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from xcatd.base.paths import Paths
from xcatd.base.patterns import PatternError, compile_pattern, search
from xcatd.base.regexval import RegexValueError, compute, is_regex_value
from xcatd.base.request import ErrorKind
from xcatd.base.site import SiteValues
from xcatd.db.errors import DBError  # (callers import it from here)
from xcatd.db.sealed import PREFIX, SECRETS, Sealer, is_sealed, key_path, load_master_key
from xcatd.tables import TABLES, TableDef

#: Above this many keys a read fetches the whole table and filters in Python: one query,
#: and no limit on bound parameters.
BULK_THRESHOLD = 500

DISABLED = ("1", "yes")

_metadata = sa.MetaData()


def _build_table(tdef: TableDef) -> sa.Table:
    cols = []
    auto = tdef.autoincrement
    for name in tdef.columns:
        if name == auto:
            cols.append(sa.Column(name, sa.Integer, primary_key=True, autoincrement=True))
        elif tdef.types.get(name, "").startswith("INTEGER"):
            cols.append(sa.Column(name, sa.Integer, primary_key=name in tdef.keys,
                                  autoincrement=False, nullable=name not in tdef.keys))
        else:
            typ = sa.Text()
            cols.append(sa.Column(name, typ, primary_key=name in tdef.keys,
                                  nullable=name not in tdef.keys))
    extra = [sa.Index(f"ix_{tdef.name}_{c}", c) for c in INDEXED.get(tdef.name, ())]
    return sa.Table(tdef.name, _metadata, *cols, *extra)


#: Non-key columns that requests look rows up by
INDEXED = {"nodeevents": ("node",)}


SA_TABLES: dict[str, sa.Table] = {name: _build_table(t) for name, t in TABLES.items()}


@dataclass(frozen=True)
class Selection:
    """A selection part SQL, part Python: the checks of secret columns run on the opened
    values, since the database holds them sealed (where_clause, match)."""
    sql: sa.ColumnElement | None
    checks: tuple[Callable[[Mapping[str, Any]], bool], ...]


def table_def(name: str) -> TableDef:
    try:
        return TABLES[name]
    except KeyError:
        raise DBError(f"{name} table not found.", ErrorKind.NOT_FOUND) from None


def check_column(table: str, column: str) -> None:
    if column not in table_def(table).columns:
        raise DBError(f"{column} is not a valid column of table {table}.")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA case_sensitive_like=ON")  # LIKE as PostgreSQL does it
    cur.close()


def active(row: Mapping[str, Any]) -> bool:
    return (row.get("disable") or "").lower() not in DISABLED


class Database:
    """One database, shared by every request in a process (connection pool inside)."""

    _cache: dict[str, Database] = {}
    _lock = threading.Lock()

    def __init__(self, url: str, sealer: Sealer | None = None) -> None:
        self.url = url
        self._ready = False
        #: seals and opens secret columns; without a master key values are written clear
        self.sealer = sealer or Sealer(None)
        # statement parameters carry passwords: never in an exception's text or a log
        kwargs: dict[str, Any] = {"hide_parameters": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=8, max_overflow=16, pool_pre_ping=True)
        if url.startswith("postgresql"):  # a lost server is an error in seconds, not a hang
            kwargs["connect_args"] = {"connect_timeout": 10, "keepalives": 1,
                                      "keepalives_idle": 10, "keepalives_interval": 5,
                                      "keepalives_count": 3}
        self.engine: Engine = sa.create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)

    @classmethod
    def open(cls, paths: Paths | None = None) -> Database:
        url = (paths or Paths()).db_url()
        with cls._lock:
            db = cls._cache.get(url)
            if db is None:
                db = cls._cache[url] = cls(url)
            if not db.sealer.has_key:  # (also a database opened before xcatconfig made it)
                keyfile = key_path(paths or Paths())
                if keyfile.exists():
                    db.sealer = Sealer(load_master_key(keyfile), keyfile)
                elif db.sealer.keyfile != str(keyfile):  # named in errors
                    db.sealer = Sealer(None, keyfile)
            return db

    def check_ready(self) -> None:
        """Fail clearly on a root that xcatconfig has not initialised."""
        if self._ready:
            return
        if self.engine.url.get_backend_name() == "sqlite":
            path = self.engine.url.database
            if path and path != ":memory:" and not os.path.exists(path):
                raise DBError(f"No xCAT database at {path}: run xcatconfig first "
                              "(is XCATROOT right?)")
        have = set(sa.inspect(self.engine).get_table_names())
        if "site" not in have:
            raise DBError("The xCAT database has no tables: run xcatconfig first")
        new = [t for name, t in SA_TABLES.items() if name not in have]
        if new:  # the schema grows by whole tables: make those added since this database
            with suppress(sa.exc.DBAPIError):  # (another process may be first)
                _metadata.create_all(self.engine, tables=new)
        self._add_columns(have)
        self._ready = True

    def _add_columns(self, have: set[str]) -> None:
        """Columns added to existing tables since this database was made (nullable text or
        integer, so ALTER TABLE ADD COLUMN is all it takes on SQLite and PostgreSQL)."""
        existing: dict[str, set[str]] = {}
        if self.engine.url.get_backend_name() == "sqlite":  # one query, not one per table
            with self.engine.connect() as conn:
                for table, col in conn.execute(sa.text(
                        "SELECT m.name, p.name FROM sqlite_master m "
                        "JOIN pragma_table_info(m.name) p WHERE m.type = 'table'")):
                    existing.setdefault(table, set()).add(col)
        else:
            multi = sa.inspect(self.engine).get_multi_columns(
                filter_names=sorted(have & set(SA_TABLES)))
            existing = {name: {c["name"] for c in cols} for (_s, name), cols in multi.items()}
        for name, present in existing.items():
            if name not in SA_TABLES:
                continue
            for col in SA_TABLES[name].columns:
                if col.name in present:
                    continue
                typ = col.type.compile(dialect=self.engine.dialect)
                with suppress(sa.exc.DBAPIError), self.engine.begin() as conn:  # a racer won
                    conn.execute(sa.text(f'ALTER TABLE "{name}" ADD COLUMN "{col.name}" {typ}'))

    def create_all(self) -> None:
        _metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()
        with self._lock:
            self._cache.pop(self.url, None)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction: everything inside commits together or not at all."""
        with self.engine.begin() as conn:
            yield conn

    def lock_rows(self, conn: Connection, table: str, keys: Iterable[str]) -> None:
        """Hold the rows of ``keys`` in ``table`` (its first key column) until ``conn``'s
        transaction ends, against another transaction changing them meanwhile (SELECT ...
        FOR UPDATE on PostgreSQL; an SQLite write transaction holds the whole file)."""
        keys = sorted(set(keys))
        if not keys or self.engine.url.get_backend_name() == "sqlite":
            return
        t = SA_TABLES[table]
        kc = t.c[TABLES[table].keys[0]]
        conn.execute(sa.select(kc).where(kc.in_(keys)).order_by(kc).with_for_update())

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """One read transaction: every read inside sees the same state of every table
        (REPEATABLE READ on PostgreSQL; an SQLite read transaction is one already)."""
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def has_audit_comment(self, prefix: str, conn: Connection | None = None) -> bool:
        """Whether an auditlog row's comments start with ``prefix`` (a tool's own mark)."""
        t = SA_TABLES["auditlog"]
        return bool(self.rows("auditlog", conn, where=t.c.comments.like(
            prefix.replace("%", r"\%").replace("_", r"\_") + "%", escape="\\"),
            include_disabled=True))

    # ---- plain table reads ---------------------------------------------------------------
    def rows(self, table: str, conn: Connection | None = None, *,
             where: sa.ColumnElement | Selection | None = None, include_disabled: bool = False,
             keys: Iterable[str] | None = None, keycol: str | None = None) -> list[dict]:
        """Rows of a table as dicts, optionally only those whose ``keycol`` is in ``keys``."""
        t = SA_TABLES[table_def(table).name]
        checks: tuple = ()
        if isinstance(where, Selection):
            where, checks = where.sql, where.checks
        wanted: set[str] | None = None
        params: dict[str, Any] | None = None
        if keys is not None:
            wanted = set(keys)
            if not wanted:
                return []
            kc = keycol or TABLES[table].keys[0]
            if len(wanted) <= BULK_THRESHOLD and where is None:
                # built once: the hot path of every request
                stmt = _select_in(table, kc, len(wanted) == 1)
                params = {"keys": sorted(wanted) if len(wanted) > 1 else next(iter(wanted))}
                wanted = None  # the database filtered already
            else:
                stmt = sa.select(t)
        else:
            stmt = sa.select(t)
        if where is not None:
            stmt = stmt.where(where)
            if wanted is not None and len(wanted) <= BULK_THRESHOLD:
                stmt = stmt.where(t.c[keycol or TABLES[table].keys[0]].in_(sorted(wanted)))
                wanted = None
        out = self._fetch(stmt, conn, params)
        if wanted is not None:
            kc = keycol or TABLES[table].keys[0]
            out = [r for r in out if r[kc] in wanted]
        if not include_disabled:
            out = [r for r in out if active(r)]
        secret = SECRETS.get(table)
        if secret:
            self._unseal_rows(table, secret, out)
            if checks:
                out = [r for r in out if all(check(r) for check in checks)]
        return out

    def lendable_secrets(self, names: Iterable[str], passwd_keys: Iterable[str] = (),
                         conn: Connection | None = None) -> dict[str, str]:
        """{sealed value: clear value} of the secrets in the node-keyed secret tables' rows
        of the nodes or groups ``names`` (ipmi.password, ...), and of the passwd rows whose
        key is one of ``passwd_keys``: what a service node is lent for one relayed request
        (Sealer.lend), and no more."""
        names, keys = sorted(set(names)), sorted(set(passwd_keys))
        out: dict[str, str] = {}
        for table, cols in SECRETS.items():
            t = SA_TABLES[table]
            key = TABLES[table].keys[0]
            if key == "node" and names:
                stmt = sa.select(*(t.c[c] for c in cols)).where(t.c.node.in_(names))
            elif table == "passwd" and keys:
                stmt = sa.select(*(t.c[c] for c in cols)).where(t.c.key.in_(keys))
            else:
                continue
            for row in self._fetch(stmt, conn):
                for c in cols:
                    value = row.get(c)
                    if value and is_sealed(value) and value not in out:
                        out[value] = self.sealer.unseal(table, c, value)
        return out

    def _unseal_rows(self, table: str, secret: tuple[str, ...], rows: list[dict]) -> None:
        unseal = self.sealer.unseal
        keys = TABLES[table].keys
        for r in rows:
            for c in secret:
                value = r.get(c)
                if value and is_sealed(value):
                    r[c] = unseal(table, c, value, row=",".join(str(r.get(k)) for k in keys))

    def _sealed(self, table: str, values: Mapping[str, Any]) -> Mapping[str, Any]:
        """``values`` with those of secret columns sealed (the same mapping when there is
        nothing to seal)."""
        secret = SECRETS.get(table)
        if not secret or not self.sealer.has_key or not any(c in values for c in secret):
            return values
        seal = self.sealer.seal
        return {c: seal(table, c, v) if c in secret else v for c, v in values.items()}

    def _fetch(self, stmt: sa.Select, conn: Connection | None,
               params: dict[str, Any] | None = None) -> list[dict]:
        if conn is None:
            with self.engine.connect() as c:
                return self._fetch(stmt, c, params)
        result = conn.execute(stmt, params) if params else conn.execute(stmt)
        keys = list(result.keys())
        return [dict(zip(keys, row)) for row in result.fetchall()]

    def site(self, conn: Connection | None = None) -> SiteValues:
        """The site table, typed (xcatd.base.site); read it through TableCache where it is
        read often."""
        return SiteValues({r["key"]: r["value"] for r in self.rows("site", conn)})

    # ---- writes --------------------------------------------------------------------------
    def set_rows(self, conn: Connection, table: str, updates: Mapping[tuple, Mapping[str, Any]],
                 keycols: tuple[str, ...] | None = None) -> None:
        """Insert or update many rows at once; ``updates`` maps key tuples to column values.

        A value of None clears the column. Existing rows are found with one query.
        """
        tdef = table_def(table)
        t = SA_TABLES[table]
        keycols = keycols or tdef.keys
        for col in {c for values in updates.values() for c in values}:
            check_column(table, col)
        if table in SECRETS:
            updates = {key: self._sealed(table, values) for key, values in updates.items()}
        existing = self._existing_keys(conn, table, keycols, updates.keys())
        inserts, changes = [], defaultdict(list)
        for key, values in updates.items():
            if key in existing:
                if values:
                    changes[tuple(sorted(values))].append((key, values))
            else:
                row = dict(zip(keycols, key))
                row.update(values)
                inserts.append(row)
        if inserts:
            columns = sorted({c for r in inserts for c in r})
            conn.execute(t.insert(), [{c: r.get(c) for c in columns} for r in inserts])
        for cols, items in changes.items():
            stmt = t.update().where(*[t.c[k] == sa.bindparam(f"k_{k}") for k in keycols]).values(
                {c: sa.bindparam(f"v_{c}") for c in cols})
            conn.execute(stmt, [
                {**{f"k_{k}": v for k, v in zip(keycols, key)},
                 **{f"v_{c}": values[c] for c in cols}} for key, values in items])

    def _existing_keys(self, conn: Connection, table: str, keycols: tuple[str, ...],
                       keys: Iterable[tuple]) -> set[tuple]:
        t = SA_TABLES[table]
        keys = list(keys)
        stmt = sa.select(*[t.c[k] for k in keycols])
        if len(keycols) == 1 and len(keys) <= BULK_THRESHOLD:
            stmt = stmt.where(t.c[keycols[0]].in_([k[0] for k in keys]))
        return {tuple(r) for r in conn.execute(stmt)}

    def delete_rows(self, conn: Connection, table: str, column: str,
                    values: Iterable[str]) -> int:
        t = SA_TABLES[table_def(table).name]
        check_column(table, column)
        values = list(values)
        count = 0
        for i in range(0, len(values), BULK_THRESHOLD):
            res = conn.execute(t.delete().where(t.c[column].in_(values[i:i + BULK_THRESHOLD])))
            count += res.rowcount or 0
        return count

    # ---- rows selected by column values (chtab, gettab, tabgrep) ------------------------
    def _equals(self, table: str, equals: Mapping[str, str]) -> list[sa.ColumnElement]:
        t = SA_TABLES[table_def(table).name]
        for col in equals:
            check_column(table, col)
        return [t.c[c] == v for c, v in equals.items()]

    def _selection(self, table: str, equals: Mapping[str, str]) -> Selection | None:
        """The selection for ``equals`` when it names a secret column (compared in Python,
        on the clear values), else None (all of it is SQL)."""
        secret = SECRETS.get(table, ())
        if not any(c in secret for c in equals):
            return None
        sql = self._equals(table, {c: v for c, v in equals.items() if c not in secret})
        checks = tuple(_check(c, "==", v) for c, v in equals.items() if c in secret)
        return Selection(sa.and_(*sql) if sql else None, checks)

    def _key_clause(self, table: str, row: Mapping[str, Any]) -> list[sa.ColumnElement]:
        t = SA_TABLES[table]
        return [t.c[k] == row[k] for k in TABLES[table].keys]

    def match(self, table: str, equals: Mapping[str, str], conn: Connection | None = None, *,
              include_disabled: bool = False) -> list[dict]:
        """Rows whose columns equal the given values (bound parameters)."""
        where = self._selection(table, equals) or sa.and_(*self._equals(table, equals))
        return self.rows(table, conn, where=where, include_disabled=include_disabled)

    def update_match(self, conn: Connection, table: str, equals: Mapping[str, str],
                     values: Mapping[str, Any]) -> int:
        for col in values:
            check_column(table, col)
        t = SA_TABLES[table]
        values = dict(self._sealed(table, values))
        selection = self._selection(table, equals)
        if selection is None:
            res = conn.execute(t.update().where(*self._equals(table, equals)).values(values))
            return res.rowcount or 0
        count = 0
        for row in self.rows(table, conn, where=selection, include_disabled=True):
            count += conn.execute(t.update().where(*self._key_clause(table, row))
                                  .values(values)).rowcount or 0
        return count

    def delete_match(self, conn: Connection, table: str, equals: Mapping[str, str]) -> int:
        t = SA_TABLES[table_def(table).name]
        selection = self._selection(table, equals)
        if selection is None:
            return conn.execute(t.delete().where(*self._equals(table, equals))).rowcount or 0
        count = 0
        for row in self.rows(table, conn, where=selection, include_disabled=True):
            count += conn.execute(t.delete().where(*self._key_clause(table, row))
                                  ).rowcount or 0
        return count

    def has_value(self, conn: Connection, table: str, column: str, value: str) -> bool:
        check_column(table, column)
        t = SA_TABLES[table]
        if column in SECRETS.get(table, ()):
            return bool(self.match(table, {column: value}, conn, include_disabled=True))
        return conn.execute(sa.select(t.c[column]).where(t.c[column] == value).limit(1)
                            ).first() is not None

    def replace_rows(self, conn: Connection, table: str, rows: list[dict], *,
                     append: bool = False) -> None:
        """Every row of a table replaced (or, with append, added), in the caller's
        transaction; a duplicate key raises DBError."""
        t = SA_TABLES[table_def(table).name]
        if not append:
            conn.execute(t.delete())
        if rows:
            cols = sorted({c for r in rows for c in r})
            for col in cols:
                check_column(table, col)
            if table in SECRETS:
                rows = [self._sealed(table, r) for r in rows]
            try:
                conn.execute(t.insert(), [{c: r.get(c) for c in cols} for r in rows])
            except sa.exc.IntegrityError as exc:
                raise DBError(f"Cannot restore {table}: duplicate or missing key "
                              f"({str(exc.orig).splitlines()[0]})") from None

    # ---- log tables (auditlog, eventlog) -------------------------------------------------
    def prune_log(self, conn: Connection, table: str, *, everything: bool = False,
                  oldest: int | None = None, percent: float | None = None,
                  below_recid: int | None = None, older_than: str | None = None
                  ) -> list[dict] | None:
        """Delete log records by one criterion; returns them, or None if the table is empty.

        ``oldest``/``percent`` count records (recid gaps do not matter), ``older_than`` is a
        timestamp compared with the table's time column."""
        t = SA_TABLES[table]
        total = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0
        if not total:
            return None
        if percent is not None:
            oldest = int(total * percent / 100)
        if oldest is not None:
            first = sa.select(t.c.recid).order_by(t.c.recid).limit(oldest).scalar_subquery()
            cond = t.c.recid.in_(first) if oldest > 0 else sa.false()
        elif below_recid is not None:
            cond = t.c.recid < below_recid
        elif older_than is not None:
            cond = (t.c.audittime if table == "auditlog" else t.c.eventtime) < older_than
        elif everything:
            cond = sa.true()
        else:
            raise ValueError("prune_log needs a criterion")
        deleted = [dict(r) for r in
                   conn.execute(sa.select(t).where(cond).order_by(t.c.recid)).mappings()]
        conn.execute(t.delete().where(cond))
        return deleted

    def insert_row(self, conn: Connection, table: str, values: Mapping[str, Any]) -> None:
        for col in values:
            check_column(table, col)
        conn.execute(SA_TABLES[table].insert().values(**self._sealed(table, values)))

    # ---- node attributes -----------------------------------------------------------------
    def node_groups(self, nodes: Iterable[str] | None = None,
                    conn: Connection | None = None) -> dict[str, list[str]]:
        """Each node's groups in inheritance order (nodelist.groups)."""
        rows = self.rows("nodelist", conn, keys=nodes)
        return {r["node"]: split_list(r["groups"]) for r in rows}

    def resolve(self, nodes: Iterable[str], wanted: Mapping[str, Iterable[str]], *,
                conn: Connection | None = None, blame: bool = False,
                groups: Mapping[str, list[str]] | None = None,
                computed: bool = True) -> dict[str, dict[tuple[str, str], str]]:
        """Resolve ``table.column`` values for nodes with group inheritance and regex values.

        Returns {node: {(table, column): value}} with only the non-empty values. With
        ``blame`` the value is a (value, source) pair, source being the node or the group.
        One query for nodelist plus one per table, whatever the number of nodes.
        """
        nodes = list(nodes)
        if conn is None:
            with self.engine.connect() as c:
                return self.resolve(nodes, wanted, conn=c, blame=blame, groups=groups,
                                    computed=computed)
        if groups is None:
            groups = self.node_groups(nodes, conn)
        allgroups = {g for n in nodes for g in groups.get(n, ())}
        result: dict[str, dict[tuple[str, str], Any]] = {n: {} for n in nodes}
        for table, cols in wanted.items():
            cols = list(dict.fromkeys(cols))
            for col in cols:
                check_column(table, col)
            inherit = table != "nodelist"
            rows = self._value_rows(conn, table, cols, set(nodes) | allgroups if inherit
                                    else set(nodes), blame)
            if not rows:
                continue
            chains: dict[tuple[str, ...], dict] = {}  # inherited values per group list
            empty: dict = {}
            for node in nodes:
                merged = rows.get(node, empty)
                if inherit:
                    chain = tuple(groups.get(node, ()))
                    base = chains.get(chain)
                    if base is None:
                        base = {}
                        for g in reversed(chain):  # the first group wins
                            base.update(rows.get(g, empty))
                        chains[chain] = base
                    if base:
                        merged = {**base, **merged} if merged else base
                if merged:
                    self._store(result[node], node, merged, blame, computed)
        return result

    def _value_rows(self, conn: Connection, table: str, cols: list[str], keys: set[str],
                    blame: bool) -> dict[str, dict]:
        """{node or group: {(table, col): value}} with only non-empty values of active rows;
        with ``blame`` the values are (value, node or group) pairs."""
        few = len(keys) <= BULK_THRESHOLD
        stmt = _select_values(table, tuple(cols), few)
        tcs = [(table, c) for c in cols]
        secret = SECRETS.get(table)
        sealed_at = [i + 2 for i, c in enumerate(cols) if c in secret] if secret else None
        rows: dict[str, dict] = {}
        result = conn.execute(stmt, {"keys": sorted(keys)}) if few else conn.execute(stmt)
        for row in result.fetchall():
            key, disable = row[0], row[1]
            if key in rows or key not in keys or (disable and disable.lower() in DISABLED):
                continue  # first row of multi-key tables wins
            if sealed_at:
                row = list(row)
                for i in sealed_at:
                    if row[i] and is_sealed(row[i]):
                        row[i] = self.sealer.unseal(table, cols[i - 2], row[i], row=key)
            if blame:
                rows[key] = {tc: (v, key) for tc, v in zip(tcs, row[2:]) if v}
            else:
                rows[key] = {tc: v for tc, v in zip(tcs, row[2:]) if v}
        return rows

    @staticmethod
    def _store(out: dict, node: str, merged: dict, blame: bool, computed: bool) -> None:
        if not blame and not computed:
            out.update(merged)
            return
        for tc, value in merged.items():
            source = None
            if blame:
                value, source = value
            if computed and isinstance(value, str) and value[0] in "/|" \
                    and is_regex_value(value):
                try:
                    value = compute(value, node)
                except RegexValueError as exc:
                    raise DBError(f"{node}: bad regular expression value in "
                                  f"{tc[0]}.{tc[1]}: {exc}") from None
                if not value:
                    continue
            out[tc] = (value, source) if blame else value

    def all_nodes(self, conn: Connection | None = None) -> set[str]:
        return {r["node"] for r in self.rows("nodelist", conn)}


def sealed_values_exist(paths: Paths) -> bool:
    """Whether the database of ``paths`` holds any sealed value (read raw: no key needed); a
    database not made yet holds none."""
    url = paths.db_url()
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if not path or not os.path.exists(path):
            return False
    db = Database.open(paths)
    try:
        with db.connect() as conn:
            have = set(sa.inspect(conn).get_table_names())
            for table, secret in SECRETS.items():
                if table not in have:
                    continue
                t = SA_TABLES[table]
                cond = sa.or_(*[t.c[c].like(f"{PREFIX}%") for c in secret])
                if conn.execute(sa.select(sa.literal(1)).where(cond).limit(1)).first():
                    return True
    except sa.exc.SQLAlchemyError:
        return False
    return False


def seal_clear_values(db: Database) -> int:
    """Seal every clear value of a secret column (a database from before sealing), in one
    transaction; returns how many. Running it again changes nothing."""
    if not db.sealer.has_key:
        raise DBError(f"Cannot encrypt secrets: no master key ({db.sealer.keyfile})")
    count = 0
    with db.begin() as conn:
        for table, secret in SECRETS.items():
            t = SA_TABLES[table]
            keys = TABLES[table].keys
            stmt = sa.select(*[t.c[k] for k in keys], *[t.c[c] for c in secret])
            changes: dict[tuple[str, ...], list[dict]] = defaultdict(list)
            for row in conn.execute(stmt).fetchall():
                clear = {c: v for c, v in zip(secret, row[len(keys):])
                         if v and not is_sealed(v)}
                if clear:
                    params = {f"k_{k}": v for k, v in zip(keys, row)}
                    params.update({f"v_{c}": db.sealer.seal(table, c, v)
                                   for c, v in clear.items()})
                    changes[tuple(clear)].append(params)
            for cols, params in changes.items():
                conn.execute(t.update().where(*[t.c[k] == sa.bindparam(f"k_{k}") for k in keys])
                             .values({c: sa.bindparam(f"v_{c}") for c in cols}), params)
                count += len(params) * len(cols)
    return count


@cache
def _select_in(table: str, keycol: str, one: bool) -> sa.Select:
    """SELECT * ... WHERE keycol IN (:keys) (or = :keys for one key), built once per table:
    statement construction costs more than a small query."""
    t = SA_TABLES[table]
    if one:
        return sa.select(t).where(t.c[keycol] == sa.bindparam("keys"))
    return sa.select(t).where(t.c[keycol].in_(sa.bindparam("keys", expanding=True)))


@lru_cache(maxsize=1024)
def _select_values(table: str, cols: tuple[str, ...], few: bool) -> sa.Select:
    t = SA_TABLES[table]
    stmt = sa.select(t.c.node, t.c.disable, *[t.c[c] for c in cols])
    if few:
        stmt = stmt.where(t.c.node.in_(sa.bindparam("keys", expanding=True)))
    return stmt


def split_list(value: str | None) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']"""
    if not value:
        return []
    return [p.strip() for p in value.split(",") if p.strip()]


def apply_list_op(current: str | None, op: str, value: str) -> str | None:
    """A comma list after nodech's ``,=`` (add), ``^=`` (remove) or ``=`` (replace).

    >>> apply_list_op("a,b", ",=", "c"), apply_list_op("a,b", "^=", "a")
    ('c,a,b', 'b')
    >>> apply_list_op("a", "=", "") is None
    True
    """
    items = split_list(current)
    if op == ",=":
        new = [v for v in split_list(value) if v not in items]
        return ",".join(new + items) if items else (value or None)
    if op == "^=":
        drop = set(split_list(value))
        left = [i for i in items if i not in drop]
        return ",".join(left) if left else None
    return value if value != "" else None


_WHERE = re.compile(r"^([A-Za-z_][\w.]*?)\s*(==|!=|=~|!~|<=|>=|<|>)(.*)$", re.DOTALL)


def parse_where(expr: str) -> tuple[str, str, str]:
    """'node==n1' -> ('node', '==', 'n1'); the error names the bad expression."""
    m = _WHERE.match(expr.strip())
    if not m:
        raise DBError(f"Invalid selection {expr!r}: expected attr==value, attr!=value, "
                      "attr=~regex, attr!~regex, attr<value or attr>value")
    return m.group(1), m.group(2), m.group(3)


def where_clause(table: str, exprs: Iterable[str]) -> sa.ColumnElement | Selection | None:
    """SQL for tabdump -w style selections; values are bound parameters, never pasted.

    As in xCAT, ``=~`` and ``!~`` take SQL LIKE patterns here (``groups=~comput%``), and
    disabled rows are left out. A selection on a secret column is a Selection for
    Database.rows: that part is checked in Python, on the clear values."""
    t = SA_TABLES[table_def(table).name]
    secret = SECRETS.get(table, ())
    clauses = []
    checks = []
    for expr in exprs:
        col, op, value = parse_where(expr)
        check_column(table, col)
        if col in secret:
            checks.append(_check(col, op, _like(value) if op in ("=~", "!~") else value))
            continue
        c = t.c[col]
        if op == "==":
            clauses.append(c == value)
        elif op == "!=":
            clauses.append(sa.or_(c != value, c.is_(None)))
        elif op == "=~":  # xCAT: an SQL LIKE pattern (% and _), optionally inside /.../
            clauses.append(c.like(_like(value)))
        elif op == "!~":
            clauses.append(sa.or_(sa.not_(c.like(_like(value))), c.is_(None)))
        elif op == "<":
            clauses.append(c < value)
        elif op == ">":
            clauses.append(c > value)
        elif op == "<=":
            clauses.append(c <= value)
        else:
            clauses.append(c >= value)
    if clauses or checks:
        clauses.append(sa.or_(t.c.disable.is_(None), t.c.disable.notin_(DISABLED)))
    if checks:
        return Selection(sa.and_(*clauses), tuple(checks))
    return sa.and_(*clauses) if clauses else None


def _check(col: str, op: str, target: str) -> Callable[[Mapping[str, Any]], bool]:
    """A row test doing in Python what where_clause's SQL does (NULL matches only the
    negative operators); ``=~`` and ``!~`` take LIKE patterns."""
    like = _like_matcher(target) if op in ("=~", "!~") else None

    def test(row: Mapping[str, Any]) -> bool:
        v = row.get(col)
        if v is None:
            return op in ("!=", "!~")
        if like is not None:
            return like(v) == (op == "=~")
        return match_value(v, op, target)
    return test


def _like_matcher(pattern: str) -> Callable[[str], bool]:
    """SQL LIKE (``%`` any run, ``_`` one character, case-sensitive, no escape) without a
    backtracking regex: the pieces between ``%`` have fixed lengths, so the leftmost fit of
    each is right, and the time is at most value length x pattern length.

    >>> m = _like_matcher("a%b_d%")
    >>> m("axxbcd"), m("abd"), m("abcdzz")
    (True, False, True)
    """
    parts = [re.compile("".join("." if ch == "_" else re.escape(ch) for ch in p), re.DOTALL)
             for p in pattern.split("%")]
    if len(parts) == 1:
        return lambda v: parts[0].fullmatch(v) is not None
    tail = len(pattern.rsplit("%", 1)[1])

    def matches(v: str) -> bool:
        m = parts[0].match(v)
        if m is None:
            return False
        pos = m.end()
        for part in parts[1:-1]:
            m = part.search(v, pos)
            if m is None:
                return False
            pos = m.end()
        return len(v) - pos >= tail and parts[-1].fullmatch(v, len(v) - tail) is not None
    return matches


#: The longest LIKE pattern taken (SQLite refuses patterns over 50,000 bytes)
MAX_LIKE = 10_000


def _like(value: str) -> str:
    if len(value) > 1 and value.startswith("/") and value.endswith("/"):
        value = value[1:-1]
    if len(value.encode("utf-8", "replace")) > MAX_LIKE:
        raise DBError(f"The pattern '{value[:40]}...' is longer than {MAX_LIKE:,} bytes")
    return value


def _check_regex(value: str) -> None:
    try:
        compile_pattern(value)
    except PatternError as exc:
        raise DBError(str(exc)) from None


def match_value(value: str | None, op: str, target: str) -> bool:
    """Python side of a selection, for computed attributes (lsdef -w, nodels filters)."""
    v = value or ""
    if op == "==":
        return v == target
    if op == "!=":
        return v != target
    if op == "=~":  # with the request's time budget, without holding the interpreter
        return search(target, v)
    if op == "!~":
        return not search(target, v)
    if op == "<":
        return v < target
    if op == ">":
        return v > target
    if op == "<=":
        return v <= target
    return v >= target
