"""The lab: throwaway real services (PostgreSQL, DHCP, DNS, BMCs, and VMs as they land) that
tests, benchmarks and the demo start themselves and stop by PID, whatever happens."""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


class Scene:
    """A lab piece's lifetime: ``with`` runs ``setup()``, and ``close()`` when setup fails
    (whatever it made so far) or the body ends, whatever happened in it."""

    def setup(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stop_process_group(proc: subprocess.Popen | None, grace: float = 10) -> None:
    """Stop a service started with start_new_session=True: SIGTERM to its process group,
    SIGKILL if it is still there after ``grace`` seconds (grace 0: SIGKILL at once)."""
    if proc is None:
        return
    if grace > 0:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def kill_pid(pid: int, grace: float = 3) -> None:
    """SIGTERM the process group led by ``pid`` (or the process alone when it leads none),
    SIGKILL after ``grace`` seconds: for processes the lab knows only by PID."""
    def send(sig: int) -> bool:
        for fn in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                fn(pid, sig)
                return True
        return False
    if not send(signal.SIGTERM):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    send(signal.SIGKILL)


#: setns(2)'s flag for a network namespace
CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def enter_netns(ns: str) -> Iterator[None]:
    """The calling thread in network namespace ``ns`` for the block; sockets opened and
    processes started inside stay in it."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET):
                raise OSError(ctypes.get_errno(), f"setns {ns}")
        finally:
            os.close(fd)
        try:
            yield
        finally:
            if libc.setns(own, CLONE_NEWNET):
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)


def netns_pids(ns: str) -> list[int]:
    """The processes in network namespace ``ns`` (``ip netns pids``)."""
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                         timeout=10).stdout
    return [int(p) for p in out.split()]
