"""genimage: build a netboot (stateless) or statelite image root from its osimage definition
(xcatd.provision.imagebuild does the work). ``genimage <imagename>``, or ``genimage -o os -a
arch -p profile`` for ``<os>-<arch>-netboot-<profile>`` (defined when it is not yet). As in
xCAT, -n and -k are written back to the osimage's linuximage row.

Attributes left empty fall back to xCAT's defaults: pkgdir ``<installdir>/<os>/<arch>``,
rootimgdir ``<installdir>/netboot/<os>/<arch>/<profile>``, and the pkglist and postinstall
files found for the profile (the site's ``<installdir>/custom/netboot`` first, then the
shipped ones). A Debian or Ubuntu image is bootstrapped from the http(s) mirrors named in
pkgdir, else ``site.debianmirror``, else the Debian mirror.
"""
from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterator
from pathlib import Path

from xcatd.base.request import ErrorKind, Request, Response, XcatError
from xcatd.base.site import DEFAULT_INSTALLDIR
from xcatd.handler import TEXT, Context, command, root_only
from xcatd.netboot.diskless import build_initrd, install_into_image
from xcatd.provision.imagebuild import (
    CACHE_ENV,
    DEFAULT_DEBIAN_MIRROR,
    ImageBuildError,
    ImageBusy,
    ImageSpec,
    build_image,
)
from xcatd.provision.osfamily import find_os_file, normalise_arch, platform_of, template_dirs
from xcatd.provision.pkglist import PkgListError, PkgPass, read_pkglist, read_pkglists

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_URL = re.compile(r"https?://", re.I)


@command("genimage", writes=True,
         args={"imagename": TEXT, "osvers": TEXT, "arch": TEXT, "profile": TEXT,
               "netdrivers": TEXT, "kernelver": TEXT})
def genimage(req: Request, ctx: Context, _nodes) -> Iterator[Response]:
    root_only(req, "genimage")
    a = req.args
    name = (a.get("imagename") or "").strip()
    for key in ("osvers", "arch", "profile"):
        if a.get(key) and not _SAFE.fullmatch(a[key]):
            raise XcatError(f"genimage: invalid {key} '{a[key]}'")
    if not name:
        if not a.get("osvers") or not a.get("profile"):
            raise XcatError("genimage: give an osimage name, or -o <osver> and -p <profile> "
                            "(-a defaults to this machine's architecture)")
        arch = normalise_arch(a.get("arch") or platform.machine())
        name = f"{a['osvers']}-{arch}-netboot-{a['profile']}"
    osimage, linux = _define(ctx, name, a)
    spec = image_spec(ctx, name, osimage, linux)
    yield Response(data=f"Building osimage {name} in {linux['rootimgdir']}")
    build = build_image(spec, cache=_cache(), initrd_builder=build_initrd,
                        image_hooks=(("the booted report (xcat-booted.service)",
                                      install_into_image),))
    try:
        while True:
            yield Response(data=f"  {next(build)}")
    except StopIteration as done:
        result = done.value
    except ImageBusy as exc:
        raise XcatError(f"genimage: {exc}", kind=ErrorKind.BUSY) from None
    except ImageBuildError as exc:
        raise XcatError(f"genimage: {name}: {exc}") from None
    finally:
        build.close()  # cancelled: the build's processes are stopped, its scratch removed
    for note in result.notes:
        yield Response(warning=f"genimage: {name}: {note}")
    yield Response(data=f"genimage: {name} built{' (from the cache)' if result.cached else ''}"
                        f": {linux['rootimgdir']}/rootimg")


def _cache() -> Path | None:
    value = os.environ.get(CACHE_ENV, "").strip()
    return Path(value) if value else None


# ---- the osimage definition --------------------------------------------------------------
def _define(ctx: Context, name: str, a: dict) -> tuple[dict, dict]:
    """The osimage and linuximage rows of ``name``: defined from -o/-a/-p when missing, with
    -n/-k (and -o/-a/-p) written back, as xCAT's genimage does."""
    with ctx.db.begin() as conn:
        rows = ctx.db.rows("osimage", conn, keys=[name])
        lrows = ctx.db.rows("linuximage", conn, keys=[name])
        osimage = dict(rows[0]) if rows else None
        linux = dict(lrows[0]) if lrows else {"imagename": name}
        if osimage is None:
            if not a.get("osvers") or not a.get("profile"):
                raise XcatError(f"genimage: osimage {name} is not defined (define it with "
                                "mkdef -t osimage, copycds, or give -o, -a and -p)",
                                kind=ErrorKind.NOT_FOUND)
            osimage = {"imagename": name, "imagetype": "linux", "provmethod": "netboot",
                       "osname": "Linux"}
        if (osimage.get("provmethod") or "netboot") not in ("netboot", "statelite"):
            raise XcatError(f"genimage: osimage {name} is an {osimage['provmethod']} image: "
                            "genimage builds netboot and statelite images")
        changes = {c: a[k] for k, c in (("osvers", "osvers"), ("profile", "profile"))
                   if a.get(k)}
        if a.get("arch"):
            changes["osarch"] = normalise_arch(a["arch"])
        osimage.update(changes)
        for col in ("osvers", "osarch", "profile"):
            if not osimage.get(col):
                raise XcatError(f"genimage: osimage {name} has no {col}: set it with chdef "
                                f"-t osimage {name} {col}=...")
        lchanges = {c: a[c] for c in ("netdrivers", "kernelver") if a.get(c)}
        installdir = ctx.site.text("installdir", DEFAULT_INSTALLDIR).rstrip("/") or ""
        os_, arch, profile = osimage["osvers"], osimage["osarch"], osimage["profile"]
        if not linux.get("rootimgdir"):
            lchanges["rootimgdir"] = f"{installdir}/netboot/{os_}/{arch}/{profile}"
        if not linux.get("pkgdir"):
            lchanges["pkgdir"] = f"{installdir}/{os_}/{arch}"
        linux.update(lchanges)
        if changes or not rows:
            ctx.db.set_rows(conn, "osimage", {(name,): {k: v for k, v in osimage.items()
                                                       if k != "imagename"}})
        if lchanges:
            ctx.db.set_rows(conn, "linuximage", {(name,): lchanges})
    return osimage, linux


