"""The session binding contract suite every session plugin subclasses.

Usage in a plugin's tests::

    class TestNoiseContract(SessionBindingContract):
        binding_class = NoiseBinding

A plugin that cannot meet a test overrides it with
``@pytest.mark.xfail(reason=...)`` and says why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs
import pytest

from sealwire.agent._card import build_card
from sealwire.binding import (
    BindingContext,
    Negotiation,
    Property,
    SecureChannel,
    SessionBinding,
)
from sealwire.errors import SealwireError
from sealwire.identity import Identity, TrustMode, TrustStore, VerifiedCard, verify_card
from sealwire.store import MemoryStore
from sealwire.transport import memory_pair

__all__ = ["Party", "SessionBindingContract", "make_party"]


@attrs.frozen
class Party:
    """One agent of a contract test: its identity, signed card and binding instance."""

    identity: Identity
    card: VerifiedCard
    binding: SessionBinding


def make_party(
    binding_class: type[SessionBinding],
    *,
    listen: Sequence[str] = ("tcp://127.0.0.1:1",),
    options: Mapping[str, Any] | None = None,
    post_quantum: bool = False,
) -> Party:
    """A fresh agent offering only ``binding_class``, with an in-memory store (TOFU trust)."""
    identity = Identity.generate(post_quantum=post_quantum)
    opts = dict(options or {})
    card = verify_card(
        build_card(
            identity,
            name="contract",
            description="contract test agent",
            version="0",
            bindings=[binding_class],
            listen_urls=listen,
            relay_address=None,
            options={binding_class.info.name: opts},
        )
    )
    store = MemoryStore()
    context = BindingContext(
        identity=identity,
        card=card,
        store=store,
        trust=TrustStore(store, TrustMode.TOFU),
        options=opts,
    )
    return Party(identity=identity, card=card, binding=binding_class(context))


def negotiation_for(initiator: Party, responder: Party) -> Negotiation:
    return Negotiation(
        chosen=responder.card.offers[0].uri,
        initiator_offers=tuple(o.uri for o in initiator.card.offers),
        responder_offers=tuple(o.uri for o in responder.card.offers),
    )


async def handshake(
    initiator: Party,
    responder: Party,
    *,
    initiator_negotiation: Negotiation | None = None,
    responder_negotiation: Negotiation | None = None,
    expected: VerifiedCard | None = None,
) -> tuple[SecureChannel, SecureChannel]:
    """Run both sides of a handshake over an in-memory stream pair.

    As the agent does, a side that fails closes its stream, so the other side
    fails too instead of waiting forever; the first error is raised.
    """
    a, b = memory_pair()
    negotiation = negotiation_for(initiator, responder)
    sides = [
        asyncio.create_task(
            initiator.binding.initiate(
                a, expected or responder.card, initiator_negotiation or negotiation
            )
        ),
        asyncio.create_task(responder.binding.respond(b, responder_negotiation or negotiation)),
    ]
    done, pending = await asyncio.wait(sides, timeout=10, return_when=asyncio.FIRST_EXCEPTION)
    failed = [t for t in done if t.exception() is not None]
    if failed or pending:
        await a.close()
        await b.close()
        for task in pending:
            task.cancel()
        await asyncio.gather(*sides, return_exceptions=True)
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
        raise TimeoutError("handshake did not finish")
    return sides[0].result(), sides[1].result()


class SessionBindingContract:
    """Tests every SessionBinding must pass (run over an in-memory stream pair)."""

    binding_class: ClassVar[type[SessionBinding]]
    options: ClassVar[Mapping[str, Any]] = {}

    def party(self) -> Party:
        return make_party(self.binding_class, options=self.options)

    async def test_frames_flow_both_ways(self) -> None:
        alice, bob = self.party(), self.party()
        a, b = await handshake(alice, bob)
        for size in (0, 1, 1000, 100_000):
            await a.send(b"x" * size)
            assert await b.receive() == b"x" * size
            await b.send(b"y" * size)
            assert await a.receive() == b"y" * size
        await a.close()
        await b.close()

    async def test_each_side_learns_the_verified_peer(self) -> None:
        alice, bob = self.party(), self.party()
        a, b = await handshake(alice, bob)
        assert a.peer.agent_id == bob.identity.agent_id
        assert b.peer.agent_id == alice.identity.agent_id
        assert self.binding_class.info.properties <= a.properties | b.properties
        assert Property.MUTUAL_AUTH in a.properties & b.properties
        await a.close()
        await b.close()

    async def test_a_different_negotiation_fails_the_handshake(self) -> None:
        alice, bob = self.party(), self.party()
        honest = negotiation_for(alice, bob)
        downgraded = attrs.evolve(honest, initiator_offers=())
        with pytest.raises(SealwireError):
            await handshake(
                alice, bob, initiator_negotiation=honest, responder_negotiation=downgraded
            )

    async def test_an_impostor_is_refused(self) -> None:
        alice, bob, carol = self.party(), self.party(), self.party()
        with pytest.raises(SealwireError):
            # Alice means to reach Carol, but Bob answers.
            await handshake(alice, bob, expected=carol.card)

    async def test_receive_after_peer_close_raises(self) -> None:
        alice, bob = self.party(), self.party()
        a, b = await handshake(alice, bob)
        await a.close()
        with pytest.raises(SealwireError):
            await asyncio.wait_for(b.receive(), timeout=5)
