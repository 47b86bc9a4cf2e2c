"""Noise bindings that run the in-session Double Ratchet, for the ratchet tests: made
from a fresh card, connected in memory, and the ratchet each stores for a peer."""

from __future__ import annotations

import asyncio
from typing import Any

from sealwire.agent._card import build_card
from sealwire.binding import BindingContext, Negotiation
from sealwire.identity import Identity, TrustMode, TrustStore, verify_card
from sealwire.store import MemoryStore, StateStore
from sealwire.transport import memory_pair
from sealwire_noise._binding import NoiseBinding
from sealwire_noise._ratchet_channel import STORE_NAMESPACE

ON = {"per_message_forward_secrecy": True}


def make_binding(
    options: dict[str, Any] | None = None,
    *,
    identity: Identity | None = None,
    store: StateStore | None = None,
) -> NoiseBinding:
    identity = identity or Identity.generate()
    opts = dict(ON if options is None else options)
    card = verify_card(
        build_card(
            identity, name="agent", description="noise ratchet test agent", version="0",
            bindings=[NoiseBinding], listen_urls=("tcp://127.0.0.1:1",), relay_address=None,
            options={"noise": opts},
        )
    )  # fmt: skip
    store = store if store is not None else MemoryStore()
    ctx = BindingContext(
        identity=identity, card=card, store=store, trust=TrustStore(store, TrustMode.TOFU),
        options=opts,
    )  # fmt: skip
    return NoiseBinding(ctx)


def negotiation(a: NoiseBinding, b: NoiseBinding) -> Negotiation:
    return Negotiation(
        chosen=NoiseBinding.info.uri,
        initiator_offers=tuple(o.uri for o in a.context.card.offers),
        responder_offers=tuple(o.uri for o in b.context.card.offers),
    )


async def connect_pair(a: NoiseBinding, b: NoiseBinding) -> tuple[Any, Any]:
    s1, s2 = memory_pair()
    neg = negotiation(a, b)
    return await asyncio.gather(a.initiate(s1, b.context.card, neg), b.respond(s2, neg))


async def close_all(*channels: Any) -> None:
    for channel in channels:
        await channel.close()


def stored(binding: NoiseBinding, peer: NoiseBinding) -> bytes | None:
    return binding.context.store.get(STORE_NAMESPACE, peer.context.card.agent_id)
