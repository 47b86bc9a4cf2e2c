"""Calls over mailbox bindings: each frame sealed on its own and carried by the relay.

A :class:`~sealwire.agent._mailbox_channel.MailboxChannel` looks like any other
secure channel to the RPC layer: ``send`` seals a frame for the peer and hands it
to the relay,
``receive`` yields the response frames the router opened from this agent's
mailbox. One channel per (peer, binding); a first message from a new peer
creates one.

The relay's payload is ``len(binding name) || binding name || envelope`` so
the router knows which binding opens it; payloads of other consumers (group
invitations) go to the handler registered with :meth:`MailboxRouter.route`.

What a crash may do, and why it loses nothing and does nothing twice:

* An opened frame is written to the store's inbox (``mailbox.inbox``) in the
  same transaction as the binding's new state, before the relay delivery is
  acknowledged; the frame is then handed on in memory. After a restart the
  inbox is read back (the sender's card verified again) and handed on.
* A request frame leaves the inbox in the transaction that records the task it
  creates, which also records the answer owed (``mailbox.answers``); that record
  goes once the answer is accepted by the relay, under a relay message id made
  from the request's, so an answer sent again after a crash is stored once. A
  restart answers every owed task (running its handler again if the crash
  interrupted it). A request that creates no task (GetTask, a dispatcher of
  the agent's own) leaves the inbox once answered: it may be answered twice.
* A response frame leaves the inbox once handed to the pending call.

The reader never stops for good: a relay error is retried with backoff
(honouring ``retry_after``), a delivery the agent could not keep (a store
error) is left with the relay and fetched again by subscribing anew, and a
supervisor restarts the reader whatever ends it, reporting it in the agent's
health. Only a delivery whose envelope is malformed, forged or replayed is
acknowledged and dropped. The mailbox at a relay the agent left (it moved) is
read too, for a while (:mod:`sealwire.agent._mailbox_homes`), its failures only
logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sealwire.agent._kept_records import (
    kept_frame,
    owed_answer,
    read_kept_frame,
    read_owed_answer,
)
from sealwire.agent._mailbox_channel import MailboxChannel
from sealwire.agent._mailbox_channels import LOCAL_FAILURES, MailboxChannels, describe_failure
from sealwire.agent._mailbox_homes import previous_homes
from sealwire.binding import (
    MailboxBinding,
    OpenedMessage,
    PeerIdentity,
)
from sealwire.codec import (
    A2A_VERSION,
    STREAM_PARAMETER,
    A2AError,
    ErrorResponse,
    Frame,
    InternalRpcError,
    Request,
    Response,
    VersionNotSupportedError,
    decode_frame,
    encode_frame,
)
from sealwire.errors import (
    AuthenticationError,
    DecodeError,
    PolicyError,
    ProtocolError,
    SealwireError,
)
from sealwire.relay import (
    ForbiddenError,
    LimitExceeded,
    NotFoundError,
    RelayError,
    RelayPort,
    unwrap,
)
from sealwire.store import StoreTransaction

if TYPE_CHECKING:
    from sealwire.agent._host import RouterHost
    from sealwire.relay import Delivery

__all__ = ["MailboxRouter", "Route"]

log = logging.getLogger(__name__)

INBOX_NAMESPACE = "mailbox.inbox"
"""Opened frames not yet handed on (requests: not yet recorded as a task)."""
ANSWERS_NAMESPACE = "mailbox.answers"
"""Answers owed for tasks that mailbox requests created, until the relay accepts them."""
READER_COMPONENT = "mailbox.reader"
STORE_COMPONENT = "mailbox.store"

MAX_SERVED_REQUESTS = 64
"""Requests from the mailbox served at once, so peers cannot make us run unbounded
handler tasks; more wait for a slot."""
MAX_WAITING_REQUESTS = 1024
"""Requests handed on and waiting for a slot; beyond it the reader stops reading the
relay until one is served (what is unread stays with the relay)."""
RETRY_FIRST_SECONDS = 0.05
"""First delay before retrying a relay call or a store write that failed."""
RETRY_MAX_SECONDS = 5.0
"""Longest delay between retries: a relay or disk back in service is noticed within it."""
LEFT_RELAY_RETRY_MAX_SECONDS = 300.0
"""Longest delay between restarts of the reader at a relay the agent left: it may be
gone for good, and is then worth a warning now and then, not every few seconds."""
MAX_RETRY_AFTER_SECONDS = 60.0
"""A relay's ``retry_after`` is honoured up to this; a larger one is a relay's mistake
(or a hostile relay) and must not park the reader for hours."""

Route = Callable[[bytes], Awaitable[None]]
"""A consumer of the payloads of one binding name (a group invitation)."""

_DROP = (DecodeError, AuthenticationError, ProtocolError, PolicyError)
"""Failures of the envelope itself (malformed, forged, replayed, not for us, refused by
policy): acknowledged and dropped, as delivering it again cannot help."""


def _backoff(delay: float, exc: BaseException | None = None) -> float:
    """Seconds to wait before the next attempt: ``retry_after`` of a rate limit, if
    longer than our own backoff (bounded), else ``delay``."""
    if isinstance(exc, LimitExceeded) and exc.retry_after is not None:
        return min(max(delay, exc.retry_after), MAX_RETRY_AFTER_SECONDS)
    return delay


def _answer_id(key: str, index: int | None = None) -> str:
    """The relay message id of the answer to the request kept under ``key``: the same
    after a restart, so the relay stores an answer sent twice once."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    return f"answer-{digest}" if index is None else f"answer-{digest}-{index}"


