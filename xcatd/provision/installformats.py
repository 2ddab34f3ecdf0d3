"""The install file formats: kickstart (RHEL family), preseed (Debian) and autoinstall
(Ubuntu), each one class that knows its files' names, the installer's kernel command line,
and how to check a rendered file before it is written (xcatd.provision.osfamily says which
OS uses which).

>>> FORMATS["kickstart"].kcmdline("n1", "http://m/install/autoinst/n1", "http://m/r", "eth0")
'inst.ks=http://m/install/autoinst/n1 inst.repo=http://m/r ip=eth0:dhcp'
>>> sorted(FORMATS["autoinstall"].files("n1", "#cloud-config"))
['n1/meta-data', 'n1/user-data']
"""
from __future__ import annotations

import copy
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from xcatd.base.request import XcatError
from xcatd.db.netinfo import valid_mac

log = logging.getLogger("xcatd.provision.installformats")

LOADERS = ("ipxe", "grub", "pxelinux")
_KS_VERSION = re.compile(r"^#version=(\S+)", re.MULTILINE)


def yaml_scalar(value: Any) -> str:
    """A YAML scalar or list (JSON is YAML)."""
    return json.dumps(value)


def _checked(node: str, file_url: str, repo_url: str, nic: str | None, loader: str) -> None:
    for what, value in (("file_url", file_url), ("repo_url", repo_url), ("nic", nic or ""),
                        ("node", node)):
        if re.search(r"[\s'\"]", value) or (what == "repo_url" and ";" in value):
            raise XcatError(f"{node}: {what} '{value}' cannot go on a kernel command line")
    if loader not in LOADERS:
        raise XcatError(f"unknown boot loader '{loader}' ({', '.join(LOADERS)})")


class InstallFormat(ABC):
    """One install file format."""

    name: str = ""
    #: linuximage.partitionfile may be ``s:<script>`` (a %pre that writes the layout)
    partition_scripts = False

    def files(self, node: str, text: str) -> dict[str, str]:
        """{path under <installdir>/autoinst: text} for a node's rendered file."""
        return {node: text}

    def file_url(self, base: str) -> str:
        """The URL the installer is given, from the node's autoinst URL."""
        return base

    def kcmdline(self, node: str, file_url: str, repo_url: str, nic: str | None, *,
                 loader: str = "ipxe") -> str:
        """What the installer's kernel needs to find its install file and repository.

        ``nic`` is an interface name, a MAC address or None (any interface with DHCP).
        ``loader`` says who parses the line ("ipxe", "grub", "pxelinux")."""
        _checked(node, file_url, repo_url, nic, loader)
        mac = nic if nic and valid_mac(nic) else None
        return self._kcmdline(node, file_url, repo_url, nic, mac, loader)

    @abstractmethod
    def _kcmdline(self, node: str, file_url: str, repo_url: str, nic: str | None,
                  mac: str | None, loader: str) -> str: ...

    @abstractmethod
    def check(self, text: str) -> None:
        """XcatError (naming the line, never a secret) unless ``text`` is a valid file, by
        the checks that take one file at a time."""

    def check_together(self, texts: dict[Any, str]) -> dict[Any, str]:
        """key -> why its text is invalid, by the checks that run over many files at once
        (a program started once, not once per node)."""
        return {}

    def validate(self, text: str) -> None:
        """Every check of one file."""
        self.check(text)
        bad = self.check_together({0: text})
        if bad:
            raise XcatError(bad[0])


class Kickstart(InstallFormat):
    """RHEL-family kickstart, checked by pykickstart (ksvalidator's parser)."""

    name = "kickstart"
    partition_scripts = True

    def _kcmdline(self, node, file_url, repo_url, nic, mac, loader):
        # dracut takes a MAC in the PXE dash form as the interface of ip=
        dev = mac.replace(":", "-") if mac else nic
        return f"inst.ks={file_url} inst.repo={repo_url} ip={dev + ':' if dev else ''}dhcp"

    def check(self, text: str) -> None:
        check_kickstart(text)


class Preseed(InstallFormat):
    """Debian's preseed, checked line by line and by ``debconf-set-selections --checkonly``
    (one run for many files)."""

    name = "preseed"

    def _kcmdline(self, node, file_url, repo_url, nic, mac, loader):
        return (f"auto=true priority=critical url={file_url} "
                f"interface={nic if nic and not mac else 'auto'} hostname={node}")

    def check(self, text: str) -> None:
        check_preseed_format(text)

    def check_together(self, texts: dict[Any, str]) -> dict[Any, str]:
        return _debconf_check_many(texts)


