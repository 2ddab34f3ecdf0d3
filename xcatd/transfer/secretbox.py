"""Passphrase encryption for an archive's secrets: scrypt turns the passphrase into keys,
AES-256-GCM seals each secret entry (its name is the associated data, so a sealed entry
cannot be passed off as another), HMAC-SHA256 authenticates the manifest.

The passphrase never leaves this module in any form but the derived keys, and nothing here
prints or logs it.

>>> box = Box.new(b"correct horse")
>>> again = Box.from_params(b"correct horse", box.params())
>>> again.open_bytes("x", box.seal_bytes("x", b"secret"))
b'secret'
>>> Box.from_params(b"wrong", box.params()).check()  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
xcatd.transfer.secretbox.PassphraseError: wrong passphrase: ...
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

#: scrypt's cost: 2**15 x 8 x 128 bytes = 32 MiB of memory and about 0.1 s per try, so a
#: guessed passphrase costs an attacker as much
SCRYPT = {"n": 2 ** 15, "r": 8, "p": 1}
_CHECK = b"pyxcat archive passphrase check"
NONCE = 12
#: a sealed entry is a sequence of chunks, each this much plaintext sealed on its own (its
#: index and whether it is the last are in the associated data: no chunk can be moved,
#: dropped or cut off unseen), so entries of any size stream
CHUNK = 1 << 20
OVERHEAD = NONCE + 16
#: the most memory an archive's scrypt parameters may ask for (128 * n * r bytes)
SCRYPT_MAX_MEMORY = 256 << 20


def sealed_size(plain: int) -> int:
    """The stored size of ``plain`` bytes sealed in chunks."""
    return plain + max(1, -(-plain // CHUNK)) * OVERHEAD


def _aad(name: str, index: int, last: bool) -> bytes:
    return f"{name}\0{index}\0{int(last)}".encode()


class PassphraseError(Exception):
    """The passphrase does not open the archive, or a sealed entry was changed."""


class Box:
    """The keys one passphrase gives for one archive (its salt)."""

    def __init__(self, passphrase: bytes, salt: bytes, cost: dict[str, int]) -> None:
        if not passphrase:
            raise PassphraseError("the passphrase is empty")
        material = Scrypt(salt=salt, length=64, n=cost["n"], r=cost["r"],
                          p=cost["p"]).derive(passphrase)
        self._aead = AESGCM(material[:32])
        self._mac_key = material[32:]
        self._salt = salt
        self._cost = dict(cost)
        self._check = self._seal("passphrase-check", _CHECK)

    def __repr__(self) -> str:
        return "Box(<keys>)"

    @classmethod
    def new(cls, passphrase: bytes) -> Box:
        return cls(passphrase, os.urandom(16), SCRYPT)

    @classmethod
    def from_params(cls, passphrase: bytes, params: dict) -> Box:
        """The box an archive's manifest describes (``params()`` of the exporting box)."""
        try:
            cost = {k: int(params[k]) for k in ("n", "r", "p")}
            salt = base64.b64decode(params["salt"], validate=True)
            if params.get("kdf") != "scrypt" or params.get("cipher") != "AES-256-GCM":
                raise ValueError(f"{params.get('kdf')}/{params.get('cipher')}")
            if 128 * cost["n"] * cost["r"] > SCRYPT_MAX_MEMORY or cost["p"] > 4:
                raise ValueError("a scrypt cost beyond what this machine will pay")
        except (KeyError, TypeError, ValueError) as exc:
            raise PassphraseError(f"the archive's encryption parameters are not "
                                  f"understood ({exc})") from None
        box = cls(passphrase, salt, cost)
        box._check = base64.b64decode(params.get("check", ""))
        return box

    def params(self) -> dict:
        return {"kdf": "scrypt", **self._cost, "salt": base64.b64encode(self._salt).decode(),
                "cipher": "AES-256-GCM",
                "check": base64.b64encode(self._check).decode()}

    def check(self) -> None:
        """Raise PassphraseError unless this passphrase is the archive's."""
        try:
            if self._open("passphrase-check", self._check) == _CHECK:
                return
        except PassphraseError:
            pass
        raise PassphraseError("wrong passphrase: the archive's secrets do not open with it")

    def _seal(self, name: str, data: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + self._aead.encrypt(nonce, data, name.encode())

    def _open(self, name: str, blob: bytes) -> bytes:
        try:
            return self._aead.decrypt(blob[:NONCE], blob[NONCE:], name.encode())
        except (InvalidTag, ValueError):
            raise PassphraseError(f"{name} does not open: it was changed, or the "
                                  "passphrase is wrong") from None

    def seal_stream(self, name: str, fh: BinaryIO) -> Iterator[bytes]:
        """``fh``'s bytes sealed chunk by chunk (see CHUNK)."""
        index = 0
        data = fh.read(CHUNK)
        while True:
            following = fh.read(CHUNK) if len(data) == CHUNK else b""
            last = not following
            nonce = os.urandom(NONCE)
            yield nonce + self._aead.encrypt(nonce, data, _aad(name, index, last))
            if last:
                return
            data, index = following, index + 1

    def open_stream(self, name: str, fh: BinaryIO, stored: int) -> Iterator[bytes]:
        """The plaintext of a sealed entry of ``stored`` bytes, chunk by chunk; a chunk that
        does not open (changed, moved, cut off, or the wrong passphrase) raises."""
        index, left = 0, stored
        while True:
            blob = fh.read(min(CHUNK + OVERHEAD, left))
            left -= len(blob)
            if len(blob) < OVERHEAD:
                raise PassphraseError(f"{name} is cut short")
            try:
                yield self._aead.decrypt(blob[:NONCE], blob[NONCE:],
                                         _aad(name, index, left == 0))
            except InvalidTag:
                raise PassphraseError(f"{name} does not open: it was changed, or the "
                                      "passphrase is wrong") from None
            if left == 0:
                return
            index += 1

    def seal_bytes(self, name: str, data: bytes) -> bytes:
        import io
        return b"".join(self.seal_stream(name, io.BytesIO(data)))

    def open_bytes(self, name: str, blob: bytes) -> bytes:
        import io
        return b"".join(self.open_stream(name, io.BytesIO(blob), len(blob)))

    def mac(self, data: bytes) -> str:
        return hmac.new(self._mac_key, data, hashlib.sha256).hexdigest()

    def verify(self, data: bytes, mac: str) -> bool:
        return hmac.compare_digest(self.mac(data), mac or "")


def read_passphrase_file(path: str) -> bytes:
    """The first line of a passphrase file (a trailing newline is not part of it). The file
    must not be readable by others: a passphrase in a world-readable file is no secret."""
    st = os.stat(path)
    if st.st_mode & 0o077:
        raise PassphraseError(f"{path} is readable by others (mode {st.st_mode & 0o777:04o}): "
                              "chmod 600 it")
    with open(path, "rb") as fh:
        data = fh.read(65536)
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not line:
        raise PassphraseError(f"{path} holds no passphrase (its first line is empty)")
    return line
