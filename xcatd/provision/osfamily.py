"""OS families: what provisioning knows about the RHEL family, Debian and Ubuntu, in one
place. Each family owns its osvers names, its template directory (xCAT's platform: rh,
debian, ubuntu), its install file format (xcatd.provision.installformats), where the network
install kernel and initrd sit on its media, and its release code names.

It also finds an osimage's install or netboot template: the site's
``<installdir>/custom/<kind>/<platform>`` first, then the shipped ``templates/<kind>/
<platform>``, each from ``<profile>.<os>.<arch>`` down to ``<profile>`` (xCAT's order;
rocky and alma fall back to rhels).

>>> family("rocky9.4").platform, family("rocky9.4").format.name
('rh', 'kickstart')
>>> family("debian12.5").codename("debian12.5")
'bookworm'
>>> family("ubuntu24.04").boot_files("ubuntu24.04", "x86_64")
('casper/vmlinuz', 'casper/initrd')
>>> template_names("compute", "rocky9.4", "x86_64", "tmpl")[:3]
['compute.rocky9.4.x86_64.tmpl', 'compute.rhels9.4.x86_64.tmpl', 'compute.rocky9.x86_64.tmpl']
>>> family("solaris11") is None
True
"""
from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from xcatd.base.paths import Paths
from xcatd.base.request import XcatError
from xcatd.base.site import SiteValues
from xcatd.provision.installformats import FORMATS, InstallFormat

ARCH_ALIASES = {"amd64": "x86_64", "x86-64": "x86_64", "x64": "x86_64", "arm64": "aarch64",
                "ppc64el": "ppc64le", "i386": "x86", "i486": "x86", "i586": "x86",
                "i686": "x86"}


def normalise_arch(arch: str) -> str:
    """xCAT's name for an architecture (amd64 -> x86_64, arm64 -> aarch64, i686 -> x86)."""
    arch = arch.strip()
    return ARCH_ALIASES.get(arch.lower(), arch)


def os_name(osvers: str) -> str:
    """rocky9.4 -> rocky."""
    return osvers.rstrip("0123456789.").lower()


class OsFamily:
    """One family of distributions."""

    #: xCAT's template platform directory
    platform: str = ""
    #: osvers names (without the version) of the family
    names: tuple[str, ...] = ()
    #: the name whose templates others share (rocky9.4 finds compute.rhels9.tmpl), and
    #: the names that share them
    template_name: str | None = None
    template_sharers: tuple[str, ...] = ()

    def shared_name(self, name: str) -> str | None:
        """The template name ``name`` falls back to, if any."""
        return self.template_name if name in self.template_sharers else None
    format: InstallFormat

    def boot_files(self, osvers: str, arch: str) -> tuple[str, str]:
        """The (kernel, initrd) paths, relative to the copied distribution directory, that a
        node boots to start a network install."""
        raise NotImplementedError

    def codename(self, osvers: str) -> str | None:
        """The release's code name where the installer needs one (Debian's suite)."""
        return None


class RhelFamily(OsFamily):
    platform = "rh"
    names = ("rhels", "rhel", "rocky", "alma", "centos", "ol", "fedora")
    template_name = "rhels"
    template_sharers = ("rocky", "alma", "rhel", "centos", "ol")
    format = FORMATS["kickstart"]

    def boot_files(self, osvers: str, arch: str) -> tuple[str, str]:
        return "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"


class Debian(OsFamily):
    platform = "debian"
    names = ("debian",)
    format = FORMATS["preseed"]
    #: the Debian installer's directory on the media, by architecture
    INSTALLER_DIRS = {"x86_64": "install.amd", "aarch64": "install.a64", "x86": "install.386",
                      "ppc64le": "install", "s390x": "install"}
    CODENAMES = {"10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie"}

    def boot_files(self, osvers: str, arch: str) -> tuple[str, str]:
        d = self.INSTALLER_DIRS.get(normalise_arch(arch))
        if d is None:
            raise XcatError(f"No network install kernel known for {osvers} on {arch}")
        return f"{d}/vmlinuz", f"{d}/initrd.gz"

    def codename(self, osvers: str) -> str | None:
        m = re.match(r"[a-z]+(\d+)", osvers)
        return self.CODENAMES.get(m.group(1)) if m else None


class Ubuntu(OsFamily):
    platform = "ubuntu"
    names = ("ubuntu",)
    format = FORMATS["autoinstall"]

    def boot_files(self, osvers: str, arch: str) -> tuple[str, str]:
        return "casper/vmlinuz", "casper/initrd"


