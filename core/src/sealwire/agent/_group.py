"""Calls over group bindings: one frame encrypted for the whole group, carried by
the relay's ordered group log (ARCHITECTURE, "One unit on every binding").

A :class:`GroupRouter` follows the log of every group the agent belongs to
(pushed over WebSocket while online, fetched from its last position after a
restart), feeds each entry to the group binding's ``process`` in log order,
and routes the frames the binding opens:

* a *request* frame is dispatched by this agent's handler like any other
  request, and the answer goes back to the group as a response frame whose
  service parameter ``Sealwire-Reply-To`` names the requester; so a request
  sent to a group gets one answer per member that handles it;
* a *response* frame is taken by the member it names, and ignored by the rest.

JSON-RPC ids of group requests are ``<agent id>/<random>``: unique across the
group, so answers never collide. The log position of each group is kept in
the store (namespace ``group.log``), written in the same transaction as the
binding's new state together with the frame opened (namespace
``group.inbox``, until it is handed on, replayed after a restart): a crash
between processing an entry and handling it loses nothing. Invitations
(an MLS Welcome) arrive through the agent's mailbox and are handed to the
binding's ``join``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from sealwire.agent._mailbox import kept_frame, read_kept_frame
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
    RawResponse,
    Request,
    Response,
    decode_frame,
    encode_frame,
    parse_response,
    rpc_error_from,
)
from sealwire.errors import InternalError, SealwireError, StateError
from sealwire.model import Message, SendMessageRequest, SendMessageResponse, Task

if TYPE_CHECKING:
    from sealwire.agent._host import RouterHost
    from sealwire.relay import GroupLogEntry, RelayPort
    from sealwire.store import StoreTransaction

__all__ = ["GroupReply", "GroupRouter", "REPLY_TO_PARAMETER"]

log = logging.getLogger(__name__)

REPLY_TO_PARAMETER = "Sealwire-Reply-To"
"""Service parameter of a response frame sent to a group: the requester's agent id."""
CURSOR_NAMESPACE = "group.log"
INBOX_NAMESPACE = "group.inbox"
"""Frames opened from a group log, kept with the binding's new state until handed on."""
MAX_SERVED_REQUESTS = 64
"""Group requests this agent serves at once; more are dropped (and logged), so a
chatty group cannot make us run unbounded handler tasks."""
DEFAULT_REPLY_TIMEOUT = 30.0
"""Seconds :meth:`GroupRouter.send_message` waits for the members' answers."""


@attrs.frozen(kw_only=True)
class GroupReply:
    """One member's answer to a request sent to a group.

    ``result`` is the task or message it answered; ``error`` the A2A error it
    answered or, when it did not answer in time, a timeout error.
    """

    agent_id: str
    result: Task | Message | None = None
    error: A2AError | None = None


class _Replies:
    def __init__(self, method: Method, expected: Sequence[str]) -> None:
        self.method = method
        self.expected = set(expected)
        self.got: dict[str, GroupReply] = {}
        self.done = asyncio.Event()
        if not self.expected:
            self.done.set()

    def add(self, reply: GroupReply) -> None:
        if reply.agent_id in self.expected and reply.agent_id not in self.got:
            self.got[reply.agent_id] = reply
            if len(self.got) == len(self.expected):
                self.done.set()


