"""Install files for many nodes at once: kickstart (RHEL family), preseed (Debian) and Ubuntu
autoinstall, rendered from Jinja2 templates.

nodeset calls ``render_install_files`` for the nodes it sets to install, ``validate`` (or
``validate_rendered``, which checks many nodes in one go) before it writes them, and
``install_kcmdline`` for the boot loader's kernel command line. The data is gathered in bulk:
one ``db.resolve`` for all the nodes, one read each of osimage, linuximage, networks and
passwd, and the root password is crypted once per call, so 10,000 nodes cost the same few
queries as one.

>>> install_kcmdline("kickstart", "n1", "http://m/install/autoinst/n1", "http://m/r", "eth0")
'inst.ks=http://m/install/autoinst/n1 inst.repo=http://m/r ip=eth0:dhcp'
>>> install_kcmdline("autoinstall", "n1", "http://m/a/n1", "http://m/u.iso", None, loader="grub")
"ip=dhcp url=http://m/u.iso cloud-config-url=/dev/null autoinstall 'ds=nocloud-net;s=http://m/a/n1/'"

What a template sees (StrictUndefined: a misspelt name is an error, not an empty string):

=========================  =====================================================================
node, hostname, fqdn       the node; fqdn adds networks.domain, else site.domain (``domain``)
ip, netmask, prefix        hosts.ip and the networks row holding it (None without one)
gateway, nameservers       networks.gateway; noderes.nameservers, networks.nameservers or
                           site.nameservers (a list); ``<xcatmaster>`` becomes ``master``
mac, nic, installnic       the first mac.mac; noderes.installnic (else primarynic) unless it is
                           "mac"; installnic: nic, else the MAC, else "link" (kickstart's words)
static                     site.managedaddressmode is "static" (else the install uses DHCP)
master, httpport           noderes.xcatmaster, else site.master; site.httpport (80)
master_hostport            master:httpport, IPv6 in brackets
repo_url                   http://<master>:<httpport>/install/<osvers>/<arch>, or from
                           linuximage.pkgdir (a directory under site.installdir, or a URL)
repo_hostport, repo_path   repo_url's host:port and path (the Debian installer's mirror)
imagename, osvers, arch,   the osimage; codename: the Debian suite (bookworm) or None
profile, codename
packages                   linuximage.pkglist's packages, else the template's .pkglist beside it
partitioning               linuximage.partitionfile's text (None: the template's automatic layout)
partition_script           the script of an ``s:`` partitionfile (kickstart: writes
                           /tmp/partitionfile in %pre)
timezone                   site.timezone (UTC)
root_crypted               passwd key=system username=root, crypted (SHA-512 unless
                           passwd.cryptmethod says md5 or sha256)
callback_url,              from nodeset's ``extra`` (None without): the install's last step POSTs
callback_token             status=installed there with "Authorization: Bearer <token>"
=========================  =====================================================================

Filters: ``sh`` (quote for the shell), ``yaml`` (a YAML scalar or list; JSON is YAML);
test: ``excluded`` (a "-package" line of a pkglist). Any other ``extra`` key is a variable too.
"""
from __future__ import annotations

import logging
import re
import shlex
import subprocess
import traceback
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2

from xcatd.base.paths import Paths
from xcatd.base.request import XcatError
from xcatd.base.site import DEFAULT_INSTALLDIR, SiteValueError, SiteValues
from xcatd.db.cluster import source_address
from xcatd.db.database import Database, split_list
from xcatd.db.netinfo import Network, network_of, networks, parse_macs, valid_ip, valid_mac
from xcatd.provision.installformats import InstallFormat, install_format, yaml_scalar
from xcatd.provision.osfamily import OsFamily, family, find_os_file, template_dirs
from xcatd.security.snjoin import load_identity

log = logging.getLogger("xcatd.provision.installfiles")

NODE_COLUMNS = {"hosts": ["ip"], "mac": ["mac"],
                "noderes": ["xcatmaster", "installnic", "primarynic", "nameservers"]}
CRYPT_PREFIXES = ("$1$", "$5$", "$6$", "$y$")
CRYPT_METHODS = {"md5": "$1$", "sha256": "$5$", "sha512": "$6$"}

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_NIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$")
_TIMEZONE = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")
_URL = re.compile(r"^https?://[^\s'\"\\`$;]+$")
_BEARER = re.compile(r"^[\x21-\x7e]+$")
_KS_VERSION = re.compile(r"^#version=(\S+)", re.MULTILINE)


