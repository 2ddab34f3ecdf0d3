"""The lab: throwaway real services (PostgreSQL, DHCP, DNS, BMCs, and VMs as they land) that
tests, benchmarks and the demo start themselves and stop by PID, whatever happens."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess


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
