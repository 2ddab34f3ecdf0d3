"""Secrets at rest: the values of secret columns (xcatd.tables.SECRET_COLUMNS) are stored
sealed with AES-GCM under the management node's master key, ``etc/xcat/masterkey`` (32
random bytes as one base64 line, mode 0600), and opened only when pyxcat reads them.

A sealed value is ``{xenc1}`` and the URL-safe base64 of nonce (12 bytes), ciphertext and
tag; ``table.column`` is the associated data, so a value moved to another column does not
open. A value without the prefix is a clear one from before sealing and reads as it is.

>>> sealer = Sealer(bytes(32))
>>> token = sealer.seal("ipmi", "password", "s3cret")
>>> is_sealed(token), "s3cret" in token
(True, False)
>>> sealer.unseal("ipmi", "password", token), sealer.unseal("ipmi", "password", "legacy")
('s3cret', 'legacy')
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import os
import stat
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from xcatd.base.paths import Paths
from xcatd.db.errors import DBError
from xcatd.tables import SECRET_COLUMNS

PREFIX = "{xenc1}"
KEY_BYTES = 32
NONCE_BYTES = 12
#: Unsealed values kept per key: thousands of nodes share a group's row, reads are hot
CACHE_SIZE = 4096
#: the values lent to this context (Sealer.lend): a context, not a thread, so the helper
#: threads a request starts with its context (xcatd.base.progress) see them too
_LENT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("lent",
                                                                           default=None)

#: The secret columns of each table that has any, in schema order: a table not in here
#: pays nothing for sealing
SECRETS: dict[str, tuple[str, ...]] = {}
for _table, _column in sorted(SECRET_COLUMNS):
    SECRETS.setdefault(_table, ())
    SECRETS[_table] += (_column,)


def key_path(paths: Paths) -> Path:
    return paths.etc / "masterkey"


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def ensure_master_key(paths: Paths, sealed_in_use=None) -> bool:
    """Create the master key if there is none; True if it was created now. The file appears
    whole or not at all, and a key another process made first is never replaced.

    ``sealed_in_use()`` says whether the database already holds sealed values: then the key
    was lost, a new one would not open them (and values sealed under it would not open with
    the old one once restored), so nothing is created and the DBError says what to do."""
    path = key_path(paths)
    if path.exists():
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, 0o600)
        return False
    if sealed_in_use is not None and sealed_in_use():
        raise DBError(f"the master key {path} is missing but the database holds secrets "
                      "sealed under one: restore that file from a backup of this management "
                      "node (a new key would not open them); no key was created")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".masterkey.", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64encode(os.urandom(KEY_BYTES)) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # unlike a rename, never over an existing key
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)
    return True


def load_master_key(path: Path) -> bytes:
    """The key in ``path``; a DBError naming the file (never its content) if it is bad."""
    try:
        text = path.read_bytes().strip()
    except OSError as exc:
        raise DBError(f"Cannot read the master key {path}: {exc.strerror}") from None
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise DBError(f"The master key {path} is damaged: it is not one base64 line of "
                      f"{KEY_BYTES} bytes")
    return key


class Sealer:
    """Seals and opens secret values under one master key. Without a key (``None``) values
    are written clear, and reading a sealed one is an error naming the key file."""

    def __init__(self, key: bytes | None, keyfile: Path | str = "etc/xcat/masterkey") -> None:
        self.keyfile = str(keyfile)
        self._aead = AESGCM(key) if key is not None else None
        self._open = lru_cache(maxsize=CACHE_SIZE)(self._open_uncached)

    def __repr__(self) -> str:  # never the key
        return f"<Sealer {'with' if self.has_key else 'without'} key {self.keyfile}>"

    @property
    def has_key(self) -> bool:
        return self._aead is not None

    def seal(self, table: str, column: str, value: str | None) -> str | None:
        """``value`` sealed for ``table.column``; without a key, ``value`` itself."""
        if self._aead is None or value is None or value == "":
            return value
        nonce = os.urandom(NONCE_BYTES)
        data = self._aead.encrypt(nonce, str(value).encode(), f"{table}.{column}".encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + data).decode("ascii")

    def unseal(self, table: str, column: str, value: str | None, *, row: str = "") -> str | None:
        """The clear value of ``table.column`` (``row`` names the row in an error); a value
        that is not sealed comes back as it is."""
        if not is_sealed(value):
            return value
        clear = self._open(f"{table}.{column}", value)
        if clear is None:
            clear = (_LENT.get() or {}).get(value)
        if clear is None:
            where = f"{table}.{column}" + (f" of {row}" if row else "")
            raise DBError(f"cannot decrypt {where}: the master key {self.keyfile} is "
                          "missing or is not this database's (or the stored value was "
                          "altered)")
        return clear

    @staticmethod
    @contextlib.contextmanager
    def lend(values: dict[str, str]) -> Iterator[None]:
        """For the block, in this context, ``values`` ({sealed value: clear value}) open the
        sealed values they name without the key: a service node, which never holds the
        management node's master key, is lent the few secrets one relayed request needs."""
        token = _LENT.set({**(_LENT.get() or {}), **values})
        try:
            yield
        finally:
            _LENT.reset(token)

    def _open_uncached(self, aad: str, value: str) -> str | None:
        if self._aead is None:
            return None
        try:
            raw = base64.urlsafe_b64decode(value[len(PREFIX):].encode("ascii"))
            if len(raw) <= NONCE_BYTES:
                return None
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                      aad.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError):  # (UnicodeError is a ValueError)
            return None
