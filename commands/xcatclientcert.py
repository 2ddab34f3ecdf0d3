"""xcatclientcert: issue a client certificate (CN=user) signed by the management node's CA."""
import sys

import click
from xcatd.commands._cli import xcat_command

from xcatd.base.paths import Paths
from xcatd.security.credentials import ca_files, issue_client_cert


@xcat_command(async_option=False,
              help="Issue USER's client certificate into ~USER/.xcat (or --dir). The "
                   "certificate identifies USER to xcatd; the policy table decides what "
                   "USER may do.")
@click.option("-d", "--dir", "directory", type=click.Path(file_okay=False),
              help="Write here instead of ~USER/.xcat.")
@click.option("-f", "--force", is_flag=True, help="Replace an existing certificate.")
@click.argument("user")
def main(directory, force, user):
    paths = Paths()
    if not ca_files(paths)[0].is_file():
        click.echo(f"Error: no CA under {paths.root}: run xcatconfig first", err=True)
        sys.exit(1)
    try:
        files = issue_client_cert(paths, user, directory, force=force)
    except (ValueError, OSError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{user}: {files.cred} (key and certificate, mode 0600), {files.ca}")
