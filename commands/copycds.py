"""copycds: copy a distribution's DVD/ISO into the install directory."""
import os

import click
from xcatd.commands._cli import fail, run, xcat_command


def _full(path: str | None) -> str | None:
    """The daemon cannot know this shell's working directory: send full paths."""
    if not path:
        return None
    path = path.lstrip("=")  # xCAT's examples write -n=rhels6.4 and -p=/install/...
    return os.path.abspath(path)


@xcat_command(help="\b\ncopycds [{-n|--name|--osver}=distroname] [{-a|--arch}=architecture] "
                   "[{-p|--path}=ospkgpath]\n        [-o|--noosimage] [-w|--nonoverwrite] "
                   "{iso | device-path} ...\ncopycds [-i|--inspection] {iso | device-path}")
@click.option("-n", "--name", "--osver", "name", metavar="DISTRONAME",
              help="The distribution and version on the media (rhels9.4, rocky9.4, ...).")
@click.option("-a", "--arch", "arch", metavar="ARCH", help="The media's architecture.")
@click.option("-p", "--path", "path", metavar="OSPKGPATH",
              help="Copy here instead of <installdir>/<distro>/<arch>.")
@click.option("-o", "--noosimage", is_flag=True, help="Do not define the default osimages.")
@click.option("-w", "--nonoverwrite", is_flag=True,
              help="Stop if this very disc has been copied in already.")
@click.option("-i", "--inspection", is_flag=True,
              help="Say what the media is, copy nothing.")
@click.argument("sources", nargs=-1)
def main(name, arch, path, noosimage, nonoverwrite, inspection, sources):
    if not sources:
        fail("copycds needs at least one full path to ISO currently.")
    run("copycds", None, {
        "sources": [os.path.abspath(s) for s in sources],
        "name": name.lstrip("=") if name else None,
        "arch": arch.lstrip("=") if arch else None,
        "path": _full(path), "noosimage": noosimage, "nonoverwrite": nonoverwrite,
        "inspection": inspection})
