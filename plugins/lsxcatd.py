"""lsxcatd: the daemon's version, node type, database and port, in xCAT's words.

The database is described from the URL in etc/xcat/cfgloc without its password, as xCAT
leaves the password out of its ``cfgloc=`` line:

>>> database_lines("postgresql+psycopg://xcatadm:s3cret@10.0.0.1:5433/xcatdb")
['cfgloc=postgresql+psycopg://xcatadm@10.0.0.1:5433/xcatdb', 'dbengine=Pg', 'dbname=xcatdb', \
'dbhost=10.0.0.1', 'dbport=5433', 'dbadmin=xcatadm']
>>> database_lines("sqlite:////var/lib/xcat/xcat.sqlite")
['dbengine=SQLite', 'dbloc=/var/lib/xcat/xcat.sqlite']
"""
from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from xcatd.base import version as pyxcat_version
from xcatd.base.request import Request, Response, XcatError
from xcatd.base.site import SiteValueError
from xcatd.handler import FLAG, Context, command
from xcatd.security.snjoin import load_identity

#: xCAT's names for the database engines (its cfgloc prefixes).
ENGINES = {"sqlite": "SQLite", "postgresql": "Pg", "mysql": "mysql", "mariadb": "mysql"}
DEFAULT_PORT = 3001  # site.xcatdport


def database_lines(url: str) -> list[str]:
    """xCAT's ``-d`` lines for an SQLAlchemy URL; the password never appears."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise XcatError("Cannot parse the database URL in etc/xcat/cfgloc") from None
    backend = parsed.get_backend_name()
    engine = ENGINES.get(backend, backend)
    if backend == "sqlite":
        return [f"dbengine={engine}", f"dbloc={parsed.database or ':memory:'}"]
    # a password can also hide in the query string (libpq takes ?password=...)
    query = {k: v for k, v in parsed.query.items() if "pass" not in k.lower()}
    shown = URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port,
                       parsed.database, query)
    lines = [f"cfgloc={shown.render_as_string(hide_password=True)}", f"dbengine={engine}",
             f"dbname={parsed.database or ''}", f"dbhost={parsed.host or 'localhost'}"]
    if parsed.port:
        lines.append(f"dbport={parsed.port}")
    lines.append(f"dbadmin={parsed.username or ''}")
    return lines


@command("lsxcatd", args={"version": FLAG, "database": FLAG, "nodetype": FLAG, "all": FLAG})
def lsxcatd(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    every = bool(req.args.get("all"))
    if req.args.get("version") or every:
        yield Response(data=pyxcat_version.current())
        if not every:
            return
    if req.args.get("nodetype") or every:
        # (a service node's root holds its join: etc/xcat/servicenode.json)
        yield Response(data="This is a Service Node" if load_identity(ctx.paths)
                       else "This is a Management Node")
        if not every:
            return
    if req.args.get("database") or every:
        for line in database_lines(ctx.paths.db_url()):
            yield Response(data=line)
    if every:
        try:
            port = ctx.site.port("xcatdport", DEFAULT_PORT)
        except SiteValueError as exc:
            raise XcatError(str(exc)) from None
        yield Response(data=f"xcatdport={port}")