class MailboxRouter:
    """Reads this agent's mailbox, opens envelopes, serves requests, routes responses."""

    def __init__(
        self, host: RouterHost, relay: RelayPort, bindings: dict[str, MailboxBinding]
    ) -> None:
        self.host = host
        self.relay = relay
        self.bindings = bindings
        self.channels = MailboxChannels(host, relay, bindings)
        """Its channels to peers: one per peer and binding."""
        self._routes: dict[str, Route] = {}
        self._readers: list[asyncio.Task[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_SERVED_REQUESTS)
        self._waiting = 0
        self._room = asyncio.Event()
        self._room.set()
        self.restarts = 0
        """How many times the supervisor restarted the reader."""

    def route(self, name: str, handler: Route) -> None:
        """Hand payloads wrapped under ``name`` (not a mailbox binding) to ``handler``;
        the delivery is acknowledged once it returns (see :meth:`_receive` for errors)."""
        if name in self.bindings:
            raise ValueError(f"{name!r} is a mailbox binding of this agent")
        self._routes[name] = handler

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        for binding in self.bindings.values():
            await binding.publish_prekeys()
        store = self.host.store
        for key in store.keys(ANSWERS_NAMESPACE):
            self._spawn(self._answer_owed(key))
        for key in store.keys(INBOX_NAMESPACE):
            self._hand_on_kept(key)
        readers: list[tuple[RelayPort, str | None]] = [(self.relay, READER_COMPONENT)]
        for url in previous_homes(store, self.relay.url, time.time()):
            try:
                readers.append((self.relay.signed_in_at(url), None))
            except SealwireError as exc:
                log.warning("cannot read the mailbox at %s, a relay this agent left: %s",
                            url[:200], exc)  # fmt: skip
        self._readers = [
            asyncio.create_task(self._supervise(relay, component), name="sealwire-mailbox")
            for relay, component in readers
        ]

    async def stop(self) -> None:
        tasks = [*self._readers, *self._tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._readers = []
        await self.channels.close()

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the reader and its supervisor ----------------------------------------------------------

    async def _supervise(self, relay: RelayPort, component: str | None) -> None:
        """Run the reader of the mailbox at ``relay`` for ever: whatever ends it, report it
        (in the health ``component``, if any: a relay this agent left has none) and start
        it again."""
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                await self._read(relay, component)
                problem = "the relay ended the mailbox subscription"
                exc: BaseException | None = None
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the reader must outlive any bug
                problem, exc = f"the mailbox reader failed: {type(error).__name__}", error
                if not isinstance(error, SealwireError):
                    log.exception("mailbox reader failed")
            self.restarts += 1
            if component is not None:
                self.host.report_health(component, problem)
            wait = _backoff(delay, exc)
            log.warning("%s (%s); restarting it in %.2f s", problem, relay.url[:200], wait)
            await asyncio.sleep(wait)
            longest = RETRY_MAX_SECONDS if component is not None else LEFT_RELAY_RETRY_MAX_SECONDS
            delay = min(delay * 2, longest)

    async def _read(self, relay: RelayPort, component: str | None) -> None:
        """Handle deliveries as the relay pushes them. A delivery left unacknowledged (the
        store failed) comes again when we subscribe anew, after a backoff; the others
        pushed meanwhile are handled as usual."""
        loop = asyncio.get_running_loop()
        delay = RETRY_FIRST_SECONDS
        while True:
            resubscribe_at: float | None = None
            subscription = relay.subscribe()
            try:
                while True:
                    await self._room.wait()
                    next_delivery = anext(subscription)
                    if resubscribe_at is None:
                        delivery = await next_delivery
                    else:
                        try:
                            delivery = await asyncio.wait_for(
                                next_delivery, max(0.0, resubscribe_at - loop.time())
                            )
                        except TimeoutError:
                            break
                    failure = await self._receive(delivery, relay)
                    if failure is None:
                        delay = RETRY_FIRST_SECONDS
                        if component is not None:
                            self.host.report_health(component, None)
                    elif resubscribe_at is None:
                        resubscribe_at = loop.time() + _backoff(delay, failure)
                        delay = min(delay * 2, RETRY_MAX_SECONDS)
            except StopAsyncIteration:
                return
            finally:
                with contextlib.suppress(Exception):
                    await subscription.aclose()

    async def _receive(self, delivery: Delivery, relay: RelayPort) -> BaseException | None:
        """Open, keep and acknowledge (at ``relay``) one delivery, then hand it on. Returns
        the error that left it unacknowledged (to be fetched again), or ``None``."""
        try:
            name, envelope = unwrap(delivery.envelope)
            route = self._routes.get(name)
            if route is not None:
                return await self._to_route(route, envelope, delivery, relay)
            binding = self.bindings.get(name)
            if binding is None:
                raise DecodeError(f"no mailbox binding {name!r}", field="mailbox.binding")
            opened = await binding.open(envelope, keep=functools.partial(self._keep, name))
        except _DROP as exc:
            log.info("dropping mailbox message %s: %s", delivery.message_id[:64], exc)
            await self._ack(delivery, relay)
            return None
        except LOCAL_FAILURES as exc:
            problem = f"cannot keep an opened message: {describe_failure(exc)}"
            log.warning("mailbox message %s left with the relay: %s", delivery.message_id[:64],
                        problem)  # fmt: skip
            self.host.report_health(STORE_COMPONENT, problem)
            return exc
        except RelayError as exc:  # the binding asked the relay: try again later
            log.info("mailbox message %s: relay failed: %s", delivery.message_id[:64],
                     type(exc).__name__)  # fmt: skip
            return exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a binding bug: never lose the message for it
            log.exception("mailbox binding failed on message %s", delivery.message_id[:64])
            self.host.report_health(STORE_COMPONENT, f"binding failed: {type(exc).__name__}")
            return exc
        self.host.report_health(STORE_COMPONENT, None)
        self._hand_on(opened.message_id, binding, opened, live=True)  # kept: safe before the ack
        await self._ack(delivery, relay)
        return None

    async def _to_route(
        self, route: Route, payload: bytes, delivery: Delivery, relay: RelayPort
    ) -> BaseException | None:
        """A payload for another consumer: acknowledged once handled, or when it refused
        it for good (any SealwireError but a store or relay failure, which are retried)."""
        try:
            await route(payload)
        except (*LOCAL_FAILURES, RelayError) as exc:
            log.info("mailbox message %s for a route: %s", delivery.message_id[:64],
                     type(exc).__name__)  # fmt: skip
            return exc
        except SealwireError as exc:
            log.info("dropping mailbox message %s: %s", delivery.message_id[:64], exc)
        await self._ack(delivery, relay)
        return None

    async def _ack(self, delivery: Delivery, relay: RelayPort) -> None:
        """Acknowledge ``delivery`` at ``relay``, retrying any relay failure with backoff."""
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                await relay.ack([delivery])
                return
            except RelayError as exc:
                wait = _backoff(delay, exc)
                log.info("acknowledging failed (%s): again in %.2f s", type(exc).__name__, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    def _keep(self, binding: str, tx: StoreTransaction, opened: OpenedMessage) -> None:
        """Written with the binding's new state: the frame until it is handed on."""
        tx.put(INBOX_NAMESPACE, opened.message_id, kept_frame(binding, opened))

    # -- handing frames on ------------------------------------------------------------------------

    def _hand_on_kept(self, key: str) -> None:
        """Hand on a frame kept in the inbox before a restart (its sender verified again)."""
        try:
            raw = self.host.store.get(INBOX_NAMESPACE, key)
            if raw is None:
                return
            record, opened = read_kept_frame(raw)
            binding = self.bindings[record["binding"]]
        except LOCAL_FAILURES as exc:
            log.warning("cannot read a kept mailbox message: %s", type(exc).__name__)
            self.host.report_health(STORE_COMPONENT, f"cannot read: {describe_failure(exc)}")
            self._spawn(self._hand_on_later(key))
            return
        except (SealwireError, KeyError, TypeError, ValueError) as exc:
            log.warning("dropping a damaged kept mailbox message: %s", type(exc).__name__)
            self._forget_kept(INBOX_NAMESPACE, key)
            return
        self._hand_on(key, binding, opened, live=False)

    def _hand_on(
        self, key: str, binding: MailboxBinding, opened: OpenedMessage, *, live: bool
    ) -> None:
        """Route an opened frame kept under ``key``: a request is served, a response goes
        to the channel's pending call. ``live``: opened now, not kept from before a
        restart (see :meth:`_incoming_channel`)."""
        peer = opened.sender
        try:
            if peer.card is None:
                raise DecodeError("the binding named no card for the sender", field="sender")
            self.host.check_peer(peer)
            channel = self.channels.for_answer(binding, peer.card, live=live)
            try:
                frame = decode_frame(opened.frame)
            except A2AError as exc:
                if exc.request_id is None:
                    raise
                self._spawn(self._refuse(channel, key, exc.request_id, exc))
                return
        except LOCAL_FAILURES as exc:  # checking the sender needs the store: kept, tried again
            self.host.report_health(STORE_COMPONENT, f"cannot route: {describe_failure(exc)}")
            self._spawn(self._hand_on_later(key))
            return
        except SealwireError as exc:
            log.info("dropping a mailbox frame from %s: %s", peer.agent_id, type(exc).__name__)
            self._forget_kept(INBOX_NAMESPACE, key)
            return
        message = frame.message
        if isinstance(message, Request):
            version = frame.version
            if version is not None and version.split(".", 1)[0] != A2A_VERSION.split(".", 1)[0]:
                error = VersionNotSupportedError(f"A2A version {version[:16]} is not supported")
                self._spawn(self._refuse(channel, key, message.id, error))
                return
            self._waiting += 1
            if self._waiting >= MAX_WAITING_REQUESTS:
                self._room.clear()
            self._spawn(self._serve(channel, key, message, peer))
            return
        try:
            channel.queue.put_nowait(opened.frame)
        except asyncio.QueueFull:
            log.warning("response backlog of %s full: kept until a restart", peer.agent_id)
            return
        self._forget_kept(INBOX_NAMESPACE, key)

    def _forget_kept(self, namespace: str, key: str) -> None:
        try:
            self.host.store.delete(namespace, key)
        except LOCAL_FAILURES as exc:  # kept: handled again after a restart (idempotent)
            log.warning("cannot delete a kept mailbox record: %s", type(exc).__name__)
            self.host.report_health(STORE_COMPONENT, f"cannot delete: {describe_failure(exc)}")

    # -- serving requests -------------------------------------------------------------------------

    async def _serve(
        self, channel: MailboxChannel, key: str, request: Request, peer: PeerIdentity
    ) -> None:
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
            if self._waiting < MAX_WAITING_REQUESTS:
                self._room.set()
        try:
            await self._serve_now(channel, key, request, peer)
        finally:
            self._slots.release()

    async def _serve_now(
        self, channel: MailboxChannel, key: str, request: Request, peer: PeerIdentity
    ) -> None:
        binding = channel.binding.info.name
        recorded: list[str] = []

        def receipt(tx: StoreTransaction, task_id: str) -> None:
            tx.delete(INBOX_NAMESPACE, key)
            tx.put(ANSWERS_NAMESPACE, key, owed_answer(binding, peer, request, task_id))
            recorded.append(task_id)

        streaming = request.method.streaming
        previous: Any = _NOTHING
        events = 0
        final: Response | ErrorResponse
        try:
            async for result in self.host.dispatch(request, peer, receipt=receipt):
                if previous is not _NOTHING:
                    response = Response(id=request.id, result=previous)
                    await self._send(channel, _answer_id(key, events), response, "event")
                    events += 1
                previous = result
            if previous is _NOTHING:
                raise InternalRpcError("the handler produced no result")
            final = Response(id=request.id, result=previous)
        except A2AError as exc:
            final = ErrorResponse(id=request.id, error=exc.to_rpc_error())
        except LOCAL_FAILURES as exc:
            if not (recorded and self._owes(key)):
                # Not recorded: the request stays in the inbox and is served again.
                self.host.report_health(STORE_COMPONENT, f"cannot record: {describe_failure(exc)}")
                self._spawn(self._hand_on_later(key))
                return
            log.warning("store failed serving %s: %s", request.method.value, type(exc).__name__)
            final = _internal_error(request.id)
        except Exception:
            log.exception("handler for %s failed", request.method.value)
            final = _internal_error(request.id)
        if recorded:  # the store took the task: it works again
            self.host.report_health(STORE_COMPONENT, None)
        await self._send(channel, _answer_id(key), final, "end" if streaming else None)
        self._forget_kept(ANSWERS_NAMESPACE if recorded else INBOX_NAMESPACE, key)

    def _owes(self, key: str) -> bool:
        try:
            return self.host.store.get(ANSWERS_NAMESPACE, key) is not None
        except LOCAL_FAILURES:
            return False

    async def _hand_on_later(self, key: str) -> None:
        """A kept frame the store failed to route or record: hand it on again later."""
        await asyncio.sleep(RETRY_MAX_SECONDS)
        self._hand_on_kept(key)

    async def _refuse(
        self, channel: MailboxChannel, key: str, request_id: int | str, error: A2AError
    ) -> None:
        answer = ErrorResponse(id=request_id, error=error.to_rpc_error())
        await self._send(channel, _answer_id(key), answer, None)
        self._forget_kept(INBOX_NAMESPACE, key)

    async def _answer_owed(self, key: str) -> None:
        """After a restart: answer a task a request created before it."""
        try:
            raw = self.host.store.get(ANSWERS_NAMESPACE, key)
            if raw is None:
                return
            owed = read_owed_answer(raw)
            binding = self.bindings[owed.binding]
        except LOCAL_FAILURES as exc:
            log.warning("cannot read an owed mailbox answer: %s", type(exc).__name__)
            return
        except (SealwireError, KeyError, TypeError, ValueError) as exc:
            log.warning("dropping a damaged owed mailbox answer: %s", type(exc).__name__)
            self._forget_kept(ANSWERS_NAMESPACE, key)
            return
        peer = owed.peer
        final: Response | ErrorResponse
        try:
            channel = self.channels.for_answer(binding, owed.card, live=False)
            answer = await self.host.resume_task(owed.task_id, peer)
            final = Response(id=owed.request_id, result=owed.result(answer))
        except A2AError as exc:
            final = ErrorResponse(id=owed.request_id, error=exc.to_rpc_error())
        except LOCAL_FAILURES as exc:  # kept: answered at the next start
            problem = describe_failure(exc)
            log.warning("cannot answer %s after a restart: %s", peer.agent_id, problem)
            self.host.report_health(STORE_COMPONENT, f"cannot resume: {problem}")
            return
        except SealwireError as exc:
            log.info("cannot answer %s after a restart: %s", peer.agent_id, type(exc).__name__)
            self._forget_kept(ANSWERS_NAMESPACE, key)
            return
        stream = "end" if owed.method.streaming else None
        await self._send(channel, _answer_id(key), final, stream)
        self._forget_kept(ANSWERS_NAMESPACE, key)

    async def _send(
        self,
        channel: MailboxChannel,
        message_id: str,
        message: Response | ErrorResponse,
        stream: str | None,
    ) -> None:
        """Send one answer frame, retrying relay failures with backoff (same message id:
        the relay stores it once). A failure retrying cannot mend (the peer's prekeys
        or mailbox gone, a refusal, a frame too large) is logged and the answer given up."""
        params = {"A2A-Version": A2A_VERSION}
        if stream is not None:
            params[STREAM_PARAMETER] = stream
        data = encode_frame(Frame(service_parameters=params, message=message))
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                if channel.closed:  # its connection closed meanwhile: answer on a new one
                    channel = self.channels.for_answer(channel.binding, channel.card, live=False)
                await channel.send(data, message_id=message_id)
                return
            except SealwireError as exc:
                if _permanent(exc):
                    problem = describe_failure(exc)
                    log.warning("cannot answer %s: %s", channel.peer.agent_id, problem)
                    return
                wait = _backoff(delay, exc)
                log.info("sending an answer failed (%s): again in %.2f s",
                         type(exc).__name__, wait)  # fmt: skip
            await asyncio.sleep(wait)
            delay = min(delay * 2, RETRY_MAX_SECONDS)


def _permanent(exc: SealwireError) -> bool:
    """A failure to send that sending again cannot mend: anything but a relay failure,
    and among those a refusal, a missing mailbox or prekeys, or a frame too large."""
    if isinstance(exc, LimitExceeded):
        return exc.limit in _PERMANENT_LIMITS
    return not isinstance(exc, RelayError) or isinstance(exc, ForbiddenError | NotFoundError)


_PERMANENT_LIMITS = frozenset({"message_size", "request_size"})
"""Limits a retried send meets again (a full mailbox or a rate limit passes)."""

_NOTHING: Any = object()


def _internal_error(request_id: int | str) -> ErrorResponse:
    return ErrorResponse(id=request_id, error=InternalRpcError("internal error").to_rpc_error())