def image_spec(ctx: Context, name: str, osimage: dict, linux: dict) -> ImageSpec:
    """What to build, from the definition: lists read, sources chosen, paths mapped."""
    os_, arch, profile = osimage["osvers"], osimage["osarch"], osimage["profile"]
    platform_ = platform_of(os_)
    if platform_ is None:
        raise XcatError(f"genimage: {name}: cannot build {os_} images (Debian, Ubuntu and the "
                        "RHEL family only)")
    search = template_dirs(ctx.paths, ctx.site, "netboot", platform_)
    try:
        passes = _passes(ctx, linux.get("pkglist"), "pkglist", os_, arch, profile, search)
        other = _passes(ctx, linux.get("otherpkglist"), "otherpkgs.pkglist", os_, arch,
                        profile, search)
    except PkgListError as exc:
        raise XcatError(f"genimage: {name}: {exc}") from None
    pkgdirs = _words(linux.get("pkgdir"))
    otherdirs = _words(linux.get("otherpkgdir"))
    if platform_ == "rh":
        mirrors = tuple(_mapped(ctx, d) for d in pkgdirs)
        otherrepos = tuple(_mapped(ctx, d) for d in otherdirs) if other else ()
    else:
        mirrors = tuple(d for d in pkgdirs if _URL.match(d)) or \
            (ctx.site.text("debianmirror", DEFAULT_DEBIAN_MIRROR),)
        otherrepos = tuple(_mapped(ctx, d) for d in otherdirs) if other else ()
        for d in otherrepos:
            if not _URL.match(d) and not any((Path(d) / f).is_file()
                                             for f in ("Packages", "Packages.gz")):
                raise XcatError(f"genimage: {name}: otherpkgdir {d} has no Packages index "
                                "(make one with dpkg-scanpackages . > Packages)")
    scripts = tuple(_script(ctx, name, p) for p in _words(linux.get("postinstall")))
    if not linux.get("postinstall"):
        shipped = find_os_file(ctx.paths, ctx.site, "netboot", profile, os_, arch,
                               "postinstall")
        scripts = (shipped,) if shipped else ()
    return ImageSpec(name, os_, arch, profile, ctx.paths.under(linux["rootimgdir"]),
                     passes=tuple(passes), otherpasses=tuple(other), mirrors=mirrors,
                     otherrepos=otherrepos, postinstall=scripts,
                     kernelver=linux.get("kernelver") or "",
                     netdrivers=linux.get("netdrivers") or "",
                     attrs={k: linux.get(k) or "" for k in
                            ("pkglist", "pkgdir", "otherpkglist", "otherpkgdir",
                             "rootimgdir")})


def _passes(ctx: Context, value: str | None, ext: str, os_: str, arch: str, profile: str,
            search) -> list[PkgPass]:
    if value and value.strip():
        return read_pkglists(value, root=ctx.paths.root, search=search)
    if ext != "pkglist":
        return []
    shipped = find_os_file(ctx.paths, ctx.site, "netboot", profile, os_, arch, ext)
    if shipped is None:
        raise XcatError(f"genimage: no pkglist for profile {profile} of {os_} {arch}: set "
                        "linuximage.pkglist")
    return read_pkglist(shipped, search=search, root=ctx.paths.root)


def _words(value: str | None) -> list[str]:
    return [w.strip() for w in (value or "").split(",") if w.strip()]


def _mapped(ctx: Context, path: str) -> str:
    """A management-node path under XCATROOT; URLs as they are."""
    return path if re.match(r"[a-z]+://", path) else str(ctx.paths.under(path))


def _script(ctx: Context, name: str, path: str) -> Path:
    if not path.startswith("/"):
        raise XcatError(f"genimage: {name}: postinstall {path} is not a full path")
    p = ctx.paths.under(path)
    if not p.is_file():
        raise XcatError(f"genimage: {name}: postinstall script {path} not found")
    if not os.access(p, os.X_OK):
        raise XcatError(f"genimage: {name}: postinstall script {path} is not executable")
    return p
