"""What the tests need root for, and the skip that says so when they run as another user.
CI runs the tests as root: there nothing is skipped for this."""
from __future__ import annotations

import os

import pytest

BYPASS_IS_ROOTS = ("XCATBYPASS runs are root's: run the tests as root, as CI does "
                   "(commands run in process with XCATBYPASS=1 only for root)")
DAEMON_IS_ROOTS = ("the test management node's policy, as xcatconfig writes it, lets root "
                   "alone run commands through xcatd, and the tests pin root's identity: run "
                   "the tests as root, as CI does")


def need_root(reason: str = BYPASS_IS_ROOTS) -> None:
    """Skip the test, saying why, unless it runs as root."""
    if os.geteuid() != 0:
        pytest.skip(reason)
