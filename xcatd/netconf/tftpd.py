"""TFTP on this node: who serves it (Debian's tftpd-hpa, or xcatd's embedded server in
xcatd.fronts.tftp), where, and with which block size; and tftpd-hpa's configuration, which
xcatconfig writes (never starting or restarting the service).

Site settings:

- ``site.tftpdir`` (default /tftpboot, under XCATROOT): the tree both servers serve.
- ``site.tftpserver``: ``auto`` (or unset): xcatd serves TFTP itself only when ``in.tftpd``
  is not installed; ``embedded``: always; ``tftpd-hpa``: never (the system's tftpd-hpa
  serves); ``none``: nobody on this node (xcatconfig leaves /etc/default/tftpd-hpa alone).
- ``site.tftpbind``: ``ADDR``, ``ADDR:PORT``, ``[V6ADDR]:PORT``, ``:PORT`` or ``none``. Default:
  xcatd's own listen address (every address unless ``xcatd --listen`` names one), port 69.
  xcatconfig writes the same address into TFTP_ADDRESS (``:69`` when unset).
- ``site.tftpblksize``: the largest block size either server agrees to (default 1468: a
  block fits a 1500-byte Ethernet frame unfragmented; range 512..65464).

>>> from xcatd.base.site import SiteValues
>>> tftp_bind(SiteValues({"tftpbind": "10.0.0.1"})), tftp_bind(SiteValues({}))
(('10.0.0.1', 69), (None, 69))
>>> tftpd_hpa_address(SiteValues({"tftpbind": ":1069"}))
':1069'
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import stat as stat_mod
from collections.abc import Iterator

from xcatd.base.files import write_atomic
from xcatd.base.request import Response
from xcatd.base.site import SiteValues
from xcatd.db.cluster import Cluster
from xcatd.netconf.manager import ConfigManager, Generated

log = logging.getLogger("xcatd.netconf.tftpd")

DEFAULT_PORT = 69
DEFAULT_MAX_BLKSIZE = 1468       # 1500-byte MTU - 20 (IP) - 8 (UDP) - 4 (TFTP)
MAX_BLKSIZE = 65464              # RFC 2348
TFTPD_HPA_DEFAULTS = "/etc/default/tftpd-hpa"
TFTPD_HPA_USER = "tftp"
MODES = ("auto", "embedded", "tftpd-hpa", "none")
_SHELL_SAFE = re.compile(r"^[A-Za-z0-9_./:@%+,=\[\]-]+$")


def tftp_bind(site: SiteValues) -> tuple[str | None, int] | None:
    """(address or None for every address, port) from site.tftpbind; None for ``none``."""
    return site.bind("tftpbind", DEFAULT_PORT)


def max_blksize(site: SiteValues) -> int:
    """site.tftpblksize, checked: both servers are configured from it."""
    return site.integer("tftpblksize", DEFAULT_MAX_BLKSIZE, low=512, high=MAX_BLKSIZE)


def tftpd_hpa_installed() -> bool:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which("in.tftpd", path=path) is not None


def tftp_mode(site: SiteValues) -> str:
    """``embedded``, ``tftpd-hpa`` or ``none``: who serves TFTP on this node."""
    want = site.text("tftpserver", "auto").lower()
    if want in ("none", "no", "off") or tftp_bind(site) is None:
        return "none"
    if want == "embedded":
        return "embedded"
    if want not in MODES:
        log.warning("site.tftpserver %r is not auto, embedded, tftpd-hpa or none: using auto",
                    want)
    if want == "tftpd-hpa" or tftpd_hpa_installed():
        return "tftpd-hpa"
    return "embedded"


def tftpd_hpa_address(site: SiteValues) -> str:
    """TFTP_ADDRESS in tftpd-hpa's ``[address][:port]`` form (IPv6 in brackets)."""
    addr, port = tftp_bind(site) or (None, DEFAULT_PORT)
    if addr is None:
        return f":{port}"
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


class TftpdHpa(ConfigManager):
    """/etc/default/tftpd-hpa (sourced by Debian's init script, which runs ``in.tftpd
    --listen --user U --address A OPTIONS DIRECTORY``) and the TFTP tree (mode 0755:
    tftpd-hpa runs as ``tftp``). ``rebuild`` says what it did, one line each."""

    name = "tftpd-hpa"

    def collect(self) -> dict[str, str]:
        site = self.cluster.site
        values = {
            "TFTP_USERNAME": TFTPD_HPA_USER,
            "TFTP_DIRECTORY": str(self.cluster.tftpdir),
            "TFTP_ADDRESS": tftpd_hpa_address(site),
            "TFTP_OPTIONS": f"--secure --blocksize {max_blksize(site)}",
        }
        for key, setting in (("TFTP_DIRECTORY", "site.tftpdir"),
                             ("TFTP_ADDRESS", "site.tftpbind")):
            if not _SHELL_SAFE.match(values[key]):
                raise ValueError(f"{setting} gives {values[key]!r}: tftpd-hpa's configuration "
                                 "takes no spaces, quotes or shell characters there")
        return values

    def render(self, data: dict[str, str]) -> list[Generated]:
        lines = [f"# {TFTPD_HPA_DEFAULTS}: written by xcatconfig from the site table",
                 "# (tftpdir, tftpbind, tftpblksize). Change those and run xcatconfig again;",
                 "# edits made here are replaced.", ""]
        lines += [f'{k}="{v}"' for k, v in data.items()]
        return [Generated(self.cluster.paths.under(TFTPD_HPA_DEFAULTS), "\n".join(lines) + "\n")]

    def rebuild(self) -> Iterator[Response]:
        if tftp_mode(self.cluster.site) == "none":
            return
        files = self.render(self.collect())  # checks the settings before anything changes
        tree = self.cluster.tftpdir
        if not tree.is_dir():
            tree.mkdir(parents=True, exist_ok=True)
            os.chmod(tree, 0o755)
            yield Response(data=f"Created {tree}")
        elif stat_mod.S_IMODE(tree.stat().st_mode) & 0o755 != 0o755:
            os.chmod(tree, stat_mod.S_IMODE(tree.stat().st_mode) | 0o755)
            yield Response(data=f"Made {tree} readable for tftpd-hpa (mode 0755)")
        for f in files:
            if f.unchanged():
                continue
            write_atomic(f.path, f.text, mode=f.mode)
            if tftpd_hpa_installed():
                yield Response(data=f"Wrote {f.path} (tftpd-hpa not restarted: run "
                                    "'systemctl restart tftpd-hpa' to apply it)")
            else:
                yield Response(data=f"Wrote {f.path} (tftpd-hpa is not installed: xcatd serves "
                                    "TFTP itself unless site.tftpserver says otherwise)")


def configure_tftpd_hpa(cluster: Cluster) -> list[str]:
    """xcatconfig's step: TftpdHpa(cluster).rebuild(), as lines."""
    return [r.data for r in TftpdHpa(cluster).rebuild() if r.data]
