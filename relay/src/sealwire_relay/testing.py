"""Pytest plugin of ``sealwire-relay`` (entry point ``pytest11``): a relay on
loopback for the contract suites of :mod:`sealwire.testing` that need one.

``relay_port_for(identity)`` gives that agent's :class:`sealwire.relay.RelayPort`
at a relay (SQLite, in the test's folder) served in the test's event loop;
ports and relay are closed after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

from sealwire.identity import Identity
from sealwire.relay import RelayClient, RelayPort
from sealwire_relay._server import RelayConfig, running_relay

try:
    import pytest_asyncio
except ImportError:  # pytest runs in this environment for something else: no fixture
    pytest_asyncio = None  # type: ignore[assignment]

__all__ = ["relay_port_for"]


async def relay_port_for(tmp_path: Path) -> AsyncIterator[Callable[[Identity], RelayPort]]:
    """A factory of relay ports, one per agent identity, at one loopback relay."""
    config = RelayConfig(
        host="127.0.0.1", port=0, identity_path=tmp_path / "relay.key",
        backend="sqlite", backend_options={"path": str(tmp_path / "relay.sqlite3")},
    )  # fmt: skip
    clients: list[RelayClient] = []
    async with running_relay(config) as relay:

        def port_for(identity: Identity) -> RelayPort:
            client = RelayClient(relay.url, identity)
            clients.append(client)
            return client

        try:
            yield port_for
        finally:
            for client in clients:
                await client.close()


if pytest_asyncio is not None:  # an async fixture, in pytest-asyncio's strict and auto modes
    relay_port_for = pytest_asyncio.fixture(relay_port_for)