class GroupRouter:
    """Follows the logs of this agent's groups and routes their frames."""

    def __init__(
        self, agent: RouterHost, relay: RelayPort, bindings: dict[str, GroupBinding]
    ) -> None:
        self.agent = agent
        self.relay = relay
        self.bindings = bindings
        self._followed: dict[bytes, GroupBinding] = {}
        self._readers: dict[bytes, asyncio.Task[None]] = {}
        self._serving: set[asyncio.Task[None]] = set()
        self._waiting: dict[str, _Replies] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        for binding in self.bindings.values():
            await binding.publish_key_packages()
        for key in self.agent.store.keys(CURSOR_NAMESPACE):
            raw = self.agent.store.get(CURSOR_NAMESPACE, key)
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
        raw = self.agent.store.get(CURSOR_NAMESPACE, group_id.hex())
        after = int(json.loads(raw).get("after", 0)) if raw is not None else 0
        return not await self.relay.fetch_group_log(group_id, after, 1)

    # -- membership ---------------------------------------------------------------------------

    async def create(self, group_id: bytes) -> None:
        binding = self.binding()
        await binding.create_group(group_id)
        self._follow(group_id, binding, 0, save=True)

    async def on_invite(self, name: str, payload: bytes) -> None:
        """An invitation from the mailbox: join, then follow the log from where it says."""
        binding = self.bindings[name]
        try:
            event, after = await binding.join(payload)
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
            self._read(group_id, binding, after), name="sealwire-group-log"
        )

    def _save_cursor(self, group_id: bytes, binding: GroupBinding, after: int) -> None:
        self.agent.store.put(CURSOR_NAMESPACE, group_id.hex(), _cursor(binding, after))

    def _leave(self, group_id: bytes) -> None:
        self._followed.pop(group_id, None)
        self._readers.pop(group_id, None)
        self.agent.store.delete(CURSOR_NAMESPACE, group_id.hex())

    # -- the log --------------------------------------------------------------------------------

    async def _read(self, group_id: bytes, binding: GroupBinding, after: int) -> None:
        try:
            async for entry in self.relay.subscribe_group(group_id, after):
                if not await self._entry(group_id, binding, entry):
                    break
        except SealwireError as exc:  # the relay refused us: we are no longer a member
            log.info("left group %s: %s", group_id.hex()[:16], type(exc).__name__)
        self._leave(group_id)

    async def _entry(self, group_id: bytes, binding: GroupBinding, entry: GroupLogEntry) -> bool:
        """Handle one log entry; False once this agent has left the group."""
        event: GroupEvent | None = None
        kept = False

        def keep(tx: StoreTransaction, opened: GroupEvent | None) -> None:
            nonlocal kept
            kept = True
            tx.put(CURSOR_NAMESPACE, group_id.hex(), _cursor(binding, entry.seq))
            if isinstance(opened, GroupMessage):
                tx.put(INBOX_NAMESPACE, _inbox_key(group_id, entry.seq), _record(binding, opened))

        if not (entry.kind == "application" and entry.sender == self.agent.agent_id):
            try:
                event = await binding.process(group_id, entry.message, keep=keep)
            except SealwireError as exc:
                log.info("dropping group entry %d: %s", entry.seq, type(exc).__name__)
            except Exception:  # a binding bug must not stop the group's log for good
                log.exception("group binding failed on entry %d", entry.seq)
        if not kept:
            self._save_cursor(group_id, binding, entry.seq)
        if isinstance(event, GroupMessage):
            self._on_frame(group_id, binding, event)
            self.agent.store.delete(INBOX_NAMESPACE, _inbox_key(group_id, entry.seq))
        elif isinstance(event, GroupMembershipChanged):
            return self.agent.agent_id not in event.removed
        return True

    def _replay(self) -> None:
        """Hand on the frames opened before a restart and not handed on then."""
        for key in self.agent.store.keys(INBOX_NAMESPACE):
            raw = self.agent.store.get(INBOX_NAMESPACE, key)
            try:
                record, opened = read_kept_frame(raw or b"")
                binding = self.bindings[record["binding"]]
                event = GroupMessage(
                    group_id=bytes.fromhex(record["group"]), epoch=int(record["epoch"]),
                    message=opened,
                )  # fmt: skip
            except (SealwireError, KeyError, TypeError, ValueError) as exc:
                log.warning("cannot route a stored group frame: %s", type(exc).__name__)
            else:
                self._on_frame(event.group_id, binding, event)
            self.agent.store.delete(INBOX_NAMESPACE, key)

    def _on_frame(self, group_id: bytes, binding: GroupBinding, event: GroupMessage) -> None:
        peer = event.message.sender
        try:
            frame = decode_frame(event.message.frame)
            self.agent.check_peer(peer)
        except SealwireError as exc:
            log.info("dropping a group frame from %s: %s", peer.agent_id, type(exc).__name__)
            return
        message = frame.message
        if isinstance(message, Request):
            if len(self._serving) >= MAX_SERVED_REQUESTS:
                log.warning("too many group requests in flight: dropping one")
                return
            task = asyncio.create_task(self._serve(group_id, binding, message, peer))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
            return
        if frame.service_parameters.get(REPLY_TO_PARAMETER) != self.agent.agent_id:
            return  # an answer to another member
        waiting = self._waiting.get(str(message.id))
        if waiting is not None:
            waiting.add(_reply(peer.agent_id, message, waiting.method))

    async def _serve(
        self, group_id: bytes, binding: GroupBinding, request: Request, peer: PeerIdentity
    ) -> None:
        answer: Response | ErrorResponse
        try:
            results = [result async for result in self.agent.dispatch(request, peer)]
            if not results:
                raise InternalRpcError("the handler produced no result")
            answer = Response(id=request.id, result=results[-1])
        except A2AError as exc:
            answer = ErrorResponse(id=request.id, error=exc.to_rpc_error())
        except Exception:
            log.exception("handler for a group request failed")
            answer = ErrorResponse(
                id=request.id, error=InternalRpcError("internal error").to_rpc_error()
            )
        params = {"A2A-Version": A2A_VERSION, REPLY_TO_PARAMETER: peer.agent_id}
        with contextlib.suppress(SealwireError):
            await self._post(group_id, binding, Frame(service_parameters=params, message=answer))

    async def _post(self, group_id: bytes, binding: GroupBinding, frame: Frame) -> None:
        sealed = await binding.seal(group_id, encode_frame(frame))
        await self.relay.post_group_message(group_id, binding.epoch(group_id), sealed)

    # -- calling the group ----------------------------------------------------------------------

    async def send_message(
        self, group_id: bytes, message: Message, *, timeout: float = DEFAULT_REPLY_TIMEOUT
    ) -> list[GroupReply]:
        """``SendMessage`` to every member; one reply per other member, in member order."""
        binding = self.binding(group_id)
        others = [m for m in binding.members(group_id) if m != self.agent.agent_id]
        request_id = f"{self.agent.agent_id}/{uuid.uuid4().hex}"
        waiting = _Replies(Method.SEND_MESSAGE, others)
        self._waiting[request_id] = waiting
        try:
            request = Request(
                id=request_id,
                method=Method.SEND_MESSAGE,
                params=SendMessageRequest(message=message),
            )
            frame = Frame(service_parameters={"A2A-Version": A2A_VERSION}, message=request)
            await self._post(group_id, binding, frame)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiting.done.wait(), timeout)
        finally:
            self._waiting.pop(request_id, None)
        late = InternalRpcError("no answer in time")
        return [waiting.got.get(m) or GroupReply(agent_id=m, error=late) for m in others]


def _reply(
    agent_id: str, message: Response | RawResponse | ErrorResponse, method: Method
) -> GroupReply:
    try:
        typed = parse_response(message, method)
    except A2AError as exc:
        return GroupReply(agent_id=agent_id, error=exc)
    if isinstance(typed, ErrorResponse):
        return GroupReply(agent_id=agent_id, error=rpc_error_from(typed.error))
    result: SendMessageResponse = typed.result
    return GroupReply(agent_id=agent_id, result=result.task or result.message)


def _cursor(binding: GroupBinding, after: int) -> bytes:
    return json.dumps({"binding": binding.info.name, "after": after}).encode()


def _inbox_key(group_id: bytes, seq: int) -> str:
    return f"{group_id.hex()}.{seq:020d}"


def _record(binding: GroupBinding, event: GroupMessage) -> bytes:
    return kept_frame(
        binding.info.name, event.message, group=event.group_id.hex(), epoch=event.epoch
    )
