"""Property: whatever the order of sends, deliveries, moves (a new card, another home
relay) and restarts, neither side ever handed the other's new card: a message that
carries a card is opened naming it, and two round trips after the last move each side
holds the other's current card. (A side that moves back to a card it had, before a
message of the peer written meanwhile arrives, may be named by its previous card for
one message: the peer's word is one card behind until the next round trip.)"""

from __future__ import annotations

import asyncio
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st
from signal_binding_world import OTHER_RELAY, RELAY, Clock, Directory, make_agent, seal

from sealwire.binding import Negotiation
from sealwire_signal import Envelope
from sealwire_signal._binding import SignalBinding

STEPS = st.lists(
    st.tuples(st.sampled_from(["send", "deliver", "move", "restart"]), st.integers(0, 1)),
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(STEPS)
def test_a_moved_peers_card_reaches_the_other_side_by_its_messages(steps) -> None:
    asyncio.run(_conversation(steps))


async def _conversation(steps: list[tuple[str, int]]) -> None:
    here, there, clock = Directory(), Directory(), Clock()
    relays = {RELAY: here, OTHER_RELAY: there}
    agents = [make_agent(here, clock, relays=relays) for _ in range(2)]
    for agent in agents:
        await agent.binding.publish_prekeys()
    await agents[1].binding.open(await seal(agents[0], agents[1], b"first"))
    await agents[0].binding.open(await seal(agents[1], agents[0], b"reply"))
    held = [agents[1].card, agents[0].card]  # the card each holds of the other
    homes = [RELAY, RELAY]
    queues: list[deque[tuple[bytes, dict]]] = [deque(), deque()]  # from agent i

    async def send(i: int) -> bytes:
        sender = agents[i]
        negotiation = Negotiation(
            chosen=SignalBinding.info.uri,
            initiator_offers=tuple(o.uri for o in sender.card.offers),
            responder_offers=tuple(o.uri for o in held[i].offers),
        )
        raw = await sender.binding.seal(held[i], b"frame", negotiation)
        queues[i].append((raw, dict(sender.card.card)))
        return raw

    async def deliver(i: int) -> None:
        raw, card = queues[i].popleft()
        opened = await agents[1 - i].binding.open(raw)
        if Envelope.from_bytes(raw).card:
            assert dict(opened.sender.card.card) == card
        held[1 - i] = opened.sender.card

    for step, i in steps:
        if step == "send":
            await send(i)
        elif step == "deliver" and queues[i]:
            await deliver(i)
        elif step == "move":
            homes[i] = OTHER_RELAY if homes[i] == RELAY else RELAY
            agent = agents[i]
            agents[i] = make_agent(
                here, clock, identity=agent.identity, store=agent.store, home=homes[i],
                relays=relays,
            )  # fmt: skip
        elif step == "restart":
            agents[i] = agents[i].restart()
    for i in (0, 1):
        while queues[i]:
            await deliver(i)
    for _ in range(2):  # two round trips
        for i in (0, 1):
            await send(i)
            await deliver(i)
    for i in (0, 1):
        assert held[1 - i].card == agents[i].card.card
        assert not Envelope.from_bytes(await send(i)).card  # it knows the peer holds it