FAMILIES: tuple[OsFamily, ...] = (RhelFamily(), Debian(), Ubuntu())
_BY_NAME = {name: f for f in FAMILIES for name in f.names}


def family(osvers: str) -> OsFamily | None:
    """The family of an osvers such as rocky9.4, debian12.5, ubuntu24.04 (None: unknown)."""
    return _BY_NAME.get(os_name(osvers))


def platform_of(osvers: str) -> str | None:
    """'rh', 'debian' or 'ubuntu' for an osvers (None: unknown)."""
    f = family(osvers)
    return f.platform if f else None


def boot_files(osvers: str, arch: str) -> tuple[str, str]:
    """The network install kernel and initrd of an OS on its copied media."""
    f = family(osvers)
    if f is None:
        raise XcatError(f"No network install kernel known for {osvers}: not a distribution "
                        "copycds recognises")
    return f.boot_files(osvers, arch)


# ---- install and netboot templates ---------------------------------------------------------
def template_names(profile: str, osvers: str, arch: str, ext: str) -> list[str]:
    """xCAT's lookup order, most specific first: profile.os.arch, profile.genos.arch,
    profile.os, profile.genos, profile.arch, profile (genos is the major version,
    rocky9.4 -> rocky9); each OS name is tried as itself, then as its family's (rhels)."""
    oses: list[str] = []
    m = re.match(r"([a-z]+)(\d+)?", osvers)
    shared = None
    if m:
        f = family(osvers)
        shared = f.shared_name(m.group(1)) if f else None
    for os_ in (osvers, f"{m.group(1)}{m.group(2) or ''}" if m else osvers):
        for cand in (os_, shared + os_[len(m.group(1)):] if m and shared else ""):
            if cand and cand not in oses:
                oses.append(cand)
    names = [f"{profile}.{o}.{arch}.{ext}" for o in oses]
    names += [f"{profile}.{o}.{ext}" for o in oses]
    names += [f"{profile}.{arch}.{ext}", f"{profile}.{ext}"]
    return list(dict.fromkeys(names))


def shipped_dir(kind: str) -> Path:
    """The templates shipped with the toolkit for ``kind`` ('install' or 'netboot')."""
    return Path(str(files("xcatd.templates"))) / kind


def template_dirs(paths: Paths, site: SiteValues, kind: str, platform: str) -> list[Path]:
    """Where ``kind`` templates of a platform are looked for: the site's first."""
    return [site.installdir(paths) / "custom" / kind / platform, shipped_dir(kind) / platform]


def find_template(paths: Paths, site: SiteValues, kind: str, profile: str, osvers: str,
                  arch: str, ext: str = "tmpl") -> Path | None:
    """The template file for an osimage (see the module docstring); None when none."""
    platform = platform_of(osvers)
    if platform is None:
        return None
    for base in template_dirs(paths, site, kind, platform):
        for name in template_names(profile, osvers, arch, ext):
            if (base / name).is_file():
                return base / name
    return None


def profiles(paths: Paths, site: SiteValues, kind: str, osvers: str, arch: str,
             ext: str = "tmpl") -> list[str]:
    """The profiles (compute, service, ...) that have a ``kind`` file (``ext``) for this OS,
    by the lookup nodeset uses (find_os_file: an OS-wide compute.ubuntu.tmpl serves every
    Ubuntu release)."""
    platform = platform_of(osvers)
    if platform is None:
        return []
    found = set()
    for base in template_dirs(paths, site, kind, platform):
        if not base.is_dir():
            continue
        for f in base.iterdir():
            profile = f.name.split(".", 1)[0]
            if profile not in found and find_os_file(paths, site, kind, profile, osvers,
                                                      arch, ext) is not None:
                found.add(profile)
    return sorted(found)


def find_os_file(paths: Paths, site: SiteValues, kind: str, profile: str, osvers: str,
                 arch: str, ext: str = "tmpl") -> Path | None:
    """Like find_template, then the OS name without its version (compute.ubuntu.tmpl serves
    every Ubuntu release, since one autoinstall format covers them all): a file that matches
    the version stays the better match, and the site's custom directory still wins."""
    found = find_template(paths, site, kind, profile, osvers, arch, ext)
    if found is not None:
        return found
    f = family(osvers)
    name = os_name(osvers)
    if f is None or not name:
        return None
    oses = list(dict.fromkeys([name, f.shared_name(name) or name]))
    names = [f"{profile}.{o}.{arch}.{ext}" for o in oses] + [f"{profile}.{o}.{ext}" for o in oses]
    for base in template_dirs(paths, site, kind, f.platform):
        for n in names:
            if (base / n).is_file():
                return base / n
    return None