@dataclass
class Rendered:
    """The install files of one render_install_files call."""

    kind: str                                           # "kickstart" | "preseed" | "autoinstall"
    #: node -> {path relative to <installdir>/autoinst: text}
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    #: node -> message naming the bad part (template, attribute)
    errors: dict[str, str] = field(default_factory=dict)
    #: node -> what its boot loader entry needs: repo_url, nic (interface, MAC or ""), master,
    #: httpport, file_url, kcmdline (install_kcmdline's answer for an iPXE script)
    boot: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Image:
    """What an osimage says about installing it, read once per call."""

    name: str
    osvers: str
    arch: str
    profile: str
    platform: str
    kind: str
    template: Path
    packages: tuple[str, ...]
    partitioning: str | None
    partition_script: str | None
    pkgdir: str | None


class _Bad(Exception):
    """One node's data cannot make an install file; the message names the attribute."""


# ---- the osimage -----------------------------------------------------------------------------
def load_image(db: Database, paths: Paths, site: SiteValues, imagename: str) -> Image:
    """The osimage with its template, packages and partitioning; XcatError names what is
    missing (an unknown image, an unset attribute, a template or list that is not there)."""
    rows = db.rows("osimage", keys=[imagename])
    if not rows:
        raise XcatError(f"Cannot find the OS image definition for '{imagename}' (osimage table)")
    osimage = rows[0]
    for attr in ("osvers", "osarch", "profile"):
        if not osimage.get(attr):
            raise XcatError(f"osimage {imagename}: {attr} is not set")
    imagetype = (osimage.get("imagetype") or "linux").lower()
    provmethod = osimage.get("provmethod") or "install"
    if imagetype != "linux" or provmethod != "install":
        raise XcatError(f"osimage {imagename} is imagetype={imagetype} provmethod={provmethod}:"
                        " install files are for imagetype=linux provmethod=install")
    osvers, arch, profile = osimage["osvers"], osimage["osarch"], osimage["profile"]
    fam = family(osvers)
    if fam is None:
        raise XcatError(f"osimage {imagename}: no install templates for osvers {osvers} "
                        "(RHEL family, Debian and Ubuntu are known)")
    platform, kind = fam.platform, fam.format.name
    li = next(iter(db.rows("linuximage", keys=[imagename])), {})
    template = _template_file(paths, site, li, imagename, platform, profile, osvers, arch)
    partitioning, script = _partitioning(paths, li, imagename, fam.format)
    return Image(imagename, osvers, arch, profile, platform, kind, template,
                 tuple(_packages(paths, site, li, profile, osvers, arch)), partitioning, script,
                 (split_list(li.get("pkgdir")) or [None])[0])


def _template_file(paths: Paths, site: SiteValues, li: dict, imagename: str, platform: str,
                   profile: str, osvers: str, arch: str) -> Path:
    if li.get("template"):
        path = paths.under(li["template"])
        if not path.is_file():
            raise XcatError(f"osimage {imagename}: linuximage.template {li['template']} does "
                            "not exist")
        return path
    found = find_os_file(paths, site, "install", profile, osvers, arch)
    if found is None:
        raise XcatError(f"osimage {imagename}: no install template for profile {profile}, "
                        f"{osvers} {arch} (looked in <installdir>/custom/install/{platform} "
                        f"and the shipped templates/install/{platform})")
    return found


def _packages(paths: Paths, site: SiteValues, li: dict, profile: str, osvers: str,
              arch: str) -> list[str]:
    """linuximage.pkglist (comma-separated files), else the template's own .pkglist."""
    if li.get("pkglist"):
        files = [(paths.under(p), "linuximage.pkglist") for p in split_list(li["pkglist"])]
    else:
        found = find_os_file(paths, site, "install", profile, osvers, arch, ext="pkglist")
        files = [(found, "the template's pkglist")] if found else []
    out: list[str] = []
    for path, what in files:
        out += read_pkglist(paths, path, what)
    return list(dict.fromkeys(out))


