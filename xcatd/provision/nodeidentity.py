"""Who a node is: enrolment with the boot's token, and the node certificate after it.

nodeset gives every node it sets to boot one of our kernels a fresh random token (on the
kernel command line, its SHA-256 in bootstate.tokenhash, its time in bootstate.tokentime);
a diskless node gets another one each time it fetches its iPXE script from xcatd
(xcatd.provision.nodereports.boot_script), so every boot has its own; a diskless node that
boots through pxelinux or GRUB keeps nodeset's, and its initrd's ``netbooting`` report (made
with the token, once per boot) lets that boot enrol with it again. With that token, from
its own address (hosts.ip, unless site.httpsourcecheck=no) and within site.enroltimeout
seconds of the token's issue (default ENROL_TIMEOUT), the node enrols once: it sends a
certificate request for a key it made itself, and gets a certificate signed by the
management node's CA, CN = the node's name, OU = xcat-node. The token cannot enrol again
(nodecert.enrolhash), and the certificate it replaces is no longer accepted: only the
latest one (nodecert.fingerprint) is.

Every later request of the node (its plan, scripts, events, status, credentials, files)
comes over mutual TLS on xcatd's port with that certificate. ``check_node`` is the test
each of those requests passes in its handler, so a refusal is a DENIED answer (HTTP 403)
with an audit row: not the node's current certificate, or not the node's address.
"""
from __future__ import annotations

import datetime
import hmac

from xcatd.base.request import XcatError, denied
from xcatd.db.cluster import Cluster
from xcatd.provision.nextboot import now_text, token_hash
from xcatd.provision.nodereports import check_token, from_node
from xcatd.security.credentials import CSRError, ca_pem, sign_node_csr
from xcatd.security.snjoin import JoinError, load_identity, sign_via_master

ENROL_TIMEOUT = 7200          # seconds a token may enrol after it was issued
MAX_CSR = 16 * 1024
TIME_FORMAT = "%m-%d-%Y %H:%M:%S"   # nextboot.now_text()


def parse_time(text: str | None) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime((text or "").strip(), TIME_FORMAT)
    except ValueError:
        return None


def enrol(cluster: Cluster, node: str, token: str, ip: str | None, csr: bytes,
          *, now: datetime.datetime | None = None) -> dict:
    """Issue the node's certificate; DENIED (audited by the caller's pipeline) for a bad,
    spent or expired token or another address; a bad request is an XcatError."""
    check_token(cluster, node, token, ip)
    state = cluster.db.rows("bootstate", keys=[node])
    issued = parse_time(state[0].get("tokentime") if state else None) if state else None
    fetched = parse_time(state[0].get("lastfetch")) if state else None
    start = max((t for t in (issued, fetched) if t), default=None)
    window = cluster.site.integer("enroltimeout", ENROL_TIMEOUT, low=60)
    now = now or datetime.datetime.now()
    if start is None or (now - start).total_seconds() > window:
        raise denied(f"the enrolment token of {node} has expired (issued "
                     f"{start.strftime(TIME_FORMAT) if start else 'at an unknown time'}, "
                     f"site.enroltimeout {window} s): run nodeset {node} again")
    hashed = token_hash(token)
    rows = cluster.db.rows("nodecert", keys=[node])
    if rows and hmac.compare_digest(rows[0].get("enrolhash") or "", hashed):
        raise denied(f"the enrolment token of {node} was already used")
    got = issue(cluster, node, csr, {"enrolhash": hashed})
    port = cluster.site.get("xcatdport") or "3001"
    return {**got, "port": int(port) if str(port).isdigit() else 3001}


def issue(cluster: Cluster, node: str, csr: bytes, extra: dict | None = None) -> dict:
    """Sign the node's request and make it the node's only accepted certificate. A service
    node holds no CA key: its management node signs (and records) it, for a node it
    serves."""
    if len(csr) > MAX_CSR:
        raise XcatError(f"the certificate request is larger than {MAX_CSR} bytes")
    if load_identity(cluster.paths) is not None:
        try:
            return sign_via_master(cluster.paths, node, csr, extra or {})
        except JoinError as exc:
            raise XcatError(str(exc)) from None
    try:
        cert = sign_node_csr(cluster.paths, node, csr)
    except CSRError as exc:
        raise XcatError(f"bad certificate request: {exc}") from None
    with cluster.db.begin() as conn:
        cluster.db.set_rows(conn, "nodecert", {(node,): {
            "fingerprint": cert.fingerprint, "serial": cert.serial, "issued": now_text(),
            "expires": cert.expires.strftime("%Y-%m-%d %H:%M:%S"), **(extra or {})}})
    return {"cert": cert.pem.decode(), "ca": ca_pem(cluster.paths).decode(), "node": node}


def renew(cluster: Cluster, node: str, fingerprint: str, ip: str | None, csr: bytes) -> dict:
    """A new certificate for an enrolled node that proves itself with its current one
    (updatenode -k): the old one stops working. DENIED as check_node."""
    check_node(cluster, node, fingerprint, ip)
    return issue(cluster, node, csr)


def check_node(cluster: Cluster, node: str, fingerprint: str, ip: str | None) -> None:
    """DENIED unless ``fingerprint`` is the node's current certificate and the request comes
    from the node's address (see nodereports.source_check)."""
    rows = cluster.db.rows("nodecert", keys=[node])
    want = (rows[0].get("fingerprint") if rows else None) or ""
    if not want or not fingerprint or not hmac.compare_digest(want, fingerprint):
        raise denied(f"not the current certificate of {node} (enrol again)")
    if not from_node(cluster, node, ip):
        raise denied(f"source address {ip} is not the address of {node}")
