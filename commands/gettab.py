"""gettab: print column values of the rows that match keys."""
import click
from xcatd.commands._cli import fail, run, xcat_command

from xcatd.base.words import WordError, key_values


@xcat_command(help="gettab [-H] key=value,... table.column ...")
@click.option("-H", "--with-fieldname", is_flag=True, help="Label every value table.column: .")
@click.option("--show-secrets", is_flag=True, help="Print passwords in clear (audited).")
@click.argument("keys")
@click.argument("columns", nargs=-1)
def main(with_fieldname, show_secrets, keys, columns):
    try:
        parsed = key_values(keys)
    except WordError as exc:
        fail(str(exc))
    run("gettab", None, {"with_fieldname": with_fieldname, "show_secrets": show_secrets,
                         "keys": parsed, "columns": list(columns)})
