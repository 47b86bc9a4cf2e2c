"""The connections of an :class:`~sealwire.agent.Agent` with its peers (a part it holds).

Its listeners (core transports, and bindings that serve a carrier of their own) and
the sessions peers open on them, each served until it closes; the connections the
agent opens to call peers, one per peer, binding and address dialled, reused while
open (over a mailbox, one per peer and binding, sending where the peer's newest card
says); and the channels peers open through the mailbox, which calls to them reuse.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from sealwire.agent._handshake import accept_session, open_session, session_binding
from sealwire.agent._mailbox import MailboxRouter
from sealwire.agent._rpc import RpcConnection
from sealwire.agent._session import HelloCookies
from sealwire.binding import (
    Binding,
    CarrierBinding,
    Dispatcher,
    MailboxBinding,
    PeerIdentity,
    SecureChannel,
)
from sealwire.codec import Request
from sealwire.errors import PolicyError, SealwireError, StateError, TrustError
from sealwire.identity import VerifiedCard
from sealwire.plugins import Registry
from sealwire.policy import Decision, Policy
from sealwire.transport import DatagramEndpoint, FrameStream, TransportError

__all__ = ["PeerConnections", "Route"]

log = logging.getLogger(__name__)

# A connection's key: the peer's agent id, the binding, the URL it was dialled at.
_Key = tuple[str, str, str | None]


@attrs.frozen(eq=False)
class Route:
    """How :meth:`Agent.route` reached a peer: the ``connection``, the ``decision`` it
    follows and, when the live binding could not reach the peer and the call fell back
    to the offline one, that binding's decision and the error (``unreachable``)."""

    connection: RpcConnection
    decision: Decision
    unreachable: tuple[Decision, TransportError] | None = None


