"""Answers to group requests, both ends (the protection is in :mod:`._group`'s
docstring): the answerer seals its answer under the request's epoch key, signs it
and sends it to the requester's mailbox; the requester gathers the answers of the
members it asked, checks who wrote each, opens it and turns it into that member's
:class:`GroupReply`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Protocol

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealwire.agent._kept_records import json_with_card
from sealwire.binding import GroupBinding, PeerIdentity
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
from sealwire.errors import AuthenticationError, DecodeError, SealwireError
from sealwire.identity import Identity, VerifiedCard, verify_card
from sealwire.model import Message, SendMessageResponse, Task
from sealwire.relay import LimitExceeded, RelayPort, wrap
from sealwire.relay.wire import b64d, b64e

__all__ = [
    "ANSWER_ROUTE",
    "ANSWER_DOMAIN",
    "ANSWER_KEY_BYTES",
    "ANSWER_LABEL",
    "ANSWER_NONCE_BYTES",
    "MAX_VERIFIED_CARDS",
    "AnswerHost",
    "GroupAnswers",
    "GroupReply",
    "Replies",
    "answer_key",
]

log = logging.getLogger(__name__)

ANSWER_ROUTE = "sealwire.group-answer"
"""Mailbox route of answers to group requests (a name no binding takes)."""
ANSWER_SEND_ATTEMPTS = 6
"""Tries to deliver an answer to the requester's mailbox before giving up (logged)."""
ANSWER_RETRY_FIRST_SECONDS = 0.2
ANSWER_RETRY_MAX_SECONDS = 5.0
"""Backoff between those tries (doubling): about 15 s in all, inside a call's timeout."""
ANSWER_LABEL = "sealwire group answer v1"
"""Exporter label of the answer key (RFC 9420 §8.5: one label per application use)."""
ANSWER_DOMAIN = b"sealwire-group-answer/1\x00"
"""Prefix of what an answerer signs and of the associated data: nothing else it
signs with its identity key can be taken for an answer."""
ANSWER_KEY_BYTES = 32
"""AES-256-GCM."""
ANSWER_NONCE_BYTES = 12
"""AES-GCM's nonce; random, and one key seals at most one answer per member."""
MAX_VERIFIED_CARDS = 4096
"""Answerers' cards kept verified (a card seen again costs a dictionary look-up
instead of a signature check; forgetting one only costs that check again)."""


class AnswerHost(Protocol):
    """What the answers need of their agent."""

    @property
    def agent_id(self) -> str: ...

    @property
    def identity(self) -> Identity:
        """Signs this agent's answers to group requests."""

    @property
    def card(self) -> VerifiedCard:
        """Travels with this agent's answers, for the requester to verify."""

    def check_peer(self, peer: PeerIdentity) -> None:
        """Raise if configuration or the trust store refuses ``peer``."""


@attrs.frozen(kw_only=True)
class GroupReply:
    """One member's answer to a request sent to a group.

    ``result`` is the task or message it answered; ``error`` the A2A error it
    answered or, when its answer did not come (in time) or could not be
    opened, an error saying so.
    """

    agent_id: str
    result: Task | Message | None = None
    error: A2AError | None = None


class Replies:
    """The answers one request waits for: one per member asked, under the request's key."""

    def __init__(self, method: Method, expected: Sequence[str], key: bytes) -> None:
        self.method = method
        self.expected = set(expected)
        self.key = key
        self.got: dict[str, GroupReply] = {}
        self.done = asyncio.Event()
        if not self.expected:
            self.done.set()

    def add(self, reply: GroupReply) -> None:
        if reply.agent_id in self.expected and reply.agent_id not in self.got:
            self.got[reply.agent_id] = reply
            if len(self.got) == len(self.expected):
                self.done.set()


def answer_key(binding: GroupBinding, group_id: bytes, request: Request) -> bytes:
    """The answer key of ``request``: call it in the request's epoch (module docstring
    of :mod:`._group`)."""
    return binding.export_secret(group_id, ANSWER_LABEL, _context(request), ANSWER_KEY_BYTES)


