"""Calls over group bindings: a request encrypted once for the whole group, carried by
the relay's ordered group log; each member's answer back to the requester alone.

A :class:`GroupRouter` follows the log of every group the agent belongs to
(pushed over WebSocket while online, fetched from its last position after a
restart), feeds each entry to the group binding's ``process`` in log order,
and routes the frames the binding opens.

Requests in O(N). A request to a group goes into the log once; every member
that handles it sends its answer to the requester's mailbox only (never to
the log), so the requester opens N answers and every other member none.

How an answer is protected, and why not as an MLS application message. Both
ends derive the answer key from the group's exporter secret *of the epoch the
request was sealed in* (``export_secret(ANSWER_LABEL, request id)``): the
requester right after posting the request, each member the moment it opens it
(it opens log entries in log order, so it is in that epoch then). The answer
frame is sealed with AES-256-GCM under that key (header fields as associated
data) and signed with the answerer's identity key (its MLS signature key); its
signed card travels with it. So only members of that epoch can read it, only
the member named can have written it, and epochs do not matter: an answer
sealed after the group moved on (either side) still opens, because both sides
hold the key of the request's epoch, the requester only until the call ends
(forward secrecy). An MLS application message would not do: the engine keeps
one epoch, so an answer crossing a commit could not be opened; each answer
would consume a generation of the answerer's ratchet that the other members
never see (a member answering more than the engine's forward window between
two of its own log messages would make those unreadable); and the requester
would store its group state once per answer. No pairwise fallback is needed. Both ends of an
answer are in :mod:`._group_answers`.

One writer per log: the binding appends (its ``post`` seals and appends under
its lock, as its commits); this router never writes to the log.

Every failure is reported: :meth:`GroupRouter.send_message` returns one
:class:`GroupReply` per other member, a result or an error (the request could
not be posted, the answer could not be opened or its sender is not trusted, no
answer in time). An answerer that cannot deliver its answer retries with
backoff and logs a warning; its requester sees that member's timeout.

A member killed while it serves a request still answers it once, as the
mailbox router does (:mod:`._mailbox`): the request stays in the inbox until
the transaction that records the task it creates, which records the answer
owed instead (namespace ``group.answers``, with the answer key: the group may
be in a later epoch after the restart); that record goes once the relay took
the answer, sent under a message id made from the request's inbox key, so an
answer sent again after a crash is stored once. A restart answers every owed
task (running its handler again if the crash interrupted it) and serves every
request still in the inbox.

Membership ends only by MLS proof: the reader of a group leaves it only when
the binding processes a commit that removes this agent. Any other failure
(rate limit, relay down, a refusal) is logged and the reader resubscribes
from its stored position with backoff (honouring ``retry_after``);
:attr:`GroupRouter.reader_failures` counts them per group. An entry the binding
could not process for such a passing cause (a member's card that could not be
fetched yet) is read again that way, never skipped.

JSON-RPC ids of group requests are ``<agent id>/<random>``. The log position
of each group is kept in the store (namespace ``group.log``), written in the
same transaction as the binding's new state together with the frame opened
(namespace ``group.inbox``, until it is handed on, replayed after a restart).
Invitations (an MLS Welcome) arrive through the agent's mailbox and are
handed to the binding's ``join``; answers arrive there too, under the route
:data:`~._group_answers.ANSWER_ROUTE`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from sealwire.agent._group_answers import AnswerHost, GroupAnswers, GroupReply, answer_key
from sealwire.agent._host import RouterHost
from sealwire.agent._kept_records import (
    kept_frame,
    owed_answer,
    read_kept_frame,
    read_owed_answer,
)
from sealwire.agent._mailbox_channels import LOCAL_FAILURES, describe_failure
from sealwire.binding import (
    GroupBinding,
    GroupEvent,
    GroupMembershipChanged,
    GroupMessage,
    PeerIdentity,
)
from sealwire.codec import (
    A2A_VERSION,
    A2AError,
    ErrorResponse,
    Frame,
    InternalRpcError,
    Method,
    Request,
    Response,
    decode_frame,
    encode_frame,
)
from sealwire.errors import (
    InternalError,
    SealwireError,
    StateError,
)
from sealwire.model import Message, SendMessageRequest
from sealwire.relay import LimitExceeded, RelayPort, RelayUnavailable
from sealwire.relay.wire import b64d, b64e

if TYPE_CHECKING:
    from sealwire.relay import GroupLogEntry
    from sealwire.store import StoreTransaction

__all__ = ["GroupHost", "GroupReply", "GroupRouter"]

log = logging.getLogger(__name__)

INVITE_ATTEMPTS = 5
INVITE_RETRY_FIRST_SECONDS = 0.2
"""Tries (doubling from this delay) to join from an invitation when the relay fails
passingly: the mailbox drops an invitation whose handling fails."""
READER_RETRY_FIRST_SECONDS = 0.2
READER_RETRY_MAX_SECONDS = 30.0
"""Backoff of a group reader resubscribing after a failure (doubling): quick after a
blip, one try per half minute against a relay that keeps refusing."""
CURSOR_NAMESPACE = "group.log"
INBOX_NAMESPACE = "group.inbox"
"""Frames opened from a group log, kept with the binding's new state until handed on
(a request: until the task it creates is recorded, or else until it is answered)."""
ANSWERS_NAMESPACE = "group.answers"
"""Answers owed for tasks that group requests created, until the relay accepts them."""
KEPT_RETRY_SECONDS = 5.0
"""A kept request the store failed to record is served again after this long."""
MAX_SERVED_REQUESTS = 64
"""Group requests this agent serves at once; more are refused (and logged), so a
chatty group cannot make us run unbounded handler tasks."""
DEFAULT_REPLY_TIMEOUT = 30.0
"""Seconds :meth:`GroupRouter.send_message` waits for the members' answers."""


