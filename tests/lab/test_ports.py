"""xcatd.lab.ports: the one helper for free ports (the kernel picks them), and the blocks of
consecutive free ports the simulated BMC fleets take."""
import socket

import pytest

from xcatd.lab import ports
from xcatd.lab.ports import free_port, free_port_block


def bindable(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
def test_a_free_port_can_be_bound(kind):
    assert bindable(free_port(kind), kind)


def test_a_block_with_a_taken_port_is_left_for_another(monkeypatch):
    """The kernel's first choice has a taken port inside its block: the block starts
    elsewhere, and every port of it is free."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        busy = taken.getsockname()[1]
        first_choice = busy - 2
        if not bindable(first_choice, socket.SOCK_DGRAM):
            pytest.skip(f"port {first_choice} is in use: the scene cannot be set")
        choices = iter([first_choice])
        real = ports.free_port
        monkeypatch.setattr(ports, "free_port",
                            lambda kind, host: next(choices, None) or real(kind, host))
        start = free_port_block(5, socket.SOCK_DGRAM)
        assert start != first_choice
        assert not start <= busy < start + 5
        assert all(bindable(p, socket.SOCK_DGRAM) for p in range(start, start + 5))
    finally:
        taken.close()


def test_a_block_past_the_last_port_is_left_for_another(monkeypatch):
    choices = iter([65530])
    real = ports.free_port
    monkeypatch.setattr(ports, "free_port",
                        lambda kind, host: next(choices, None) or real(kind, host))
    start = free_port_block(10)
    assert start != 65530 and start + 9 <= 65535


def test_no_block_at_all_is_an_error_that_says_so(monkeypatch):
    monkeypatch.setattr(ports, "free_port", lambda kind, host: 65535)
    with pytest.raises(RuntimeError, match="no block of 2 free consecutive ports"):
        free_port_block(2, attempts=3)
