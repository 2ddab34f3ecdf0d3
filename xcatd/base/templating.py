"""Jinja2 for everything generated. A site overrides a shipped template by putting a file
of the same name in its custom template directory (site.templatedir, default
<installdir>/custom/templates under XCATROOT)."""
from __future__ import annotations

import functools
from pathlib import Path

import jinja2

from xcatd.base.paths import Paths


def custom_dir(paths: Paths, site: dict[str, str]) -> Path:
    if site.get("templatedir"):
        return paths.under(site["templatedir"])
    return paths.under(site.get("installdir") or "/install") / "custom" / "templates"


def environment(paths: Paths, site: dict[str, str]) -> jinja2.Environment:
    """The site's custom template directory first, then the shipped templates."""
    return _environment(jinja2.ChoiceLoader([
        jinja2.FileSystemLoader(str(custom_dir(paths, site))),
        jinja2.PackageLoader("xcatd.templates", "."),
    ]))


@functools.lru_cache(maxsize=1)
def shipped_environment() -> jinja2.Environment:
    """The shipped templates only (no site at hand: doctests, tools)."""
    return _environment(jinja2.PackageLoader("xcatd.templates", "."))


def _environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    return jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True,
                              lstrip_blocks=True, autoescape=False)


# ---- install and netboot templates -----------------------------------------------------------
#: Which template directory serves an OS: xCAT's platform directories.
PLATFORMS = {"rh": ("rhels", "rhel", "rocky", "alma", "centos", "ol", "fedora"),
             "debian": ("debian",), "ubuntu": ("ubuntu",)}
#: OS families that share templates: a rocky9.4 node finds compute.rhels9.tmpl.
FAMILY = {"rocky": "rhels", "alma": "rhels", "rhel": "rhels", "centos": "rhels", "ol": "rhels"}


def platform_of(osvers: str) -> str | None:
    """'rh', 'debian' or 'ubuntu' for an osvers such as rocky9.4, debian12.5, ubuntu24.04."""
    name = osvers.rstrip("0123456789.")
    for platform, names in PLATFORMS.items():
        if name in names:
            return platform
    return None


def template_names(profile: str, osvers: str, arch: str, ext: str) -> list[str]:
    """xCAT's lookup order, most specific first: profile.os.arch, profile.genos.arch,
    profile.os, profile.genos, profile.arch, profile (genos is the major version,
    rocky9.4 -> rocky9); each OS name is tried as itself, then as its family (rhels)."""
    import re
    oses: list[str] = []
    m = re.match(r"([a-z]+)(\d+)?", osvers)
    for os_ in (osvers, f"{m.group(1)}{m.group(2) or ''}" if m else osvers):
        for cand in (os_, FAMILY.get(m.group(1), "") + os_[len(m.group(1)):] if m and
                     m.group(1) in FAMILY else ""):
            if cand and cand not in oses:
                oses.append(cand)
    names = [f"{profile}.{o}.{arch}.{ext}" for o in oses]
    names += [f"{profile}.{o}.{ext}" for o in oses]
    names += [f"{profile}.{arch}.{ext}", f"{profile}.{ext}"]
    return list(dict.fromkeys(names))


def shipped_dir(kind: str) -> Path:
    """The templates shipped with the toolkit for ``kind`` ('install' or 'netboot')."""
    from importlib.resources import files
    return Path(str(files("xcatd.templates"))) / kind


def find_template(paths: Paths, site: dict[str, str], kind: str, profile: str, osvers: str,
                  arch: str, ext: str = "tmpl") -> Path | None:
    """The template file for an osimage: the site's <installdir>/custom/<kind>/<platform>
    first, then the shipped templates/<kind>/<platform>, each from <profile>.<os>.<arch>
    down to <profile>. None when there is none."""
    platform = platform_of(osvers)
    if platform is None:
        return None
    installdir = paths.under(site.get("installdir") or "/install")
    for base in (installdir / "custom" / kind / platform, shipped_dir(kind) / platform):
        for name in template_names(profile, osvers, arch, ext):
            if (base / name).is_file():
                return base / name
    return None


def profiles(paths: Paths, site: dict[str, str], kind: str, osvers: str, arch: str,
             ext: str = "tmpl") -> list[str]:
    """The profiles (compute, service, ...) that have a ``kind`` template for this OS."""
    platform = platform_of(osvers)
    if platform is None:
        return []
    installdir = paths.under(site.get("installdir") or "/install")
    found = set()
    for base in (installdir / "custom" / kind / platform, shipped_dir(kind) / platform):
        if not base.is_dir():
            continue
        for f in base.iterdir():
            profile = f.name.split(".", 1)[0]
            if profile not in found and find_template(paths, site, kind, profile, osvers,
                                                       arch, ext) is not None:
                found.add(profile)
    return sorted(found)


def find_os_file(paths: Paths, site: dict[str, str], kind: str, profile: str, osvers: str,
                 arch: str, ext: str = "tmpl") -> Path | None:
    """Like find_template, then the OS name without its version (compute.ubuntu.tmpl serves
    every Ubuntu release, since one autoinstall format covers them all): a file that matches
    the version stays the better match, and the site's custom directory still wins."""
    found = find_template(paths, site, kind, profile, osvers, arch, ext)
    if found is not None:
        return found
    platform = platform_of(osvers)
    name = osvers.rstrip("0123456789.")
    if platform is None or not name:
        return None
    oses = list(dict.fromkeys([name, FAMILY.get(name, name)]))
    names = [f"{profile}.{o}.{arch}.{ext}" for o in oses] + [f"{profile}.{o}.{ext}" for o in oses]
    installdir = paths.under(site.get("installdir") or "/install")
    for base in (installdir / "custom" / kind / platform, shipped_dir(kind) / platform):
        for n in names:
            if (base / n).is_file():
                return base / n
    return None
