"""rmimage: remove a netboot or statelite image's files (and, with --xcatdef, its osimage)."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="\b\nrmimage [-V|--verbose] imagename [--xcatdef]\n"
                   "rmimage [-V|--verbose] -o osver -a arch -p profile")
@click.option("-V", "--verbose", is_flag=True, help="Say what it finds and where.")
@click.option("--xcatdef", is_flag=True, help="Remove the osimage definition too.")
@click.option("-o", "osver", metavar="OSVER", help="The image's OS version (without imagename).")
@click.option("-a", "arch", metavar="ARCH", help="Its architecture.")
@click.option("-p", "profile", metavar="PROFILE", help="Its profile.")
@click.argument("imagename", required=False)
def main(verbose, xcatdef, osver, arch, profile, imagename):
    run("rmimage", None, {"imagename": imagename, "osver": osver, "arch": arch,
                          "profile": profile, "xcatdef": xcatdef, "verbose": verbose})
