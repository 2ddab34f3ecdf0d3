"""tabdump: print a table as CSV, list tables, or describe them."""
import sys

import click
from xcatd.commands._cli import fail, run, xcat_command
from xcatd.commands._outfile import OutputFile, save_output

from xcatd.base.request import Request


@xcat_command(help="Print a table in CSV form (no table: list the tables).")
@click.option("-d", "describe", is_flag=True, help="Describe the tables, or the table's columns.")
@click.option("-w", "where", multiple=True,
              help="Select rows: col==val, col!=val, col=~pattern (SQL LIKE, % wildcard), "
                   "col!~pattern, col<val, col>val. Several -w must all match.")
@click.option("-n", "number", type=click.IntRange(min=0),
              help="Last N records (auditlog, eventlog).")
@click.option("-f", "filename",
              help="Write the table to this file instead (written whole, or not at all).")
@click.option("--show-secrets", is_flag=True, help="Print passwords in clear (audited).")
@click.argument("table", required=False)
def main(describe, where, number, filename, show_secrets, table):
    args = {"table": table, "describe": describe, "where": list(where), "number": number,
            "show_secrets": show_secrets}
    if not filename:
        run("tabdump", None, args)
    if number is not None:
        fail("You  cannot use the -n and -f flag together. ")
    if not table:
        fail("table name missing from the command input. ")
    try:  # a file with passwords in clear is for its owner alone
        out = OutputFile(filename, private=show_secrets)
    except OSError:
        fail(f"Error on tabdump of {table} to {filename}. Unable to open the file for write. ")
    sys.exit(save_output(Request("tabdump", args=args), out))
