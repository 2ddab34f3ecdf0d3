"""tabprune: delete records from auditlog, eventlog or the job history (-a: any table)."""
import sys

import click
from xcatd.commands._cli import fail, run, xcat_command
from xcatd.commands._outfile import OutputFile, save_output

from xcatd.base.request import Request


@xcat_command(help="tabprune <auditlog|eventlog|jobs> [-V] [-f file] -a | -n <count> | "
                   "-i <recid> | -p <percent> | -d <days>; tabprune <table> [-V] [-f file] -a")
@click.option("-V", "verbose", is_flag=True,
              help="Print the removed records (CSV, as tabdump prints them).")
@click.option("-f", "filename",
              help="Save the removed records in this file (CSV, for tabrestore).")
@click.option("-a", "all_", is_flag=True, help="Remove every record (any table).")
@click.option("-n", "number", type=click.IntRange(min=0), help="Remove the oldest N records.")
@click.option("-i", "recid", type=int, help="Remove records with recid below this one.")
@click.option("-p", "percent", type=click.FloatRange(0, 100),
              help="Remove this % of the oldest records.")
@click.option("-d", "days", type=click.FloatRange(min=0), help="Remove records older than N days.")
@click.argument("table", required=False)
def main(verbose, filename, all_, number, recid, percent, days, table):
    args = {"table": table, "verbose": verbose, "all": all_ or None, "number": number,
            "recid": recid, "percent": percent, "days": days}
    if not filename:
        run("tabprune", None, args)
    try:
        out = OutputFile(filename, private=False)
    except OSError:
        fail(f"Unable to open {filename} for write; nothing was pruned.")
    sys.exit(save_output(Request("tabprune", args={**args, "save": True}), out,
                         saved=lambda r: bool(r.obj and ("row" in r.obj or "columns" in r.obj)),
                         echo=verbose))
