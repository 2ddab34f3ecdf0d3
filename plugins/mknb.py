"""mknb: put the boot loaders that makedhcp hands out into the TFTP root (xcatd.netboot.bootfiles),
from Debian's packages, each checked. xcatconfig runs it; run it again after a package
upgrade. (xCAT's mknb also builds the genesis discovery image: pyxcat has none yet.)"""
from __future__ import annotations

from collections.abc import Iterator

from xcatd.base.request import ErrorKind, Request, Response, XcatError
from xcatd.handler import TEXT, Context, command, root_only
from xcatd.netboot.bootfiles import ARCHES, place


@command("mknb", args={"arch": TEXT})
def mknb(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    arch = req.args.get("arch") or ""
    if arch not in ARCHES:
        raise XcatError(f"Usage: mknb <arch> ({', '.join(ARCHES)})" if not arch else
                        f"mknb: architecture '{arch}' is not supported (use "
                        f"{', '.join(ARCHES)})")
    root_only(req, "mknb")
    tftpdir = ctx.tftpdir
    for p in place(tftpdir, arch):
        if p.error:
            yield Response(error=f"{p.file.name}: {p.error}", errorcode=1,
                           kind=ErrorKind.CONFLICT.value)
        else:
            yield Response(data=f"{tftpdir / p.file.name}: {p.file.what} "
                                f"({'placed' if p.changed else 'unchanged'})")
