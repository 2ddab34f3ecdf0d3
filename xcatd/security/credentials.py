"""Certificates: the management node's CA, the daemon's server certificate, client certificates.

Identity on the TCP port is the client certificate's CN, signed by this CA. Keys are ECDSA
P-256 (fast to make, small, TLS 1.2+ everywhere). Every private key is written mode 0600.
"""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import pwd
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from xcatd.base.files import write_atomic
from xcatd.base.paths import Paths

VALID_DAYS = 3650
#: The organizational unit that marks a node's certificate (issued at enrolment): such a
#: certificate is a node, never a user, whatever its CN
NODE_OU = "xcat-node"
#: The OU of a service node's certificate (issued when it joins): its xcatd's server
#: certificate, and its client certificate towards the management node
SN_OU = "xcat-servicenode"
#: The OU of the management node's relay certificate: the client certificate it presents to
#: its service nodes' xcatds when it relays a request
MASTER_OU = "xcat-master"
NODE_VALID_DAYS = 3650


class CSRError(ValueError):
    """A certificate signing request that is not signed: the message says why."""


@dataclass(frozen=True)
class NodeCert:
    """A node certificate just issued."""

    pem: bytes
    fingerprint: str      # SHA-256 of the DER, hex
    serial: str           # hex
    expires: datetime.datetime


@dataclass(frozen=True)
class CertFiles:
    """A certificate with its key (one PEM file) and the CA that signed it."""

    cred: Path   # key + certificate
    ca: Path

    def exists(self) -> bool:
        return self.cred.is_file() and self.ca.is_file()


def ca_files(paths: Paths) -> tuple[Path, Path]:
    d = paths.etc / "ca"
    return d / "ca-key.pem", d / "ca.pem"


def server_files(paths: Paths) -> CertFiles:
    return CertFiles(paths.etc / "cert" / "server-cred.pem", ca_files(paths)[1])


def client_dir(home: str | os.PathLike | None = None) -> Path:
    """Where a user's client certificate lives: ~/.xcat."""
    return Path(home or os.path.expanduser("~")) / ".xcat"


def client_files(home: str | os.PathLike | None = None) -> CertFiles:
    d = client_dir(home)
    return CertFiles(d / "client-cred.pem", d / "ca.pem")


def _write(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> None:
    write_atomic(path, data, mode=mode, owner=owner)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _builder(subject: str, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS)))


def create_ca(paths: Paths) -> bool:
    """Create the CA once; returns True if it was created now."""
    key_path, cert_path = ca_files(paths)
    if key_path.is_file() and cert_path.is_file():
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    name = f"xCAT CA {socket.gethostname()}"
    cert = (_builder(name, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]),
                     key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    os.makedirs(key_path.parent, mode=0o700, exist_ok=True)
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, _cert_pem(cert), 0o644)
    return True


def _load_ca(paths: Paths) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_path, cert_path = ca_files(paths)
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return key, cert  # type: ignore[return-value]


