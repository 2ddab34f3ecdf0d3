"""chtab: add or change table rows by key; -d deletes them. tabch is the same command under
xCAT's other name (commands.tabch)."""
import click
from xcatd.commands._cli import fail, run, xcat_command

from xcatd.base.words import WordError, column_assignments, key_values


def table_command(name: str) -> click.Command:
    """The command line of chtab, sending requests named ``name`` (policy rows name it)."""

    @xcat_command(name=name,
                  help=f"{name} key=value[,key=value] table.column=value [table.column+=value] "
                       f"...; {name} -d key=value[,...] table [table ...]")
    @click.option("-d", "--delete", is_flag=True, help="Delete the rows that match the keys.")
    @click.argument("keys")
    @click.argument("assignments", nargs=-1)
    def main(delete, keys, assignments):
        try:
            args = {"keys": key_values(keys)}
            if delete:
                args.update(delete=True, tables=list(assignments))
            else:
                args["assignments"] = column_assignments(list(assignments))
        except WordError as exc:
            fail(str(exc))
        run(name, None, args)

    return main


main = table_command("chtab")
