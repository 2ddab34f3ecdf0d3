"""packimage and rmimage (xcatd.provision.packimage): pack a netboot osimage's tree into the
file its nodes fetch, with a manifest; remove an image's files (and, with --xcatdef, its
definition). Options, messages and exit codes follow xCAT's; the differences are squashfs
with zstd as the default, zstd as a compressor, and a pack that never copies the tree."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from xcatd.base.request import ErrorKind, Request, Response, XcatError
from xcatd.db.objects import ObjectWriter
from xcatd.handler import FLAG, TEXT, Context, command, root_only
from xcatd.provision.packimage import (
    COMPRESSIONS,
    COMPRESSORS,
    METHODS,
    PackError,
    check_mn_path,
    default_rootimgdir,
    image_files,
    image_lock,
    inside,
    load_image,
    mn_path,
    mounts_under,
    need,
    pack_osimage,
    remove,
)

log = logging.getLogger("xcatd.plugins.packimage")


def _mn(ctx: Context, path: Path) -> str:
    return mn_path(ctx.paths, path)


@command("packimage", args={"imagename": TEXT, "method": TEXT, "compress": TEXT,
                            "nosyncfiles": FLAG, "osver": TEXT, "arch": TEXT, "profile": TEXT})
def packimage(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    root_only(req, "packimage")
    a = req.args
    if a.get("osver") or a.get("arch") or a.get("profile"):
        raise XcatError("-o, -p and -a options are obsoleted, please use 'packimage <osimage "
                        "name>' instead.")
    name = a.get("imagename")
    if not name:
        raise XcatError("An image name is required, use 'packimage <osimage name>'.")
    method = a.get("method") or "squashfs"
    if method not in METHODS:
        raise XcatError(f"Invalid archive method '{method}' requested (use "
                        f"{', '.join(METHODS)})")
    compress = a.get("compress") or ("zstd" if method == "squashfs" else _default_gzip())
    if compress not in COMPRESSIONS:
        raise XcatError(f"Invalid compress method '{compress}' requested (use "
                        f"{', '.join(COMPRESSIONS)})")
    compressor = COMPRESSORS[compress]
    if method == "squashfs":
        need("mksquashfs", "squashfs-tools")
    else:
        need(compressor.argv[0], compressor.package)
        need(method, method)
    image = load_image(ctx.db, ctx.site, name)
    if image.provmethod != "netboot":
        raise XcatError(f"'{name}' cannot be used to build diskless image. Make sure "
                        "osimage.provmethod is 'netboot'.")
    yield from pack_osimage(ctx, image, method, compressor,
                            nosyncfiles=bool(a.get("nosyncfiles")))


def _default_gzip() -> str:
    """xCAT's default for cpio and tar: pigz where it is installed, else gzip."""
    import shutil
    return "pigz" if shutil.which("pigz") else "gzip"


NETBOOT_METHODS = ("netboot", "statelite", "raw", "sysclone")


@command("rmimage", args={"imagename": TEXT, "osver": TEXT, "arch": TEXT,
                                       "profile": TEXT, "xcatdef": FLAG, "verbose": FLAG})
def rmimage(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    root_only(req, "rmimage")
    a = req.args
    name = a.get("imagename")
    osver, arch, profile = a.get("osver"), a.get("arch"), a.get("profile")
    verbose = bool(a.get("verbose"))
    if name:
        if osver or arch or profile:
            raise XcatError("-o, -a and -p options are not allowed when a image name is "
                            "specified.")
        imagedir = _image_dir(ctx, name)
    else:
        if not (osver and arch and profile):
            raise XcatError("Missing flag -o, -a or -p")
        if a.get("xcatdef"):
            raise XcatError("--xcatdef can not be used with the -o, -a or -p")
        for word, value in (("-o", osver), ("-a", arch), ("-p", profile)):
            if "/" in value or value in (".", ".."):
                raise XcatError(f"Invalid value '{value}' for {word}")
        imagedir = default_rootimgdir(ctx.site, osver, arch, profile)
    if verbose:
        yield Response(data=f"image directory is {imagedir}")
    check_mn_path(imagedir, "the image directory")
    destdir = ctx.paths.under(imagedir)
    installdir = ctx.site.installdir(ctx.paths)
    if not inside(destdir, installdir):
        raise PackError(f"rmimage: the image directory {imagedir} is not under "
                        f"site.installdir ({_mn(ctx, installdir)}): refusing to remove it",
                        ErrorKind.CONFLICT)
    if not destdir.is_dir():
        raise PackError(f"Image directory {imagedir} does not exist", ErrorKind.NOT_FOUND)
    with image_lock(destdir, name or imagedir, "rmimage"):
        files = image_files(destdir)
        mounted = [m for f in files if f.is_dir() and not f.is_symlink()
                   for m in mounts_under(f)]
        if mounted:
            raise PackError(f"rmimage: {', '.join(mounted[:5])} mounted in the image: "
                            "unmount before removing it (nothing was removed)",
                            ErrorKind.CONFLICT)
        for f in files:
            if f.is_dir() and not f.is_symlink():
                yield Response(data=f"Removing directory {_mn(ctx, f)}")
            else:
                yield Response(data=f"Removing file {_mn(ctx, f)}")
            remove(f)
    if name:
        tftp = ctx.site.tftpdir(ctx.paths) / "xcat" / "osimage" / name
        if "/" not in name and tftp.is_dir() and inside(tftp, ctx.site.tftpdir(ctx.paths)):
            yield Response(data=f"Removing directory {_mn(ctx, tftp)}")
            remove(tftp)
    yield Response(data="Image files have been removed successfully from this management "
                        "node.")
    if name and a.get("xcatdef"):
        yield Response(data=f"Removing osimage definition for {name}.")
        with ctx.db.begin() as conn:
            ObjectWriter(ctx.db, conn).delete("osimage", [name])
        yield Response(data=f"osimage definition for {name} is removed successfully.")


def _image_dir(ctx: Context, name: str) -> str:
    """The image's directory: linuximage.rootimgdir, else made from the osimage (or, as xCAT
    does, from the name <os>-<arch>-<method>-<profile> when there is no definition)."""
    rows = ctx.db.rows("osimage", keys=[name])
    osimage = rows[0] if rows else {}
    method = osimage.get("provmethod")
    if method and method not in NETBOOT_METHODS:
        raise XcatError(f'Invalid method "{method}", the rmimage command can only be used to '
                        "remove the netboot, statelite, sysclone or raw image files")
    linux = (ctx.db.rows("linuximage", keys=[name]) or [{}])[0]
    if linux.get("rootimgdir"):
        return linux["rootimgdir"].rstrip("/")
    osver, arch, profile = (osimage.get(k) for k in ("osvers", "osarch", "profile"))
    if not (osver and arch and profile):
        parts = name.split("-", 3)
        if len(parts) != 4 or not all(parts):
            raise XcatError(f"Invalid image name {name}", kind=ErrorKind.NOT_FOUND)
        osver, arch, method, profile = parts
        if method not in NETBOOT_METHODS:
            raise XcatError(f'Invalid method "{method}", the rmimage command can only be used '
                            "to remove the netboot, statelite, sysclone or raw image files")
    for value in (osver, arch, profile):
        if "/" in value or value in (".", ".."):
            raise XcatError(f"osimage {name}: '{value}' cannot be part of a directory name")
    return default_rootimgdir(ctx.site, osver, arch, profile)
