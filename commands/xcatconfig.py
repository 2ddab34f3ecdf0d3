"""xcatconfig: initialise (or complete) a management node under XCATROOT; make a service
node's join token (--sntoken); join this machine to a management node as a service node
(--servicenode)."""
import os
import sys

import click
from xcatd.commands._cli import xcat_command

from xcatd.base.paths import Paths
from xcatd.daemon.initialize import DIRS, initialize, place_loaders


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def _sntoken(paths: Paths, name: str, ttl: int) -> None:
    """The management node's side: a one-time token for service node ``name``, printed
    alone (it is a secret: nothing else goes with it)."""
    from xcatd.db.database import Database, DBError
    from xcatd.db.pgroles import check_join_ready
    from xcatd.security.snjoin import JoinError, new_token
    if os.geteuid() != 0:
        _fail("xcatconfig --sntoken is for root on the management node")
    try:
        check_join_ready(Database.open(paths))  # (said now, not when the node joins)
        click.echo(new_token(paths, name, ttl))
    except (DBError, JoinError) as exc:
        _fail(str(exc))


def _servicenode(paths: Paths, name, master, token, addresses, dbhost) -> None:
    from xcatd.security.snjoin import JoinError, join
    if token == "-":  # (a token on the command line shows in ps: read it from stdin)
        token = sys.stdin.readline().strip()
    # (--address: where the management node reaches it, which its heartbeat records)
    missing = [opt for opt, value in (("--name", name), ("--master", master),
                                      ("--token", token), ("--address", addresses))
               if not value]
    if missing:
        _fail(f"xcatconfig --servicenode needs {', '.join(missing)}")
    try:
        for line in join(paths, name, master, token, list(addresses), dbhost):
            click.echo(line)
        for d, mode in DIRS.items():  # what xcatd needs on this root
            p = paths.under(d)
            if not p.is_dir():
                p.mkdir(parents=True, exist_ok=True)
                os.chmod(p, mode)
    except (JoinError, OSError) as exc:  # (never the token: no message carries it)
        _fail(f"xcatconfig --servicenode failed: {exc}")
    _loaders(paths)  # a service node's nodes boot from its own TFTP root


def _loaders(paths: Paths) -> None:
    """The boot loaders in the TFTP root (mknb's work); the missing ones named, exit 1."""
    try:
        done, errors = place_loaders(paths)
    except Exception as exc:  # say what failed, never a traceback
        _fail(f"xcatconfig failed: {exc}")
    for line in done:
        click.echo(line)
    for line in errors:  # the rest is done: say which loaders nodes cannot get yet
        click.echo(f"Error: {line}", err=True)
    if errors:
        _fail("some boot loaders are missing: install the packages named above and run "
              "mknb x86_64")


@xcat_command(help="Initialise the management node: directories, database, site defaults and "
                   "default policy under $XCATROOT (default /). Safe to run again. "
                   "--sntoken NAME prints a one-time token for service node NAME to join with; "
                   "--servicenode joins this machine to the management node with it.")
@click.option("-f", "--force", is_flag=True, help="Reset the site table's defaults.")
@click.option("--dburl", help="SQLAlchemy database URL to record in etc/xcat/cfgloc "
                              "(default: SQLite under var/lib/xcat).")
@click.option("--sntoken", metavar="NAME",
              help="Print a one-time token for service node NAME to join with (root, on the "
                   "management node).")
@click.option("--ttl", type=click.IntRange(min=1), default=3600, show_default=True,
              help="Seconds the --sntoken token stays valid.")
@click.option("--servicenode", is_flag=True,
              help="Join this machine to the management node as a service node (with --name, "
                   "--master and --token).")
@click.option("--name", help="This service node's name (--servicenode).")
@click.option("--master", metavar="HOST:PORT", help="The management node's xcatd "
                                                    "(--servicenode).")
@click.option("--token", help="The token xcatconfig --sntoken printed, or - to read it from "
                              "stdin (--servicenode).")
@click.option("--address", multiple=True, metavar="ADDR",
              help="An address or name of this service node for its certificate; the first "
                   "is where the management node reaches it (--servicenode; repeatable).")
@click.option("--dbhost", help="The database host as this service node reaches it, if not "
                               "the one in the management node's URL (--servicenode).")
def main(force, dburl, sntoken, ttl, servicenode, name, master, token, address, dbhost):
    paths = Paths()
    if sntoken is not None and servicenode:
        _fail("--sntoken (management node) and --servicenode (service node) do not go "
              "together")
    if sntoken is not None:
        return _sntoken(paths, sntoken, ttl)
    if servicenode:
        return _servicenode(paths, name, master, token, address, dbhost)
    stray = [opt for opt, value in (("--name", name), ("--master", master), ("--token", token),
                                    ("--address", address), ("--dbhost", dbhost)) if value]
    if stray:
        _fail(f"{', '.join(stray)}: only with --servicenode")
    try:
        for line in initialize(paths, db_url=dburl, force=force):
            click.echo(line)
    except Exception as exc:  # say what failed, never a traceback
        _fail(f"xcatconfig failed: {exc}")
    _loaders(paths)