class GroupAnswers:
    """This agent's answers to others' group requests, and the answers to its own."""

    def __init__(self, host: AnswerHost, relay: RelayPort) -> None:
        self.host = host
        self.relay = relay
        self.undelivered = 0
        """Answers given up after ANSWER_SEND_ATTEMPTS (each logged)."""
        self._waiting: dict[str, Replies] = {}
        self._cards: OrderedDict[bytes, VerifiedCard] = OrderedDict()

    def seal(
        self, group_id: bytes, request_id: str, requester: str, key: bytes, frame: bytes
    ) -> bytes:
        """This agent's answer ``frame`` to request ``request_id``, sealed and signed for
        ``requester``."""
        me = self.host.agent_id
        nonce = os.urandom(ANSWER_NONCE_BYTES)
        header = _answer_header(group_id, request_id, requester, me, nonce)
        box = AESGCM(key).encrypt(nonce, frame, header)
        signature = self.host.identity.sign(header + _field(box))
        answer = {
            "group": b64e(group_id), "request": request_id, "to": requester,
            "nonce": b64e(nonce), "box": b64e(box), "sig": b64e(signature),
        }  # fmt: skip
        return json_with_card(self.host.card, answer)

    async def send(
        self,
        group_id: bytes,
        binding: GroupBinding,
        requester: PeerIdentity,
        answer: Response | ErrorResponse,
        key: bytes,
        message_id: str,
    ) -> None:
        """Seal ``answer`` with ``key`` and send it to ``requester``'s mailbox under
        ``message_id`` (the same for every try, so the relay stores it once), retrying
        relay failures with backoff; given up (logged, counted) after
        ANSWER_SEND_ATTEMPTS."""
        frame = Frame(service_parameters={"A2A-Version": A2A_VERSION}, message=answer)
        payload = self.seal(group_id, str(answer.id), requester.agent_id, key, encode_frame(frame))
        address = _mailbox_of(requester, binding)
        delay = ANSWER_RETRY_FIRST_SECONDS
        for attempt in range(1, ANSWER_SEND_ATTEMPTS + 1):
            try:
                await self.relay.send(address, message_id, wrap(ANSWER_ROUTE, payload))
                return
            except SealwireError as exc:
                if attempt == ANSWER_SEND_ATTEMPTS:
                    self.undelivered += 1
                    log.warning(
                        "answer to group request %s undelivered after %d tries: %s",
                        answer.id, attempt, type(exc).__name__,
                    )  # fmt: skip
                    return
                wait = delay
                if isinstance(exc, LimitExceeded) and exc.retry_after is not None:
                    wait = max(wait, exc.retry_after)
                await asyncio.sleep(wait)
                delay = min(delay * 2, ANSWER_RETRY_MAX_SECONDS)

    @contextlib.contextmanager
    def awaiting(
        self, request_id: str, method: Method, expected: Sequence[str], key: bytes
    ) -> Iterator[Replies]:
        """Collect the answers to ``request_id`` while the block runs."""
        waiting = Replies(method, expected, key)
        self._waiting[request_id] = waiting
        try:
            yield waiting
        finally:
            self._waiting.pop(request_id, None)

    async def on_answer(self, payload: bytes) -> None:
        """An answer to one of our group requests, from the mailbox. One that names no
        call of ours (late, or forged) is logged and dropped; one that is ours becomes
        that member's reply, a result or an error."""
        try:
            fields = json.loads(payload)
            if not isinstance(fields, dict):
                raise DecodeError("expected an object", field="answer")
            request_id = str(fields["request"])
            waiting = self._waiting.get(request_id)
            if waiting is None:
                log.info("an answer to group request %s, which waits no more", request_id)
                return
            card = self._verified(fields["card"])
            answerer = card.identity.agent_id
            if answerer not in waiting.expected:
                raise AuthenticationError("an answer from an agent that was not asked")
            group_id = b64d(fields["group"], "group")
            nonce, box = b64d(fields["nonce"], "nonce"), b64d(fields["box"], "box")
            header = _answer_header(group_id, request_id, self.host.agent_id, answerer, nonce)
            card.identity.verify(b64d(fields["sig"], "sig"), header + _field(box))
        except (SealwireError, KeyError, TypeError, ValueError) as exc:
            log.warning("dropping an answer nobody can be held to: %s", type(exc).__name__)
            return
        peer = PeerIdentity(agent_id=answerer, identity=card.identity, card=card)
        waiting.add(self._open_answer(waiting, peer, request_id, header, nonce, box))

    def _open_answer(
        self,
        waiting: Replies,
        peer: PeerIdentity,
        request_id: str,
        header: bytes,
        nonce: bytes,
        box: bytes,
    ) -> GroupReply:
        """The reply of an authenticated answerer: its answer, or why it is refused."""
        try:
            self.host.check_peer(peer)
            frame = decode_frame(AESGCM(waiting.key).decrypt(nonce, box, header))
        except InvalidTag:
            error = InternalRpcError("the member's answer could not be opened")
            return GroupReply(agent_id=peer.agent_id, error=error)
        except SealwireError as exc:
            error = InternalRpcError(f"the member's answer is refused: {type(exc).__name__}")
            return GroupReply(agent_id=peer.agent_id, error=error)
        message = frame.message
        if not isinstance(message, (Response, RawResponse, ErrorResponse)):
            error = InternalRpcError("the member answered with something else than a response")
            return GroupReply(agent_id=peer.agent_id, error=error)
        if str(message.id) != request_id:
            error = InternalRpcError("the member's answer is for another request")
            return GroupReply(agent_id=peer.agent_id, error=error)
        return _reply(peer.agent_id, message, waiting.method)

    def _verified(self, card: object) -> VerifiedCard:
        if not isinstance(card, dict):
            raise DecodeError("expected a card", field="card")
        digest = hashlib.sha256(json.dumps(card, sort_keys=True).encode()).digest()
        verified = self._cards.get(digest)
        if verified is None:
            verified = verify_card(card)
            if len(self._cards) >= MAX_VERIFIED_CARDS:
                self._cards.popitem(last=False)
            self._cards[digest] = verified
        return verified


def _mailbox_of(peer: PeerIdentity, binding: GroupBinding) -> str:
    """Where ``peer`` takes its mail: what its card offers for the group binding."""
    offer = peer.card.offer(binding.info.name) if peer.card is not None else None
    return offer.url if offer is not None and offer.url else peer.agent_id


def _context(request: Request) -> bytes:
    return str(request.id).encode()


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def _answer_header(
    group_id: bytes, request_id: str, requester: str, answerer: str, nonce: bytes
) -> bytes:
    """What binds an answer to its group, request and both ends (associated data and,
    with the ciphertext, what the answerer signs)."""
    fields = (group_id, request_id.encode(), requester.encode(), answerer.encode(), nonce)
    return ANSWER_DOMAIN + b"".join(_field(f) for f in fields)


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
