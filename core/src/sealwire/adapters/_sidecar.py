"""The sidecar: any A2A HTTP server, in any language, behind Sealwire bindings.

Inbound, peers reach the sidecar's agent over its bindings (Noise, the Signal
mailbox, ...); each verified request is forwarded as plain A2A JSON-RPC to the
upstream on loopback (streams as Server-Sent Events), with the caller's agent
id in the ``Sealwire-Peer`` header. Outbound, the upstream calls
``http://<local>/peers/<name>`` as if it were that peer's A2A endpoint (its
card is at ``/peers/<name>/.well-known/agent-card.json``); the sidecar carries
each call over the binding its policy picks. The upstream's own card, fetched
from it, is published with Sealwire's keys and bindings added, and signed; it is
served at ``http://<local>/.well-known/agent-card.json``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from sealwire.adapters._http import HttpListener, JsonRpcApp, call_upstream, serve_app
from sealwire.binding import PeerIdentity
from sealwire.codec import Request, UnsupportedOperationError
from sealwire.errors import ConfigurationError
from sealwire.identity import VerifiedCard

if TYPE_CHECKING:
    from sealwire.agent import Agent

__all__ = ["PEER_HEADER", "Sidecar"]

PEER_HEADER = "Sealwire-Peer"
"""Header naming the verified caller's agent id on requests forwarded upstream."""
UPSTREAM_TIMEOUT = 300.0
"""Seconds an upstream call may take (A2A handlers may work for a while)."""

AgentFactory = Callable[..., "Agent"]
"""Builds the sidecar's agent from ``dispatcher=`` and ``card_base=`` keyword arguments."""


class Sidecar:
    """Run ``upstream`` (an A2A HTTP server's base URL) behind a Sealwire agent."""

    def __init__(
        self,
        upstream: str,
        make_agent: AgentFactory,
        *,
        peers: Mapping[str, Mapping[str, Any]] | None = None,
        local: str = "127.0.0.1:0",
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self._make_agent = make_agent
        self._peer_cards = dict(peers or {})
        self._local = local
        self._client = httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT, trust_env=False)
        self._rpc_url = self.upstream
        self._agent: Agent | None = None
        self._peers: dict[str, VerifiedCard] = {}
        self._listener: HttpListener | None = None

    @property
    def agent(self) -> Agent:
        if self._agent is None:
            raise ConfigurationError("the sidecar is not started")
        return self._agent

    @property
    def started(self) -> bool:
        return self._agent is not None

    @property
    def peer_names(self) -> list[str]:
        """The peers the upstream can call, by the names given."""
        return sorted(self._peer_cards)

    @property
    def local_url(self) -> str:
        """Where the upstream calls peers: ``<local_url>/peers/<name>``."""
        if self._listener is None:
            raise ConfigurationError("the sidecar is not started")
        return self._listener.url

    async def start(self) -> None:
        """Fetch the upstream's card, start the agent and the local endpoint."""
        try:
            response = await self._client.get(self.upstream + "/.well-known/agent-card.json")
            upstream_card = response.raise_for_status().json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ConfigurationError(f"cannot read the upstream's agent card: {exc}") from None
        self._rpc_url = next(
            (i["url"] for i in upstream_card.get("supportedInterfaces", [])
             if i.get("protocolBinding") == "JSONRPC"), self.upstream)  # fmt: skip
        self._agent = self._make_agent(dispatcher=self._forward, card_base=upstream_card)
        await self._agent.start()
        self._peers = {name: self._agent.peer(card) for name, card in self._peer_cards.items()}
        host, _, port = self._local.rpartition(":")
        self._listener = await serve_app(JsonRpcApp(self._route), host or "127.0.0.1",
                                         int(port or 0))  # fmt: skip

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        if self._agent is not None:
            await self._agent.stop()
        await self._client.aclose()

    async def __aenter__(self) -> Sidecar:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _forward(self, request: Request, peer: PeerIdentity) -> AsyncIterator[Any]:
        """Inbound: a verified request from a peer, to the upstream."""
        return call_upstream(self._client, self._rpc_url, request, {PEER_HEADER: peer.agent_id})

    def _route(self, path: str) -> tuple[Callable[[Request], AsyncIterator[Any]], Any] | None:
        """Outbound: ``/peers/<name>`` serves calls to that peer; ``/`` our own card."""
        if path == "/":
            return self._no_calls, dict(self.agent.card.card)
        name = path.removeprefix("/peers/")
        peer = self._peers.get(name) if path.startswith("/peers/") else None
        if peer is None:
            return None
        local = f"{self.local_url}/peers/{name}"
        # The peer's card, reachable here: its signature no longer applies, so it goes.
        card = {k: v for k, v in peer.card.items() if k != "signatures"} | {
            "supportedInterfaces": [
                {"url": local, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
            ]
        }

        async def call(request: Request) -> AsyncIterator[Any]:
            conn = await self.agent.connect(peer)
            if request.method.streaming:
                async for event in conn.stream(request.method, request.params):
                    yield event
            else:
                yield await conn.call(request.method, request.params)

        return call, card

    async def _no_calls(self, request: Request) -> AsyncIterator[Any]:
        raise UnsupportedOperationError("call a peer at /peers/<name>")
        yield  # pragma: no cover - makes this an async generator
