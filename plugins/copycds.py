"""copycds: copy a distribution's DVD/ISO (or a directory holding one) into the install tree,
record it in the osdistro table and define the osimages its templates allow (install,
netboot and statelite).

Messages and options follow xCAT's copycds and its anaconda/debian plugins. Existing osimages
are never overwritten: copycds fills only the attributes an image does not have yet, and
says which differing values it kept (xCAT rewrites them, losing an admin's changes).
"""
from __future__ import annotations

import contextlib
import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from xcatd.base.progress import Meter
from xcatd.base.request import Request, Response, XcatError
from xcatd.base.site import DEFAULT_INSTALLDIR
from xcatd.handler import FLAG, TEXT, TEXT_OR_TEXTS, Context, command, root_only
from xcatd.provision.media import (
    Distro,
    Media,
    MediaError,
    check_destination,
    copied_fingerprints,
    copying,
    fingerprint,
    identify,
    media_bytes,
    normalise_arch,
    open_media,
    osver_parts,
)
from xcatd.provision.osfamily import FAMILIES, family, find_os_file, profiles, shipped_dir

UNKNOWN = "copycds could not identify the ISO supplied, you may wish to try -n <osver>"
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


@dataclass
class Options:
    sources: list[str]
    name: str | None
    arch: str | None
    path: str | None
    noosimage: bool
    nonoverwrite: bool
    inspection: bool

    @classmethod
    def from_request(cls, req: Request) -> Options:
        a = req.args
        sources = a.get("sources") or []
        if isinstance(sources, str):
            sources = [sources]
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise XcatError("copycds: sources must be a list of paths")
        if not sources:
            raise XcatError("copycds needs at least one full path to ISO currently.")
        for s in sources:
            if not s.startswith("/"):
                raise XcatError(f"copycds needs a full path: {s} is relative (the management "
                                "node does not know your working directory)")
        opts = cls(sources, _text(a, "name"), _text(a, "arch"), _text(a, "path"),
                   bool(a.get("noosimage")), bool(a.get("nonoverwrite")),
                   bool(a.get("inspection")))
        if opts.name and not _SAFE.fullmatch(opts.name):
            raise XcatError(f"Invalid distribution name '{opts.name}': use letters, digits "
                            "and . _ + - (for example rhels9.4)")
        if opts.arch:
            opts.arch = normalise_arch(opts.arch)
            if not _SAFE.fullmatch(opts.arch):
                raise XcatError(f"Invalid architecture '{opts.arch}'")
        if opts.path is not None:
            if not opts.path.startswith("/"):
                raise XcatError(f"copycds -p needs a full path: {opts.path} is relative")
            opts.path = posixpath.normpath(opts.path)
            if opts.path == "/":
                raise XcatError("copycds -p /: refusing to replace the root directory")
        return opts


def _text(args: dict, key: str) -> str | None:
    value = args.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise XcatError(f"copycds: {key} must be a string")
    return value.lstrip("=")  # xCAT's own examples write -n=rhels6.4


@command("copycds", args={"sources": TEXT_OR_TEXTS, "name": TEXT, "arch": TEXT, "path": TEXT,
                         "noosimage": FLAG, "nonoverwrite": FLAG, "inspection": FLAG})
