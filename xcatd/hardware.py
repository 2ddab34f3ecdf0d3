"""Hardware management: one interface (power, boot device), one implementation per protocol.

A node's ``nodehm.power`` (else ``nodehm.mgt``) picks the implementation; commands never
branch on vendor or protocol. Implementations register with ``register``; IPMI is
``xcatd.plugins.ipmi``, and a Redfish one can follow without touching the commands.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

POWER_ACTIONS = ("on", "off", "softoff", "reset", "cycle", "nmi")
BOOT_DEVICES = {"net": "network", "hd": "hd", "cd": "optical", "def": "default",
                "floppy": "floppy", "setup": "setup"}
#: What rsetboot prints for each device, as xCAT words it.
BOOT_WORDS = {"network": "Network", "hd": "Hard Drive", "optical": "CD/DVD",
              "floppy": "Floppy", "setup": "BIOS Setup", "default": "boot override inactive"}


@dataclass(frozen=True)
class Target:
    """Where and how to reach one node's management controller. ``password`` is a secret:
    never printed, never logged."""

    node: str
    address: str
    port: int
    username: str
    password: str

    def __repr__(self) -> str:  # no secret in tracebacks or logs
        return f"Target({self.node!r}, {self.address}:{self.port}, {self.username!r})"


@dataclass
class Outcome:
    """The result for one node: a value, or an error."""

    node: str
    value: str | None = None
    error: str | None = None


class HardwareManager(ABC):
    """What the commands need from a management protocol. Calls for many nodes run
    concurrently inside the implementation and yield each node's outcome as soon as it is
    known; one node's failure is that node's Outcome.error, never an exception."""

    name: str = ""

    @abstractmethod
    def power_state(self, targets: list[Target]) -> Iterator[Outcome]:
        """'on' or 'off' for each node."""

    @abstractmethod
    def set_power(self, targets: list[Target], action: str) -> Iterator[Outcome]:
        """Do ``action`` (POWER_ACTIONS); the value is the power state after it."""

    @abstractmethod
    def boot_device(self, targets: list[Target]) -> Iterator[Outcome]:
        """The next boot device, as a key of BOOT_WORDS."""

    @abstractmethod
    def set_boot_device(self, targets: list[Target], device: str, persistent: bool,
                        uefi: bool) -> Iterator[Outcome]:
        """Set the next boot device (a value of BOOT_DEVICES)."""


_IMPLEMENTATIONS: dict[str, type[HardwareManager]] = {}
_INSTANCES: dict[str, HardwareManager] = {}


def register(name: str):
    def deco(cls: type[HardwareManager]) -> type[HardwareManager]:
        cls.name = name
        _IMPLEMENTATIONS[name] = cls
        return cls
    return deco


def manager(name: str) -> HardwareManager | None:
    """The (process-wide, session-keeping) implementation for a mgt value."""
    if name not in _INSTANCES:
        if name == "ipmi" and name not in _IMPLEMENTATIONS:
            import xcatd.plugins.ipmi  # noqa: F401  (registers itself)
        cls = _IMPLEMENTATIONS.get(name)
        if cls is None:
            return None
        _INSTANCES[name] = cls()
    return _INSTANCES[name]


def group_by(items: Iterable[tuple[str, Target]]) -> dict[str, list[Target]]:
    out: dict[str, list[Target]] = {}
    for mgt, t in items:
        out.setdefault(mgt, []).append(t)
    return out
