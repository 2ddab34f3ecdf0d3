"""A service node joining its management node with a one-time token.

On the management node, ``new_token`` makes the token an admin hands to the service node:
``<secret>.<sha256 of the CA certificate>``. Only the secret's hash is kept (etc/xcat/
sntokens.json, 0600). On the service node, ``join`` fetches the CA without trusting the
network, checks it against the token's fingerprint, then, with that CA verified, sends the
secret and a signing request for a key it made itself; it gets its certificate (service-node
role), the CA certificate and the URL of its own database role. The management node's CA
key, server key and master key never leave it.

>>> parse_token("abc." + "0" * 64)
('abc', '0000000000000000000000000000000000000000000000000000000000000000')
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import os
import re
import secrets
import ssl
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from xcatd.base.files import locked, write_atomic
from xcatd.base.paths import Paths
from xcatd.security.credentials import SN_OU, ca_files, server_files

DEFAULT_TTL = 3600
SN_PORT = 3001
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,56}")
TIMEOUT = 60.0


class JoinError(Exception):
    """A join refused or failed; ``status`` is the HTTP status the join endpoint gives."""

    status = 400


class TokenError(JoinError):
    status = 403


# ---- who this service node is -----------------------------------------------------------------
@dataclass
class SnIdentity:
    name: str
    master: str          # the management node's xcatd, host:port
    address: str | None  # this service node's address, as the management node reaches it
    port: int = SN_PORT


def identity_path(paths: Paths) -> Path:
    return paths.etc / "servicenode.json"


def load_identity(paths: Paths) -> SnIdentity | None:
    """This root's service node identity; None where it is not a service node."""
    path = identity_path(paths)
    try:
        data = json.loads(path.read_text())
        return SnIdentity(name=str(data["name"]), master=str(data["master"]),
                          address=data.get("address"), port=int(data.get("port", SN_PORT)))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is damaged ({type(exc).__name__}: {exc}): join again with "
                         "xcatconfig --servicenode") from None


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name or ""):
        raise JoinError(f"Invalid service node name {name!r}: use letters, digits, '_', '.' "
                        "and '-' (56 at most)")
    return name


# ---- tokens (management node) -----------------------------------------------------------------
def tokens_path(paths: Paths) -> Path:
    return paths.etc / "sntokens.json"


def ca_fingerprint(ca_pem: bytes) -> str:
    """SHA-256 of the CA certificate's DER, hex."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _read_tokens(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except ValueError:
        raise JoinError(f"{path} is damaged: remove it and make the tokens again") from None
    return [t for t in data.get("tokens", []) if isinstance(t, dict)]


def _write_tokens(path: Path, tokens: list[dict]) -> None:
    write_atomic(path, json.dumps({"tokens": tokens}, indent=1) + "\n", mode=0o600)


def new_token(paths: Paths, name: str, ttl: int = DEFAULT_TTL) -> str:
    """A one-time join token for service node ``name``, valid ``ttl`` seconds; an older
    token for the same name is revoked."""
    check_name(name)
    if ttl <= 0:
        raise JoinError(f"Invalid token lifetime {ttl}: give a number of seconds above 0")
    ca = ca_files(paths)[1]
    if not ca.is_file():
        raise JoinError(f"No CA certificate at {ca}: run xcatconfig first")
    secret = secrets.token_urlsafe(32)  # 32 random bytes, URL-safe base64
    path = tokens_path(paths)
    now = time.time()
    with locked(path):
        tokens = [t for t in _read_tokens(path)
                  if t.get("name") != name and t.get("expires", 0) > now]
        tokens.append({"name": name, "sha256": _hash(secret), "expires": int(now + ttl)})
        _write_tokens(path, tokens)
    return f"{secret}.{ca_fingerprint(ca.read_bytes())}"


def redeem(paths: Paths, name: str, secret: str, *, consume: bool = True) -> None:
    """Check (and, with ``consume``, use up) the token ``secret`` for service node ``name``;
    a TokenError says why it is refused. An expired token is removed."""
    digest = _hash(secret or "")
    path = tokens_path(paths)
    now = time.time()
    with locked(path):
        tokens = _read_tokens(path)
        found = None
        for t in tokens:  # every entry compared, in constant time
            if hmac.compare_digest(str(t.get("sha256", "")), digest):
                found = t
        if found is None:
            raise TokenError("Unknown join token (it may have been used already): make a new "
                             "one with xcatconfig --sntoken NAME on the management node")
        if found.get("expires", 0) <= now:
            tokens.remove(found)
            _write_tokens(path, tokens)
            raise TokenError(f"The join token for {found.get('name')} has expired: make a new "
                             "one with xcatconfig --sntoken on the management node")
        if not hmac.compare_digest(str(found.get("name", "")).encode(), name.encode()):
            raise TokenError(f"The join token is not for service node {name!r}")
        if consume:
            tokens.remove(found)
            _write_tokens(path, tokens)


def parse_token(token: str) -> tuple[str, str]:
    """(secret, CA fingerprint) of a token as new_token writes it."""
    secret, _, fp = (token or "").strip().rpartition(".")
    if not secret or not re.fullmatch(r"[0-9a-f]{64}", fp):
        raise TokenError("Invalid join token: it is <secret>.<CA fingerprint> as "
                         "xcatconfig --sntoken printed it")
    return secret, fp


# ---- joining (service node) -------------------------------------------------------------------
def parse_master(master: str) -> tuple[str, int]:
    """host:port ([v6]:port) of the management node's xcatd."""
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", (master or "").strip())
    if not m:
        raise JoinError(f"Invalid --master {master!r}: give HOST:PORT of the management "
                        "node's xcatd (e.g. mn:3001)")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if not 0 < int(port) < 65536:
        raise JoinError(f"Invalid --master port {port}")
    return host, int(port)


