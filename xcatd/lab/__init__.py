"""The lab: throwaway real services (PostgreSQL, DHCP, DNS, BMCs, and VMs as they land) that
tests, benchmarks and the demo start themselves and stop by PID, whatever happens."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
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
