"""The ssh keys the management node hands its nodes (the ``remoteshell`` postscript): the
management node root's public keys, for root's authorized_keys on the node, and each node's
own host keys, made once and kept under ``/etc/xcat/hostkeys/<node>/`` (xCAT's place), so a
node that enrols again (a diskless node does at every boot) shows the same host keys and
nobody's known_hosts churns.

>>> import tempfile
>>> paths = Paths(tempfile.mkdtemp())
>>> keys = node_host_keys(paths, "n1")
>>> sorted(keys), keys["ed25519"]["public"].split()[0]
(['ecdsa', 'ed25519'], 'ssh-ed25519')
>>> node_host_keys(paths, "n1") == keys          # made once, then kept
True
>>> known_hosts_line(paths, "n1", ["n1", "n1.cluster", "10.0.0.1"]).splitlines()[0][:37]
'n1,n1.cluster,10.0.0.1 ssh-ed25519 AA'
>>> node_host_keys(paths, "../etc")
Traceback (most recent call last):
...
xcatd.security.nodekeys.NodeKeyError: '../etc' is not a node name that can name a key directory

Private keys are OpenSSH text, as sshd reads them, written mode 0600 in directories of mode
0700; public keys are one ``type base64 comment`` line. A generator that races another (two
xcatd workers, two processes) waits for the first one's lock and then uses its keys: one
consistent set whatever the timing.
"""
from __future__ import annotations

import base64
import binascii
import os
import re
import socket
import struct
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from xcatd.base.files import locked, write_atomic
from xcatd.base.paths import Paths

#: The host key types a node gets, in the order sshd offers them: name -> OpenSSH key type.
#: No RSA: making a 3072-bit key costs ~0.4 s of CPU, 6 CPU-minutes for 1,000 nodes enrolling
#: at once, and every OpenSSH since 6.5 speaks ed25519 (an admin's own rsa file is still read)
HOST_KEY_TYPES = {"ed25519": "ssh-ed25519", "ecdsa": "ecdsa-sha2-nistp256"}
RSA_BITS = 3072
#: root's public key files on the management node, in the order they are sent
ROOT_KEY_FILES = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")
#: the site's own list of keys for root on every node, under <installdir> (xCAT's place)
SITE_KEY_LIST = "postscripts/_ssh/authorized_keys"

#: a public key line's type and key (after any options: from="...",no-pty ...)
_PUBLIC = re.compile(r"(?:^|\s)(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)|"
                     r"sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)"
                     r" ([A-Za-z0-9+/]+={0,3})(?:\s|$)")
_NODE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
#: a name a known_hosts line may carry: a host name or address (or ``[name]:port``); no
#: pattern (``*``, ``?``, ``!``), marker or hash, so one node's key never stands for others
_HOST_NAME = re.compile(r"[A-Za-z0-9_.:%-]+|\[[A-Za-z0-9_.:%-]+\]:[0-9]{1,5}")
#: root's known_hosts on the management node (xCAT's makeknownhosts keeps it)
KNOWN_HOSTS = "/root/.ssh/known_hosts"


class NodeKeyError(ValueError):
    """A key that cannot be read or made; the message names the file or the bad value."""


def hostkey_dir(paths: Paths, node: str) -> Path:
    """Where ``node``'s host keys live: <etc>/hostkeys/<node>/."""
    if not _NODE_NAME.fullmatch(node) or node in (".", ".."):
        raise NodeKeyError(f"'{node}' is not a node name that can name a key directory")
    return paths.etc / "hostkeys" / node


def _make_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _new_key(kind: str):
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


