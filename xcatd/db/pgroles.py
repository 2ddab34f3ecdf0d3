"""A service node's own PostgreSQL role on the management node's database.

The role reads every table (the secrets in them are sealed under the management node's
master key, which a service node never holds: it reads ciphertext) and writes only what a
service node reports about the nodes it serves: its heartbeat (snstatus), node status, boot
state and chain progress, node events. Everything else it changes goes through the
management node's API.
"""
from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

import sqlalchemy as sa

from xcatd.db.database import SA_TABLES, Database
from xcatd.db.errors import DBError
from xcatd.db.sealed import PREFIX, SECRETS
from xcatd.tables import NOT_SECRET_SITE_KEYS, SECRET_SITE_KEY

ROLE_PREFIX = "xcatsn_"
#: A service node's name: also the tail of its role's name (63 bytes at most in PostgreSQL)
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,56}")

#: What a service node's role may write, beyond reading every table: {table: (privilege,
#: columns or None for the whole row)}. Its heartbeat, its nodes' status and events, and
#: the boot state nodeset records when it writes their boot files (chain, bootparams, the
#: image in nodetype and noderes.current_osimage): no more than serving their boot files
#: lets it decide anyway; and the records of the requests its nodes send it. Never policy,
#: passwords, site, or any other attribute.
_IMAGE = ("os", "arch", "profile", "provmethod")
WRITES: dict[str, tuple[tuple[str, tuple[str, ...] | None], ...]] = {
    "snstatus": (("INSERT", None), ("UPDATE", None)),
    "nodelist": (("UPDATE", ("status", "statustime", "appstatus", "appstatustime",
                             "updatestatus", "updatestatustime")),),
    "bootstate": (("INSERT", None), ("UPDATE", None), ("DELETE", None)),
    "chain": (("INSERT", ("node", "currstate", "currchain")),
              ("UPDATE", ("currstate", "currchain"))),
    "bootparams": (("INSERT", None), ("UPDATE", None)),
    "nodetype": (("INSERT", ("node", *_IMAGE)), ("UPDATE", _IMAGE)),
    "noderes": (("INSERT", ("node", "current_osimage")), ("UPDATE", ("current_osimage",))),
    "nodeevents": (("INSERT", None), ("DELETE", None)),  # (each node keeps its last ones)
    "eventlog": (("INSERT", None),),
    # the records of the requests its own nodes send it (boot scripts, reports): added to
    # the audit log, never changed or removed there
    "auditlog": (("INSERT", None),),
    "jobs": (("INSERT", None), ("UPDATE", None)),
    "jobresults": (("INSERT", None),),
}

NEEDS_POSTGRES = ("Service nodes need the management node's database on PostgreSQL "
                  "(etc/xcat/cfgloc names SQLite): move it there with dumpxCATdb -p DIR, "
                  "xcatconfig --dburl postgresql+psycopg://USER@HOST/xcatdb and "
                  "restorexCATdb -p DIR (README.md: 'The database URL is read from ...')")


def role_name(name: str) -> str:
    """The role of service node ``name``; a name that is not [A-Za-z0-9_.-] is refused."""
    if not NAME_RE.fullmatch(name or ""):
        raise DBError(f"Invalid service node name {name!r}: use letters, digits, '_', '.' "
                      "and '-' (56 at most)")
    return ROLE_PREFIX + name


def check_postgres(db: Database) -> None:
    if db.engine.url.get_backend_name() != "postgresql":
        raise DBError(NEEDS_POSTGRES)


def clear_secrets(db: Database) -> list[str]:
    """The secret columns (table.column) that hold any value stored clear."""
    out = []
    with db.connect() as conn:
        have = set(sa.inspect(conn).get_table_names())
        for table, cols in SECRETS.items():
            if table not in have:
                continue
            t = SA_TABLES[table]
            for c in cols:
                stmt = (sa.select(sa.literal(1))
                        .where(t.c[c].is_not(None), t.c[c] != "", t.c[c].not_like(f"{PREFIX}%"))
                        .limit(1))
                if conn.execute(stmt).first():
                    out.append(f"{table}.{c}")
    return out


def check_join_ready(db: Database) -> None:
    """Refuse a join a service node could read clear secrets through, or that its role
    cannot be made for: PostgreSQL, a master key, every secret sealed."""
    check_postgres(db)
    if not db.sealer.has_key:
        raise DBError(f"The management node has no master key ({db.sealer.keyfile}): run "
                      "xcatconfig to make one and encrypt the secrets before a service node "
                      "joins")
    clear = clear_secrets(db)
    if clear:
        raise DBError(f"Secrets are stored clear in {', '.join(clear)}: run xcatd once, or "
                      "xcatconfig, to encrypt them before a service node joins (it must never "
                      "read a clear password)")


def _grants(role, schema: str, tables: Iterable[str]):
    """The statements that give ``role`` its privileges on ``schema``'s ``tables``
    (psycopg.sql: identifiers quoted, never formatted in)."""
    from psycopg import sql
    have = set(tables)
    sch = sql.Identifier(schema)
    yield sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sch, role)
    yield sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(sch, role)
    for table, privileges in WRITES.items():
        if table not in have:
            continue
        for privilege, cols in privileges:
            target = sql.SQL(privilege)
            if cols:
                target = sql.SQL("{} ({})").format(
                    target, sql.SQL(", ").join(map(sql.Identifier, cols)))
            yield sql.SQL("GRANT {} ON TABLE {}.{} TO {}").format(
                target, sch, sql.Identifier(table), role)
    yield sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA {} TO {}").format(sch, role)