class PeerConnections:
    """One agent's listeners, the sessions served on them and its connections to peers.

    ``bindings`` is the agent's own mapping (filled when it starts), ``card`` gives its
    signed card, ``check_peer`` refuses a peer configuration or trust denies, and
    ``dispatch`` serves each request that arrives.
    """

    def __init__(
        self,
        *,
        registry: Registry,
        policy: Policy,
        bindings: Mapping[str, Binding],
        card: Callable[[], VerifiedCard],
        check_peer: Callable[[PeerIdentity], None],
        dispatch: Dispatcher,
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.bindings = bindings
        self.listeners: list[Any] = []
        self.mailbox: MailboxRouter | None = None
        """The agent's mailbox router, once started with a mailbox binding and a relay."""
        self._card = card
        self._check_peer = check_peer
        self._dispatch = dispatch
        # By (peer, binding, URL dialled); None: a channel the peer opened (adopted),
        # good for calls to any of its addresses.
        self._connections: dict[_Key, RpcConnection] = {}
        self._connecting: dict[_Key, asyncio.Lock] = {}
        self._served: set[RpcConnection] = set()
        self._cookies = HelloCookies()

    async def close(self) -> None:
        """Close every connection (opened, served, adopted) and every listener."""
        for conn in [*self._connections.values(), *self._served]:
            await conn.close()
        for listener in self.listeners:
            await listener.close()

    def clear(self) -> None:
        """Forget the listeners and connections (once closed)."""
        self.listeners.clear()
        self._connections.clear()

    # -- serving -----------------------------------------------------------------------------

    async def listen(self, url: str) -> str:
        """Listen at ``url`` on a core transport; the URL it listens at."""
        provider = self.registry.transport(urlsplit(url).scheme)
        handler = self._accept_datagram if provider.datagram else self._accept_stream
        listener = await provider.serve(url, handler)
        self.listeners.append(listener)
        return str(listener.url)

    def _carrier_binding(self, url: str) -> CarrierBinding | None:
        """The binding that brings its own carrier for ``url``'s scheme, if one does."""
        scheme = urlsplit(url).scheme
        for binding in self.bindings.values():
            if isinstance(binding, CarrierBinding) and scheme in binding.info.schemes:
                return binding
        return None

    async def serve_by_binding(self, url: str) -> str:
        """Serve ``url`` on the carrier of the binding for its scheme; the URL served."""
        binding = self._carrier_binding(url)
        if binding is None:
            raise StateError(f"no transport or binding serves {url}")
        listener = await binding.serve(url, self._dispatch_checked)
        self.listeners.append(listener)
        return str(listener.url)

    async def _accept_stream(self, stream: FrameStream) -> None:
        await self._accept(stream, datagram=False)

    async def _accept_datagram(self, endpoint: DatagramEndpoint) -> None:
        await self._accept(endpoint, datagram=True)

    async def _accept(self, carrier: FrameStream | DatagramEndpoint, *, datagram: bool) -> None:
        """Accept a session (see :func:`accept_session`), then serve it."""
        channel = await accept_session(
            carrier,
            datagram=datagram,
            cookies=self._cookies,
            binding_for=lambda negotiation: session_binding(
                self.policy, self.bindings, self._card(), negotiation, datagram=datagram
            ),
        )
        if channel is not None:
            await self._serve_channel(channel)

    async def _serve_channel(self, channel: SecureChannel) -> None:
        try:
            self._check_peer(channel.peer)
            self.policy.check_session(channel.peer.agent_id, channel.properties)
        except SealwireError as exc:
            log.info("refused peer %s: %s", channel.peer.agent_id, exc)
            await channel.close()
            return
        conn = RpcConnection(channel, self._dispatch)
        self._served.add(conn)
        conn.start()
        await conn.closed.wait()
        self._served.discard(conn)

    def adopt(self, channel: SecureChannel, binding: str) -> None:
        """Serve a channel the (checked) peer opened; calls to it over ``binding`` reuse it."""
        self._keep((channel.peer.agent_id, binding, None), channel)

    async def _dispatch_checked(self, request: Request, peer: PeerIdentity) -> AsyncIterator[Any]:
        """``dispatch`` for a binding serving on its own carrier: the peer it verified is
        checked against the configuration and trust store first."""
        self._check_peer(peer)
        async for result in self._dispatch(request, peer):
            yield result

    # -- calling peers -----------------------------------------------------------------------

    async def connect(self, peer: VerifiedCard, decision: Decision) -> RpcConnection:
        """The connection to ``peer`` over the decision's binding at the decision's URL: the
        open one (or one the peer opened), or new. A card that names a new address
        (another listener) gets a connection there; over a mailbox binding the one
        connection per peer follows the peer's newest card (another home relay)."""
        if isinstance(self.bindings[decision.binding], MailboxBinding):
            return self._mailbox_connection(peer, decision)
        key = (peer.identity.agent_id, decision.binding, decision.url)
        lock = self._connecting.setdefault(key, asyncio.Lock())
        async with lock:
            for found in (key, (*key[:2], None)):
                conn = self._connections.get(found)
                if conn is not None and not conn.closed.is_set():
                    return conn
            channel = await self.open_channel(peer, decision)
            if channel.peer.agent_id != peer.identity.agent_id:
                await channel.close()
                raise TrustError("the peer that answered is not the agent named by its card")
            return self._keep(key, channel)

    def _mailbox_connection(self, peer: VerifiedCard, decision: Decision) -> RpcConnection:
        """The connection over the mailbox router's one channel to ``peer`` and the
        binding (the router routes every answer from the peer to that channel): made
        to send to the decision's address, whichever card it was opened with."""
        channel = self._router().channels.for_call(peer, decision)
        key = (peer.identity.agent_id, decision.binding, None)
        conn = self._connections.get(key)
        if conn is None or conn.closed.is_set() or conn.channel is not channel:
            # Calls in flight seal and hand on their frames at once (each sealed on
            # its own): they share the relay's frames and commits.
            conn = self._keep(key, channel, concurrent_sends=True)
        return conn

    def _keep(
        self, key: _Key, channel: SecureChannel, *, concurrent_sends: bool = False
    ) -> RpcConnection:
        """A connection over ``channel``, started, kept under ``key`` until it closes."""
        forget = functools.partial(self._forget, key)
        conn = RpcConnection(
            channel, self._dispatch, on_close=forget, concurrent_sends=concurrent_sends
        )
        self._connections[key] = conn
        conn.start()
        return conn

    def _router(self) -> MailboxRouter:
        if self.mailbox is None:
            raise StateError("a mailbox binding needs a relay: configure one")
        return self.mailbox

    def _forget(self, key: _Key, conn: RpcConnection) -> None:
        if self._connections.get(key) is conn:
            del self._connections[key]

    async def open_channel(self, peer: VerifiedCard, decision: Decision) -> SecureChannel:
        """A new channel to ``peer`` over the decision's binding (a mailbox or a session)."""
        binding = self.bindings[decision.binding]
        if isinstance(binding, MailboxBinding):
            return self._router().channels.for_call(peer, decision)
        channel = await open_session(self.registry, binding, peer, decision)
        try:  # what the handshake negotiated must give what the policy requires
            self.policy.check_session(peer.identity.agent_id, channel.properties)
        except PolicyError:
            await channel.close()
            raise
        return channel
