"""Test ports are picked where the kernel never hands out ports of its own."""

from __future__ import annotations

import socket

from sealwire.testing import ports


def test_free_ports_are_outside_the_ephemeral_range_bindable_and_not_repeated() -> None:
    low, high = ports.ephemeral_range()
    picked = [ports.free_port() for _ in range(50)]
    assert len(set(picked)) == len(picked)
    assert all(p >= ports.LOWEST and not low <= p <= high for p in picked)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", picked[-1]))


def test_an_ephemeral_port_taken_by_a_connection_is_never_picked() -> None:
    """What failed on CI: a port found free by binding to 0 was taken by a client socket."""
    with socket.socket() as server, socket.socket() as client:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client.connect(server.getsockname())
        low, high = ports.ephemeral_range()
        assert low <= client.getsockname()[1] <= high  # the kernel's choice, in the range
        assert all(ports.free_port() != client.getsockname()[1] for _ in range(50))
