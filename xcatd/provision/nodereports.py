"""What nodes tell the management node while they boot and install, and what it does about
it: each network boot's script fetch is counted (no endless install loop), and a node's
authenticated report (``installed``, ``netbooting``, ``booted``, ``failed``) moves its chain
along.

The node API (xcatd.fronts.nodeapi) runs these through the request pipeline, as the
``bootscript`` and ``callback`` commands (plugins/nodereports.py), so they are authorized,
audited, recorded as jobs and hold the node's lock like any other request.

- A boot-script fetch while chain.currstate is ``install ...`` counts one install boot
  (bootstate) and sets nodelist.status ``installing``; ``netboot ...`` (a diskless image)
  counts the same way and sets ``netbooting``, and the image's ``booted`` report starts the
  count again; in state ``boot`` the status becomes ``booting``. More install boots than
  ``site.maxinstallboots`` (default 3) without a report from the node: status ``failed``,
  chain set to ``boot``, and the node gets the local-boot script.
- A report carries the token nodeset put on the node's kernel command line (only its
  SHA-256 is stored) and, unless site.httpsourcecheck=no, comes from the node's own address.
  ``installed`` removes the node's install files and moves the chain along (to ``boot``: the
  next boot is from disk) and retires the token; ``failed`` sets the chain to ``boot`` and
  retires it; ``booted`` only sets the status. A mismatch is refused (Denied), the token
  never logged.
- A genuine report is always accepted, even when its chain cannot move along (the next
  state names an osimage that is gone, an unknown state word set with chtab, a write or
  database failure): the installer's ``curl -f`` would otherwise abort an install that
  succeeded. The node is then set to ``boot`` instead, its status recorded and its token
  retired, and the answer says what happened.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import secrets
import shutil

from xcatd.base.request import XcatError, denied, not_found
from xcatd.db.cluster import Cluster
from xcatd.provision import nextboot
from xcatd.provision.nextboot import (
    INSTALL_PREFIX,
    NETBOOT,
    STATELITE,
    NodesetRun,
    Outcome,
    now_text,
    token_hash,
)
from xcatd.provision.statelite import node_plan

log = logging.getLogger("xcatd.provision.nodereports")

DEFAULT_MAX_INSTALL_BOOTS = 3
STATUSES = ("installed", "netbooting", "booted", "failed")


def plain_ip(addr: str | None) -> str | None:
    """10.0.0.1 for ::ffff:10.0.0.1 (a dual-stack socket's view of an IPv4 peer).

    >>> plain_ip("::ffff:10.0.0.1"), plain_ip("fe80::1%eth0"), plain_ip("nonsense")
    ('10.0.0.1', 'fe80::1', None)
    """
    if not addr:
        return None
    try:
        ip = ipaddress.ip_address(addr.split("%")[0])
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def source_check(cluster: Cluster) -> bool:
    """site.httpsourcecheck (default yes): a node's own files and reports only from its
    own address (hosts.ip). Labs whose nodes get dynamic addresses turn it off."""
    return cluster.site.flag("httpsourcecheck", True)


def node_ip(cluster: Cluster, node: str) -> tuple[bool, str | None]:
    """(is a node, its hosts.ip)."""
    groups = cluster.db.node_groups([node])
    if node not in groups:
        return False, None
    values = cluster.db.resolve([node], {"hosts": ["ip"]}, groups=groups)
    return True, values[node].get(("hosts", "ip"))


def from_node(cluster: Cluster, node: str, ip: str | None) -> bool:
    """Whether a request from ``ip`` may be the node's own (see source_check)."""
    if not source_check(cluster):
        return True
    exists, want = node_ip(cluster, node)
    return exists and want is not None and plain_ip(want) == plain_ip(ip)


def installing(cluster: Cluster, node: str) -> bool:
    """A node's install files are for the network only while chain.currstate says install."""
    values = cluster.db.resolve([node], {"chain": ["currstate"]})
    return (values[node].get(("chain", "currstate")) or "").startswith(INSTALL_PREFIX)


def autoinst_owner(cluster: Cluster, name: str) -> str | None:
    """The node an autoinst file belongs to: its name, or the part before a dot
    (n01, n01.pre)."""
    candidates = [name]
    while "." in candidates[-1]:
        candidates.append(candidates[-1].rsplit(".", 1)[0])
    known = {r["node"] for r in cluster.db.rows("nodelist", keys=candidates)}
    return next((c for c in candidates if c in known), None)


def remove_autoinst(cluster: Cluster, node: str) -> None:
    """Remove the node's install files (``<node>``, the ``<node>/`` directory of an
    autoinstall, ``<node>.<anything>`` that is not another node's): they hold the root
    password's hash and the spent token, and are of no use after the install."""
    base = cluster.installdir / "autoinst"
    try:
        names = [e.name for e in os.scandir(base)
                 if e.name == node or e.name.startswith(node + ".")]
    except FileNotFoundError:
        return
    for name in names:
        if name != node and autoinst_owner(cluster, name) != node:
            continue
        path = base / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def set_status(cluster: Cluster, node: str, status: str) -> None:
    with cluster.db.begin() as conn:
        cluster.db.set_rows(conn, "nodelist", {(node,): {"status": status,
                                                         "statustime": now_text()}})


# ---- a network boot fetches its script ------------------------------------------------------
def boot_script(cluster: Cluster, node: str, ip: str | None) -> str:
    """Count the fetch, move the status, stop an install loop; the script to serve. The
    caller holds the node's lock. NOT_FOUND for no node or no script, DENIED for another
    address."""
    exists, want = node_ip(cluster, node)
    if not exists:
        raise not_found(f"{node} is not a node")
    if source_check(cluster) and (want is None or plain_ip(want) != plain_ip(ip)):
        raise denied(f"the boot script of {node} is not for {ip}: not the node's address")
    run = NodesetRun(cluster, [node])
    state = run.v(node, "chain", "currstate") or ""
    if state.startswith(INSTALL_PREFIX):
        _count_install_boot(cluster, run, node)
    elif state.startswith((NETBOOT + " ", STATELITE + " ")):
        _count_install_boot(cluster, run, node, "netbooting")
    elif state == "boot":
        set_status(cluster, node, "booting")
    path = run.tftpdir(node) / "xcat/xnba/nodes" / node
    try:
        script = path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        raise not_found(f"{node} has no boot script (nodeset)") from None
    if state.startswith((NETBOOT + " ", STATELITE + " ")) and _TOKEN.search(script):
        script = _fresh_token(cluster, node, script)
    return script


_TOKEN = re.compile(r"(?<=\sxcattoken=)\S+")


def _fresh_token(cluster: Cluster, node: str, script: str) -> str:
    """A diskless boot gets a token of its own: each fetch of the iPXE script issues a new
    one (the node enrols with it once, see xcatd.provision.nodeidentity); the one before
    it stops working."""
    token = secrets.token_urlsafe(32)
    with cluster.db.begin() as conn:
        cluster.db.set_rows(conn, "bootstate", {(node,): {"tokenhash": token_hash(token),
                                                          "tokentime": now_text()}})
    return _TOKEN.sub(token, script)


def _count_install_boot(cluster: Cluster, run: NodesetRun, node: str,
                        status: str = "installing") -> None:
    """One more network boot into an installer (or a diskless image: ``netbooting``) with
    no report yet; past site.maxinstallboots the node is failed and set to boot."""
    limit = cluster.site.integer("maxinstallboots", DEFAULT_MAX_INSTALL_BOOTS, low=1)
    rows = cluster.db.rows("bootstate", keys=[node])
    count = int((rows[0].get("installboots") if rows else 0) or 0) + 1
    if count > limit:
        log.warning("%s fetched its %s boot script %d times without reporting: "
                    "status failed, booting from disk", node,
                    "install" if status == "installing" else "diskless", count)
        for _ in nextboot.set_states(cluster, {node: ("boot", None)}, dhcp_server=False,
                                     status={node: "failed"}, run=run):
            pass
        return
    with cluster.db.begin() as conn:
        cluster.db.set_rows(conn, "bootstate", {(node,): {
            "installboots": count, "lastfetch": now_text()}})
        cluster.db.set_rows(conn, "nodelist", {(node,): {
            "status": status, "statustime": now_text()}})


# ---- a node reports -------------------------------------------------------------------------
def report(cluster: Cluster, node: str, status: str, token: str, ip: str | None, *,
           reason: str = "") -> str:
    """Check the report and act on it; the caller holds the node's lock (a replay waits,
    then finds the token retired). DENIED (the reason never holds the token) for a report
    that does not prove itself; else what went wrong while acting on it, or "". A
    ``failed`` report's ``reason`` (what the node says went wrong) is logged and returned
    with that, so the job and audit records keep it."""
    if status not in STATUSES:
        raise XcatError(f"status must be one of {', '.join(STATUSES)}")
    check_token(cluster, node, token, ip)
    note = _act(cluster, node, status)
    if status == "failed" and reason:
        log.warning("%s reported failed: %s", node, reason)
        note = _join(f"the node says: {reason}", note)
    return note


def check_token(cluster: Cluster, node: str, token: str, ip: str | None) -> None:
    """DENIED unless ``token`` is the node's current one and the request comes from the
    node's address (when site.httpsourcecheck asks for that)."""
    exists, want = node_ip(cluster, node)
    if not exists:
        raise denied("not a node")
    if source_check(cluster) and (want is None or plain_ip(want) != plain_ip(ip)):
        raise denied(f"source address {ip} is not the node's (hosts.ip {want or 'unset'})")
    rows = cluster.db.rows("bootstate", keys=[node])
    stored = (rows[0].get("tokenhash") if rows else None) or ""
    if not token or not stored or not hmac.compare_digest(token_hash(token), stored):
        raise denied("bad or retired token")


# ---- a statelite node asks for its plan ------------------------------------------------------
def lite_plan(cluster: Cluster, node: str, token: str, ip: str | None) -> str:
    """The statelite plan of a node that nodeset set to ``statelite <image>``, for its
    initrd (xcatd.provision.statelite.node_plan); the token is checked, not spent."""
    check_token(cluster, node, token, ip)
    run = NodesetRun(cluster, [node])
    state = run.v(node, "chain", "currstate") or ""
    if not state.startswith(STATELITE + " "):
        raise not_found(f"{node} is not set to boot a statelite image (its state is "
                        f"'{state or 'unset'}'): run nodeset {node} osimage=<statelite image>")
    return node_plan(cluster.db, node, state.split(" ", 1)[1].strip(), run.server(node))


def booted(cluster: Cluster, node: str) -> str:
    """The node's agent says it booted (its certificate proved it): as a booted report."""
    return _act(cluster, node, "booted")


def _act(cluster: Cluster, node: str, status: str) -> str:
    """Act on a genuine report; never raises. ``installed`` removes the install files and
    moves the chain along, ``failed`` sets it to ``boot``. Where the chain cannot go where
    it should, the node is set to ``boot`` (its next boot is from its disk); where even
    that fails, the status is still recorded and the token retired. Returns what went
    wrong, for the node and the audit log, or ""."""
    if status in ("booted", "netbooting"):
        try:
            set_status(cluster, node, status)
            if status == "booted":  # this boot worked: a diskless node's count starts again
                with cluster.db.begin() as conn:
                    cluster.db.set_rows(conn, "bootstate", {(node,): {"installboots": 0}})
            elif cluster.db.rows("nodecert", keys=[node]):
                # a diskless initrd's report, once per boot: this boot may enrol again
                # with the token (a boot loader other than iPXE keeps nodeset's token)
                with cluster.db.begin() as conn:
                    cluster.db.set_rows(conn, "nodecert", {(node,): {"enrolhash": None}})
        except Exception:
            log.exception("cannot record %s's report %s", node, status)
            return "the report could not be recorded (see xcatd's log)"
        return ""
    note = ""
    if status == "installed":
        try:
            remove_autoinst(cluster, node)
        except Exception as exc:
            log.error("cannot remove the install files of %s: %s", node, exc)
            note = f"its install files could not be removed ({_why(exc, node)})"
        why = _move_along(cluster, node, status)
        if not why:
            return note
        log.error("%s reported installed but its chain could not move along (%s): "
                  "setting it to boot", node, why)
        note = _join(note, f"its chain could not move along ({why}); set to boot")
    why = _move(cluster, node, {node: ("boot", None)}, status)
    if not why:
        return note
    log.error("%s reported %s but could not be set to boot (%s)", node, status, why)
    note = _join(note, f"it could not be set to boot ({why})")
    try:
        with cluster.db.begin() as conn:
            cluster.db.set_rows(conn, "bootstate", {(node,): {"tokenhash": None}})
            cluster.db.set_rows(conn, "nodelist", {(node,): {"status": status,
                                                             "statustime": now_text()}})
    except Exception:
        log.exception("cannot record %s's report %s", node, status)
        note = _join(note, "the report could not be recorded (see xcatd's log)")
    return note


def _move_along(cluster: Cluster, node: str, status: str) -> str:
    """Set the next state of the node's chain; "" when set, else why not."""
    try:
        run = NodesetRun(cluster, [node])
        wanted = run.next_states(Outcome()) or {node: ("boot", None)}
    except Exception as exc:
        return _why(exc, node)
    return _move(cluster, node, wanted, status, run)


def _move(cluster: Cluster, node: str, wanted: dict[str, tuple[str, str | None]],
          status: str, run: NodesetRun | None = None) -> str:
    """Set ``wanted`` through nodeset (no DHCP); "" when the node was set, else why not."""
    try:
        lines = list(nextboot.set_states(cluster, wanted, dhcp_server=False,
                                         status={node: status},
                                         run=run or NodesetRun(cluster, [node])))
    except Exception as exc:
        return _why(exc, node)
    if any(r.node == node and r.data is not None for r in lines):
        return ""
    return "; ".join(str(r.error) for r in lines if r.error) or "nothing was set"


def _why(exc: Exception, node: str) -> str:
    """An XcatError's own words; anything else is logged and named only by its kind."""
    if isinstance(exc, XcatError):
        return str(exc)
    log.error("report of %s: %s", node, exc, exc_info=exc)
    return f"internal error {type(exc).__name__}, see xcatd's log"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)
