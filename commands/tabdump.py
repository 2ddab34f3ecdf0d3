"""tabdump: print a table as CSV, list tables, or describe them."""
import sys

import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="Print a table in CSV form (no table: list the tables).")
@click.option("-d", "describe", is_flag=True, help="Describe the tables, or the table's columns.")
@click.option("-w", "where", multiple=True,
              help="Select rows: col==val, col!=val, col=~pattern (SQL LIKE, % wildcard), "
                   "col!~pattern, col<val, col>val. Several -w must all match.")
@click.option("-n", "number", type=click.IntRange(min=0),
              help="Last N records (auditlog, eventlog).")
@click.option("-f", "filename", type=click.Path(dir_okay=False), help="Write to this file.")
@click.option("--show-secrets", is_flag=True, help="Print passwords in clear (audited).")
@click.argument("table", required=False)
def main(describe, where, number, filename, show_secrets, table):
    if filename:
        if not table:
            sys.stderr.write("Error: table name missing from the command input. \n")
            sys.exit(1)
        sys.stdout = open(filename, "w", encoding="utf-8")  # noqa: SIM115
    run("tabdump", None, {"table": table, "describe": describe, "where": list(where),
                          "number": number, "show_secrets": show_secrets})
