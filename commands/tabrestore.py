"""tabrestore: replace (or, with -a, add to) a table's rows from a tabdump CSV file."""
import os
import sys

import click
from xcatd.commands._cli import fail, run, xcat_command

from xcatd.base.files import NotText, utf8


@xcat_command(help="Restore a table from <tablename>.csv; the table name comes from the file name.")
@click.option("-a", "--addrows", is_flag=True, help="Add the rows instead of replacing the table.")
@click.argument("filename")
def main(addrows, filename):
    try:
        with open(filename, "rb") as fh:
            text = utf8(fh.read(), filename)
    except OSError:
        sys.stderr.write(f"Error: Unable to open {filename} for reading.\n")
        sys.exit(3)
    except NotText as exc:
        fail(str(exc))
    table = os.path.basename(filename).split(".", 1)[0]
    run("tabrestore", None, {"table": table, "append": addrows}, stdin=text)
