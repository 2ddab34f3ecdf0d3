"""Hardware management: one small interface per capability (power, boot device, inventory,
sensors, event log), and the types they share.

A node's ``nodehm.power`` (else ``nodehm.mgt``) picks a driver (xcatd.hardware.registry);
commands ask it for the interface they need and never branch on vendor or protocol. IPMI is
``xcatd.hardware.ipmi``; a Redfish or PDU driver registers itself the same way.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

from xcatd.base.site import SiteValues

POWER_ACTIONS = ("on", "off", "softoff", "reset", "cycle", "nmi")
#: rsetboot's words (xCAT's: 'def' and 'default' are the same) -> the device.
BOOT_DEVICES = {"net": "network", "hd": "hd", "cd": "optical", "def": "default",
                "default": "default", "floppy": "floppy", "setup": "setup"}
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
    """The result for one node: a value (or several lines), or an error."""

    node: str
    value: str | None = None
    error: str | None = None
    lines: list[str] | None = None


@dataclass(frozen=True)
class Limits:
    """How hard to try, from the site table: ``ipmimaxp`` requests in flight at once,
    ``ipmitimeout`` seconds per attempt, ``ipmiretries`` more attempts after the first."""

    maxp: int = 64
    timeout: float = 2.0
    retries: int = 3

    @classmethod
    def from_site(cls, site: SiteValues) -> Limits:
        """The site's values, raised to their floor (1, 0.1 s, 0); SiteValueError names a
        value that is not a number."""
        return cls(max(1, site.integer("ipmimaxp", 64)),
                   max(0.1, site.number("ipmitimeout", 2.0)),
                   max(0, site.integer("ipmiretries", 3)))


DEFAULT_LIMITS = Limits()
INVENTORY = ("model", "serial", "firm", "mac", "guid", "uuid", "dimm", "all")
VITALS = ("temp", "voltage", "fanspeed", "power", "leds", "all")


# ---- the interfaces: one per capability, small and typed (Ironic's shape) ---------------------
# Calls for many nodes run concurrently inside the implementation and yield each node's
# outcome as soon as it is known; one node's failure is that node's Outcome.error, never an
# exception. A driver (a management protocol: ipmi, redfish, a PDU, the fake one) implements
# the interfaces it can; the commands ask for the interface they need.
class Driver:
    """A management protocol's implementation: subclass it and the interfaces it offers,
    and register it in the ``pyxcat.hardware`` entry-point group (xcatd.hardware.registry)."""

    #: the nodehm.mgt / nodehm.power value that picks it (set by the registry)
    name: str = ""

    def close(self) -> None:
        """Stop whatever it runs (threads, sockets); called at exit."""


class PowerInterface(ABC):
    @abstractmethod
    def power_state(self, targets: list[Target], limits: Limits = DEFAULT_LIMITS
                    ) -> Iterator[Outcome]:
        """'on' or 'off' for each node."""

    @abstractmethod
    def set_power(self, targets: list[Target], action: str, limits: Limits = DEFAULT_LIMITS
                  ) -> Iterator[Outcome]:
        """Do ``action`` (POWER_ACTIONS); the value is the power state after it."""


class BootDeviceInterface(ABC):
    @abstractmethod
    def boot_device(self, targets: list[Target], limits: Limits = DEFAULT_LIMITS
                    ) -> Iterator[Outcome]:
        """The next boot device, as a key of BOOT_WORDS."""

    @abstractmethod
    def set_boot_device(self, targets: list[Target], device: str, persistent: bool,
                        uefi: bool, limits: Limits = DEFAULT_LIMITS) -> Iterator[Outcome]:
        """Set the next boot device (a value of BOOT_DEVICES)."""


class InventoryInterface(ABC):
    @abstractmethod
    def inventory(self, targets: list[Target], what: str, limits: Limits = DEFAULT_LIMITS
                  ) -> Iterator[Outcome]:
        """rinv: Outcome.lines, xCAT's 'Label: value' lines for ``what`` (INVENTORY)."""


class SensorsInterface(ABC):
    @abstractmethod
    def vitals(self, targets: list[Target], what: str, limits: Limits = DEFAULT_LIMITS
               ) -> Iterator[Outcome]:
        """rvitals: Outcome.lines, 'Sensor: reading units' for ``what`` (VITALS)."""


class EventLogInterface(ABC):
    @abstractmethod
    def event_log(self, targets: list[Target], count: int | None, clear: bool,
                  limits: Limits = DEFAULT_LIMITS) -> Iterator[Outcome]:
        """reventlog: Outcome.lines, the newest ``count`` SEL entries (None: all), or clear
        the log."""


#: What the admin is told a missing interface means.
CAPABILITIES = {PowerInterface: "power control", BootDeviceInterface: "boot device control",
                InventoryInterface: "hardware inventory", SensorsInterface: "sensors",
                EventLogInterface: "an event log"}
