"""nodels: list nodes and their attributes."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="List nodes in a noderange and, optionally, their attributes "
                   "(table.column, short names such as groups or mgt, a table name, "
                   "or selections like mgt==ipmi).")
@click.option("-H", "--with-fieldname", is_flag=True, help="Label every value.")
@click.option("-b", "--blame", is_flag=True, help="Say which group an inherited value came from.")
@click.option("-S", "show_hidden", is_flag=True, help="Also list hidden nodes.")
@click.option("--show-secrets", is_flag=True, help="Print passwords in clear (audited).")
@click.argument("noderange", required=False)
@click.argument("attributes", nargs=-1)
def main(with_fieldname, blame, show_hidden, show_secrets, noderange, attributes):
    run("nodels", noderange, {"with_fieldname": with_fieldname, "blame": blame,
                              "show_hidden": show_hidden, "show_secrets": show_secrets,
                              "attributes": list(attributes)})