def _private_text(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()


def _public_text(key, comment: str) -> str:
    blob = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()
    return f"{blob} {comment}" if comment else blob


def _load_private(path: Path, kind: str | None = None):
    """The private key in ``path`` (OpenSSH text); NodeKeyError naming the file otherwise."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NodeKeyError(f"{path}: cannot read the key: {exc.strerror or exc}") from None
    try:
        # our own files (0600, written here): the slow RSA self-check adds nothing
        key = serialization.load_ssh_private_key(data, password=None,
                                                 unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise NodeKeyError(f"{path}: not an unencrypted OpenSSH private key ({exc})") from None
    want = {"ed25519": ed25519.Ed25519PrivateKey, "ecdsa": ec.EllipticCurvePrivateKey,
            "rsa": rsa.RSAPrivateKey}.get(kind or "")
    if want is not None and not isinstance(key, want):
        raise NodeKeyError(f"{path}: holds a {type(key).__name__}, not an {kind} key")
    return key


def _host_key_files(directory: Path, kind: str) -> tuple[Path, Path]:
    private = directory / f"ssh_host_{kind}_key"
    return private, private.with_name(private.name + ".pub")


#: directory -> (what its key files looked like, the public keys derived from them): a set is
#: parsed once until its files change (the private keys are read again each time, never kept
#: in memory)
_CHECKED: dict[Path, tuple[tuple, dict[str, str]]] = {}


def _signature(paths: Iterable[Path]) -> tuple | None:
    out = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            return None
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _read_host_keys(directory: Path, node: str) -> dict[str, dict[str, str]] | None:
    """The node's keys when all of them are there, else None. The public half is derived
    from the private key, so a stale .pub file can never be handed out."""
    files = [f for kind in HOST_KEY_TYPES for f in _host_key_files(directory, kind)]
    signature = _signature(files)
    if signature is None:
        return None
    try:
        texts = {kind: _host_key_files(directory, kind)[0].read_text() for kind in
                 HOST_KEY_TYPES}
    except FileNotFoundError:
        return None
    cached = _CHECKED.get(directory)
    if cached is not None and cached[0] == signature and _signature(files) == signature:
        publics = cached[1]
    else:
        publics = {kind: _public_text(_load_private(_host_key_files(directory, kind)[0],
                                                    kind), node)
                   for kind in HOST_KEY_TYPES}
        if _signature(files) != signature:  # changed meanwhile: read it all again
            return _read_host_keys(directory, node)
        _CHECKED[directory] = (signature, publics)
    return {kind: {"private": texts[kind], "public": publics[kind]} for kind in HOST_KEY_TYPES}


def node_host_keys(paths: Paths, node: str) -> dict[str, dict[str, str]]:
    """``{"ed25519": {"private": ..., "public": ...}, "ecdsa": ...}``: the host keys of
    ``node``, made (ed25519, ECDSA P-256) the first time it asks."""
    directory = hostkey_dir(paths, node)
    if directory.is_dir():
        found = _read_host_keys(directory, node)
        if found is not None:
            return found
    _make_dir(directory.parent)
    _make_dir(directory)
    with locked(directory / "keys"):
        for kind in HOST_KEY_TYPES:  # another writer may have made some of them meanwhile
            private, public = _host_key_files(directory, kind)
            if private.is_file():
                key = _load_private(private, kind)
            else:
                key = _new_key(kind)
                write_atomic(private, _private_text(key), mode=0o600)
            text = _public_text(key, node) + "\n"
            try:
                same = public.read_text() == text
            except OSError:
                same = False
            if not same:
                write_atomic(public, text, mode=0o644)
        found = _read_host_keys(directory, node)
    if found is None:  # only when the files vanish under our feet
        raise NodeKeyError(f"{directory}: the host keys of {node} disappeared while written")
    return found


def known_hosts_line(paths: Paths, node: str, names: Iterable[str] = ()) -> str:
    """The management node's known_hosts lines for ``node``: one per host key, each naming
    ``names`` (the node, its other host names and addresses; the node alone by default)."""
    wanted = list(dict.fromkeys(n.strip() for n in (*names,) if n and n.strip())) or [node]
    for name in wanted:
        if not _HOST_NAME.fullmatch(name):
            raise NodeKeyError(f"'{name}' cannot stand in a known_hosts line (a host name "
                               "or address: letters, digits and . _ : % - only)")
    hosts = ",".join(wanted)
    keys = host_public_keys(paths, node)
    return "".join(f"{hosts} {keys[k]}\n" for k in HOST_KEY_TYPES)


_OPENSSH_MAGIC = b"openssh-key-v1\0"


def _header_public(path: Path) -> str | None:
    """'type base64' of the public key an unencrypted OpenSSH private key file carries in
    its header (sshd refuses a private key that does not match it), or None."""
    try:
        lines = path.read_bytes().splitlines()
        blob = base64.b64decode(b"".join(ln.strip() for ln in lines
                                          if ln.strip() and not ln.startswith(b"-----")),
                                validate=True)
        if not blob.startswith(_OPENSSH_MAGIC):
            return None
        pos, fields = len(_OPENSSH_MAGIC), []
        for _ in range(3):  # cipher, kdf, kdf options
            (size,) = struct.unpack_from(">I", blob, pos)
            fields.append(blob[pos + 4:pos + 4 + size])
            pos += 4 + size
        (count, size) = struct.unpack_from(">II", blob, pos)
        public = blob[pos + 8:pos + 8 + size]
        (tsize,) = struct.unpack_from(">I", public, 0)
    except (OSError, binascii.Error, struct.error):
        return None
    if fields[0] != b"none" or count != 1 or len(public) != size:
        return None
    return f"{public[4:4 + tsize].decode('ascii', 'replace')} {base64.b64encode(public).decode()}"


def host_public_keys(paths: Paths, node: str) -> dict[str, str]:
    """``{"ed25519": "ssh-ed25519 AAAA...", "ecdsa": ...}``: the public host keys of
    ``node``, read from the headers of its private key files (no key parsed: 10,000 nodes'
    known_hosts lines take about a second), made first when it has none."""
    directory = hostkey_dir(paths, node)
    found = {kind: _header_public(_host_key_files(directory, kind)[0])
             for kind in HOST_KEY_TYPES}
    if all(v is not None and v.split()[0] == HOST_KEY_TYPES[k] for k, v in found.items()):
        return found  # type: ignore[return-value]
    keys = node_host_keys(paths, node)  # makes them, or names the file that is wrong
    return {k: " ".join(keys[k]["public"].split()[:2]) for k in HOST_KEY_TYPES}


def known_hosts_path(paths: Paths) -> Path:
    """root's known_hosts on the management node: the nodes' lines makeknownhosts keeps
    there (xcatd.security.knownhosts) are what ssh from the management node checks."""
    return paths.under(KNOWN_HOSTS)


# ---- root's keys on the management node ---------------------------------------------------
def _public_lines(path: Path) -> list[tuple[str, str]]:
    """(key, line) of the ssh public keys in ``path``, one a line (comments and blank lines
    skipped); NodeKeyError names a line that is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NodeKeyError(f"{path}: cannot read the public key: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _PUBLIC.search(line)
        if m is None:
            raise NodeKeyError(f"{path}, line {number}: not an ssh public key")
        out.append((m.group(2), line))
    return out


def _root_key_pair(ssh_dir: Path) -> None:
    """Give root an ed25519 key pair (id_ed25519, id_ed25519.pub) unless it has a public key;
    an existing id_ed25519 without its .pub gets its .pub back instead of a new key."""
    private = ssh_dir / "id_ed25519"
    public = ssh_dir / "id_ed25519.pub"
    if private.is_file():
        key = _load_private(private, "ed25519")
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        write_atomic(private, _private_text(key), mode=0o600)
    write_atomic(public, _public_text(key, f"root@{socket.gethostname()}") + "\n", mode=0o644)


def root_public_keys(paths: Paths, installdir: Path | None = None) -> str:
    """The text of root's authorized_keys on every node: the management node root's public
    keys (an ed25519 pair is made for root when it has none), then the site's own list,
    <installdir>/postscripts/_ssh/authorized_keys, each key once."""
    ssh_dir = paths.under("/root/.ssh")
    if not any((ssh_dir / name).is_file() for name in ROOT_KEY_FILES):
        _make_dir(ssh_dir)
        with locked(paths.var_lib / "rootsshkey"):
            if not any((ssh_dir / name).is_file() for name in ROOT_KEY_FILES):
                _root_key_pair(ssh_dir)
    files = [ssh_dir / name for name in ROOT_KEY_FILES]
    files.append((installdir or paths.under("/install")) / SITE_KEY_LIST)
    lines: dict[str, str] = {}  # key blob -> line
    for path in files:
        if path.is_file():
            for blob, line in _public_lines(path):
                lines.setdefault(blob, line)
    return "".join(f"{line}\n" for line in lines.values())


def root_private_key(paths: Paths) -> Path:
    """The management node root's private key that ssh from it (xdsh, xdcp) logs in with:
    the first of id_ed25519, id_ecdsa, id_rsa whose public half the nodes are given (a pair
    is made first when root has none). NodeKeyError when none has its private half."""
    root_public_keys(paths)
    ssh_dir = paths.under("/root/.ssh")
    for public in ROOT_KEY_FILES:
        private = ssh_dir / public.removesuffix(".pub")
        if private.is_file() and (ssh_dir / public).is_file():
            return private
    raise NodeKeyError(f"{ssh_dir}: root has no private key beside its public ones")
