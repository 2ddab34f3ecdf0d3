"""packimage: pack a netboot osimage's tree (genimage's rootimg) into the file nodes fetch."""
import click
from xcatd.commands._cli import fail, run, xcat_command


@xcat_command(help="\b\npackimage [-m|--method=squashfs|cpio|tar] [-c|--compress=zstd|xz|gzip|pigz]"
                   " [--nosyncfiles] <imagename>\n\nsquashfs with zstd is the default; cpio and "
                   "tar default to pigz, else gzip.")
@click.option("-m", "--method", metavar="METHOD", help="Archive method: squashfs, cpio or tar.")
@click.option("-c", "--compress", metavar="COMPRESS", help="Compression: zstd, xz, gzip or pigz.")
@click.option("--nosyncfiles", is_flag=True, help="Do not sync the synclists' files in.")
@click.option("-o", "--osver", hidden=True)
@click.option("-p", "--profile", hidden=True)
@click.option("-a", "--arch", hidden=True)
@click.argument("imagename", required=False)
def main(method, compress, nosyncfiles, osver, profile, arch, imagename):
    if imagename is None and not (osver or profile or arch):
        fail("An image name is required, use 'packimage <osimage name>'.")
    run("packimage", None, {"imagename": imagename, "method": method, "compress": compress,
                            "nosyncfiles": nosyncfiles, "osver": osver, "profile": profile,
                            "arch": arch})
