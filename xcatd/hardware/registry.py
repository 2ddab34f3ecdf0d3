"""Which driver manages a node: the ``pyxcat.hardware`` entry-point group maps a nodehm.mgt
value to a Driver class (setup.cfg registers ``ipmi``), so a third party adds Redfish or a
PDU by installing a package, without touching the commands. One instance per driver and
process keeps its sessions between requests.

>>> from xcatd.hardware.interfaces import Driver, PowerInterface, SensorsInterface
>>> class Toy(Driver, PowerInterface):
...     def power_state(self, targets, limits=None): return iter(())
...     def set_power(self, targets, action, limits=None): return iter(())
>>> register("toy", Toy)
>>> isinstance(interface("toy", PowerInterface), Toy)
True
>>> interface("toy", SensorsInterface)
Traceback (most recent call last):
...
xcatd.hardware.registry.Unsupported: mgt=toy has no sensors
>>> unregister("toy")
"""
from __future__ import annotations

import atexit
import logging
import threading
from importlib.metadata import entry_points
from typing import TypeVar

from xcatd.hardware.interfaces import CAPABILITIES, Driver

log = logging.getLogger("xcatd.hardware.registry")

GROUP = "pyxcat.hardware"
Iface = TypeVar("Iface")

_classes: dict[str, type[Driver]] = {}
_instances: dict[str, Driver] = {}
_lock = threading.Lock()
_loaded = False


class Unsupported(LookupError):
    """No driver for a mgt value, or one without the interface a command needs."""


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in entry_points(group=GROUP):
        if ep.name in _classes:
            continue  # registered by hand (tests): that one wins
        try:
            _classes[ep.name] = ep.load()
        except Exception:  # a broken third-party driver must not take the others down
            log.exception("cannot load hardware driver %s", ep.name)


def register(name: str, cls: type[Driver]) -> None:
    """Make ``cls`` the driver for nodes with nodehm.mgt=``name`` (tests, plugins)."""
    with _lock:
        _classes[name] = cls
        old = _instances.pop(name, None)
    if old is not None:
        old.close()


def unregister(name: str) -> None:
    with _lock:
        _classes.pop(name, None)
        old = _instances.pop(name, None)
    if old is not None:
        old.close()


def names() -> list[str]:
    with _lock:
        _load()
        return sorted(_classes)


def driver(name: str) -> Driver:
    """The process-wide instance of the driver for ``name``; Unsupported if none."""
    with _lock:
        _load()
        inst = _instances.get(name)
        if inst is None:
            cls = _classes.get(name)
            if cls is None:
                raise Unsupported(f"mgt={name} is not supported (hardware drivers: "
                                  f"{', '.join(sorted(_classes)) or 'none'})")
            inst = _instances[name] = cls()
            inst.name = name
        return inst


def interface(name: str, kind: type[Iface]) -> Iface:
    """The driver for ``name`` as the interface ``kind``; Unsupported names what it lacks."""
    inst = driver(name)
    if not isinstance(inst, kind):
        raise Unsupported(f"mgt={name} has no {CAPABILITIES.get(kind, kind.__name__)}")
    return inst


@atexit.register
def _close_all() -> None:
    for inst in list(_instances.values()):
        try:
            inst.close()
        except Exception:
            log.exception("closing hardware driver %s", inst.name)