class GroupHost(AnswerHost, RouterHost, Protocol):
    """What the group router needs of its agent: what the routers and the answers do."""


class GroupRouter:
    """Follows the logs of this agent's groups and routes their frames."""

    def __init__(
        self, host: GroupHost, relay: RelayPort, bindings: dict[str, GroupBinding]
    ) -> None:
        self.host = host
        self.relay = relay
        self.bindings = bindings
        self.reader_failures: dict[bytes, int] = {}
        self._followed: dict[bytes, GroupBinding] = {}
        self._readers: dict[bytes, asyncio.Task[None]] = {}
        self._serving: set[asyncio.Task[None]] = set()
        self.answers = GroupAnswers(host, relay)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        for binding in self.bindings.values():
            await binding.publish_key_packages()
        for key in self.host.store.keys(CURSOR_NAMESPACE):
            raw = self.host.store.get(CURSOR_NAMESPACE, key)
            record = json.loads(raw) if raw is not None else {}
            known = self.bindings.get(record.get("binding", ""))
            if known is not None:
                self._follow(bytes.fromhex(key), known, int(record.get("after", 0)))
        self._replay()

    async def stop(self) -> None:
        tasks = [*self._readers.values(), *self._serving]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._readers.clear()

    def binding(self, group_id: bytes | None = None) -> GroupBinding:
        """The binding of ``group_id`` (or the preferred group binding for a new group)."""
        if group_id is None:
            return next(iter(self.bindings.values()))
        binding = self._followed.get(group_id)
        if binding is None:
            raise StateError("this agent is not a member of that group")
        return binding

    def groups(self) -> dict[bytes, tuple[str, ...]]:
        """Each group followed, with its members."""
        return {gid: b.members(gid) for gid, b in self._followed.items()}

    async def settle(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until the mailbox holds no unhandled message
        and every followed group's log has been handled to its end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if not await self.relay.fetch(limit=1) and all(
                [await self._caught_up(group_id) for group_id in list(self._followed)]
            ):
                return
            await asyncio.sleep(0.05)

    async def _caught_up(self, group_id: bytes) -> bool:
        binding = self._followed.get(group_id)
        if binding is None:  # left meanwhile
            return True
        relay = binding.group_relay(group_id) or self.relay
        return not await relay.fetch_group_log(group_id, self._position(group_id), 1)

    def _position(self, group_id: bytes) -> int:
        raw = self.host.store.get(CURSOR_NAMESPACE, group_id.hex())
        return int(json.loads(raw).get("after", 0)) if raw is not None else 0

    # -- membership ---------------------------------------------------------------------------

    async def create(self, group_id: bytes) -> None:
        binding = self.binding()
        await binding.create_group(group_id)
        self._follow(group_id, binding, 0, save=True)

    async def on_invite(self, name: str, payload: bytes) -> None:
        """An invitation from the mailbox: join, then follow the log from where it says."""
        binding = self.bindings[name]
        delay = INVITE_RETRY_FIRST_SECONDS
        for attempt in range(1, INVITE_ATTEMPTS + 1):
            try:
                event, after = await binding.join(payload)
                break
            except (RelayUnavailable, LimitExceeded) as exc:  # passing: not the invitation's
                if attempt == INVITE_ATTEMPTS:
                    raise
                wait = delay
                if isinstance(exc, LimitExceeded) and exc.retry_after is not None:
                    wait = max(wait, exc.retry_after)
                log.warning("joining a group failed (%s): again in %.1f s", exc, wait)
                await asyncio.sleep(wait)
                delay *= 2
            except SealwireError:
                raise
            except Exception as exc:  # a binding bug: the mailbox drops this invitation
                log.exception("group binding failed on an invitation")
                raise InternalError("the group binding failed on an invitation") from exc
        log.info("joined group %s at epoch %d", event.group_id.hex()[:16], event.epoch)
        self._follow(event.group_id, binding, after, save=True)

    def _follow(
        self, group_id: bytes, binding: GroupBinding, after: int, *, save: bool = False
    ) -> None:
        if save:
            self._save_cursor(group_id, binding, after)
        old = self._readers.pop(group_id, None)
        if old is not None:
            old.cancel()
        self._followed[group_id] = binding
        self._readers[group_id] = asyncio.create_task(
            self._read(group_id, binding), name="sealwire-group-log"
        )

    def _save_cursor(self, group_id: bytes, binding: GroupBinding, after: int) -> None:
        self.host.store.put(CURSOR_NAMESPACE, group_id.hex(), _cursor(binding, after))

    def _leave(self, group_id: bytes) -> None:
        self._followed.pop(group_id, None)
        self._readers.pop(group_id, None)
        self.host.store.delete(CURSOR_NAMESPACE, group_id.hex())

    # -- the log --------------------------------------------------------------------------------

    async def _read(self, group_id: bytes, binding: GroupBinding) -> None:
        """Follow the log until a commit processed by the binding removes this agent.

        Supervised: any failure (the relay refusing, limiting or gone, a broken
        stream, a bug) is logged, counted in :attr:`reader_failures`, and the
        log is read again from the stored position after a backoff.
        """
        delay = READER_RETRY_FIRST_SECONDS
        while True:
            try:
                relay = binding.group_relay(group_id) or self.relay
                # Closed as the loop is left (its WebSocket with it), before a retry
                # opens another, not whenever the garbage collector gets to it.
                entries = relay.subscribe_group(group_id, self._position(group_id))
                async with contextlib.aclosing(entries):
                    async for entry in entries:
                        delay = READER_RETRY_FIRST_SECONDS
                        if not await self._entry(group_id, binding, entry):
                            log.info("removed from group %s by a commit", group_id.hex()[:16])
                            self._leave(group_id)
                            return
                raise InternalError("the group log stream ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                wait = delay
                if isinstance(exc, LimitExceeded) and exc.retry_after is not None:
                    wait = max(wait, exc.retry_after)
                self.reader_failures[group_id] = self.reader_failures.get(group_id, 0) + 1
                log.warning(
                    "reading group %s failed (%s: %s): again in %.1f s",
                    group_id.hex()[:16], type(exc).__name__, exc, wait,
                )  # fmt: skip
                await asyncio.sleep(wait)
                delay = min(delay * 2, READER_RETRY_MAX_SECONDS)

    async def _entry(self, group_id: bytes, binding: GroupBinding, entry: GroupLogEntry) -> bool:
        """Handle one log entry; False once a commit removed this agent from the group."""
        event: GroupEvent | None = None
        kept = False

        def keep(tx: StoreTransaction, opened: GroupEvent | None) -> None:
            nonlocal kept
            kept = True
            tx.put(CURSOR_NAMESPACE, group_id.hex(), _cursor(binding, entry.seq))
            if isinstance(opened, GroupMessage):
                tx.put(INBOX_NAMESPACE, _inbox_key(group_id, entry.seq), _record(binding, opened))

        if not (entry.kind == "application" and entry.sender == self.host.agent_id):
            try:
                event = await binding.process(group_id, entry.message, keep=keep)
            except (RelayUnavailable, LimitExceeded):
                raise  # passing, not the entry's fault: read again from the stored position
            except SealwireError as exc:
                log.info("skipping group entry %d: %s", entry.seq, type(exc).__name__)
            except Exception:  # a binding bug must not stop the group's log for good
                log.exception("group binding failed on entry %d", entry.seq)
        if not kept:
            self._save_cursor(group_id, binding, entry.seq)
        if isinstance(event, GroupMessage):
            self._on_frame(binding, event, _inbox_key(group_id, entry.seq))
        elif isinstance(event, GroupMembershipChanged):
            return self.host.agent_id not in event.removed
        return True

    def _replay(self) -> None:
        """After a restart: answer the tasks owed, hand on the frames kept."""
        for key in self.host.store.keys(ANSWERS_NAMESPACE):
            self._spawn(self._answer_owed(key))
        for key in self.host.store.keys(INBOX_NAMESPACE):
            self._hand_on_kept(key)

    def _hand_on_kept(self, key: str) -> None:
        """Hand on a frame opened before a restart (or that the store failed to record)."""
        try:
            raw = self.host.store.get(INBOX_NAMESPACE, key)
            if raw is None:
                return
            record, opened = read_kept_frame(raw)
            binding = self.bindings[record["binding"]]
            event = GroupMessage(
                group_id=bytes.fromhex(record["group"]), epoch=int(record["epoch"]),
                message=opened,
            )  # fmt: skip
        except LOCAL_FAILURES as exc:
            log.warning("cannot read a stored group frame: %s", describe_failure(exc))
            self._spawn(self._hand_on_later(key))
        except (SealwireError, KeyError, TypeError, ValueError) as exc:
            log.warning("cannot route a stored group frame: %s", type(exc).__name__)
            self.host.store.delete(INBOX_NAMESPACE, key)
        else:
            self._on_frame(binding, event, key)

    async def _hand_on_later(self, key: str) -> None:
        await asyncio.sleep(KEPT_RETRY_SECONDS)
        self._hand_on_kept(key)

    def _on_frame(self, binding: GroupBinding, event: GroupMessage, key: str) -> None:
        """Serve the request kept under ``key`` (its record goes once recorded or
        answered), or drop the frame and its record."""
        group_id, peer = event.group_id, event.message.sender
        try:
            frame = decode_frame(event.message.frame)
            self.host.check_peer(peer)
        except SealwireError as exc:
            log.info("dropping a group frame from %s: %s", peer.agent_id, type(exc).__name__)
            self.host.store.delete(INBOX_NAMESPACE, key)
            return
        request = frame.message
        if not isinstance(request, Request):
            log.info("dropping a group frame from %s: not a request", peer.agent_id)
        elif binding.epoch(group_id) != event.epoch:
            # Replayed after a restart in a later epoch: the answer key is gone with it.
            log.warning("cannot answer group request %s of a past epoch", request.id)
        elif len(self._serving) >= MAX_SERVED_REQUESTS:
            log.warning("too many group requests in flight: refusing %s", request.id)
        else:
            # Now, in the request's epoch (see the module docstring).
            sealing_key = answer_key(binding, group_id, request)
            self._spawn(self._serve(group_id, binding, request, peer, sealing_key, key))
            return
        self.host.store.delete(INBOX_NAMESPACE, key)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve(
        self,
        group_id: bytes,
        binding: GroupBinding,
        request: Request,
        peer: PeerIdentity,
        sealing_key: bytes,
        inbox_key: str,
    ) -> None:
        """Serve ``request`` (kept under ``inbox_key``) and send its answer."""
        recorded = False

        def receipt(tx: StoreTransaction, task_id: str) -> None:
            nonlocal recorded
            tx.delete(INBOX_NAMESPACE, inbox_key)
            owed = owed_answer(
                binding.info.name, peer, request, task_id,
                group=group_id.hex(), key=b64e(sealing_key),
            )  # fmt: skip
            tx.put(ANSWERS_NAMESPACE, inbox_key, owed)
            recorded = True

        answer: Response | ErrorResponse
        try:
            results = [r async for r in self.host.dispatch(request, peer, receipt=receipt)]
            if not results:
                raise InternalRpcError("the handler produced no result")
            answer = Response(id=request.id, result=results[-1])
        except A2AError as exc:
            answer = ErrorResponse(id=request.id, error=exc.to_rpc_error())
        except LOCAL_FAILURES as exc:
            if not recorded:  # the request stays in the inbox and is served again
                log.warning("cannot record group request %s: %s", request.id,
                            describe_failure(exc))  # fmt: skip
                self._spawn(self._hand_on_later(inbox_key))
                return
            log.warning("store failed serving group request %s: %s", request.id,
                        describe_failure(exc))  # fmt: skip
            answer = ErrorResponse(
                id=request.id, error=InternalRpcError("internal error").to_rpc_error()
            )
        except Exception:
            log.exception("handler for a group request failed")
            answer = ErrorResponse(
                id=request.id, error=InternalRpcError("internal error").to_rpc_error()
            )
        await self.answers.send(group_id, binding, peer, answer, sealing_key, _answer_id(inbox_key))
        self.host.store.delete(ANSWERS_NAMESPACE if recorded else INBOX_NAMESPACE, inbox_key)

    async def _answer_owed(self, inbox_key: str) -> None:
        """After a restart: answer a task a group request created before it."""
        try:
            raw = self.host.store.get(ANSWERS_NAMESPACE, inbox_key)
            if raw is None:
                return
            owed = read_owed_answer(raw)
            binding = self.bindings[owed.binding]
            group_id = bytes.fromhex(owed.record["group"])
            sealing_key = b64d(owed.record["key"], "key")
        except LOCAL_FAILURES as exc:
            log.warning("cannot read an owed group answer: %s", describe_failure(exc))
            return
        except (SealwireError, KeyError, TypeError, ValueError) as exc:
            log.warning("dropping a damaged owed group answer: %s", type(exc).__name__)
            self.host.store.delete(ANSWERS_NAMESPACE, inbox_key)
            return
        answer: Response | ErrorResponse
        try:
            resumed = await self.host.resume_task(owed.task_id, owed.peer)
            answer = Response(id=owed.request_id, result=owed.result(resumed))
        except A2AError as exc:
            answer = ErrorResponse(id=owed.request_id, error=exc.to_rpc_error())
        except LOCAL_FAILURES as exc:  # kept: answered at the next start
            log.warning("cannot answer group request %s after a restart: %s",
                        owed.request_id, describe_failure(exc))  # fmt: skip
            return
        except SealwireError as exc:
            log.info("cannot answer group request %s after a restart: %s",
                     owed.request_id, type(exc).__name__)  # fmt: skip
            self.host.store.delete(ANSWERS_NAMESPACE, inbox_key)
            return
        await self.answers.send(
            group_id, binding, owed.peer, answer, sealing_key, _answer_id(inbox_key)
        )
        self.host.store.delete(ANSWERS_NAMESPACE, inbox_key)

    # -- answers ----------------------------------------------------------------------------------

    async def on_answer(self, payload: bytes) -> None:
        """An answer to one of our group requests, from the mailbox (:class:`GroupAnswers`)."""
        await self.answers.on_answer(payload)

    # -- calling the group ----------------------------------------------------------------------

    async def send_message(
        self, group_id: bytes, message: Message, *, timeout: float = DEFAULT_REPLY_TIMEOUT
    ) -> list[GroupReply]:
        """``SendMessage`` to every member; one reply per other member, in member order."""
        binding = self.binding(group_id)
        others = [m for m in binding.members(group_id) if m != self.host.agent_id]
        request = Request(
            id=f"{self.host.agent_id}/{uuid.uuid4().hex}",
            method=Method.SEND_MESSAGE,
            params=SendMessageRequest(message=message),
        )
        frame = Frame(service_parameters={"A2A-Version": A2A_VERSION}, message=request)
        try:
            _seq, epoch = await binding.post(group_id, encode_frame(frame))
            if binding.epoch(group_id) != epoch:  # the binding's lock makes this impossible
                raise StateError("the group's epoch changed as the request was posted")
        except SealwireError as exc:
            log.warning("posting a request to group %s failed: %s", group_id.hex()[:16], exc)
            error = InternalRpcError(f"the request could not be posted: {type(exc).__name__}")
            return [GroupReply(agent_id=m, error=error) for m in others]
        key = answer_key(binding, group_id, request)
        awaiting = self.answers.awaiting(str(request.id), Method.SEND_MESSAGE, others, key)
        with awaiting as waiting, contextlib.suppress(TimeoutError):
            # a timeout ends the wait: the missing answers are reported below
            await asyncio.wait_for(waiting.done.wait(), timeout)
        late = InternalRpcError(f"no answer within {timeout:g} s")
        return [waiting.got.get(m) or GroupReply(agent_id=m, error=late) for m in others]


def _cursor(binding: GroupBinding, after: int) -> bytes:
    return json.dumps({"binding": binding.info.name, "after": after}).encode()


def _inbox_key(group_id: bytes, seq: int) -> str:
    return f"{group_id.hex()}.{seq:020d}"


def _answer_id(inbox_key: str) -> str:
    """The relay message id of the answer to the request kept under ``inbox_key``."""
    return "group-answer/" + hashlib.sha256(inbox_key.encode()).hexdigest()[:40]


def _record(binding: GroupBinding, event: GroupMessage) -> bytes:
    return kept_frame(
        binding.info.name, event.message, group=event.group_id.hex(), epoch=event.epoch
    )
