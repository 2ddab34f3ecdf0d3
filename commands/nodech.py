"""nodech: change node attributes (=, ,= to add to a list, ^= to remove, -d to delete rows)."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="Change attributes of nodes: nodech <noderange> table.column=value "
                   "[table.column,=value] [table.column^=value] ...; "
                   "nodech -d <noderange> <table> ... deletes the nodes' rows.")
@click.option("-d", "--delete", is_flag=True, help="Delete the nodes' rows in the given tables.")
@click.argument("noderange")
@click.argument("assignments", nargs=-1)
def main(delete, noderange, assignments):
    run("nodech", noderange, {"delete": delete, "assignments": list(assignments)})
