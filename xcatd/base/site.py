"""Typed values of the site table: ports, flags, numbers, directories and bind addresses, each
read one way everywhere, and a bad value is a clear error naming the key, never a traceback.

The site table holds strings; an admin's typo (``httpport=8o``) must not take xcatd down, and
``site.installdir`` must mean the same directory to every part of the toolkit.

>>> site = SiteValues({"httpport": "8080", "dhcpsetup": "n", "httpbind": "[::1]:81"})
>>> site.port("httpport", 80), site.flag("dhcpsetup", True), site.port("xcatdport", 3001)
(8080, False, 3001)
>>> site.bind("httpbind", 80)
('::1', 81)
>>> str(site.installdir(Paths("/r")))
'/r/install'
>>> SiteValues({"httpport": "8o"}).port("httpport", 80)
Traceback (most recent call last):
...
xcatd.base.site.SiteValueError: site.httpport '8o' is not a port number (1-65535)
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from xcatd.base.paths import Paths

TRUE_WORDS = frozenset({"1", "y", "yes", "on", "true"})
FALSE_WORDS = frozenset({"0", "n", "no", "off", "false"})
#: site.*bind values that switch a listener off
OFF_WORDS = frozenset({"none", "off", "no"})

DEFAULT_INSTALLDIR = "/install"
DEFAULT_TFTPDIR = "/tftpboot"
DEFAULT_HTTPPORT = 80


class SiteValueError(ValueError):
    """A site value that cannot be used; the message names the key and the value."""


class SiteValues(Mapping[str, str]):
    """The site table (key -> value) with typed readers. Empty values count as unset."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str | None] | None = None) -> None:
        self._values = {k: v for k, v in (values or {}).items() if v is not None}

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"SiteValues({len(self)} keys)"

    # ---- typed readers ----------------------------------------------------------------------
    def text(self, key: str, default: str = "") -> str:
        """The value stripped of blanks, or ``default`` when unset or empty."""
        return (self._values.get(key) or "").strip() or default

    def flag(self, key: str, default: bool) -> bool:
        value = self.text(key).lower()
        if not value:
            return default
        if value in TRUE_WORDS:
            return True
        if value in FALSE_WORDS:
            return False
        raise SiteValueError(f"site.{key} '{self.text(key)}' is not yes or no")

    def integer(self, key: str, default: int, *, low: int | None = None,
                high: int | None = None) -> int:
        value = self.text(key)
        if not value:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SiteValueError(f"site.{key} '{value}' is not a whole number") from None
        return _within(key, value, number, low, high)

    def number(self, key: str, default: float, *, low: float | None = None,
               high: float | None = None) -> float:
        value = self.text(key)
        if not value:
            return default
        try:
            number = float(value)
        except ValueError:
            raise SiteValueError(f"site.{key} '{value}' is not a number") from None
        if number != number:  # NaN
            raise SiteValueError(f"site.{key} '{value}' is not a number")
        return _within(key, value, number, low, high)

    def port(self, key: str, default: int) -> int:
        value = self.text(key)
        if not value:
            return default
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise SiteValueError(f"site.{key} '{value}' is not a port number (1-65535)")
        return int(value)

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(key, default).lower()
        if value not in choices:
            raise SiteValueError(f"site.{key} '{self.text(key)}' is not one of "
                                 f"{', '.join(choices)}")
        return value

    def bind(self, key: str, default_port: int, host: str | None = None
             ) -> tuple[str | None, int] | None:
        """Where a listener binds: ``ADDR``, ``ADDR:PORT``, ``[V6ADDR]:PORT``, ``:PORT`` or a
        bare IPv6 address; ``host`` (or None: every address) when the value names none;
        None for ``none``/``off``."""
        return parse_bind(self.text(key), default_port, f"site.{key}", host)

    def directory(self, key: str, default: str) -> str:
        """An absolute directory (as the admin wrote it: relative to XCATROOT)."""
        value = self.text(key, default)
        if not value.startswith("/") or "\x00" in value:
            raise SiteValueError(f"site.{key} '{value}' is not an absolute path")
        return value.rstrip("/") or "/"

    # ---- the values every part of the toolkit shares ----------------------------------------
    def installdir(self, paths: Paths) -> Path:
        """site.installdir under XCATROOT (default /install)."""
        return paths.under(self.directory("installdir", DEFAULT_INSTALLDIR))

    def tftpdir(self, paths: Paths) -> Path:
        """site.tftpdir under XCATROOT (default /tftpboot)."""
        return paths.under(self.directory("tftpdir", DEFAULT_TFTPDIR))

    def httpport(self) -> int:
        """site.httpport, where nodes reach the HTTP site (default 80)."""
        return self.port("httpport", DEFAULT_HTTPPORT)

    def master(self) -> str:
        """site.master: the address nodes reach this management node at."""
        return self.text("master", "127.0.0.1")


def _within(key: str, value: str, number, low, high):
    if (low is not None and number < low) or (high is not None and number > high):
        span = (f"from {low} to {high}" if low is not None and high is not None
                else f"at least {low}" if low is not None else f"at most {high}")
        raise SiteValueError(f"site.{key} '{value}' must be {span}")
    return number


def parse_bind(text: str | None, default_port: int, what: str, host: str | None = None
               ) -> tuple[str | None, int] | None:
    """(address, port) from a bind value; see SiteValues.bind. ``what`` names the setting in
    errors.

    >>> parse_bind("10.0.0.1:8080", 80, "x"), parse_bind(":69", 69, "x"), parse_bind("", 80, "x")
    (('10.0.0.1', 8080), (None, 69), (None, 80))
    >>> parse_bind("fe80::1", 69, "x"), parse_bind("off", 69, "x")
    (('fe80::1', 69), None)
    """
    bind = (text or "").strip()
    if bind.lower() in OFF_WORDS:
        return None
    if not bind:
        return (None if host in (None, "", "0.0.0.0", "::") else host), default_port
    addr: str = bind
    port = str(default_port)
    if bind.startswith("["):
        addr, _, rest = bind[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise SiteValueError(f"{what} '{text}': expected [ADDRESS]:PORT")
            port = rest[1:]
    elif bind.count(":") == 1:
        addr, _, port = bind.partition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SiteValueError(f"{what} '{text}': the port must be a number from 0 to 65535")
    return (addr or None), int(port)
