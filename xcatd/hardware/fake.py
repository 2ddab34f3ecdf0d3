"""A fake driver: every interface, with the machines' state in memory. It serves the tests
of the layers above the drivers (commands, REST, fencing) and the demo, the way Ironic's
fake hardware does. Register it for a mgt value with ``registry.register("fake",
FakeDriver)``; it is not registered by default.

Its machines are keyed by BMC address and port. An address starting with ``dead`` never
answers (a timeout error, at once), and a password of ``wrong`` is refused, so the error
paths of the layers above can be tested too.

>>> from xcatd.hardware.interfaces import Target
>>> fake = FakeDriver()
>>> t = Target("n1", "10.0.0.1", 623, "admin", "pw")
>>> [o.value for o in fake.set_power([t], "on")], [o.value for o in fake.power_state([t])]
(['on'], ['on'])
>>> [o.error for o in fake.power_state([Target("n2", "dead-1", 623, "a", "b")])]
['timeout: no answer from the BMC at dead-1:623']
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from xcatd.hardware.interfaces import (
    DEFAULT_LIMITS,
    BootDeviceInterface,
    Driver,
    EventLogInterface,
    InventoryInterface,
    Limits,
    Outcome,
    PowerInterface,
    SensorsInterface,
    Target,
)


@dataclass
class Machine:
    power: str = "off"
    boot: str = "default"
    events: list[str] = field(default_factory=lambda: ["Power Supply #1: AC lost"])
    #: every call that changed something, in order: ("power", "on"), ("boot", "network")
    history: list[tuple[str, str]] = field(default_factory=list)


class FakeDriver(Driver, PowerInterface, BootDeviceInterface, InventoryInterface,
                 SensorsInterface, EventLogInterface):
    def __init__(self) -> None:
        self.machines: dict[tuple[str, int], Machine] = {}
        self._lock = threading.Lock()

    def machine(self, t: Target) -> Machine:
        with self._lock:
            return self.machines.setdefault((t.address, t.port), Machine())

    def _each(self, targets: list[Target], fn) -> Iterator[Outcome]:
        for t in targets:
            if t.address.startswith("dead"):
                yield Outcome(t.node, error=f"timeout: no answer from the BMC at "
                                            f"{t.address}:{t.port}")
            elif t.password == "wrong":
                yield Outcome(t.node, error="ERROR: Incorrect password provided")  # xCAT's
            else:
                yield fn(t, self.machine(t))

    def power_state(self, targets: list[Target], limits: Limits = DEFAULT_LIMITS
                    ) -> Iterator[Outcome]:
        return self._each(targets, lambda t, m: Outcome(t.node, m.power))

    def set_power(self, targets: list[Target], action: str, limits: Limits = DEFAULT_LIMITS
                  ) -> Iterator[Outcome]:
        def do(t: Target, m: Machine) -> Outcome:
            if action in ("on", "off"):
                m.power = action
            elif action == "softoff":
                m.power = "off"
            elif action in ("cycle", "reset"):
                m.power = "on"
            m.history.append(("power", action))
            return Outcome(t.node, m.power)
        return self._each(targets, do)

    def boot_device(self, targets: list[Target], limits: Limits = DEFAULT_LIMITS
                    ) -> Iterator[Outcome]:
        return self._each(targets, lambda t, m: Outcome(t.node, m.boot))

    def set_boot_device(self, targets: list[Target], device: str, persistent: bool,
                        uefi: bool, limits: Limits = DEFAULT_LIMITS) -> Iterator[Outcome]:
        def do(t: Target, m: Machine) -> Outcome:
            m.boot = device
            m.history.append(("boot", device))
            return Outcome(t.node, device)
        return self._each(targets, do)

    def inventory(self, targets: list[Target], what: str, limits: Limits = DEFAULT_LIMITS
                  ) -> Iterator[Outcome]:
        return self._each(targets, lambda t, m: Outcome(
            t.node, lines=[f"System Description: Fake machine at {t.address}",
                           f"System Serial Number: FAKE{t.port}"]))

    def vitals(self, targets: list[Target], what: str, limits: Limits = DEFAULT_LIMITS
               ) -> Iterator[Outcome]:
        return self._each(targets, lambda t, m: Outcome(t.node, lines=["CPU Temp: 40 C (104 F)"]))

    def event_log(self, targets: list[Target], count: int | None, clear: bool,
                  limits: Limits = DEFAULT_LIMITS) -> Iterator[Outcome]:
        def do(t: Target, m: Machine) -> Outcome:
            if not m.events:  # xCAT's words for an empty log, read or cleared
                return Outcome(t.node, lines=["no SEL entries"])
            if clear:
                m.events.clear()
                return Outcome(t.node, lines=["SEL cleared"])
            return Outcome(t.node, lines=list(m.events[-count:] if count else m.events))
        return self._each(targets, do)
