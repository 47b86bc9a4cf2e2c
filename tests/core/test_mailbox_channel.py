"""Which card (and so which home relay) a mailbox channel writes to when a peer moves,
and what the mailbox router keeps of it across a restart."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from sealwire.agent._card import build_card
from sealwire.agent._mailbox_channel import MailboxChannel
from sealwire.agent._mailbox_channels import CARDS_NAMESPACE, MailboxChannels
from sealwire.binding import Negotiation
from sealwire.identity import Identity, VerifiedCard, verify_card
from sealwire.relay import mailbox_address
from sealwire.store import MemoryStore
from sealwire_signal import SignalBinding

NEGOTIATION = Negotiation(chosen=SignalBinding.info.uri, initiator_offers=(), responder_offers=())


class _Relay:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, address: str, message_id: str, payload: bytes) -> None:
        self.sent.append(address)


class _Binding:
    info = SignalBinding.info

    async def seal(self, peer: VerifiedCard, frame: bytes, negotiation: Negotiation) -> bytes:
        return frame


def _card(identity: Identity, relay: str) -> VerifiedCard:
    """A card of ``identity`` offering the signal mailbox at ``relay``."""
    made = build_card(
        identity, name="bob", description="", version="0", bindings=[SignalBinding],
        listen_urls=(), options={}, relay_address=mailbox_address(relay, identity.agent_id),
    )  # fmt: skip
    return verify_card(made)


def _address(card: VerifiedCard) -> str:
    offer = card.offer("signal")
    assert offer is not None
    return offer.url


async def test_a_channel_follows_a_new_card_but_not_a_stale_copy_unless_the_peer_says() -> None:
    bob = Identity.generate()
    at_b, at_c = _card(bob, "https://b.test"), _card(bob, "https://c.test")
    relay = _Relay()
    channel = MailboxChannel(
        relay, _Binding(), at_b, NEGOTIATION, _address(at_b), on_close=lambda c: None
    )  # type: ignore[arg-type]

    async def sent_to(card: VerifiedCard, **how: Any) -> str:
        channel.follow(card, NEGOTIATION, _address(card), **how)
        await channel.send(b"frame")
        return relay.sent[-1]

    assert await sent_to(at_c) == _address(at_c)  # a new card
    assert await sent_to(at_b) == _address(at_c)  # a stale copy
    reordered = verify_card(dict(reversed(list(at_b.card.items()))))  # the same card, reserialized
    assert await sent_to(reordered) == _address(at_c)
    assert await sent_to(at_b, from_peer=True) == _address(at_b)  # he moved back


def test_a_card_signed_again_is_the_same_card() -> None:
    """ML-DSA-65 signatures differ each time a card is signed: still one card."""
    bob = Identity.generate(post_quantum=True)
    first, again = _card(bob, "https://b.test"), _card(bob, "https://b.test")
    assert first.card != again.card
    channel = MailboxChannel(
        _Relay(), _Binding(), first, NEGOTIATION, _address(first), on_close=lambda c: None
    )  # type: ignore[arg-type]
    assert not channel.follow(again, NEGOTIATION, _address(again)) and not channel.replaced


class _Host:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.card = _card(Identity.generate(), "https://a.test")

    def serve_incoming(self, channel: Any, binding: str) -> None:
        pass


def _channels(store: MemoryStore, relay: _Relay) -> MailboxChannels:
    """The channels of a mailbox router on ``store`` (a new one: as after a restart)."""
    return MailboxChannels(_Host(store), relay, {"signal": _Binding()})  # type: ignore[arg-type, dict-item]


def _decision(card: VerifiedCard) -> Any:
    return SimpleNamespace(binding="signal", negotiation=NEGOTIATION, url=_address(card))


async def test_the_router_knows_a_stale_card_after_a_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The card a channel follows and the ones it replaced are kept in the store: after a
    restart, a call made with a stale copy still goes to the peer's new address. A
    damaged record costs only that knowledge."""
    store, relay, bob = MemoryStore(), _Relay(), Identity.generate()
    at_b, at_c = _card(bob, "https://b.test"), _card(bob, "https://c.test")
    before = _channels(store, relay)
    before.for_call(at_b, _decision(at_b))
    assert not store.keys(CARDS_NAMESPACE)  # nothing kept until a card changes
    before.for_call(at_c, _decision(at_c))
    after = _channels(store, relay)  # a restart: new channels on the same store
    channel = after.for_call(at_b, _decision(at_b))
    await channel.send(b"frame")
    assert channel.card.card == at_c.card and relay.sent == [_address(at_c)]
    (key,) = store.keys(CARDS_NAMESPACE)
    store.put(CARDS_NAMESPACE, key, b'{"card": {"name": "forged"}, "replaced": []}')
    with caplog.at_level(logging.WARNING):
        channel = _channels(store, relay).for_call(at_b, _decision(at_b))
    assert channel.card is at_b and "damaged" in caplog.text


def test_a_card_kept_from_before_a_restart_does_not_send_answers_back() -> None:
    """An answer owed, or a frame kept, from before a restart names the card the peer had
    then: answered where the channel now writes, unless that card is new to it. A live
    message's card is the peer's word: followed even back to a card it replaced."""
    store, bob = MemoryStore(), Identity.generate()
    at_b, at_c = _card(bob, "https://b.test"), _card(bob, "https://c.test")
    before = _channels(store, _Relay())
    before.for_call(at_b, _decision(at_b))
    before.for_call(at_c, _decision(at_c))
    after = _channels(store, _Relay())
    binding: Any = _Binding()
    assert after.for_answer(binding, at_b, live=False).card.card == at_c.card
    assert after.for_answer(binding, at_b).card.card == at_b.card  # he moved back