class Autoinstall(InstallFormat):
    """Ubuntu's autoinstall: a NoCloud seed directory per node (user-data, meta-data)."""

    name = "autoinstall"

    def files(self, node: str, text: str) -> dict[str, str]:
        meta = (f"instance-id: {yaml_scalar('pyxcat-' + node)}\n"
                f"local-hostname: {yaml_scalar(node)}\n")
        return {f"{node}/user-data": text, f"{node}/meta-data": meta}

    def file_url(self, base: str) -> str:
        return base + "/"

    def _kcmdline(self, node, file_url, repo_url, nic, mac, loader):
        seed = f"ds=nocloud-net;s={file_url if file_url.endswith('/') else file_url + '/'}"
        if loader == "grub":  # GRUB ends a command at ';': quote the seed (iPXE must not)
            seed = f"'{seed}'"
        parts = ["ip=dhcp" if not nic or mac else f"ip=:::::{nic}:dhcp"]
        if mac:  # initramfs-tools picks the interface with this MAC
            parts.append("BOOTIF=01-" + mac.replace(":", "-"))
        if repo_url.endswith(".iso"):
            # casper fetches the live ISO; cloud-init would read url= as cloud-config-url and
            # download the ISO a second time without the null one
            parts += [f"url={repo_url}", "cloud-config-url=/dev/null"]
        return " ".join([*parts, "autoinstall", seed])

    def check(self, text: str) -> None:
        check_autoinstall(text)


FORMATS: dict[str, InstallFormat] = {f.name: f for f in (Kickstart(), Preseed(), Autoinstall())}


def install_format(name: str) -> InstallFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise XcatError(f"unknown install file kind '{name}' "
                        f"({', '.join(FORMATS)})") from None


# ---- kickstart ------------------------------------------------------------------------------
_KS_LOCK = threading.Lock()
_KS_HANDLERS: dict[str, Any] = {}


def check_kickstart(text: str) -> None:
    """pykickstart's parser, as ksvalidator runs it (parse warnings are errors), in this
    process; the ksvalidator program when the library is not importable."""
    m = _KS_VERSION.search(text)
    version = m.group(1) if m else "DEVEL"
    try:  # optional: without the library, its ksvalidator program (or an error) stands in
        from pykickstart.errors import KickstartError, KickstartParseWarning
        from pykickstart.parser import KickstartParser
        from pykickstart.version import makeVersion
    except ImportError:
        _ksvalidator_program(text, version)
        return
    # warnings filters are process-wide: one parse at a time
    with _KS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", KickstartParseWarning)
        try:
            if version not in _KS_HANDLERS:
                _KS_HANDLERS[version] = makeVersion(version)
            # a fresh handler per file (a parse fills it); copying one is twice as fast
            handler = copy.deepcopy(_KS_HANDLERS[version])
            parser = KickstartParser(handler, followIncludes=False, errorsAreFatal=True)
            parser.readKickstartFromString(text)
        except KickstartError as exc:
            where = f"line {exc.lineno}: " if getattr(exc, "lineno", None) else ""
            raise XcatError(f"kickstart rejected by pykickstart ({version}): {where}"
                            f"{_one_line(getattr(exc, 'message', '') or str(exc))}") from None
        except KickstartParseWarning as exc:
            raise XcatError(f"kickstart rejected by pykickstart ({version}): "
                            f"{_one_line(str(exc))}") from None


def _ksvalidator_program(text: str, version: str) -> None:
    exe = shutil.which("ksvalidator") or str(Path(sys.executable).with_name("ksvalidator"))
    with tempfile.NamedTemporaryFile("w", suffix=".ks") as fh:
        fh.write(text)
        fh.flush()
        try:
            p = subprocess.run([exe, "-v", version, fh.name], capture_output=True, text=True,
                               timeout=120, check=False)
        except OSError:
            raise XcatError("ksvalidator (pykickstart) is not installed: cannot check the "
                            "kickstart") from None
    if p.returncode != 0:
        lines = [ln for ln in (p.stdout + p.stderr).splitlines()
                 if ln.strip() and not ln.startswith("Checking kickstart")]
        raise XcatError(f"ksvalidator -v {version} rejected the kickstart: "
                        f"{_one_line(' '.join(lines))}")


def _one_line(text: str) -> str:
    return " ".join(text.replace("The following problem occurred on", "").split())


# ---- preseed --------------------------------------------------------------------------------
PRESEED_TYPES = ("string", "boolean", "select", "multiselect", "note", "password", "text",
                 "title", "seen")


def _preseed_lines(text: str) -> Iterable[tuple[int, str]]:
    """Logical lines as debconf-set-selections reads them (a trailing backslash joins the
    next line), with the number of their last physical line."""
    pending = ""
    lineno = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r")
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        yield lineno, pending + line
        pending = ""
    if pending:
        yield lineno, pending + "\\"


