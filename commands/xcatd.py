"""xcatd: the daemon, in the foreground (systemd runs it as Type=simple)."""
import faulthandler
import logging
import signal
import sys

import click
from xcatd.commands._cli import xcat_command

from xcatd.base.paths import Paths
from xcatd.db.database import DBError
from xcatd.fronts.server import AlreadyRunning, serve_forever


@xcat_command(async_option=False, help="Run xcatd for $XCATROOT in the foreground.")
@click.option("--listen", default="0.0.0.0", show_default=True, help="Address for HTTPS.")
@click.option("--port", type=int, help="HTTPS port (default: site.xcatdport, 3001).")
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level.")
def main(listen, port, verbose):
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s xcatd[%(process)d] %(levelname)s %(message)s")
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: every thread's stack

    def ready(listening):
        logging.getLogger("xcatd").info("ready on %s:%d, unix socket %s", listening.host,
                                        listening.port, listening.unix)

    try:
        serve_forever(Paths(), listen, port, ready)
    except AlreadyRunning as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except (DBError, FileNotFoundError, OSError, ValueError) as exc:  # (a damaged
        # etc/xcat/servicenode.json says so, naming the file)
        click.echo(f"Error: xcatd cannot start: {exc}", err=True)
        sys.exit(1)
