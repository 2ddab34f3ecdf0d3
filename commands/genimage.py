"""genimage: build a diskless (netboot or statelite) image root from an osimage."""
import click
from xcatd.commands._cli import run, xcat_command


@xcat_command(help="\b\ngenimage [-o osver] [-a arch] [-p profile] [-n nodenetdrivers] "
                   "[-k kernelver] [imagename]\n"
                   "Build the image root of a netboot or statelite osimage in its rootimgdir "
                   "(then packimage).")
@click.option("-o", "osvers", metavar="OSVER", help="The OS of the image (debian12, rocky9.4).")
@click.option("-a", "arch", metavar="ARCH", help="Its architecture (default: this machine's).")
@click.option("-p", "profile", metavar="PROFILE", help="Its profile (compute, service, ...).")
@click.option("-n", "netdrivers", metavar="DRIVERS",
              help="Network drivers for the initrd, comma-separated (saved in the osimage).")
@click.option("-k", "kernelver", metavar="KERNELVER",
              help="The image's kernel version to use (saved in the osimage).")
@click.argument("imagename", required=False)
def main(osvers, arch, profile, netdrivers, kernelver, imagename):
    if not imagename and not (osvers and profile):
        raise click.UsageError("give an osimage name, or -o <osver> and -p <profile>")
    run("genimage", None, {k: v for k, v in (
        ("imagename", imagename), ("osvers", osvers), ("arch", arch), ("profile", profile),
        ("netdrivers", netdrivers), ("kernelver", kernelver)) if v})
