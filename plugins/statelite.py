"""liteimg and lslite (xcatd.provision.statelite): check a statelite osimage's litefile list
and write it, with the image's own copy of each listed file, into the image root; show the
statelite setup of an image or of nodes. Options, output and exit codes follow xCAT's;
liteimg writes ``.statelite/litefile.table`` and ``.default/`` but no symlinks (the node's
initrd binds persistent and ro files over the real paths, so permissions stay real), then
packs the image as packimage does (squashfs, zstd): a statelite node fetches it into RAM."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict

from xcatd.base.request import ErrorKind, Request, Response, XcatError
from xcatd.handler import TEXT, Context, command, root_only
from xcatd.provision.packimage import COMPRESSORS, image_lock, load_image, need, pack_osimage
from xcatd.provision.statelite import (
    LiteError,
    litefile_entries,
    litetree_dirs,
    load_entries,
    state_mount,
    substitute,
    write_image_lists,
)


@command("liteimg", args={"imagename": TEXT})
def liteimg(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    root_only(req, "liteimg")
    name = req.args.get("imagename")
    if not name:
        raise XcatError("An image name is required, use 'liteimg <osimage name>'.")
    image = load_image(ctx.db, ctx.site, name)
    if image.provmethod != "statelite":
        raise LiteError(f"'{name}' is not a statelite image (osimage.provmethod is "
                        f"'{image.provmethod}'): liteimg works on statelite osimages only")
    rootfs = (image.osimage.get("rootfstype") or "").strip()
    if rootfs not in ("", "ramdisk"):
        raise LiteError(f"osimage {name}: rootfstype={rootfs} is not supported: a statelite "
                        "node fetches its packed image into RAM (set osimage.rootfstype="
                        "ramdisk); the root over NFS is not built")
    entries = load_entries(ctx.db, name)
    destdir = ctx.paths.under(image.rootimgdir)
    rootimg = destdir / "rootimg"
    if not rootimg.is_dir() or rootimg.is_symlink():
        raise LiteError(f"{image.rootimgdir}/rootimg does not exist, run genimage {name} "
                        "first", ErrorKind.NOT_FOUND)
    yield Response(data=f"going to modify {image.rootimgdir}/rootimg")
    with image_lock(destdir, name, "liteimg"):
        missing = write_image_lists(rootimg, entries)
    for path in missing:
        yield Response(warning=f"{path} is not in the image: the nodes start without it")
    ro = [e.file for e in entries if e.options in ("ro", "link,ro")]
    if ro and not litetree_dirs(ctx.db, name):
        yield Response(warning=f"{', '.join(ro[:5])} {'is' if len(ro) == 1 else 'are'} ro, "
                               f"but the litetree table has no directory for {name}: the "
                               "nodes will not find them")
    yield Response(data=f"{len(entries)} litefile entries written to "
                        f"{image.rootimgdir}/rootimg/.statelite/litefile.table",
                   obj={"entries": [asdict(e) for e in entries]})
    # rootfstype ramdisk (the only one built): the nodes fetch the packed image into RAM,
    # as packimage packs a netboot image (xCAT's liteimg does the same for ramdisk)
    need("mksquashfs", "squashfs-tools")
    yield from pack_osimage(ctx, image, "squashfs", COMPRESSORS["zstd"])


def _file_lines(entries) -> list[str]:
    return [f"\t{e.options:<13} {e.file}" for e in entries]


@command("lslite", noderange="optional", args={"imagename": TEXT})
def lslite(req: Request, ctx: Context, nodes) -> Iterator[Response]:
    image = req.args.get("imagename")
    if image and nodes is not None:
        raise XcatError("lslite: give either -i imagename or a noderange, not both")
    if image:
        if not ctx.db.rows("osimage", keys=[image]):
            raise XcatError(f"Cannot find image '{image}' from the osimage table.",
                            kind=ErrorKind.NOT_FOUND)
        entries, errors = litefile_entries(ctx.db, image)
        for err in errors:
            yield Response(warning=err)
        if not entries:
            yield Response(data=f"No statelite files for image {image} in the litefile table")
        for line in _file_lines(entries):
            yield Response(data=line.lstrip("\t"))
        return
    if nodes is None:
        raise XcatError("Usage: lslite [-h | --help] | [-V | --verbose] [-i imagename] | "
                        "[noderange]")
    types = ctx.db.resolve(sorted(nodes), {"nodetype": ["os", "arch", "profile",
                                                        "provmethod"]})
    for node in sorted(nodes):
        try:
            yield from _node(ctx, node, types.get(node, {}))
        except XcatError as exc:
            yield Response(node=node, error=str(exc), errorcode=1)


def _node_image(node: str, t: dict) -> str | None:
    method = t.get(("nodetype", "provmethod"))
    if method and method not in ("statelite", "netboot", "install"):
        return method
    parts = [t.get(("nodetype", c)) for c in ("os", "arch", "profile")]
    if method == "statelite" and all(parts):
        return f"{parts[0]}-{parts[1]}-statelite-{parts[2]}"
    return None


def _node(ctx: Context, node: str, t: dict) -> Iterator[Response]:
    image = _node_image(node, t)
    if image is None:
        raise XcatError("no statelite osimage: set nodetype.provmethod to one "
                        "(nodeset <node> osimage=<image>)")
    lines = [f">>>Node: {node}", "", f"Osimage: {image}", ""]
    mount = state_mount(ctx.db, node)
    lines += ["Persistent directory (statelite table):",
              f"\t{mount.statemnt if mount else '(none)'}", ""]
    entries, errors = litefile_entries(ctx.db, image)
    lines += ["Litefiles (litefile table):", *_file_lines(entries), ""]
    lines.append("Litetree path (litetree table):")
    for t_dir in litetree_dirs(ctx.db, image):
        where = substitute(ctx.db, node, t_dir.directory, f"litetree priority {t_dir.priority}")
        lines.append(f"\t{t_dir.priority},{where}")
    lines.append("")
    for err in errors:
        yield Response(warning=err)
    for line in lines:
        yield Response(data=line)
