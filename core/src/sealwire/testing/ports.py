"""Loopback ports for tests that start servers whose port must be known beforehand
(a configuration file, a restart on the same port): prefer port 0 where it is not.

:func:`free_port` picks a port *outside* the kernel's ephemeral range, at random. The
kernel hands out ephemeral ports (an outgoing connection's local port, a bind to port
0) only inside that range, so a port picked outside it cannot be taken meanwhile by
any socket but one bound to it on purpose; a port picked by asking the kernel for a
free one (bind to 0, close) is inside the range, and another test's connection could
take it before the server binds it (seen on CI: "address already in use").
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["ephemeral_range", "free_port"]

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL = (32768, 60999)
"""Linux's default ephemeral range, used where the range cannot be read."""
LOWEST = 10_000
"""Ports below this are left to services the machine may run."""
ATTEMPTS = 100

_given: set[int] = set()
"""Ports this process already handed out (a test may not have bound its port yet)."""


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (first, last)."""
    try:
        low, high = (int(x) for x in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL
    return low, high


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host``, free now, outside the ephemeral range (module docstring)."""
    low, high = ephemeral_range()
    # no port outside the range (a machine configured so): the kernel picks, as before
    spans = [(a, b) for a, b in ((LOWEST, low - 1), (high + 1, 65535)) if a <= b] or [(0, 0)]
    for _ in range(ATTEMPTS):
        port = random.randint(*random.choice(spans))
        if port in _given:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        _given.add(port)
        return port
    raise OSError("no free port found outside the ephemeral range")
