"""The A2A v1.0 conformance suite's world: one agent, one caller, five transports
(see ``tests/helpers/a2a_conformance.py`` for how each carries the requests)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a_conformance import A2A, TRANSPORTS, Frames, Https, Rest, client_context, handler
from cryptography.hazmat.primitives import serialization

from sealwire.adapters import PEERS_PREFIX, Sidecar
from sealwire.agent import Agent, TaskContext
from sealwire.identity import Identity
from sealwire.relay import RelayClient
from sealwire.store import MemoryStore
from sealwire.transport.http import serve_http
from sealwire_relay import RelayConfig, running_relay
from sealwire_tls import self_signed_certificate


@pytest.fixture(params=TRANSPORTS)
async def a2a(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[A2A]:
    """The served agent over one transport (each test runs once per transport)."""
    transport: str = request.param
    gate = asyncio.Event()
    ids = Identity.generate(), Identity.generate()
    allowed = tmp_path / "caller.pem"
    allowed.write_bytes(self_signed_certificate(ids[1]).public_bytes(serialization.Encoding.PEM))
    listen = ["tcp://127.0.0.1:0", "https://127.0.0.1:0"]  # port 0: no race for a port
    options = {"tls": {"client_certificates": [str(allowed)]}}
    async with _relay(tmp_path, transport == "mailbox") as relay_url:
        clients = [RelayClient(relay_url, i) for i in ids] if relay_url else []
        relays: list[dict[str, Any]] = [{"relay": c} for c in clients] or [{}, {}]
        served = Agent(ids[0], MemoryStore(), name="served", listen=listen,
                       binding_options=options, **relays[0])  # fmt: skip
        caller = Agent(ids[1], MemoryStore(), name="caller", **relays[1])

        @served.on_message
        async def bound(task: TaskContext) -> None:
            await handler(gate, task)

        try:
            async with served, caller:
                served.trust.pin(ids[1].public)
                if transport == "sidecar":
                    async with _sidecar(served) as url, httpx.AsyncClient(trust_env=False) as http:
                        yield A2A(transport, served, Https(http, url), gate)
                elif transport in ("https", "rest"):
                    ctx = client_context(served, ids[1], tmp_path)
                    async with httpx.AsyncClient(verify=ctx, trust_env=False) as http:
                        url = next(o.url for o in served.card.offers if o.name == "tls") or ""
                        carrier = Https(http, url) if transport == "https" else Rest(http, url)
                        yield A2A(transport, served, carrier, gate)
                else:
                    peer = caller.peer(served.card)
                    name = "noise" if transport == "noise" else "signal"
                    channel = await caller._open_channel(peer, caller.explain(peer, binding=name))
                    try:
                        yield A2A(transport, served, Frames(channel), gate)
                    finally:
                        await channel.close()
                gate.set()  # let parked handlers end before the agent stops
        finally:
            for client in clients:
                await client.close()


@contextlib.asynccontextmanager
async def _sidecar(served: Agent) -> AsyncIterator[str]:
    """A sidecar (for an upstream that only serves its card) with ``served`` as its peer;
    yields the local URL at which the upstream would call that peer."""
    card = {"name": "upstream", "description": "calls peers through its sidecar",
            "version": "1.0", "supportedInterfaces": [], "capabilities": {},
            "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
            "skills": []}  # fmt: skip

    async def upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": json.dumps(card).encode()})

    def make_agent(**options: Any) -> Agent:
        return Agent(Identity.generate(), MemoryStore(), name="sidecar", **options)

    listener = await serve_http(upstream, "http://127.0.0.1:0")
    try:
        async with Sidecar(listener.url, make_agent, peers={"served": served.card.card}) as side:
            yield f"{side.local_url}{PEERS_PREFIX}served"
    finally:
        await listener.close()


class _relay:
    """A relay on loopback (SQLite) when ``wanted``; its URL, or None."""

    def __init__(self, tmp_path: Path, wanted: bool) -> None:
        self._config = RelayConfig(
            port=0, identity_path=tmp_path / "relay.key", backend="sqlite",
            backend_options={"path": str(tmp_path / "relay.sqlite3")},
        ) if wanted else None  # fmt: skip
        self._running: Any = None

    async def __aenter__(self) -> str | None:
        if self._config is None:
            return None
        self._running = running_relay(self._config)
        relay = await self._running.__aenter__()
        url: str = relay.url
        return url

    async def __aexit__(self, *exc: Any) -> None:
        if self._running is not None:
            await self._running.__aexit__(*exc)