#: A service node's role, in SQL: the name it stands for (the role name after the prefix)
_SN = f"substr(current_user, {len(ROLE_PREFIX) + 1})"
_IS_SN = f"starts_with(current_user, '{ROLE_PREFIX}')"
_OWNED = f"(SELECT o.node FROM nodeowner o WHERE o.servicenode = {_SN})"
#: Row by row, what a service node's role may write of the tables it writes (row-level
#: security; other roles are not limited by it, and the tables' owner, the management
#: node's user, is never): only the rows of the nodes it holds the lease of, its own
#: heartbeat, and the records of its own nodes' requests.
ROW_RULES: dict[str, str] = {
    **{t: f"node IN {_OWNED}" for t in ("nodelist", "bootstate", "chain", "bootparams",
                                         "nodetype", "noderes", "nodeevents", "eventlog")},
    "snstatus": f"node = {_SN}",
    "auditlog": f"clienttype = 'node' AND userid IN {_OWNED}",
    "jobs": f"clienttype = 'node' AND \"user\" IN {_OWNED}",
    "jobresults": f"jobid IN (SELECT j.jobid FROM jobs j WHERE j.clienttype = 'node' "
                  f"AND j.\"user\" IN {_OWNED})",
}


#: Row by row, what a service node's role may read of some tables: not the site keys that
#: hold secrets ...
_SECRET_SITE = ("(lower(key) !~ '" + SECRET_SITE_KEY + "' OR lower(key) IN ("
                + ", ".join(f"'{k}'" for k in sorted(NOT_SECRET_SITE_KEYS)) + "))")
READ_RULES: dict[str, str] = {"site": _SECRET_SITE}
# ... and others' job output and audit rows (a job's output may quote a secret site value,
# tabdump site): only the records of its own nodes' requests
for _t in ("auditlog", "jobs", "jobresults"):
    READ_RULES[_t] = ROW_RULES[_t]
ROW_RULES["site"] = "false"  # (a service node writes no site key)


def _row_policies(schema: str, tables: Iterable[str]):
    """Row-level security on the tables a service node writes or may not read whole: a
    service node's role reads what READ_RULES lets it (every row elsewhere) and writes only
    what ROW_RULES allows; other roles are not limited (made anew at each join, so a changed
    rule takes)."""
    from psycopg import sql
    have = set(tables)
    for table, rule in ROW_RULES.items():
        if table not in have:
            continue
        t = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        yield sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(t)
        check = sql.SQL(f"(NOT {_IS_SN} OR ({rule}))")
        read = sql.SQL(f"(NOT {_IS_SN} OR ({READ_RULES.get(table, 'true')}))")
        for policy, verb, clause in (
                ("xcat_read", "SELECT", sql.SQL("USING {}").format(read)),
                ("xcat_sn_insert", "INSERT", sql.SQL("WITH CHECK {}").format(check)),
                ("xcat_sn_update", "UPDATE",
                 sql.SQL("USING {} WITH CHECK {}").format(check, check)),
                ("xcat_sn_delete", "DELETE", sql.SQL("USING {}").format(check))):
            yield sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(policy), t)
            yield sql.SQL("CREATE POLICY {} ON {} FOR " + verb + " {}").format(
                sql.Identifier(policy), t, clause)


def scoped_role(db: Database, name: str) -> tuple[str, str]:
    """Create (or make anew) service node ``name``'s role on the management node's database,
    with a fresh random password and only its privileges; returns (role, password)."""
    role = role_name(name)
    check_postgres(db)
    import psycopg
    from psycopg import sql
    password = secrets.token_urlsafe(32)
    raw = db.engine.raw_connection()
    try:
        pg = raw.driver_connection
        try:
            with pg.cursor() as cur:
                cur.execute("SELECT current_database(), current_schema()")
                dbname, schema = cur.fetchone()
                schema = schema or "public"
                cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
                tables = [r[0] for r in cur.fetchall()]
                ident = sql.Identifier(role)
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                # (the password is a literal: utility statements take no parameters)
                cur.execute(sql.SQL(verb + " ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB "
                                    "NOCREATEROLE NOINHERIT PASSWORD {}")
                            .format(ident, sql.Literal(password)))
                # a role made anew: whatever it was given before goes (column grants too)
                for what in ("TABLES", "SEQUENCES"):
                    cur.execute(sql.SQL("REVOKE ALL ON ALL " + what + " IN SCHEMA {} FROM {}")
                                .format(sql.Identifier(schema), ident))
                cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}")
                            .format(sql.Identifier(dbname), ident))
                for stmt in (*_grants(ident, schema, tables), *_row_policies(schema, tables)):
                    cur.execute(stmt)
            pg.commit()
        except psycopg.Error as exc:
            pg.rollback()
            why = exc.diag.message_primary or type(exc).__name__  # never the statement
            hint = ""
            if isinstance(exc, psycopg.errors.InsufficientPrivilege):
                hint = (f": the management node's database user needs CREATEROLE and to own "
                        f"the xCAT tables (ALTER ROLE {db.engine.url.username} CREATEROLE)")
            raise DBError(f"Cannot make the database role {role}: {why}{hint}") from None
    finally:
        raw.close()
    return role, password