def _request(host: str, port: int, ctx: ssl.SSLContext, method: str, path: str,
             body: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=TIMEOUT)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, data, {"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        return resp.status, resp.read(1 << 20)
    except ssl.SSLCertVerificationError as exc:
        raise JoinError(f"The management node at {host}:{port} presented a certificate "
                        f"that does not verify ({exc.verify_message}): give --master a name "
                        "or address its certificate is valid for") from None
    except (OSError, http.client.HTTPException) as exc:
        raise JoinError(f"Cannot reach the management node's xcatd at {host}:{port}: "
                        f"{getattr(exc, 'strerror', None) or exc}") from None
    finally:
        conn.close()


#: Where a service node has its nodes' certificates signed (xcatd.fronts.snapi)
SIGN_PATH = "/v1/snsign"


def sign_via_master(paths: Paths, node: str, csr: bytes, extra: dict[str, str]) -> dict:
    """A certificate for ``node``'s request, signed by the management node (with this
    service node's own certificate): {"cert", "ca", "node"}. JoinError saying why not."""
    ident = load_identity(paths)
    if ident is None:
        raise JoinError("this root is not a service node")
    host, port = parse_master(ident.master)
    files = server_files(paths)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(files.cred))
    status, raw = _request(host, port, ctx, "POST", SIGN_PATH,
                           {"node": node, "csr": csr.decode(errors="replace"),
                            "extra": extra})
    if status != 200:
        raise JoinError(f"the management node did not sign {node}'s certificate: "
                        f"{_error_of(status, raw)}")
    try:
        got = json.loads(raw)
        return {"cert": str(got["cert"]), "ca": str(got["ca"]), "node": node}
    except (ValueError, KeyError, TypeError) as exc:
        raise JoinError(f"the management node's answer is not understood ({exc})") from None


