"""Fixtures of the tests that run a relay (tests/relay, tests/integration): each such
test runs against both backends.

The NATS backend runs on a real ``nats-server -js`` started once per session on
a free loopback port with a temporary store. A missing ``nats-server`` fails
the tests (install it with ``scripts/install-servers.sh``) unless
``SEALWIRE_SKIP_NATS=1`` is set, which skips the NATS half on purpose.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ports import free_port

from sealwire.identity import Identity, binding_uri, build_identity_extension, sign_card
from sealwire.relay import RelayClient
from sealwire_relay import RelayConfig, RelayLimits, RunningRelay, running_relay

BACKENDS = ("sqlite", "nats")
_prefixes = itertools.count(1)


def _wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``nats://`` URL of a JetStream server for this session."""
    if os.environ.get("SEALWIRE_SKIP_NATS") == "1":
        pytest.skip("SEALWIRE_SKIP_NATS=1: NATS backend not tested")
    binary = shutil.which("nats-server")
    if binary is None:
        pytest.fail(
            "nats-server is missing: run scripts/install-servers.sh (or SEALWIRE_SKIP_NATS=1)"
        )
    port = free_port()
    store = tmp_path_factory.mktemp("nats-store")
    proc = subprocess.Popen(
        [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, time.monotonic() + 10)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_config(
    backend_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[..., RelayConfig]:
    """Build a RelayConfig for this test's backend (fresh storage per name)."""
    nats = request.getfixturevalue("nats_url") if backend_name == "nats" else None

    prefixes: dict[str, str] = {}

    def make(name: str = "r", *, port: int | None = None, **kwargs: Any) -> RelayConfig:
        """The same ``name`` gets the same storage (to restart a relay)."""
        if nats is not None:
            prefix = prefixes.setdefault(name, f"T{os.getpid()}N{next(_prefixes)}{name}")
            options: dict[str, Any] = {"servers": [nats], "prefix": prefix}
        else:
            options = {"path": str(tmp_path / f"{name}.sqlite3")}
        kwargs.setdefault("limits", RelayLimits())
        return RelayConfig(
            port=port or free_port(),
            identity_path=tmp_path / f"{name}.key",
            backend=backend_name,
            backend_options=options,
            **kwargs,
        )

    return make


@pytest.fixture
async def sqlite_relay_url(tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a relay on SQLite in this process (the tests whose point is not the
    backend: one is enough)."""
    config = RelayConfig(
        port=free_port(), identity_path=tmp_path / "relay.key", backend="sqlite",
        backend_options={"path": str(tmp_path / "relay.sqlite3")},
    )  # fmt: skip
    async with running_relay(config) as running:
        yield running.url


@pytest.fixture
async def relay(make_config: Callable[..., RelayConfig]) -> AsyncIterator[RunningRelay]:
    async with running_relay(make_config()) as running:
        yield running


@pytest.fixture
async def clients(relay: RunningRelay) -> AsyncIterator[Callable[..., RelayClient]]:
    """``new_client()``: a client of ``relay`` for a fresh (or the given) identity."""
    made: list[RelayClient] = []

    def new_client(identity: Identity | None = None) -> RelayClient:
        client = RelayClient(relay.url, identity or Identity.generate())
        made.append(client)
        return client

    yield new_client
    for client in made:
        await client.close()


@pytest.fixture
def signed_card() -> Callable[..., dict[str, Any]]:
    """``signed_card(identity, **fields)``: an A2A v1.0 card of ``identity``, signed by it."""

    def make(identity: Identity, **extra: Any) -> dict[str, Any]:
        mls = binding_uri("mls", 1)
        card: dict[str, Any] = {
            "name": "agent-" + identity.agent_id[-6:],
            "description": "relay test agent",
            "version": "1.0.0",
            "supportedInterfaces": [
                {"url": "https://relay/ds", "protocolBinding": mls, "protocolVersion": "1.0"}
            ],
            "capabilities": {
                "extensions": [build_identity_extension(identity.public, {mls: {"ds": "relay"}})]
            },
            "defaultInputModes": ["text/plain"],
            "defaultOutputModes": ["text/plain"],
            "skills": [{"id": "echo", "name": "Echo", "description": "echoes", "tags": ["t"]}],
        }
        card.update(extra)
        return sign_card(card, identity)

    return make
