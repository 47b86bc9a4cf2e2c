"""The sidecar: any A2A HTTP server, in any language, behind Sealwire bindings.

Inbound, peers reach the sidecar's agent over its bindings (Noise, the Signal
mailbox, ...); each verified request is forwarded as plain A2A JSON-RPC to the
upstream on loopback (streams as Server-Sent Events, A2A v1.0 §9.4), with the
caller's agent id in the ``Sealwire-Peer`` header. Outbound, the upstream calls
``http://<local>/peers/<name>`` as if it were that peer's A2A endpoint (its
card is at ``/peers/<name>/.well-known/agent-card.json``); the sidecar carries
each call over the binding its policy picks. The upstream's own card, fetched
from it, is published with Sealwire's keys and bindings added, and signed; it is
served at ``http://<local>/.well-known/agent-card.json``.

Both HTTP sides are core's A2A JSONRPC-over-HTTP code: the local endpoint is
:class:`~sealwire.transport.http.A2AHttpApp` (one per peer, behind a
path router) and the upstream is reached through
:class:`~sealwire.transport.http.HttpChannel` driven by an
:class:`~sealwire.agent._rpc.RpcConnection`. The HTTP legs are plaintext, so
the local endpoint answers loopback callers only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from sealwire.agent._rpc import RpcConnection
from sealwire.binding import ChannelClosed, PeerIdentity
from sealwire.codec import A2AError, InternalRpcError, Request, UnsupportedOperationError, encode
from sealwire.errors import AuthenticationError, ConfigurationError, SealwireError
from sealwire.identity import VerifiedCard
from sealwire.transport.http import CARD_PATH, A2AHttpApp, HttpChannel, HttpListener, serve_http

if TYPE_CHECKING:
    from sealwire.agent import Agent

__all__ = ["MAX_UPSTREAM_CHANNELS", "PEER_HEADER", "PEERS_PREFIX", "Sidecar"]

PEER_HEADER = "Sealwire-Peer"
"""Header naming the verified caller's agent id on requests forwarded upstream."""
PEERS_PREFIX = "/peers/"
"""Local path under which the upstream reaches each peer: ``/peers/<name>``."""
UPSTREAM_TIMEOUT = 300.0
"""Seconds an upstream call may wait for data (A2A handlers may work for a while)."""
CARD_TIMEOUT = 10.0
"""Seconds to fetch the upstream's card at start."""
MAX_UPSTREAM_CHANNELS = 256
"""Upstream HTTP channels kept, one per calling peer (its id is a header of each);
the least recently used one is closed beyond this, so callers cannot pile up clients."""

access_log = logging.getLogger("sealwire.sidecar.access")
"""One INFO line per A2A request the sidecar carries, either way: who, what, size,
result, duration (never the request's content)."""

AgentFactory = Callable[..., "Agent"]
"""Builds the sidecar's agent from ``dispatcher=`` and ``card_base=`` keyword arguments."""