def _error_of(status: int, raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error") or f"HTTP {status}")
    except (ValueError, AttributeError):
        return f"HTTP {status}"


def fetch_ca(host: str, port: int, fingerprint: str) -> bytes:
    """The CA certificate from the management node, trusted only if its SHA-256 is the
    token's ``fingerprint``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # checked below against the token instead
    status, raw = _request(host, port, ctx, "GET", "/v1/snjoin/ca")
    if status != 200:
        raise JoinError(f"The management node did not give its CA: {_error_of(status, raw)}")
    try:
        got = ca_fingerprint(raw)
    except ValueError:
        raise JoinError("The management node's answer is not a CA certificate") from None
    if not hmac.compare_digest(got, fingerprint):
        raise JoinError(f"The CA certificate at {host}:{port} has SHA-256 fingerprint {got}, "
                        f"not the token's {fingerprint}: refusing to trust it (is --master "
                        "the management node that made the token?); nothing was written")
    return raw


def _csr(name: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .sign(key, hashes.SHA256()))
    return key, csr.public_bytes(serialization.Encoding.PEM)


def _check_issued(cert_pem: bytes, key: ec.EllipticCurvePrivateKey, ca_pem: bytes,
                  name: str) -> None:
    """The certificate is for our key and name, a service node's, signed by the CA."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError) as exc:
        raise JoinError(f"The management node's certificate for {name} is not valid: "
                        f"{exc}") from None
    mine = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    theirs = cert.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    ou = [a.value for a in cert.subject.get_attributes_for_oid(
        NameOID.ORGANIZATIONAL_UNIT_NAME)]
    cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if mine != theirs or ou != [SN_OU] or cn != [name]:
        raise JoinError(f"The management node's certificate is not service node {name}'s "
                        "(another key, name or role)")


def _stage(path: Path, data: bytes, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), mode)
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(name)


def _install(files: list[tuple[Path, bytes, int]]) -> None:
    """Every file written beside its place first, then renamed in order: a failure before
    the renames leaves nothing behind."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data, mode in files:
            staged.append((_stage(path, data, mode), path))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)


def join(paths: Paths, name: str, master: str, token: str, addresses: list[str] | None = None,
         dbhost: str | None = None) -> list[str]:
    """Join this root to the management node as service node ``name``; returns what was
    done, one line each (never the token or the database password)."""
    check_name(name)
    addresses = list(addresses or [])
    for a in addresses:
        check_address(a)
    if dbhost is not None:
        check_address(dbhost, "--dbhost")
    if ca_files(paths)[0].exists():
        raise JoinError(f"{ca_files(paths)[0]} exists: this root is a management node, not "
                        "a service node")
    secret, fingerprint = parse_token(token)
    host, port = parse_master(master)
    ca_pem = fetch_ca(host, port, fingerprint)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem.decode())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    key, csr = _csr(name)
    body = {"token": secret, "name": name, "csr": csr.decode(), "names": addresses}
    if dbhost:
        body["dbhost"] = dbhost
    status, raw = _request(host, port, ctx, "POST", "/v1/snjoin", body)
    if status != 200:
        error = TokenError if status == 403 else JoinError
        raise error(f"The management node refused the join: {_error_of(status, raw)}")
    try:
        answer = json.loads(raw)
        cert_pem, their_ca, dburl = (answer["cert"].encode(), answer["ca"].encode(),
                                     str(answer["dburl"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise JoinError("The management node's answer to the join is not understood") from None
    if not hmac.compare_digest(ca_fingerprint(their_ca), fingerprint):
        raise JoinError("The management node answered with another CA than the token's")
    _check_issued(cert_pem, key, ca_pem, name)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    ident = SnIdentity(name, f"{host}:{port}" if ":" not in host else f"[{host}]:{port}",
                       addresses[0] if addresses else None, SN_PORT)
    cred = server_files(paths).cred
    _install([(ca_files(paths)[1], ca_pem, 0o644),
              (cred, key_pem + cert_pem, 0o600),
              (paths.cfgloc, (dburl + "\n").encode(), 0o600),
              (identity_path(paths), (json.dumps(asdict(ident), indent=1) + "\n").encode(),
               0o644)])
    return [f"Wrote the management node's CA certificate to {ca_files(paths)[1]}",
            f"Wrote service node {name}'s key and certificate to {cred}",
            f"Wrote {paths.cfgloc} (the management node's database, role xcatsn_{name})",
            f"Joined the management node {ident.master} as service node {name}"]


def check_address(value: str, what: str = "--address") -> None:
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(value)
        return
    if not re.fullmatch(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                        r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*", value or ""):
        raise JoinError(f"Invalid {what} {value!r}: give an IP address or a host name")
