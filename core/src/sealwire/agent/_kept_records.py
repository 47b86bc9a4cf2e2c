"""The records the mailbox and group routers keep in the store: an opened frame until it is
handed on (:func:`kept_frame`, read back by :func:`read_kept_frame`), and an answer
owed to a peer for a request being served (:func:`owed_answer`, read back by
:func:`read_owed_answer`)."""

from __future__ import annotations

import base64
import json
from typing import Any

import attrs

from sealwire.binding import OpenedMessage, PeerIdentity
from sealwire.codec import Method, Request
from sealwire.errors import SealwireError
from sealwire.identity import VerifiedCard, verify_card
from sealwire.model import SendMessageResponse, StreamResponse

__all__ = [
    "OwedAnswer",
    "json_with_card",
    "kept_frame",
    "owed_answer",
    "read_kept_frame",
    "read_owed_answer",
]


def owed_answer(
    binding: str, peer: PeerIdentity, request: Request, task_id: str, **extra: Any
) -> bytes:
    """The record of an answer owed: to whom, over which binding, for which request and
    task (and ``extra`` fields)."""
    assert peer.card is not None  # the routers checked it
    fields = {"binding": binding, "method": request.method.value, "request_id": request.id}
    return json_with_card(peer.card, {**extra, **fields, "task": task_id})


@attrs.frozen(kw_only=True)
class OwedAnswer:
    """An answer owed, as :func:`owed_answer` recorded it (``record``: every field)."""

    card: VerifiedCard
    binding: str
    method: Method
    request_id: int | str
    task_id: str
    record: dict[str, Any] = attrs.field(repr=False)

    @property
    def peer(self) -> PeerIdentity:
        """The peer the answer is owed to."""
        identity = self.card.identity
        return PeerIdentity(agent_id=identity.agent_id, identity=identity, card=self.card)

    def result(self, answer: SendMessageResponse) -> SendMessageResponse | StreamResponse:
        """The result to answer with, given the resumed task's ``answer``."""
        if self.method.streaming:
            return StreamResponse(task=answer.task, message=answer.message)
        return answer


def read_owed_answer(raw: bytes) -> OwedAnswer:
    """The record :func:`owed_answer` wrote, its peer's card verified again;
    SealwireError, KeyError, TypeError or ValueError when it is damaged."""
    record = json.loads(raw)
    if not isinstance(record, dict):
        raise ValueError("not an owed answer")
    request_id = record["request_id"]
    if not isinstance(request_id, int | str):
        raise TypeError("request id")
    return OwedAnswer(
        card=verify_card(record["card"]), binding=str(record["binding"]),
        method=Method(record["method"]), request_id=request_id, task_id=str(record["task"]),
        record=record,
    )  # fmt: skip


def kept_frame(binding: str, opened: OpenedMessage, **extra: Any) -> bytes:
    """An opened frame as the store keeps it until it is handed on: the binding's name,
    the sender's signed card, the frame and its id (and ``extra`` fields)."""
    card = opened.sender.card
    if card is None:
        raise SealwireError(f"binding {binding} must name the sender's card")
    frame = base64.b64encode(opened.frame).decode()
    fields = {**extra, "binding": binding, "frame": frame, "id": opened.message_id}
    return json_with_card(card, fields)


def json_with_card(card: VerifiedCard, fields: dict[str, Any]) -> bytes:
    """The JSON object of ``fields`` and ``"card"``: the card's bytes are encoded once
    per card (:attr:`VerifiedCard.json_bytes`), not once per record."""
    return b'{"card":' + card.json_bytes + b"," + json.dumps(fields).encode()[1:]


def read_kept_frame(raw: bytes) -> tuple[dict[str, Any], OpenedMessage]:
    """The record :func:`kept_frame` wrote and the frame in it, its sender's card verified
    again; SealwireError, KeyError, TypeError or ValueError when it is damaged."""
    record = json.loads(raw)
    if not isinstance(record, dict):
        raise ValueError("not a kept frame")
    card = verify_card(record["card"])
    sender = PeerIdentity(agent_id=card.identity.agent_id, identity=card.identity, card=card)
    frame = base64.b64decode(record["frame"])
    return record, OpenedMessage(sender=sender, frame=frame, message_id=str(record.get("id", "")))