def _issue(paths: Paths, cn: str, *, server: bool, names: list[str] | None = None) -> bytes:
    ca_key, ca_cert = _load_ca(paths)
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    b = (_builder(cn, ca_cert.subject, key.public_key())
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if server:
        alt: list[x509.GeneralName] = []
        for n in dict.fromkeys(names or []):
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                alt.append(x509.DNSName(n))
        b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    return _key_pem(key) + _cert_pem(cert)


def create_server_cert(paths: Paths, extra_names: list[str] | None = None) -> bool:
    files = server_files(paths)
    if files.cred.is_file():
        return False
    host = socket.gethostname()
    names = [host, socket.getfqdn(), "localhost", "127.0.0.1", "::1", *(extra_names or [])]
    _write(files.cred, _issue(paths, host, server=True, names=names), 0o600)
    return True


def issue_client_cert(paths: Paths, user: str, directory: str | os.PathLike | None = None,
                      *, force: bool = False) -> CertFiles:
    """Create ``user``'s client certificate (CN=user) in ``directory`` (default ~user/.xcat),
    owned by that user when it exists on this machine."""
    owner = None
    home = None
    try:
        pw = pwd.getpwnam(user)
        owner, home = (pw.pw_uid, pw.pw_gid), pw.pw_dir
    except KeyError:
        pass
    if directory is None:
        if home is None:
            raise ValueError(f"no home directory for user {user!r}: give a directory")
        directory = client_dir(home)
    d = Path(directory)
    files = CertFiles(d / "client-cred.pem", d / "ca.pem")
    ca_pem = ca_files(paths)[1].read_bytes()
    if files.exists() and not force and files.ca.read_bytes() == ca_pem:
        return files  # already issued by this CA
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    if owner is not None and os.geteuid() == 0:
        os.chown(d, *owner)
    _write(files.cred, _issue(paths, user, server=False), 0o600, owner)
    _write(files.ca, ca_pem, 0o644, owner)
    return files


def csr_public_key(csr_pem: bytes):
    """The key of a signing request that carries a valid signature (proof that the sender
    holds the key) and a P-256/P-384 or 2048+ bit RSA key; its subject is not looked at."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CSRError(f"not a PEM certificate signing request ({exc})") from None
    if not csr.is_signature_valid:
        raise CSRError("the request's signature does not match its key")
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1"):
            raise CSRError(f"EC curve {key.curve.name} is not accepted (P-256 or P-384)")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise CSRError(f"an RSA key of {key.key_size} bits is too small (2048 or more)")
    else:
        raise CSRError(f"a {type(key).__name__} key is not accepted (EC P-256 or RSA)")
    return key


def sign_node_csr(paths: Paths, node: str, csr_pem: bytes,
                  days: int = NODE_VALID_DAYS) -> NodeCert:
    """The node's certificate for the key in ``csr_pem``: CN=node, OU=xcat-node, client
    authentication only, signed by this CA. The request must carry a valid signature (proof
    that the node holds the key) and a P-256/P-384 or 2048+ bit RSA key; its subject is
    ignored (the name is the one the token proved)."""
    key = csr_public_key(csr_pem)
    ca_key, ca_cert = _load_ca(paths)
    cert = _role_cert(ca_key, ca_cert, node, NODE_OU, key, [ExtendedKeyUsageOID.CLIENT_AUTH],
                      days=days)
    der = cert.public_bytes(serialization.Encoding.DER)
    return NodeCert(_cert_pem(cert), hashlib.sha256(der).hexdigest(),
                    format(cert.serial_number, "x"), cert.not_valid_after_utc)


def ca_pem(paths: Paths) -> bytes:
    return ca_files(paths)[1].read_bytes()


def certificate_ou(der_or_dict) -> str | None:
    """The OU of a peer certificate as ssl.getpeercert() returns it."""
    for rdn in (der_or_dict or {}).get("subject", ()):
        for key, value in rdn:
            if key == "organizationalUnitName":
                return value
    return None


def certificate_cn(der_or_dict) -> str | None:
    """The CN of a peer certificate as ssl.getpeercert() returns it."""
    if not der_or_dict:
        return None
    for rdn in der_or_dict.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def server_names(paths: Paths) -> list[str]:
    """The names and addresses the server certificate is valid for (its CN first)."""
    cert = x509.load_pem_x509_certificate(server_files(paths).cred.read_bytes())
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [str(n) for n in names]
    names += alt.get_values_for_type(x509.DNSName)
    names += [str(a) for a in alt.get_values_for_type(x509.IPAddress)]
    return [str(n) for n in dict.fromkeys(names)]


def reissue_server_cert(paths: Paths, names: list[str]) -> None:
    """A new server certificate (and key) for ``names`` (the first is its CN), signed by this
    management node's CA; written in one rename."""
    files = server_files(paths)
    files.cred.parent.mkdir(parents=True, exist_ok=True)
    _write(files.cred, _issue(paths, names[0], server=True, names=names), 0o600)


def ca_key_present(paths: Paths) -> bool:
    return ca_files(paths)[0].is_file()


def _alt_names(names: list[str]) -> x509.SubjectAlternativeName:
    alt: list[x509.GeneralName] = []
    for n in dict.fromkeys(names):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(alt)


def _role_cert(ca_key, ca_cert: x509.Certificate, cn: str, ou: str, public_key,
               usages: list, names: list[str] | None = None,
               days: int = VALID_DAYS) -> x509.Certificate:
    """A certificate of this CA for ``public_key``: CN, the role (OU), its uses (extended
    key usage), the names it is valid for."""
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
                         x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
         .public_key(public_key).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
    if names:
        b = b.add_extension(_alt_names(names), critical=False)
    return b.sign(ca_key, hashes.SHA256())


def issue_servicenode_cert(paths: Paths, name: str, csr_pem: bytes, names: list[str]) -> bytes:
    """A service node's certificate for the key in ``csr_pem`` (checked as sign_node_csr
    checks it): CN=name, OU=xcat-servicenode, valid for ``names``, for its xcatd (server)
    and towards the management node (client). The PEM of the certificate alone."""
    key = csr_public_key(csr_pem)
    ca_key, ca_cert = _load_ca(paths)
    cert = _role_cert(ca_key, ca_cert, name, SN_OU, key,
                      [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                      [name, *names])
    return _cert_pem(cert)


def relay_files(paths: Paths) -> CertFiles:
    """The management node's client certificate for relaying to its service nodes."""
    return CertFiles(paths.etc / "cert" / "relay-cred.pem", ca_files(paths)[1])


def ensure_relay_cert(paths: Paths) -> bool:
    """Create the relay certificate (CN=this host, OU=xcat-master, client authentication)
    if there is none; True if it was created now."""
    files = relay_files(paths)
    if files.cred.is_file():
        return False
    ca_key, ca_cert = _load_ca(paths)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _role_cert(ca_key, ca_cert, socket.gethostname(), MASTER_OU, key.public_key(),
                      [ExtendedKeyUsageOID.CLIENT_AUTH])
    files.cred.parent.mkdir(parents=True, exist_ok=True)
    _write(files.cred, _key_pem(key) + _cert_pem(cert), 0o600)
    return True