def read_pkglist(paths: Paths, path: Path, what: str = "pkglist",
                 _seen: frozenset[Path] = frozenset()) -> list[str]:
    """Package names of an xCAT pkglist: one or more a line, '#' comments, and
    ``#INCLUDE:file#`` (an absolute path is under XCATROOT, a relative one beside this file)."""
    if path in _seen:
        raise XcatError(f"{what}: {path} includes itself")
    try:
        text = path.read_text()
    except OSError as exc:
        raise XcatError(f"{what}: cannot read {path}: {exc.strerror}") from None
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        m = re.fullmatch(r"#INCLUDE:(.+)#", line)
        if m:
            inc = m.group(1).strip()
            target = paths.under(inc) if inc.startswith("/") else path.parent / inc
            out += read_pkglist(paths, target, f"{what} (included from {path})",
                                _seen | {path})
        elif line and not line.startswith("#"):
            out += line.split()
    return out


def _partitioning(paths: Paths, li: dict, imagename: str, fmt: InstallFormat
                  ) -> tuple[str | None, str | None]:
    """(partitioning text, partition script) from linuximage.partitionfile: a file of the
    install format's own partitioning, or ``s:<file>``, a %pre script (kickstart only)."""
    value = li.get("partitionfile")
    if not value:
        return None, None
    script = value.startswith("s:")
    name = value[2:] if script else value
    if re.match(r"^[a-z]:", name) or not name.startswith("/"):
        raise XcatError(f"osimage {imagename}: linuximage.partitionfile '{value}' is not an "
                        "absolute path or s:<absolute path>")
    if script and not fmt.partition_scripts:
        raise XcatError(f"osimage {imagename}: linuximage.partitionfile s: scripts work for "
                        f"kickstart only, not {fmt.name}")
    try:
        text = paths.under(name).read_text().rstrip("\n")
    except OSError as exc:
        raise XcatError(f"osimage {imagename}: linuximage.partitionfile {name}: "
                        f"{exc.strerror}") from None
    return (None, text) if script else (text, None)


# ---- the root password -----------------------------------------------------------------------
def root_password(db: Database) -> str:
    """The crypted root password from passwd key=system username=root (crypted here when it
    is stored in clear). The clear text goes nowhere else: not in errors, not in logs."""
    rows = db.match("passwd", {"key": "system", "username": "root"})
    if not rows or not rows[0].get("password"):
        raise XcatError("No root password for installed nodes: set passwd key=system "
                        "username=root (chtab key=system passwd.username=root "
                        "passwd.password=...)")
    return crypt_password(rows[0]["password"], rows[0].get("cryptmethod"))


def crypt_password(value: str, method: str | None = None) -> str:
    """``value`` if it is crypted already ($1$, $5$, $6$, $y$), else its crypt(3) hash
    (SHA-512 unless ``method`` is md5 or sha256): the stdlib crypt module where Python still
    has it, else ``openssl passwd`` reading the password on stdin (never on argv)."""
    if value.startswith(CRYPT_PREFIXES):
        if any(c.isspace() or c in "'\"\\" for c in value):
            raise XcatError("passwd key=system username=root: the crypted password has "
                            "characters crypt(3) never writes")
        return value
    prefix = CRYPT_METHODS.get((method or "sha512").lower())
    if prefix is None:
        raise XcatError(f"passwd.cryptmethod '{method}' is not one of "
                        f"{', '.join(CRYPT_METHODS)}")
    return _crypt_stdlib(value, prefix) or _crypt_openssl(value, prefix)


def _crypt_stdlib(value: str, prefix: str) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt as _crypt  # Python 3.11/3.12; gone in 3.13
    except ImportError:
        return None
    method = {"$1$": _crypt.METHOD_MD5, "$5$": _crypt.METHOD_SHA256,
              "$6$": _crypt.METHOD_SHA512}[prefix]
    hashed = _crypt.crypt(value, _crypt.mksalt(method))
    return hashed if hashed and hashed.startswith(prefix) else None


