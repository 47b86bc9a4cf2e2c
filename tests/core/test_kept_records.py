"""The mailbox router's kept records (issue 14): a sender's card is encoded once per
card, not once per message, and the records are the bytes today's code writes (an
agent restarting across versions reads them either way)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from sealwire.agent import _kept_records
from sealwire.agent._card import build_card
from sealwire.agent._kept_records import kept_frame, owed_answer, read_kept_frame
from sealwire.binding import OpenedMessage, PeerIdentity
from sealwire.codec import Method, Request
from sealwire.identity import Identity, VerifiedCard, verify_card
from sealwire.model import Message, Part, Role, SendMessageRequest


def _card(name: str = "x") -> VerifiedCard:
    return verify_card(
        build_card(
            Identity.generate(), name=name, description="d\u00e9j\u00e0 \u2603", version="0",
            bindings=[], listen_urls=[], relay_address=None, options={},
        )
    )  # fmt: skip


def _peer(card: VerifiedCard) -> PeerIdentity:
    return PeerIdentity(agent_id=card.agent_id, identity=card.identity, card=card)


# What the code before this change wrote (json.dumps of the whole record each time).
def _kept_before(binding: str, opened: OpenedMessage, **extra: Any) -> bytes:
    assert opened.sender.card is not None
    return json.dumps(
        {
            **extra,
            "binding": binding,
            "card": dict(opened.sender.card.card),
            "frame": base64.b64encode(opened.frame).decode(),
            "id": opened.message_id,
        }
    ).encode()


def _owed_before(binding: str, peer: PeerIdentity, request: Request, task_id: str) -> bytes:
    assert peer.card is not None
    return json.dumps(
        {
            "binding": binding,
            "card": dict(peer.card.card),
            "method": request.method.value,
            "request_id": request.id,
            "task": task_id,
        }
    ).encode()


EXTRAS: list[dict[str, Any]] = [
    {},
    {"group": "g\u00e9", "epoch": 3},
    {"id": "overridden", "x": None},
    {"card": 1},
]


@pytest.mark.parametrize("extra", EXTRAS)
@pytest.mark.parametrize("message_id", ["a/0011", '\u00e9"\\\n', ""])
def test_a_kept_frame_is_the_bytes_written_before(extra: dict[str, Any], message_id: str) -> None:
    card = _card()
    opened = OpenedMessage(sender=_peer(card), frame=b"\x00\xff{}" * 7, message_id=message_id)
    for _ in range(2):  # the card's text remembered the second time
        raw = kept_frame("signal", opened, **extra)
        assert raw == _kept_before("signal", opened, **extra)
    _record, back = read_kept_frame(raw)
    assert back.frame == opened.frame and back.sender.agent_id == card.agent_id


@pytest.mark.parametrize("request_id", [1, "r-\u00e9", 2**40])
def test_an_owed_answer_is_the_bytes_written_before(request_id: int | str) -> None:
    peer = _peer(_card())
    message = Message(message_id="m", role=Role.USER, parts=(Part(text="hi"),))
    request = Request(
        id=request_id, method=Method.SEND_MESSAGE, params=SendMessageRequest(message=message)
    )
    for _ in range(2):
        assert owed_answer("signal", peer, request, "t\u00e9") == _owed_before(
            "signal", peer, request, "t\u00e9"
        )


def test_a_card_is_encoded_once_for_its_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    card, other = _card("one"), _card("two")
    encoded: list[str] = []
    real = json.dumps

    def counting(value: Any, **kwargs: Any) -> str:
        if isinstance(value, dict) and isinstance(value.get("card"), dict):
            value = value["card"]  # the whole record, the card in it
        if isinstance(value, dict) and "signatures" in value:
            encoded.append(value["name"])
        return real(value, **kwargs)

    monkeypatch.setattr(_kept_records.json, "dumps", counting)
    for i in range(5):
        for c in (card, other):
            opened = OpenedMessage(sender=_peer(c), frame=b"f", message_id=f"m{i}")
            kept_frame("signal", opened)
    assert sorted(encoded) == ["one", "two"]


def test_the_remembered_cards_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_kept_records, "MAX_CARDS_KEPT_AS_JSON", 3)
    cards = [_card(str(i)) for i in range(5)]
    for c in cards:
        kept_frame("signal", OpenedMessage(sender=_peer(c), frame=b"f", message_id="m"))
    assert len(_kept_records._card_texts) <= 3
    assert all(entry[0] in cards[-3:] for entry in _kept_records._card_texts.values())