def check_preseed_format(text: str) -> None:
    """Each logical line is 'owner question type value' with a known type, and booleans are
    true or false. Messages name the line and the question, never the value (one of them is
    the root password's hash)."""
    for lineno, line in _preseed_lines(text):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            raise XcatError(f"preseed line {lineno}: the file ends inside a continued line")
        parts = line.split(None, 3)
        if len(parts) < 3:
            raise XcatError(f"preseed line {lineno}: expected 'owner question type value'")
        _owner, question, typ = parts[:3]
        value = parts[3].strip() if len(parts) > 3 else ""
        if typ not in PRESEED_TYPES:
            raise XcatError(f"preseed line {lineno}: {question} has unknown type '{typ}'")
        if typ == "boolean" and value not in ("true", "false"):
            raise XcatError(f"preseed line {lineno}: {question} is boolean, not "
                            f"'{value[:20]}'")


def _debconf_check_many(texts: dict[Any, str]) -> dict[Any, str]:
    """debconf-set-selections --checkonly over all the texts at once; its line numbers are
    mapped back to each text. Without the program the line-format check stands alone."""
    exe = shutil.which("debconf-set-selections")
    if exe is None or not texts:
        return {}
    names, starts, parts = [], [], []
    line = 0
    for name, text in texts.items():
        if not text.endswith("\n"):
            text += "\n"
        names.append(name)
        starts.append(line)
        parts.append(text)
        line += text.count("\n")
    try:
        p = subprocess.run([exe, "--checkonly"], input="".join(parts), capture_output=True,
                           text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("debconf-set-selections could not check the preseeds: %s", exc)
        return {}
    bad: dict[str, str] = {}
    for err in p.stderr.splitlines():
        m = re.match(r"error: (.*?) on line (\d+)", err)
        if m:
            i = bisect_right(starts, int(m.group(2)) - 1) - 1
            bad.setdefault(names[i], f"debconf-set-selections rejected the preseed: "
                                     f"{m.group(1)} on line {int(m.group(2)) - starts[i]}")
    if p.returncode != 0 and not bad:  # not the file's fault (a locked debconf database)
        log.warning("debconf-set-selections failed without naming a line: %s",
                    _one_line(p.stderr)[:200])
    return bad


# ---- autoinstall ----------------------------------------------------------------------------
def check_autoinstall(text: str) -> None:
    """user-data (``#cloud-config``): YAML whose autoinstall has version 1 and identity or
    user-data, and well-formed sections; otherwise meta-data: YAML with an instance-id.
    Parsed with PyYAML when it is installed, else by a line check of the same keys."""
    try:  # optional: without PyYAML, a line check of the same keys stands in
        import yaml
    except ImportError:
        _autoinstall_lines(text)
        return
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(text, Loader=loader)  # safe: CSafeLoader or SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise XcatError(f"autoinstall file is not YAML: {where}"
                        f"{getattr(exc, 'problem', None) or exc}") from None
    if not text.startswith("#cloud-config"):
        if not isinstance(doc, dict) or not doc.get("instance-id"):
            raise XcatError("autoinstall meta-data has no instance-id (user-data must start "
                            "with #cloud-config)")
        return
    ai = doc.get("autoinstall") if isinstance(doc, dict) else None
    if not isinstance(ai, dict):
        raise XcatError("autoinstall user-data has no autoinstall: section")
    _autoinstall_keys(ai)


def _autoinstall_keys(ai: dict) -> None:
    if ai.get("version") != 1:
        raise XcatError("autoinstall: version must be 1")
    if "identity" not in ai and "user-data" not in ai:
        raise XcatError("autoinstall: needs identity or user-data (the installed system "
                        "would have no way to log in)")
    ident = ai.get("identity")
    if ident is not None and not (isinstance(ident, dict) and all(
            ident.get(k) for k in ("hostname", "username", "password"))):
        raise XcatError("autoinstall: identity needs hostname, username and password")
    shapes = {"user-data": dict, "storage": dict, "network": dict, "apt": dict, "ssh": dict,
              "packages": list, "early-commands": list, "late-commands": list,
              "error-commands": list}
    for key, shape in shapes.items():
        if key in ai and not isinstance(ai[key], shape):
            raise XcatError(f"autoinstall: {key} must be a {shape.__name__}")
    for key in ("early-commands", "late-commands", "error-commands", "packages"):
        for item in ai.get(key) or []:
            if not isinstance(item, (str, list)):
                raise XcatError(f"autoinstall: {key} has an entry that is not a command")


def _autoinstall_lines(text: str) -> None:
    """Without PyYAML: the same required keys, found by their lines."""
    if "\t" in text:
        raise XcatError("autoinstall file is not YAML: it has a tab")
    if not text.startswith("#cloud-config"):
        if not re.search(r"^instance-id:\s*\S", text, re.MULTILINE):
            raise XcatError("autoinstall meta-data has no instance-id")
        return
    if not re.search(r"^autoinstall:\s*$", text, re.MULTILINE):
        raise XcatError("autoinstall user-data has no autoinstall: section")
    if not re.search(r"^  version:\s*1\s*$", text, re.MULTILINE):
        raise XcatError("autoinstall: version must be 1")
    if not re.search(r"^  (identity|user-data):\s*$", text, re.MULTILINE):
        raise XcatError("autoinstall: needs identity or user-data")
