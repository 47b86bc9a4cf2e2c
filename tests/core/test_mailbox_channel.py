"""Which card (and so which home relay) a mailbox channel writes to when a peer moves."""

from __future__ import annotations

from typing import Any

from sealwire.agent._card import build_card
from sealwire.agent._mailbox_channel import MailboxChannel
from sealwire.binding import Negotiation
from sealwire.identity import Identity, VerifiedCard, verify_card

NEGOTIATION = Negotiation(
    chosen="urn:sealwire:binding:signal:1", initiator_offers=(), responder_offers=()
)


class _Relay:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, address: str, message_id: str, payload: bytes) -> None:
        self.sent.append(address)


class _Binding:
    class info:
        name = "signal"

    async def seal(self, peer: VerifiedCard, frame: bytes, negotiation: Negotiation) -> bytes:
        return frame


def _card(identity: Identity, relay: str) -> VerifiedCard:
    """A card of ``identity``; cards naming different relays differ (as mailbox ones do)."""
    made = build_card(
        identity, name="bob", description=f"homed at {relay}", version="0", bindings=[],
        listen_urls=(), options={}, relay_address=None,
    )  # fmt: skip
    return verify_card(made)


async def test_a_channel_follows_a_new_card_but_not_a_stale_copy_unless_the_peer_says() -> None:
    bob = Identity.generate()
    at_b, at_c = _card(bob, "https://b.test"), _card(bob, "https://c.test")
    relay = _Relay()
    channel = MailboxChannel(
        relay, _Binding(), at_b, NEGOTIATION, "https://b.test/bob", on_close=lambda c: None
    )  # type: ignore[arg-type]

    async def sent_to(card: VerifiedCard, address: str, **how: Any) -> str:
        channel.follow(card, NEGOTIATION, address, **how)
        await channel.send(b"frame")
        return relay.sent[-1]

    assert await sent_to(at_c, "https://c.test/bob") == "https://c.test/bob"  # a new card
    assert await sent_to(at_b, "https://b.test/bob") == "https://c.test/bob"  # a stale copy
    reordered = verify_card(dict(reversed(list(at_b.card.items()))))  # the same card, reserialized
    assert await sent_to(reordered, "https://b.test/bob") == "https://c.test/bob"
    told = await sent_to(at_b, "https://b.test/bob", from_peer=True)  # he moved back
    assert told == "https://b.test/bob"
