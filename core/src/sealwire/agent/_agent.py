"""The programmer's face of Sealwire: an :class:`Agent` (ARCHITECTURE layer 9).

An agent has an identity, a store, the loaded plugins and a policy. It serves
incoming A2A requests through one handler, and sends, streams, gets and
cancels tasks at peers over whatever binding the policy picks for each.

This module builds, starts and stops the agent; its listeners and connections are
kept by :mod:`sealwire.agent._connections`, the sessions it opens and accepts made
in :mod:`sealwire.agent._handshake`, the requests it serves answered in
:mod:`sealwire.agent._dispatch`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs

from sealwire import __version__
from sealwire.agent._card import build_card
from sealwire.agent._connections import PeerConnections, Route
from sealwire.agent._dispatch import serve_with_tasks
from sealwire.agent._group import GroupReply, GroupRouter
from sealwire.agent._group_answers import ANSWER_ROUTE
from sealwire.agent._health import HealthBoard
from sealwire.agent._mailbox import MailboxRouter
from sealwire.agent._push import PushPolicy, PushSender
from sealwire.agent._rpc import RpcConnection
from sealwire.agent._task_run import Handler, agent_message
from sealwire.agent._tasks import Receipt, TaskManager
from sealwire.binding import (
    Binding,
    BindingContext,
    Dispatcher,
    GroupBinding,
    MailboxBinding,
    PeerIdentity,
    SecureChannel,
)
from sealwire.codec import InvalidAgentResponseError, Method, Request
from sealwire.errors import ConfigurationError, PolicyError, SealwireError, StateError, TrustError
from sealwire.identity import Identity, TrustMode, TrustStore, VerifiedCard, verify_card
from sealwire.model import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SendMessageResponse,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
)
from sealwire.plugins import Registry, load_registry
from sealwire.policy import Decision, Policy, PolicyConfig, Situation
from sealwire.relay import RelayPort
from sealwire.store import StateStore
from sealwire.transport import TransportError

__all__ = ["Agent", "Route"]

log = logging.getLogger(__name__)


class Agent:
    """A Sealwire agent: serve A2A requests and call peers over secure bindings.

    Use it as an async context manager: ``start()`` opens the listeners (and the
    relay mailbox, if configured) and signs the card naming them; ``stop()``
    closes everything.

    Given a ``relay`` (a :class:`~sealwire.relay.RelayPort`, such as
    :class:`~sealwire.relay.RelayClient`), the card offers the mailbox and group
    bindings at ``relay_address``: by default the relay's mailbox address of this
    agent (``relay.mailbox_address``).
    """

    def __init__(
        self,
        identity: Identity,
        store: StateStore,
        *,
        name: str = "sealwire-agent",
        description: str = "A Sealwire agent",
        listen: Sequence[str] = (),
        relay: RelayPort | None = None,
        relay_address: str | None = None,
        policy: PolicyConfig | None = None,
        trust_mode: TrustMode = TrustMode.TOFU,
        registry: Registry | None = None,
        binding_options: Mapping[str, Mapping[str, Any]] | None = None,
        dispatcher: Dispatcher | None = None,
        card_base: Mapping[str, Any] | None = None,
        push: PushPolicy | None = None,
    ) -> None:
        self.identity = identity
        self.store = store
        self.name = name
        self.description = description
        self.listen_urls = tuple(listen)
        self.relay = relay
        if relay_address is None and relay is not None:
            relay_address = relay.mailbox_address
        self.relay_address = relay_address
        self.registry = registry if registry is not None else load_registry()
        self.policy = Policy(
            policy or PolicyConfig(),
            self.registry.bindings,
            self.registry.policy_rules,
            binding_options=binding_options,
        )
        self.trust = TrustStore(store, trust_mode)
        self.binding_options = dict(binding_options or {})
        self.push = PushSender(
            identity, push if push is not None else PushPolicy(), report=self.report_health
        )
        """Calls the webhooks of push-notification configs (A2A v1.0 §3.1.7); its
        ``policy`` says whether and where, its ``stats`` what became of each call."""
        self.tasks = TaskManager(store, push=self.push)
        self._dispatcher = dispatcher
        self._card_base = card_base
        self._card: VerifiedCard | None = None
        self._bindings: dict[str, Binding] = {}
        self._peer_connections = PeerConnections(
            registry=self.registry,
            policy=self.policy,
            bindings=self._bindings,
            card=lambda: self.card,
            check_peer=self.check_peer,
            dispatch=self.dispatch,
        )
        self._mailbox: MailboxRouter | None = None
        self._groups: GroupRouter | None = None
        self._health = HealthBoard()

    @property
    def agent_id(self) -> str:
        return self.identity.agent_id

    @property
    def _listeners(self) -> list[Any]:
        """The open listeners (tests reach them)."""
        return self._peer_connections.listeners

    # -- lifecycle ---------------------------------------------------------------------------

    def on_message(self, handler: Handler) -> Handler:
        """Register the handler for incoming messages (usable as a decorator).

        :raises ConfigurationError: naming the handler, when it is not an ``async def``
            function (or an object whose ``__call__`` is one): a plain function would
            fail on every task instead of now.
        """
        call = getattr(handler, "__call__", None)  # noqa: B004 - an object's async __call__
        if not (inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)):
            name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
            module = getattr(handler, "__module__", None)
            where = f"{module}.{name}" if module else name
            raise ConfigurationError(
                f"the message handler {where} must be an async function "
                "(async def handler(task): ...), called with each task"
            )
        self.tasks.handler = handler
        return handler

    @property
    def card(self) -> VerifiedCard:
        """This agent's signed card (available after :meth:`start`)."""
        if self._card is None:
            raise StateError("the agent is not started: its card names its listeners")
        return self._card

    async def start(self) -> VerifiedCard:
        """Open the listeners, sign the card, start the mailbox. Returns the card.

        Core transports listen first; then the bindings are created with a card
        naming those addresses; bindings that serve a carrier of their own (HTTP)
        listen next, and if that changed an address the card is signed again.
        """
        if self._card is not None:
            return self._card
        if self._dispatcher is None:  # else the dispatcher serves the push methods
            self.push.start()
        connections = self._peer_connections
        urls = [
            await connections.listen(url) if self._core_scheme(url) else url
            for url in self.listen_urls
        ]
        offers = self.policy.local_offers()
        self._card = self._sign_card(offers, urls)
        context = BindingContext(
            identity=self.identity,
            card=self._card,
            store=self.store,
            trust=self.trust,
            relay=self.relay,
        )
        for cls in offers:
            options = self.binding_options.get(cls.info.name, {})
            self._bindings[cls.info.name] = cls(attrs.evolve(context, options=options))
        served = [
            await connections.serve_by_binding(url) if not self._core_scheme(url) else url
            for url in urls
        ]
        if served != urls:
            self._card = self._sign_card(offers, served)
            for binding in self._bindings.values():
                binding.context = attrs.evolve(binding.context, card=self._card)
        mailboxes = {n: b for n, b in self._bindings.items() if isinstance(b, MailboxBinding)}
        groups = {n: b for n, b in self._bindings.items() if isinstance(b, GroupBinding)}
        if (mailboxes or groups) and self.relay is not None:
            self._mailbox = MailboxRouter(self, self.relay, mailboxes)
            self._peer_connections.mailbox = self._mailbox
        if groups and self._mailbox is not None and self.relay is not None:
            self._groups = GroupRouter(self, self.relay, groups)
            for name in groups:  # invitations arrive through the mailbox
                self._mailbox.route(name, functools.partial(self._groups.on_invite, name))
            self._mailbox.route(ANSWER_ROUTE, self._groups.on_answer)  # and group answers
            await self._groups.start()
        if self._mailbox is not None:
            await self._mailbox.start()
        return self._card

    def _sign_card(self, offers: Sequence[type[Binding]], urls: Sequence[str]) -> VerifiedCard:
        return verify_card(
            build_card(
                self.identity,
                name=self.name,
                description=self.description,
                version=__version__,
                bindings=offers,
                listen_urls=urls,
                relay_address=self.relay_address,
                options=self.binding_options,
                base=self._card_base,
                # with a dispatcher of its own, the agent it fronts says (base card)
                push_notifications=None if self._dispatcher else self.push.policy.enabled,
            )
        )

    def _core_scheme(self, url: str) -> bool:
        return urlsplit(url).scheme in self.registry.transports

    async def stop(self) -> None:
        """Close connections, listeners and the mailbox; running tasks end CANCELED."""
        if self._mailbox is not None:
            await self._mailbox.stop()
        if self._groups is not None:
            await self._groups.stop()
        await self._peer_connections.close()
        await self.tasks.close()
        await self.push.close()
        self._peer_connections.clear()

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- serving -----------------------------------------------------------------------------

    def serve_incoming(self, channel: SecureChannel, binding: str) -> None:
        """Serve a channel the peer opened (a first mailbox message); calls to that peer
        over ``binding`` reuse it."""
        try:
            self.check_peer(channel.peer)
        except SealwireError as exc:
            log.info("refused peer %s: %s", channel.peer.agent_id, exc)
            return
        self._peer_connections.adopt(channel, binding)

    def check_peer(self, peer: PeerIdentity) -> None:
        """Raise TrustError when configuration denies ``peer`` or the trust store refuses it."""
        if peer.agent_id in self.policy.config.deny_peers:
            raise TrustError(f"peer {peer.agent_id} is denied by configuration")
        if peer.card is not None:
            self.trust.check(peer.card)

    async def dispatch(
        self, request: Request, peer: PeerIdentity, *, receipt: Receipt | None = None
    ) -> AsyncIterator[Any]:
        """Serve one A2A request from a verified peer (yields one result, or a stream).

        With a ``dispatcher`` given to the agent (an a2a-sdk handler, a sidecar's
        upstream), that dispatcher serves every request instead of the task manager
        (and ``receipt`` is not used). Otherwise ``receipt`` is written in the
        transaction that records the task a ``SendMessage`` creates or resumes.
        """
        if self._dispatcher is not None:
            async for result in self._dispatcher(request, peer):
                yield result
            return
        served = serve_with_tasks(self.tasks, lambda: self.card, request, peer, receipt=receipt)
        async with contextlib.aclosing(served):  # a caller that leaves closes it now
            async for result in served:
                yield result

    async def resume_task(self, task_id: str, peer: PeerIdentity) -> SendMessageResponse:
        """The answer owed for a task created before a restart (see TaskManager.resume)."""
        return await self.tasks.resume(task_id, peer)

    # -- health ------------------------------------------------------------------------------

    def health(self) -> dict[str, str]:
        """The components that are unhealthy now, each with its reason (empty: all well).

        Components: ``mailbox.reader`` (the mailbox reader ended or failed and was
        restarted; healthy again once a delivery is handled), ``mailbox.store`` (the
        store failed to keep an opened message, which is left with the relay to
        deliver again, or to route, record or resume a kept one, which is tried
        again; healthy again once a message is kept or a task recorded),
        ``push.delivery`` (a push notification's webhook call was given up; healthy
        again once one arrives).
        """
        return self._health.problems()

    def report_health(self, component: str, problem: str | None) -> None:
        """Mark ``component`` unhealthy for ``problem``, or healthy again with ``None``."""
        self._health.report(component, problem)

    # -- calling peers -----------------------------------------------------------------------

    def peer(self, card: Mapping[str, Any] | VerifiedCard) -> VerifiedCard:
        """Verify a peer's signed card and check it against the trust store."""
        verified = card if isinstance(card, VerifiedCard) else verify_card(card)
        if verified.identity.agent_id in self.policy.config.deny_peers:
            raise TrustError(f"peer {verified.identity.agent_id} is denied by configuration")
        self.trust.check(verified)
        return verified

    def explain(
        self,
        peer: VerifiedCard,
        situation: Situation | None = None,
        *,
        binding: str | None = None,
    ) -> Decision:
        """The policy's decision for ``peer`` in ``situation`` (or for the ``binding``
        asked for, if configuration allows it), with its reason."""
        return self.policy.decide(peer, situation or Situation(), self.card, requested=binding)

    async def connect(
        self,
        peer: VerifiedCard,
        situation: Situation | None = None,
        *,
        binding: str | None = None,
    ) -> RpcConnection:
        """The connection to ``peer`` over the binding the policy picks (reused).

        When the peer's presence is unknown (no ``situation``, no ``binding``) and
        the live binding cannot reach it, the call falls back to the binding the
        policy picks for an offline peer (a mailbox), if there is one.
        """
        return (await self.route(peer, situation, binding=binding)).connection

    async def route(
        self,
        peer: VerifiedCard,
        situation: Situation | None = None,
        *,
        binding: str | None = None,
    ) -> Route:
        """As :meth:`connect`, saying which decision the connection follows and, after a
        fallback, which binding could not reach the peer and why."""
        decision = self.explain(peer, situation, binding=binding)
        try:
            connection = await self._peer_connections.connect(peer, decision)
            return Route(connection=connection, decision=decision)
        except TransportError as exc:
            if situation is not None or binding is not None:
                raise
            try:
                offline = self.explain(peer, Situation(online=False))
            except PolicyError:
                offline = decision
            if offline.binding == decision.binding:
                raise
            log.info("peer %s unreachable over %s: using %s", peer.identity.agent_id,
                     decision.binding, offline.binding)  # fmt: skip
            connection = await self._peer_connections.connect(peer, offline)
            return Route(connection=connection, decision=offline, unreachable=(decision, exc))

    async def _open_channel(self, peer: VerifiedCard, decision: Decision) -> SecureChannel:
        """A new channel to ``peer``, not kept for reuse (the conformance tests' frames)."""
        return await self._peer_connections.open_channel(peer, decision)

    async def send_message(
        self,
        peer: VerifiedCard,
        message: str | Sequence[Part] | Message,
        *,
        situation: Situation | None = None,
    ) -> Task | Message:
        """``SendMessage``: returns the task once it settles, or the peer's reply message."""
        conn = await self.connect(peer, situation)
        response: SendMessageResponse = await conn.call(
            Method.SEND_MESSAGE, SendMessageRequest(message=_user_message(message))
        )
        if response.task is not None:
            return response.task
        if response.message is None:
            raise InvalidAgentResponseError("the peer answered with neither a task nor a message")
        return response.message

    async def stream_message(
        self,
        peer: VerifiedCard,
        message: str | Sequence[Part] | Message,
        *,
        situation: Situation | None = None,
    ) -> AsyncIterator[StreamResponse]:
        """``SendStreamingMessage``: the task, then its status and artifact updates."""
        conn = await self.connect(peer, situation)
        async for event in conn.stream(
            Method.SEND_STREAMING_MESSAGE, SendMessageRequest(message=_user_message(message))
        ):
            yield event

    async def get_task(
        self, peer: VerifiedCard, task_id: str, *, history_length: int | None = None
    ) -> Task:
        conn = await self.connect(peer)
        result: Task = await conn.call(
            Method.GET_TASK, GetTaskRequest(id=task_id, history_length=history_length)
        )
        return result

    async def list_tasks(
        self, peer: VerifiedCard, *, context_id: str | None = None
    ) -> ListTasksResponse:
        conn = await self.connect(peer)
        result: ListTasksResponse = await conn.call(
            Method.LIST_TASKS, ListTasksRequest(context_id=context_id)
        )
        return result

    async def cancel_task(self, peer: VerifiedCard, task_id: str) -> Task:
        conn = await self.connect(peer)
        result: Task = await conn.call(Method.CANCEL_TASK, CancelTaskRequest(id=task_id))
        return result

    async def subscribe_task(
        self, peer: VerifiedCard, task_id: str
    ) -> AsyncIterator[StreamResponse]:
        conn = await self.connect(peer)
        async for event in conn.stream(
            Method.SUBSCRIBE_TO_TASK, SubscribeToTaskRequest(id=task_id)
        ):
            yield event

    # -- groups ------------------------------------------------------------------------------

    def _group_router(self) -> GroupRouter:
        if self._groups is None:
            raise StateError("groups need a group binding and a relay: configure them")
        return self._groups

    async def create_group(self, group_id: bytes | None = None) -> bytes:
        """Create a group with this agent as its only member; returns its id."""
        group_id = group_id if group_id is not None else os.urandom(16)
        await self._group_router().create(group_id)
        return group_id

    async def add_to_group(
        self, group_id: bytes, cards: Sequence[Mapping[str, Any] | VerifiedCard]
    ) -> None:
        """Add the agents of these signed cards (one commit; each gets an invitation)."""
        peers = [self.peer(card) for card in cards]
        await self._group_router().binding(group_id).add_members(group_id, peers)

    async def remove_from_group(self, group_id: bytes, agent_ids: Sequence[str]) -> None:
        await self._group_router().binding(group_id).remove_members(group_id, agent_ids)

    async def update_group_keys(self, group_id: bytes) -> None:
        """Refresh this agent's keys in the group (post-compromise security)."""
        await self._group_router().binding(group_id).update(group_id)

    async def send_to_group(
        self,
        group_id: bytes,
        message: str | Sequence[Part] | Message,
        *,
        timeout: float = 30.0,
    ) -> list[GroupReply]:
        """``SendMessage`` to a whole group: one reply per other member (or its timeout)."""
        return await self._group_router().send_message(
            group_id, _user_message(message), timeout=timeout
        )

    async def sync_groups(self, timeout: float = 5.0) -> None:
        """Wait until pending invitations are joined and every group's log is handled."""
        await self._group_router().settle(timeout)

    def groups(self) -> dict[bytes, tuple[str, ...]]:
        """The groups this agent belongs to, with their members' agent ids."""
        return self._groups.groups() if self._groups is not None else {}


def _user_message(content: str | Sequence[Part] | Message) -> Message:
    return agent_message(content, role=Role.USER)
