"""A request whose consumer goes away (``job cancel``: dispatch closes the handler's
generator) stops its BMC work at once: the engine's tasks for it are cancelled, its
``site.ipmimaxp`` slots are free when ``close()`` returns, a BMC that does not answer hears
no more retransmissions, and pyghmi decoders stop calling the BMC."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from xcatd.hardware.interfaces import Limits, Target
from xcatd.lab.bmcfleet import Fleet

#: The silent BMCs' logins would go on for 10 s (0.5 s x 20 retries) if nothing stopped them.
SLOW = Limits(maxp=4, timeout=0.5, retries=20)


class SilentBmc:
    """A UDP socket that never answers and counts what it is sent."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def received(self) -> int:
        """Packets received since the last call."""
        n = 0
        while True:
            try:
                self.sock.recv(4096)
            except BlockingIOError:
                return n
            n += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def silent():
    s = SilentBmc()
    yield s
    s.close()


@pytest.fixture
def manager():
    from xcatd.hardware.ipmi import IpmiManager
    m = IpmiManager()
    yield m
    m.close()


def free_slots(manager, maxp: int) -> int:
    """The gate's free places, read on the engine's loop."""
    async def value() -> int:
        return manager._gate(maxp)._value
    return manager.engine.call(value(), timeout=5)


def silent_sessions(manager, port: int) -> list:
    return [s for s in list(manager.engine._sids.values()) if s.addr[1] == port]


def test_closing_the_outcomes_frees_the_slots_and_silences_the_bmc(manager, silent):
    with Fleet(count=1) as fleet:
        live = Target("live", "127.0.0.1", fleet.port(0), "admin", "secret")
        # three users: three keys, three logins in flight on the silent BMC at once
        stuck = [Target(f"s{i}", "127.0.0.1", silent.port, f"user{i}", "x") for i in range(3)]
        outcomes = manager.power_state([live, *stuck], SLOW)
        first = next(outcomes)
        assert (first.node, first.value, first.error) == ("live", "off", None)
        assert free_slots(manager, SLOW.maxp) == 1  # the three logins hold theirs
        outcomes.close()
        assert free_slots(manager, SLOW.maxp) == SLOW.maxp
        assert silent_sessions(manager, silent.port) == []  # half-made sessions forgotten
        silent.received()
        time.sleep(4 * SLOW.timeout)  # four retransmission periods
        assert silent.received() == 0
        # the freed slots serve the next request
        again = manager.power_state([live], Limits(maxp=1, timeout=1.0, retries=2))
        assert [(o.node, o.value, o.error) for o in again] == [("live", "off", None)]


def test_a_consumer_that_drops_the_generator_cancels_too(manager, silent):
    """No explicit close(): the generator is finalised when the last reference goes."""
    stuck = [Target(f"s{i}", "127.0.0.1", silent.port, f"user{i}", "x") for i in range(2)]
    with Fleet(count=1, badpass=[0]) as fleet:
        bad = Target("bad", "127.0.0.1", fleet.port(0), "admin", "secret")
        outcomes = manager.power_state([bad, *stuck], SLOW)
        assert next(outcomes).error == "ERROR: Incorrect password provided"
        del outcomes
        assert free_slots(manager, SLOW.maxp) == SLOW.maxp
        silent.received()
        time.sleep(4 * SLOW.timeout)
        assert silent.received() == 0


def test_closing_stops_a_pyghmi_decoder_talking_to_its_bmc(manager):
    """rinv, rvitals, reventlog: pyghmi runs in a decoder thread and calls the BMC through
    the engine; after close() its next call fails instead of reaching the BMC."""
    calls, ended = [], threading.Event()

    def busy(cmd):  # a long read: many commands, one after another
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                cmd.get_power()
                calls.append(1)
            return ["done"]
        finally:
            ended.set()

    with Fleet(count=2, badpass=[0]) as fleet:
        bad = Target("bad", "127.0.0.1", fleet.port(0), "admin", "secret")
        good = Target("good", "127.0.0.1", fleet.port(1), "admin", "secret")
        outcomes = manager.with_pyghmi([bad, good], Limits(maxp=4, timeout=1.0, retries=2),
                                       busy)
        assert next(outcomes).node == "bad"
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.05)
        assert calls  # the decoder is talking to the good BMC
        outcomes.close()
        assert free_slots(manager, 4) == 4
        assert ended.wait(5)
        before = len(calls)
        time.sleep(0.5)
        assert len(calls) == before


def test_a_cancel_signal_stops_a_request_that_is_waiting_on_a_silent_bmc(manager, silent):
    """``job cancel`` sets the request's cancel signal (xcatd.base.cancel) while the driver
    waits for answers that will not come: the driver stops waiting and cancels its logins,
    without an answer to wake it first."""
    from xcatd.base import cancel as cancelling
    event = threading.Event()
    got: list = []

    def consume() -> None:
        with cancelling.bound(event):
            got.extend(manager.power_state([Target("s1", "127.0.0.1", silent.port, "u", "p")],
                                           SLOW))

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    deadline = time.monotonic() + 10
    while not silent.received() and time.monotonic() < deadline:  # the login has started
        time.sleep(0.05)
    event.set()
    worker.join(10)
    assert not worker.is_alive() and got == []  # stopped, not timed out: no outcome at all
    assert free_slots(manager, SLOW.maxp) == SLOW.maxp
    time.sleep(1.5)  # three retransmission intervals
    assert silent.received() == 0
