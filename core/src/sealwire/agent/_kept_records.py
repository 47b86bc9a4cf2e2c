"""The records the mailbox router keeps in the store: an opened frame until it is
handed on (:func:`kept_frame`, read back by :func:`read_kept_frame`), and an answer
owed to a peer for a request being served (:func:`owed_answer`)."""

from __future__ import annotations

import base64
import json
import threading
from collections import OrderedDict
from typing import Any

from sealwire.binding import OpenedMessage, PeerIdentity
from sealwire.codec import Request
from sealwire.errors import SealwireError
from sealwire.identity import VerifiedCard, verify_card

__all__ = ["MAX_CARDS_KEPT_AS_JSON", "kept_frame", "owed_answer", "read_kept_frame"]

MAX_CARDS_KEPT_AS_JSON = 1024
"""Signed cards whose JSON text is remembered (by object): every kept frame and owed
answer names its sender's card, the same object for each message of a peer (the
binding caches it), so a card is encoded once, not once a message; as many as the
peers a binding keeps in memory."""

_card_texts: OrderedDict[int, tuple[VerifiedCard, str]] = OrderedDict()
_card_texts_lock = threading.Lock()


def _card_text(card: VerifiedCard) -> str:
    """``json.dumps`` of the card's JSON, remembered for this card object (it is frozen;
    the entry holds the object, so its id cannot name another one meanwhile)."""
    key = id(card)
    with _card_texts_lock:
        hit = _card_texts.get(key)
        if hit is not None and hit[0] is card:
            _card_texts.move_to_end(key)
            return hit[1]
    text = json.dumps(dict(card.card))
    with _card_texts_lock:
        _card_texts[key] = (card, text)
        while len(_card_texts) > MAX_CARDS_KEPT_AS_JSON:
            _card_texts.popitem(last=False)
    return text


def owed_answer(binding: str, peer: PeerIdentity, request: Request, task_id: str) -> bytes:
    """The record of an answer owed: to whom, over which binding, for which request.

    The bytes of ``json.dumps`` of ``{"binding", "card", "method", "request_id",
    "task"}``, written with the card's text remembered."""
    assert peer.card is not None  # the mailbox router checked it
    return (
        f'{{"binding": {json.dumps(binding)}, "card": {_card_text(peer.card)}, '
        f'"method": {json.dumps(request.method.value)}, '
        f'"request_id": {json.dumps(request.id)}, "task": {json.dumps(task_id)}}}'
    ).encode()


_KEPT_FIELDS = frozenset({"binding", "card", "frame", "id"})


def kept_frame(binding: str, opened: OpenedMessage, **extra: Any) -> bytes:
    """An opened frame as the store keeps it until it is handed on: the binding's name,
    the sender's signed card, the frame and its id (and ``extra`` fields).

    The bytes of ``json.dumps`` of ``{**extra, "binding", "card", "frame", "id"}``,
    written with the card's text remembered."""
    card = opened.sender.card
    if card is None:
        raise SealwireError(f"binding {binding} must name the sender's card")
    frame = base64.b64encode(opened.frame).decode()
    if _KEPT_FIELDS & extra.keys():  # an extra field overridden in place: as json.dumps does
        record = {**extra, "binding": binding, "card": dict(card.card), "frame": frame}
        return json.dumps({**record, "id": opened.message_id}).encode()
    head = json.dumps({**extra, "binding": binding})[:-1]  # without its closing brace
    return (
        f'{head}, "card": {_card_text(card)}, "frame": "{frame}", '
        f'"id": {json.dumps(opened.message_id)}}}'
    ).encode()


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