def copycds(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    root_only(req, "copycds")
    opts = Options.from_request(req)
    for source in opts.sources:
        yield from _one_source(ctx, opts, source)


def _one_source(ctx: Context, opts: Options, source: str) -> Iterator[Response]:
    try:
        media = open_media(source)
    except MediaError as exc:
        yield Response(error=str(exc), errorcode=1)
        return
    with media:
        try:
            distro = identify(media)
        except MediaError as exc:
            yield Response(error=str(exc), errorcode=1)
            return
        if opts.inspection:
            yield from _inspect(opts, source, distro)
            return
        try:
            yield from _copy(ctx, opts, source, media, distro)
        except MediaError as exc:
            yield Response(error=f"Media copy operation failed: {exc}", errorcode=1)
        except OSError as exc:
            yield Response(error=f"Media copy operation failed: {exc.filename or source}: "
                                 f"{exc.strerror or exc}", errorcode=1)


def _inspect(opts: Options, source: str, distro: Distro | None) -> Iterator[Response]:
    yield Response(data=f"OS Image:{source}")
    for flag, value in (("name", opts.name), ("arch", opts.arch)):
        if value:
            yield Response(warning=f"copycds: option --inspection specified, argument "
                                   f"specified with option --{flag} is ignored")
    if distro is None or distro.osvers is None:
        yield Response(error=f"{UNKNOWN} ({source})", errorcode=1)
        return
    yield Response(data=f"DISTNAME:{distro.osvers}")
    yield Response(data=f"ARCH:{distro.arch or ''}")
    if distro.discno:
        yield Response(data=f"DISCNO:{distro.discno}")


def _copy(ctx: Context, opts: Options, source: str, media: Media,
          distro: Distro | None) -> Iterator[Response]:
    refused = _name_refused(opts.name, distro, source) if opts.name else None
    if refused:
        yield Response(error=refused, errorcode=1)
        return
    osvers = opts.name or (distro.osvers if distro else None)
    if osvers is None:
        yield Response(error=f"{UNKNOWN} ({source})", errorcode=1)
        return
    media_arch = distro.arch if distro else None
    if opts.arch and media_arch and opts.arch != media_arch:
        yield Response(error=f"Requested distribution architecture {opts.arch}, but media is "
                             f"{media_arch}", errorcode=1)
        return
    arch = opts.arch or media_arch
    if arch is None:
        yield Response(error=f"copycds cannot tell the architecture of {source}: give it "
                             "with -a", errorcode=1)
        return
    installdir = posixpath.normpath(ctx.site.directory("installdir", DEFAULT_INSTALLDIR))
    default = f"{installdir}/{osvers}/{arch}"
    mn_path = opts.path or default
    if opts.path and not (mn_path + "/").startswith(installdir.rstrip("/") + "/"):
        yield Response(warning=f'copycds: the specified path "{mn_path}" is not a subdirectory '
                               f"under {installdir}. Make sure this path is configured for "
                               "httpd/apache, otherwise, the provisioning with this iso will "
                               "fail!")
    dest = ctx.paths.under(mn_path)
    check_destination(media, dest)
    fp = fingerprint(media)
    before = copied_fingerprints(dest)
    if opts.nonoverwrite and fp in before:
        yield Response(data="The disc iso has already been copied in!")
        return
    discno = distro.discno if distro else ""
    merge = discno not in ("", "1", "ALL") and dest.is_dir()
    yield Response(data=f"Copying media to {mn_path}")
    meter = Meter(f"Copying {posixpath.basename(source)}", total=media_bytes(media),
                  unit="bytes")
    result = yield from meter.follow(copying(media, dest, merge=merge,
                                             fingerprints=(before if merge else []) + [fp]))
    for link in result.skipped_links or ():
        yield Response(warning=f"{source}: link {link} points outside the media: not copied")
    for link in result.removed_links or ():
        yield Response(warning=f"{mn_path}: link {link} of the previous copy points outside "
                               "it: removed")
    if opts.path and not _nested(mn_path, default):
        _link_default(ctx.paths.under(default), dest)
    yield Response(data="Media copy operation successful")
    yield from _record(ctx, osvers, arch, mn_path, installdir, not opts.noosimage)


def _name_refused(name: str, distro: Distro | None, source: str) -> str | None:
    """Why a -n name cannot be used for this media, or None. As with xCAT's copycds, whose
    OS plugins each take only names of their own family (anaconda: the RHEL family, debian:
    Debian and Ubuntu) and nothing answers for the rest: a distribution we do not provision
    (aix, sles, windows) is refused, and so is a name of another family than the media's.
    Media that does not say what it is takes a RHEL-family name, as xCAT's anaconda plugin
    does; Debian and Ubuntu names need their media's .disk/info."""
    wanted = family(name)
    if wanted is None:
        known = ", ".join(n for f in FAMILIES for n in f.names)
        return f"{UNKNOWN} ({source}: -n {name} is not a distribution copycds can copy: " \
               f"{known})"
    held = distro.platform if distro else ""
    if held and held != wanted.platform:
        what = distro.osvers or f"{held} media"
        return f"{UNKNOWN} ({source} holds {what}, not {name})"
    if not held and wanted.platform != "rh":
        return f"{UNKNOWN} ({source} is not {wanted.platform} media: no .disk/info names it)"
    return None


def _nested(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _link_default(default: Path, target: Path) -> None:
    """Like xCAT, make <installdir>/<osvers>/<arch> lead to a copy made elsewhere with -p,
    unless a real tree is there already."""
    if default.is_symlink():
        default.unlink()
    elif default.exists():
        return
    default.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    with contextlib.suppress(FileExistsError):
        os.symlink(target, default)


# ---- the database --------------------------------------------------------------------------
def _record(ctx: Context, osvers: str, arch: str, pkgdir: str, installdir: str,
            images: bool) -> Iterator[Response]:
    """osdistro row and osimages, in one transaction."""
    osdistroname = f"{osvers}-{arch}"
    wanted = _image_rows(ctx, osvers, arch, pkgdir, installdir, osdistroname) if images else {}
    kept: dict[str, list[str]] = {}
    with ctx.db.begin() as conn:
        _record_osdistro(ctx, conn, osvers, arch, pkgdir, osdistroname)
        for table in ("osimage", "linuximage"):
            updates = {}
            existing = {r["imagename"]: r for r in ctx.db.rows(
                table, conn, keys=wanted, include_disabled=True)}
            for name, rows in wanted.items():
                values, row = rows[table], existing.get(name)
                if row is None:
                    updates[(name,)] = values
                    continue
                fill = {c: v for c, v in values.items() if row.get(c) in (None, "")}
                differ = sorted(c for c, v in values.items()
                                if row.get(c) not in (None, "", v))
                if fill:
                    updates[(name,)] = fill
                kept.setdefault(name, []).extend(f"{table}.{c}" for c in differ)
            if updates:
                ctx.db.set_rows(conn, table, updates)
    for name, cols in kept.items():
        if cols:
            yield Response(warning=f"osimage {name} exists and differs from what copycds "
                                   f"defines ({', '.join(cols)}): kept as it is")


def _record_osdistro(ctx: Context, conn, osvers: str, arch: str, pkgdir: str,
                     osdistroname: str) -> None:
    basename, major, minor = osver_parts(osvers)
    rows = ctx.db.rows("osdistro", conn, keys=[osdistroname], include_disabled=True)
    paths = [p for p in (rows[0].get("dirpaths") or "").split(",") if p] if rows else []
    if pkgdir.rstrip("/") not in [p.rstrip("/") for p in paths]:
        paths.append(pkgdir)
    ctx.db.set_rows(conn, "osdistro", {(osdistroname,): {
        "basename": basename, "majorversion": major or None, "minorversion": minor or None,
        "arch": arch, "type": "Linux", "dirpaths": ",".join(paths)}})


def _image_rows(ctx: Context, osvers: str, arch: str, pkgdir: str, installdir: str,
                osdistroname: str) -> dict[str, dict[str, dict[str, str]]]:
    """{imagename: {'osimage': {...}, 'linuximage': {...}}} as xCAT's copycds fills them: an
    ``install`` image for every profile with an install template (.tmpl), and a ``netboot``
    and a ``statelite`` image for every profile with a netboot package list (.pkglist). The
    statelite image shares the netboot profile's files and its rootimgdir, as in xCAT (one
    genimage serves both; liteimg adds the statelite layer). Like xCAT, rootfstype is left
    empty: nodeset's default applies until an admin picks one.

    Files from the site's custom directory are recorded as management-node paths
    (/install/custom/...). Shipped files are not recorded: their path is inside the Python
    installation and moves with every upgrade, and nodeset and genimage find them
    themselves when the attribute is empty."""
    site, paths = ctx.site, ctx.paths

    def find(kind: str, profile: str, ext: str) -> str | None:
        found = find_os_file(paths, site, kind, profile, osvers, arch, ext)
        if found is None or shipped_dir(kind) in found.parents:
            return None
        with contextlib.suppress(ValueError):
            return "/" + found.relative_to(paths.root).as_posix()
        return str(found)

    otherpkgdir = f"{installdir}/post/otherpkgs/{osvers}/{arch}"
    out: dict[str, dict[str, dict[str, str]]] = {}
    for kind, ext, methods in (("install", "tmpl", ("install",)),
                               ("netboot", "pkglist", ("netboot", "statelite"))):
        for profile in profiles(paths, site, kind, osvers, arch, ext):
            linux = {"pkgdir": pkgdir, "pkglist": find(kind, profile, "pkglist"),
                     "otherpkglist": find(kind, profile, "otherpkgs.pkglist"),
                     "otherpkgdir": otherpkgdir}
            if kind == "install":
                linux["template"] = find(kind, profile, "tmpl")
            else:
                linux.update(exlist=find(kind, profile, "exlist"),
                             postinstall=find(kind, profile, "postinstall"),
                             rootimgdir=f"{installdir}/netboot/{osvers}/{arch}/{profile}")
            synclists = find(kind, profile, "synclist")
            for method in methods:
                osimage = {"imagetype": "linux", "provmethod": method, "profile": profile,
                           "osname": "Linux", "osvers": osvers, "osarch": arch,
                           "osdistroname": osdistroname, "synclists": synclists}
                out[f"{osvers}-{arch}-{method}-{profile}"] = {
                    "osimage": {k: v for k, v in osimage.items() if v},
                    "linuximage": {k: v for k, v in linux.items() if v}}
    return out
