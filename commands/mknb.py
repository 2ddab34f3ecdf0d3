"""mknb: put the network boot loaders in place in the TFTP root."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="mknb <arch>: put the boot loaders makedhcp hands out (iPXE, pxelinux, "
                   "shim and GRUB2) into the TFTP root from their Debian packages, and check "
                   "them. xcatconfig runs it.")
@click.argument("arch", required=False)
def main(arch):
    run("mknb", None, {"arch": arch or ""})
