"""A management node and its service nodes on one machine: each an xcatd under its own root
and in its own network namespace on one bridge (xcatd.lab.twomn.HubLab), the management node's
database on PostgreSQL (reached by its socket from every namespace), and BMC fleets that only
the service nodes named for them can reach.

    hub        bridge br0, 10.79.0.254/16; the BMCs on the hub's own 127.0.0.1
    mn         10.79.0.1     the management node: xcatconfig --dburl (PostgreSQL)
    sn<k>      10.79.<k>.1   a service node: xcatconfig --servicenode with mn's one-time token

    with ServiceNodeLab(tmp, pg_url, sns=2) as lab:
        lab.start()                       # mn's xcatd, each service node joined and running
        fleet = lab.start_fleet(4, reach=["sn1"])
        lab.mn.cli("rpower", "all", "stat")
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

from xcatd.base.paths import Paths
from xcatd.lab.twomn import HUB_IP, NET, XCATD_PORT, HubLab, ManagementNode, TwoMNError
from xcatd.security.credentials import reissue_server_cert, server_names

MN_ADDRESS = f"{NET}.0.1"


def sn_address(k: int) -> str:
    return f"{NET}.{k}.1"


class ServiceNodeLab(HubLab):
    """``mn`` and service nodes ``sn1``..``sn<sns>`` (``self.sns``), with the management
    node's database at ``dburl`` (a PostgreSQL URL every namespace reaches)."""

    def __init__(self, workdir: str | os.PathLike[str], dburl: str, sns: int = 2, *,
                 hub: str | None = None, in_hub: str | None = None) -> None:
        """``hub``: another lab's namespace as the hub (a VM lab's); ``in_hub``: the service
        node that lives there (at HUB_IP), beside that lab's VMs, BMCs and services."""
        super().__init__(workdir, {"mn": MN_ADDRESS,
                                   **{f"sn{k}": HUB_IP if f"sn{k}" == in_hub else sn_address(k)
                                      for k in range(1, sns + 1)}}, hub=hub)
        self.dburl = dburl
        self.mn = self.members["mn"]
        self.sns = [self.members[f"sn{k}"] for k in range(1, sns + 1)]

    def start(self, *, site: dict[str, str] | None = None) -> None:
        """The management node set up on the database and its xcatd running (with ``site``
        values set first), then each service node joined and its xcatd running."""
        mn = self.mn
        _ok(mn.cli("xcatconfig", "--dburl", self.dburl, bypass=True), "xcatconfig on mn")
        # the management node's certificate names its address on the service nodes' side
        # (xcatconfig names the host's names): a joining service node checks it
        paths = Paths(mn.root)
        reissue_server_cert(paths, [*server_names(paths), MN_ADDRESS])
        for key, value in {"master": MN_ADDRESS, **(site or {})}.items():
            _ok(mn.cli("chtab", f"key={key}", f"site.value={value}", bypass=True), "chtab")
        mn.start_xcatd()
        for sn in self.sns:
            self.join(sn)
            sn.start_xcatd()
        self.wait_alive([sn.name for sn in self.sns])

    def join(self, sn: ManagementNode) -> None:
        """``sn`` joins the management node with a one-time token (read from stdin)."""
        token = self.mn.run([_exe("xcatconfig"), "--sntoken", sn.name])
        if token.returncode:
            raise TwoMNError(f"xcatconfig --sntoken {sn.name}: {token.stderr.strip()}")
        r = sn.run([_exe("xcatconfig"), "--servicenode", "--name", sn.name, "--master",
                    f"{MN_ADDRESS}:{XCATD_PORT}", "--token", "-", "--address", sn.address],
                   input=token.stdout)
        if r.returncode:
            raise TwoMNError(f"{sn.name} could not join: {r.stderr.strip()}")

    def wait_alive(self, names: list[str], timeout: float = 30) -> None:
        """Until each named service node has a heartbeat in the database."""
        deadline = time.monotonic() + timeout
        missing = set(names)
        while missing and time.monotonic() < deadline:
            r = self.mn.cli("tabdump", "snstatus", bypass=True)
            missing = {n for n in names if not re.search(rf'^"{n}",', r.out, re.M)}
            if missing:
                time.sleep(0.2)
        if missing:
            raise TwoMNError(f"no heartbeat from {', '.join(sorted(missing))}")

    def relayed_parts(self, sn: ManagementNode) -> list[dict]:
        """The parts ``sn``'s xcatd has run (one log line each: command and node count)."""
        out = []
        for line in _read(sn.log).splitlines():
            m = re.search(r"relayed part: (\{.*\})$", line)
            if m:
                out.append(json.loads(m.group(1)))
        return out


def _exe(name: str) -> str:
    """A console script of this toolkit, beside this Python (the venv's bin)."""
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else (shutil.which(name) or name)


def _ok(r, what: str):
    if r.rc:
        raise TwoMNError(f"{what} failed ({r.rc}): {r.out}\n{r.err}")
    return r


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
