"""tabprune: delete old records from auditlog or eventlog."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="tabprune <auditlog|eventlog|jobs> [-V] -a | -n <count> | -i <recid> | "
                   "-p <percent> | -d <days>")
@click.option("-V", "verbose", is_flag=True, help="Print the removed records.")
@click.option("-a", "all_", is_flag=True, help="Remove every record.")
@click.option("-n", "number", type=click.IntRange(min=0), help="Remove the oldest N records.")
@click.option("-i", "recid", type=int, help="Remove records with recid below this one.")
@click.option("-p", "percent", type=click.FloatRange(0, 100),
              help="Remove this % of the oldest records.")
@click.option("-d", "days", type=click.FloatRange(min=0), help="Remove records older than N days.")
@click.argument("table", required=False)
def main(verbose, all_, number, recid, percent, days, table):
    run("tabprune", None, {"table": table, "verbose": verbose, "all": all_ or None,
                           "number": number, "recid": recid, "percent": percent, "days": days})