def _crypt_openssl(value: str, prefix: str) -> str:
    flag = {"$1$": "-1", "$5$": "-5", "$6$": "-6"}[prefix]
    try:
        p = subprocess.run(["openssl", "passwd", flag, "-stdin"], input=value + "\n",
                           capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        raise XcatError("Cannot crypt the root password: Python has no crypt module and "
                        "openssl cannot be run") from None
    hashed = p.stdout.strip()
    if p.returncode != 0 or not hashed.startswith(prefix):
        raise XcatError(f"Cannot crypt the root password: openssl passwd {flag} failed "
                        f"(exit {p.returncode})")
    return hashed


# ---- per-node data ---------------------------------------------------------------------------
def _site_values(site: SiteValues) -> dict[str, Any]:
    """The values every node shares, checked once (a bad one fails the whole call)."""
    timezone = site.get("timezone") or "UTC"
    if not _TIMEZONE.match(timezone):
        raise XcatError(f"site.timezone '{timezone}' is not a time zone name (Europe/Paris)")
    try:
        port = str(site.httpport())
    except SiteValueError as exc:
        raise XcatError(str(exc)) from None
    mode = (site.get("managedaddressmode") or "dhcp").lower()
    if mode not in ("dhcp", "static"):
        raise XcatError(f"site.managedaddressmode '{mode}' is not dhcp or static")
    return {"timezone": timezone, "httpport": port, "static": mode == "static"}


def _host(addr: str) -> str:
    return f"[{addr}]" if ":" in addr and not addr.startswith("[") else addr


def _repo_path(image: Image, installdir: str) -> str:
    """The URL path of the OS repository: linuximage.pkgdir under site.installdir (the web
    server's /install), else /install/<osvers>/<arch> as copycds lays it out."""
    if image.pkgdir is None or image.pkgdir.startswith(("http://", "https://")):
        return f"/install/{image.osvers}/{image.arch}"
    base = installdir.rstrip("/") + "/"
    if not image.pkgdir.startswith(base):
        raise XcatError(f"osimage {image.name}: linuximage.pkgdir {image.pkgdir} is not under "
                        f"site.installdir {installdir}, which the web server serves")
    return "/install/" + image.pkgdir[len(base):].strip("/")


def _node_values(node: str, v: Mapping[tuple[str, str], str], site: SiteValues,
                 nets: list[Network], shared: dict[str, Any], repo_path: str,
                 pkgdir_url: str | None, on_sn: bool = False) -> dict[str, Any]:
    """One node's template variables; _Bad names the attribute that cannot be used."""
    if not _HOSTNAME.match(node):
        raise _Bad(f"node name '{node}' is not a valid host name")
    ip = v.get(("hosts", "ip"))
    if not ip:
        raise _Bad("no IP address (hosts.ip)")
    if not valid_ip(ip):
        raise _Bad(f"hosts.ip '{ip}' is not an IP address")
    master, where = v.get(("noderes", "xcatmaster")), "noderes.xcatmaster"
    if not master and on_sn:  # a service node: its own address on the node's network
        master, where = source_address(ip), "this service node's address"
    if not master:
        master, where = site.get("master"), "site.master"
    if not master:
        raise _Bad("no management node address (noderes.xcatmaster, site.master)")
    if not (valid_ip(master) or _HOSTNAME.match(master)):
        raise _Bad(f"{where} '{master}' is not an address or host name")
    macs = parse_macs(v.get(("mac", "mac")))
    mac = macs[0][0] if macs else None
    if mac is not None and not valid_mac(mac):
        raise _Bad(f"mac.mac '{mac}' is not a MAC address")
    nic, where = v.get(("noderes", "installnic")), "noderes.installnic"
    if not nic:
        nic, where = v.get(("noderes", "primarynic")), "noderes.primarynic"
    if nic and nic.lower() == "mac":
        nic = None
    if nic and not _NIC.match(nic):
        raise _Bad(f"{where} '{nic}' is not an interface name (or 'mac')")
    net = network_of(nets, ip)
    row = net.row if net else {}
    domain, where = row.get("domain"), "networks.domain"
    if not domain:
        domain, where = site.get("domain") or "", "site.domain"
    if domain and not _HOSTNAME.match(domain):
        raise _Bad(f"{where} '{domain}' is not a DNS domain")
    gateway = row.get("gateway") or None
    if gateway == "<xcatmaster>":
        gateway = master
    if gateway and not valid_ip(gateway):
        raise _Bad(f"networks.gateway '{gateway}' of network {net.name} is not an address")
    nameservers = _nameservers(v, row, site, master)
    if shared["static"]:
        if net is None:
            raise _Bad(f"hosts.ip {ip} is in no network of the networks table (static "
                       "addressing needs its netmask)")
        if net.net.version != 4:
            raise _Bad(f"hosts.ip {ip}: static addressing is for IPv4 addresses")
    hostport = f"{_host(master)}:{shared['httpport']}"
    repo_url = pkgdir_url or f"http://{hostport}{repo_path}"
    repo = urlsplit(repo_url)
    fqdn = node if not domain or node.endswith("." + domain) else f"{node}.{domain}"
    return {
        "node": node, "hostname": node, "domain": domain, "fqdn": fqdn,
        "ip": ip, "netmask": str(net.net.netmask) if net else None,
        "prefix": net.net.prefixlen if net else None, "gateway": gateway,
        "nameservers": nameservers, "network": net.name if net else None,
        "mac": mac, "nic": nic, "installnic": nic or mac or "link",
        "master": master, "master_hostport": hostport,
        "repo_url": repo_url, "repo_hostport": repo.netloc, "repo_path": repo.path or "/",
    }


def _nameservers(v: Mapping[tuple[str, str], str], row: dict, site: SiteValues,
                 master: str) -> list[str]:
    for where, value in (("noderes.nameservers", v.get(("noderes", "nameservers"))),
                         ("networks.nameservers", row.get("nameservers")),
                         ("site.nameservers", site.get("nameservers"))):
        if value:
            out = [master if s == "<xcatmaster>" else s for s in split_list(value)]
            for s in out:
                if not (valid_ip(s) or _HOSTNAME.match(s)):
                    raise _Bad(f"{where} '{s}' is not an address or host name")
            return out
    return []


def _check_extra(node: str, extra: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"callback_url": None, "callback_token": None}
    for key, value in extra.items():
        if not key.isidentifier():
            raise XcatError(f"{node}: extra variable '{key}' is not a name")
        out[key] = value
    if out["callback_url"] is not None and not _URL.match(out["callback_url"]):
        raise _Bad("callback_url is not an http(s) URL without quotes, spaces or ;")
    if out["callback_url"] is not None and not (
            isinstance(out["callback_token"], str) and _BEARER.match(out["callback_token"])):
        raise _Bad("callback_token is missing or has spaces or control characters")
    return out


# ---- rendering -------------------------------------------------------------------------------
def _sh(value: Any) -> str:
    return shlex.quote(str(value))


def install_environment(paths: Paths, site: SiteValues, template: Path) -> jinja2.Environment:
    """Jinja2 for install templates: the template's own directory, then the site's
    <installdir>/custom/install/<platform>, then the shipped one, so an ``{% include %}``
    finds the site's copy of a file first."""
    platform = template.parent.name
    dirs = template_dirs(paths, site, "install", platform)
    if template.parent not in dirs:
        dirs.insert(0, template.parent)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(d) for d in dirs]),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["sh"] = _sh
    env.filters["yaml"] = yaml_scalar
    env.tests["excluded"] = lambda name: str(name).startswith("-")
    return env