class Sidecar:
    """Run ``upstream`` (an A2A HTTP server's base URL) behind a Sealwire agent.

    ``peers`` maps a local name to a peer's signed card; the upstream calls it
    at ``<local_url>/peers/<name>``. ``local`` is ``host:port`` of that endpoint
    (port 0: a free one).
    """

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
        self._rpc_url = self.upstream
        self._agent: Agent | None = None
        self._listener: HttpListener | None = None
        self._app: _Router | None = None
        self._upstream_conns: OrderedDict[str, RpcConnection] = OrderedDict()

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
    def app(self) -> Callable[..., Awaitable[None]]:
        """The local endpoint as an ASGI app (served at :attr:`local_url`)."""
        if self._app is None:
            raise ConfigurationError("the sidecar is not started")
        return self._app

    @property
    def local_url(self) -> str:
        """Where the upstream calls peers: ``<local_url>/peers/<name>``."""
        if self._listener is None:
            raise ConfigurationError("the sidecar is not started")
        return self._listener.url

    async def start(self) -> None:
        """Fetch the upstream's card, start the agent and the local endpoint."""
        upstream_card = await self._fetch_card()
        self._rpc_url = next(
            (i["url"] for i in upstream_card.get("supportedInterfaces", [])
             if isinstance(i, dict) and i.get("protocolBinding") == "JSONRPC"
             and isinstance(i.get("url"), str)), self.upstream)  # fmt: skip
        agent = self._make_agent(dispatcher=self._forward, card_base=upstream_card)
        self._agent = agent
        await agent.start()
        try:
            peers = {name: agent.peer(card) for name, card in self._peer_cards.items()}
            own = A2AHttpApp(_no_calls, lambda: agent.card.card, self._local_caller)
            apps = {name: self._peer_app(name, card) for name, card in peers.items()}
            self._app = _Router(own, apps)
            self._listener = await serve_http(self._app, f"http://{self._local}")
        except BaseException:
            await agent.stop()
            raise

    async def stop(self) -> None:
        """Close the local endpoint, the upstream channels and the agent."""
        if self._listener is not None:
            await self._listener.close()
        while self._upstream_conns:
            await self._upstream_conns.popitem()[1].close()
        if self._agent is not None:
            await self._agent.stop()

    async def __aenter__(self) -> Sidecar:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _fetch_card(self) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=CARD_TIMEOUT, trust_env=False) as client:
                response = await client.get(self.upstream + CARD_PATH)
                card = response.raise_for_status().json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ConfigurationError(f"cannot read the upstream's agent card: {exc}") from None
        if not isinstance(card, dict):
            raise ConfigurationError("the upstream's agent card is not a JSON object")
        return card

    # -- inbound: a verified peer's request, to the upstream ----------------------------------

    def _forward(self, request: Request, peer: PeerIdentity) -> AsyncIterator[Any]:
        results = _relay(self._upstream_conn(peer.agent_id), request, "the upstream")
        return _logged(results, request, who=peer.agent_id, peer="upstream", direction="in")

    def _upstream_conn(self, agent_id: str) -> RpcConnection:
        conn = self._upstream_conns.get(agent_id)
        if conn is not None and not conn.closed.is_set():
            self._upstream_conns.move_to_end(agent_id)
            return conn
        client = httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT, trust_env=False)
        channel = HttpChannel(
            client, self._rpc_url, self._as_peer(), headers={PEER_HEADER: agent_id}
        )
        conn = RpcConnection(channel, None, on_close=lambda c: self._forget(agent_id, c))
        conn.start()
        self._upstream_conns[agent_id] = conn
        if len(self._upstream_conns) > MAX_UPSTREAM_CHANNELS:
            _close_soon(self._upstream_conns.popitem(last=False)[1])
        return conn

    def _forget(self, agent_id: str, conn: RpcConnection) -> None:
        if self._upstream_conns.get(agent_id) is conn:
            del self._upstream_conns[agent_id]

    def _as_peer(self) -> PeerIdentity:
        """The upstream and its local callers act as this agent."""
        return PeerIdentity(agent_id=self.agent.agent_id, identity=self.agent.identity.public)

    # -- outbound: the upstream's calls to a peer ---------------------------------------------

    async def _local_caller(self, scope: Mapping[str, Any], _headers: Any) -> PeerIdentity:
        client = scope.get("client")
        try:
            loopback = client is not None and ipaddress.ip_address(client[0]).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise AuthenticationError("the sidecar's local endpoint serves loopback callers only")
        return self._as_peer()

    def _peer_app(self, name: str, peer: VerifiedCard) -> A2AHttpApp:
        async def call(request: Request, _caller: PeerIdentity) -> AsyncIterator[Any]:
            try:
                conn = await self.agent.connect(peer)
            except A2AError:
                raise
            except SealwireError as exc:
                raise InternalRpcError(f"peer {name} unreachable: {type(exc).__name__}") from None
            async for result in _relay(conn, request, f"peer {name}"):
                yield result

        def logged_call(request: Request, caller: PeerIdentity) -> AsyncIterator[Any]:
            results = call(request, caller)
            return _logged(results, request, who="upstream", peer=peer.agent_id, direction="out")

        def card() -> dict[str, Any]:
            # The peer's card, reachable here: its signature no longer applies, so it goes.
            local = {"url": f"{self.local_url}{PEERS_PREFIX}{name}", "protocolBinding": "JSONRPC",
                     "protocolVersion": "1.0"}  # fmt: skip
            kept = {k: v for k, v in peer.card.items() if k != "signatures"}
            return {**kept, "supportedInterfaces": [local]}

        return A2AHttpApp(logged_call, card, self._local_caller)


