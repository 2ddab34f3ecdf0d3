"""``mkdef -u`` / ``chdef -u`` for osimages: fill in an osimage definition from its osvers,
osarch, profile and provmethod, as xCAT does: the OS and architecture default to the
management node's, and the install template, package lists, exclusion list, postinstall
script and synclist are the files found for the profile (the site's
``<installdir>/custom/<kind>/<platform>`` first, then the shipped ones).

As copycds does, shipped files are not recorded (their path is inside the Python
installation and moves with every upgrade): nodeset and genimage find them themselves when
the attribute is empty. Files from the site's custom directory are recorded as management-node
paths (``/install/custom/...``).

>>> mn_osvers({"ID": "rocky", "VERSION_ID": "9.4"}), mn_osvers({"ID": "rhel", "VERSION_ID": "8"})
('rocky9.4', 'rhels8')
"""
from __future__ import annotations

import contextlib
import platform
from pathlib import Path

from xcatd.base.paths import Paths
from xcatd.base.request import XcatError
from xcatd.base.site import SiteValues
from xcatd.provision.osfamily import family, find_os_file, normalise_arch, shipped_dir

PROVMETHODS = ("install", "netboot", "statelite")
#: The osimage attributes chdef -u takes from the existing definition when not given.
IMAGE_ATTRS = ("imagetype", "provmethod", "profile", "osname", "osvers", "osarch")


def os_release(paths: Paths) -> dict[str, str]:
    """The management node's /etc/os-release (under XCATROOT) as {KEY: value}."""
    out: dict[str, str] = {}
    try:
        text = paths.under("/etc/os-release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip('"').strip("'")
    return out


def mn_osvers(release: dict[str, str]) -> str | None:
    """xCAT's osvers for an os-release: rhel 8 -> rhels8, rocky 9.4 -> rocky9.4."""
    name, version = release.get("ID", "").lower(), release.get("VERSION_ID", "")
    if not name or not version:
        return None
    return ("rhels" if name == "rhel" else name) + version


def fill(attrs: dict[str, str], *, paths: Paths, site: SiteValues, command: str,
         machine: str | None = None) -> dict[str, str]:
    """The osimage attributes ``attrs`` completes to (a new dict); XcatError names what is
    missing or wrong, in xCAT's words."""
    a = dict(attrs)
    profile, provmethod = a.get("profile"), a.get("provmethod")
    if not profile or not provmethod:
        raise XcatError("The profile and provmethod are all need to be specified.")
    if provmethod not in PROVMETHODS:
        raise XcatError(f"The provmethod: {provmethod} is incorrect.")
    if not a.get("osvers"):
        osvers = mn_osvers(os_release(paths))
        if not osvers:
            raise XcatError("Cannot tell the management node's OS (no /etc/os-release): "
                            "give osvers=.")
        a["osvers"] = osvers
    if not a.get("osarch"):
        a["osarch"] = normalise_arch(machine or platform.machine())
    osvers, arch = a["osvers"], a["osarch"]
    kind = "install" if provmethod == "install" else "netboot"
    fam = family(osvers)
    if fam is None:
        raise XcatError(f"Unable to find the {kind} templates for {osvers}.")
    if a.get("imagetype") and a["imagetype"].lower() != "linux":
        raise XcatError(f"The input imagetype:{a['imagetype']} not match linux.")
    a["imagetype"] = a.get("imagetype") or "linux"
    if a.get("osname") and not a["osname"].lower().startswith("linux"):
        raise XcatError(f"The input osname:{a['osname']} not match Linux.")
    a["osname"] = a.get("osname") or "Linux"
    a["osdistroname"] = f"{osvers}-{arch}"
    installdir = site.directory("installdir", "/install")

    def find(ext: str) -> str:
        found = find_os_file(paths, site, kind, profile, osvers, arch, ext)
        return _recorded(paths, kind, found)

    def default(attr: str, value: str, always: bool = False) -> None:
        if (always and value) or not a.get(attr):
            a[attr] = value

    default("synclists", find("synclist"), always=command == "chdef")
    if provmethod == "install":
        a.update(exlist="", postinstall="", rootimgdir="")
        default("template", find("tmpl"), always=command == "chdef")
    else:
        a["template"] = ""
        default("exlist", find("exlist"))
        default("postinstall", find("postinstall"))
        default("rootimgdir", f"{installdir}/netboot/{osvers}/{arch}/{profile}")
    default("pkglist", find("pkglist"))
    default("otherpkglist", find("otherpkgs.pkglist"))
    default("otherpkgdir", f"{installdir}/post/otherpkgs/{osvers}/{arch}")
    default("pkgdir", f"{installdir}/{osvers}/{arch}")
    return a


def _recorded(paths: Paths, kind: str, found: Path | None) -> str:
    """A found file as the osimage records it: '' for a shipped one (see the module)."""
    if found is None or shipped_dir(kind) in found.parents:
        return ""
    with contextlib.suppress(ValueError):
        return "/" + found.relative_to(paths.root).as_posix()
    return str(found)