def _load_template(env: jinja2.Environment, image: Image) -> jinja2.Template:
    try:
        return env.get_template(image.template.name)
    except jinja2.TemplateSyntaxError as exc:
        raise XcatError(f"{exc.filename or image.template}:{exc.lineno}: {exc.message}"
                        ) from None
    except jinja2.TemplateNotFound as exc:
        raise XcatError(f"{image.template}: template '{exc.name}' not found") from None


def _where(exc: BaseException, default: Path) -> str:
    """file:line of the template line that failed (Jinja2 puts template frames in the
    traceback with the template's own file and line)."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if not frame.filename.endswith(".py") and not frame.filename.startswith("<"):
            return f"{frame.filename}:{frame.lineno}"
    return str(default)


def render_install_files(db: Database, paths: Paths, site: SiteValues, nodes: list[str],
                         imagename: str, extra: dict[str, dict[str, str]] | None = None
                         ) -> Rendered:
    """The install files of ``nodes`` for osimage ``imagename``; a node whose data does not
    make one is in ``errors`` (naming the attribute), never a reason to fail the others.
    XcatError for what fails every node: an unknown osimage, a missing template, a template
    syntax error (file:line), no root password."""
    image = load_image(db, paths, site, imagename)
    shared = _site_values(site)
    repo_path = _repo_path(image, site.directory("installdir", DEFAULT_INSTALLDIR))
    pkgdir_url = image.pkgdir if image.pkgdir and image.pkgdir.startswith(
        ("http://", "https://")) else None
    env = install_environment(paths, site, image.template)
    template = _load_template(env, image)
    shared.update(imagename=image.name, osvers=image.osvers, arch=image.arch,
                  profile=image.profile, codename=_family(image).codename(image.osvers),
                  packages=list(image.packages), partitioning=image.partitioning,
                  partition_script=image.partition_script, root_crypted=root_password(db))
    values = db.resolve(nodes, NODE_COLUMNS)
    nets = networks(db)
    on_sn = load_identity(paths) is not None
    out = Rendered(image.kind)
    extra = extra or {}
    for node in nodes:
        try:
            mine = _node_values(node, values.get(node, {}), site, nets, shared, repo_path,
                                pkgdir_url, on_sn)
            more = _check_extra(node, extra.get(node, {}))
        except _Bad as exc:
            out.errors[node] = str(exc)
            continue
        clash = sorted(set(more) & (set(mine) | set(shared)))
        if clash:
            raise XcatError(f"{node}: extra variables may not replace gathered ones: "
                            f"{', '.join(clash)}")
        text = _render(template, image, node, {**shared, **mine, **more}, out)
        if text is not None:
            out.files[node] = install_format(image.kind).files(node, text)
            out.boot[node] = _boot(image.kind, node, mine, shared)
    if out.errors:
        log.info("install files for %d of %d nodes (%s): %d not made", len(out.files),
                 len(nodes), imagename, len(out.errors))
    return out


def _render(template: jinja2.Template, image: Image, node: str, context: dict[str, Any],
            out: Rendered) -> str | None:
    try:
        return template.render(context)
    except jinja2.TemplateSyntaxError as exc:  # an included template
        raise XcatError(f"{exc.filename or image.template}:{exc.lineno}: {exc.message}"
                        ) from None
    except jinja2.TemplateNotFound as exc:
        raise XcatError(f"{image.template}: template '{exc.name}' not found") from None
    except Exception as exc:  # a template's own mistake hits this node, not the daemon
        kind = "" if isinstance(exc, jinja2.TemplateError) else f"{type(exc).__name__}: "
        out.errors[node] = f"{_where(exc, image.template)}: {kind}{exc}"
        return None


def _family(image: Image) -> OsFamily:
    fam = family(image.osvers)
    assert fam is not None  # load_image checked it
    return fam


def _boot(kind: str, node: str, mine: dict[str, Any], shared: dict[str, Any]) -> dict[str, str]:
    file_url = install_format(kind).file_url(
        f"http://{mine['master_hostport']}/install/autoinst/{node}")
    nic = mine["nic"] or mine["mac"] or ""
    return {"repo_url": mine["repo_url"], "nic": nic, "master": mine["master"],
            "httpport": shared["httpport"], "file_url": file_url,
            "kcmdline": install_kcmdline(kind, node, file_url, mine["repo_url"], nic or None)}


# ---- the kernel command line and validation: the install format's ------------------------
def install_kcmdline(kind: str, node: str, file_url: str, repo_url: str, nic: str | None, *,
                     loader: str = "ipxe") -> str:
    """What the installer's kernel needs to find its install file and repository (see
    InstallFormat.kcmdline)."""
    return install_format(kind).kcmdline(node, file_url, repo_url, nic, loader=loader)


def validate(kind: str, text: str) -> None:
    """Raise XcatError (naming the line) unless ``text`` is a valid install file of ``kind``:
    kickstart through pykickstart (ksvalidator's parser, version from ``#version=``),
    preseed by line format and ``debconf-set-selections --checkonly`` when installed,
    autoinstall user-data (``#cloud-config``) or meta-data by YAML and required keys."""
    install_format(kind).validate(text)


def validate_rendered(rendered: Rendered) -> dict[str, str]:
    """node -> why its files are invalid, for every node of ``rendered`` (one
    debconf-set-selections run for all the preseeds, not one per node)."""
    fmt = install_format(rendered.kind)
    bad: dict[str, str] = {}
    whole: dict[str, str] = {}
    for node, files in rendered.files.items():
        for name, text in files.items():
            try:
                fmt.check(text)
            except XcatError as exc:
                bad[node] = f"{name}: {exc}"
                break
        else:
            whole[node] = "".join(files.values())
    bad.update(fmt.check_together(whole))
    return bad