async def _relay(conn: RpcConnection, request: Request, where: str) -> AsyncIterator[Any]:
    """Send ``request`` on ``conn``; yield its result, or each event of its stream."""
    try:
        if request.method.streaming:
            async for event in conn.stream(request.method, request.params):
                yield event
        else:
            yield await conn.call(request.method, request.params)
    except ChannelClosed:
        # The caller always gets an answer, even when the far side went away.
        raise InternalRpcError(f"the connection to {where} closed") from None


async def _logged(
    results: AsyncIterator[Any], request: Request, *, who: str, peer: str, direction: str
) -> AsyncIterator[Any]:
    """Pass ``results`` on; then log the request's access line (see ``access_log``)."""
    started = time.perf_counter()
    outcome, events = "ok", 0
    try:
        async for item in results:
            events += 1
            yield item
    except A2AError as exc:
        outcome = str(exc.code)
        raise
    except GeneratorExit:
        # The HTTP side takes a call's one result and closes: that is success. A
        # stream closed early was left by its caller.
        outcome = "ok" if events and not request.method.streaming else "closed"
        raise
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    except Exception as exc:
        outcome = type(exc).__name__
        raise
    finally:
        if access_log.isEnabledFor(logging.INFO):
            _log_request(request, who, peer, direction, outcome, events, started)


def _log_request(
    request: Request, who: str, peer: str, direction: str, outcome: str, events: int,
    started: float,
) -> None:  # fmt: skip
    ms = round((time.perf_counter() - started) * 1000, 3)
    size = len(json.dumps(encode(request), separators=(",", ":")).encode())
    method = request.method.value
    access_log.info(
        "%s %s %s -> %s %dB %s %.1fms",
        direction, method, who, peer, size, outcome, ms,
        extra={"who": who, "peer": peer, "direction": direction, "method": method,
               "bytes": size, "events": events, "result": outcome, "duration_ms": ms},
    )  # fmt: skip


def _close_soon(conn: RpcConnection) -> None:
    """Close an evicted connection off the request path."""
    task = asyncio.get_running_loop().create_task(conn.close())
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


_CLOSING: set[asyncio.Task[None]] = set()
"""Evicted upstream connections being closed (a reference keeps each task alive)."""


async def _no_calls(request: Request, _peer: PeerIdentity) -> AsyncIterator[Any]:
    raise UnsupportedOperationError(f"call a peer at {PEERS_PREFIX}<name>")
    yield  # pragma: no cover - makes this an async generator


class _Router:
    """ASGI: ``/peers/<name>[/...]`` to that peer's app (path made relative), the rest
    to the sidecar's own app (its card; no calls)."""

    def __init__(self, own: A2AHttpApp, peers: Mapping[str, A2AHttpApp]) -> None:
        self._own = own
        self._peers = dict(peers)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PEERS_PREFIX):
            await self._own(scope, receive, send)
            return
        name, _, rest = path.removeprefix(PEERS_PREFIX).partition("/")
        app = self._peers.get(name)
        if app is None:
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})  # fmt: skip
            await send({"type": "http.response.body", "body": b"no such peer"})
            return
        root = scope.get("root_path", "") + PEERS_PREFIX + name
        await app({**scope, "path": "/" + rest, "root_path": root}, receive, send)
