"""liteimg: check a statelite osimage's litefile list and write it into the image root."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="liteimg <imagename>: check the litefile entries of a statelite osimage "
                   "and write them, with the image's own copy of each file, into its root.")
@click.argument("imagename", required=False)
def main(imagename):
    run("liteimg", None, {"imagename": imagename})
