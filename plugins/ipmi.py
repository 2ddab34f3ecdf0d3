"""The IPMI implementation of the hardware interface, with pyghmi.

pyghmi 1.6.19 misbehaves when several threads share its process-wide session loop (stalled
requests, a socket that stops receiving), so every pyghmi call runs in a worker process that
uses it from one thread. Nodes are routed to workers by BMC address, so a worker keeps its
BMCs' sessions and a second command does not log in again. A dead BMC holds up only the
nodes routed to its worker. (An event-driven engine for thousands of BMCs at once is the
next step: see the IPMI issue's note.)
"""
from __future__ import annotations

import atexit
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

from xcatd.hardware import HardwareManager, Outcome, Target, register

WORKERS = 8
CONFIRM_WAIT = 20.0  # seconds a power change has to show in the power state

# ---- inside a worker process ----------------------------------------------------------------
_SESSIONS: dict[tuple, object] = {}


def _forget(key: tuple, cmd) -> None:
    """Drop a session, and work around pyghmi 1.6.19 keeping it in Session.initting_sessions
    (deleted there under the bytes password, stored under the str one): without this, the
    next Command() to that BMC gets the dead session back and fails with a TypeError."""
    _SESSIONS.pop(key, None)
    try:
        from pyghmi.ipmi.private import session
        address, port, user, password = key
        session.Session.initting_sessions.pop((address, user, password, port, None), None)
        if cmd is not None:
            cmd.ipmi_session.logout()
    except Exception:  # a session already gone has nothing to log out of
        pass


def _power(cmd) -> str:
    return cmd.get_power()["powerstate"]


def _set_power(cmd, action: str, wait: float) -> str:
    verbs = {"on": "on", "off": "off", "softoff": "shutdown", "reset": "reset", "nmi": "diag"}
    if action == "cycle":
        cmd.set_power("off")
        _confirm(cmd, "off", wait, "off")
        cmd.set_power("on")
        return _confirm(cmd, "on", wait, "on")
    cmd.set_power(verbs[action])
    if action in ("on", "off"):
        return _confirm(cmd, action, wait, action)
    return _power(cmd)


def _confirm(cmd, want: str, wait: float, action: str) -> str:
    deadline = time.monotonic() + wait
    while True:
        state = _power(cmd)
        if state == want or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if state != want:
        raise RuntimeError(f"the BMC accepted '{action}' but the power state is still {state}")
    return state


def _op(address: str, port: int, user: str, password: str, op: str, args: dict) -> dict:
    from pyghmi.ipmi import command
    key = (address, port, user, password)
    for attempt in (1, 2):
        cmd = _SESSIONS.get(key)
        try:
            if cmd is None:
                cmd = command.Command(address, user, password, port=port)
                _SESSIONS[key] = cmd
            if op == "state":
                return {"value": _power(cmd)}
            if op == "set":
                return {"value": _set_power(cmd, args["action"], args.get("wait", CONFIRM_WAIT))}
            if op == "boot":
                return {"value": cmd.get_bootdev().get("bootdev", "default")}
            if op == "setboot":
                got = cmd.set_bootdev(args["device"], persist=args["persistent"],
                                      uefiboot=args["uefi"])
                return {"value": got.get("bootdev", args["device"])}
            return {"error": f"unknown operation {op}"}
        except RuntimeError as exc:
            return {"error": str(exc)}
        except Exception as exc:  # pyghmi's errors: a stale session gets one fresh login
            _forget(key, cmd)
            if attempt == 2 or cmd is None:
                return {"error": _describe(exc)}
    return {"error": "no answer"}


def _describe(exc: Exception) -> str:
    text = str(exc).strip()
    if not text or text == "None":
        return f"{exc.__class__.__name__} (no answer from the BMC?)"
    return text


# ---- in the daemon --------------------------------------------------------------------------
@register("ipmi")
class IpmiManager(HardwareManager):
    def __init__(self, workers: int = WORKERS) -> None:
        self._pools: list[ProcessPoolExecutor | None] = [None] * workers
        atexit.register(self.close)  # before the interpreter tears the pools' modules down

    def _pool(self, t: Target) -> ProcessPoolExecutor:
        i = zlib.crc32(f"{t.address}:{t.port}".encode()) % len(self._pools)
        if self._pools[i] is None:
            self._pools[i] = ProcessPoolExecutor(1, mp_context=get_context("spawn"))
        return self._pools[i]  # type: ignore[return-value]

    def _run(self, targets: list[Target], op: str, args: dict) -> Iterator[Outcome]:
        futures = {self._pool(t).submit(_op, t.address, t.port, t.username, t.password, op,
                                        args): t for t in targets}
        for f in as_completed(futures):
            t = futures[f]
            try:
                r = f.result()
            except Exception as exc:  # a worker that died: that node's error only
                r = {"error": f"IPMI worker failed: {exc.__class__.__name__}"}
            yield Outcome(t.node, r.get("value"), r.get("error"))

    def power_state(self, targets):
        return self._run(targets, "state", {})

    def set_power(self, targets, action):
        return self._run(targets, "set", {"action": action})

    def boot_device(self, targets):
        return self._run(targets, "boot", {})

    def set_boot_device(self, targets, device, persistent, uefi):
        return self._run(targets, "setboot", {"device": device, "persistent": persistent,
                                              "uefi": uefi})

    def close(self) -> None:
        """Stop the workers without waiting for a BMC that does not answer: a worker stuck
        in pyghmi must not keep xcatd from exiting."""
        for i, p in enumerate(self._pools):
            if p is None:
                continue
            for proc in list(getattr(p, "_processes", {}).values()):
                proc.terminate()
            p.shutdown(wait=True, cancel_futures=True)
            self._pools[i] = None
