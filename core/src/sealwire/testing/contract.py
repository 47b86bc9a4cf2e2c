"""Contract suites for the session shapes: :class:`SessionBindingContract` (a
handshake over a stream core carries) and :class:`DatagramBindingContract` (over
datagrams). The mailbox suite is :mod:`sealwire.testing.mailbox_contract`, the
store suite :mod:`sealwire.testing.store_contract`.

Usage in a plugin's tests (with ``sealwire[testing]`` installed, plain
``pytest`` runs them, whatever the project's asyncio mode)::

    class TestNoiseContract(SessionBindingContract):
        binding_class = NoiseBinding

A plugin that cannot meet a test overrides it with
``@pytest.mark.xfail(reason=...)`` and says why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import attrs
import pytest

from sealwire.agent._card import build_card
from sealwire.binding import (
    Binding,
    BindingContext,
    DatagramBinding,
    Negotiation,
    Property,
    SecureChannel,
    SessionBinding,
)
from sealwire.errors import SealwireError
from sealwire.identity import Identity, TrustMode, TrustStore, VerifiedCard, verify_card
from sealwire.relay.port import RelayPort
from sealwire.store import MemoryStore
from sealwire.transport import memory_datagram_pair, memory_pair

__all__ = [
    "DatagramBindingContract",
    "Party",
    "SessionBindingContract",
    "handshake",
    "make_party",
    "negotiation_for",
]


@attrs.frozen
class Party:
    """One agent of a contract test: its identity, signed card and binding instance."""

    identity: Identity
    card: VerifiedCard
    binding: Any  # an instance of the binding class under test


def make_party(
    binding_class: type[Binding],
    *,
    listen: Sequence[str] = ("tcp://127.0.0.1:1",),
    options: Mapping[str, Any] | None = None,
    post_quantum: bool = False,
    relay_for: Callable[[Identity], RelayPort] | None = None,
) -> Party:
    """A fresh agent offering only ``binding_class``, with an in-memory store (TOFU
    trust); given ``relay_for`` (an agent's relay port, as the ``relay_port_for``
    fixture), its binding has that port and its card names the mailbox."""
    identity = Identity.generate(post_quantum=post_quantum)
    relay = None if relay_for is None else relay_for(identity)
    opts = dict(options or {})
    card = verify_card(
        build_card(
            identity,
            name="contract",
            description="contract test agent",
            version="0",
            bindings=[binding_class],
            listen_urls=listen,
            relay_address=None if relay is None else relay.mailbox_address,
            options={binding_class.info.name: opts},
        )
    )
    store = MemoryStore()
    context = BindingContext(
        identity=identity,
        card=card,
        store=store,
        trust=TrustStore(store, TrustMode.TOFU),
        relay=relay,
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
    datagram: bool = False,
    loss: Callable[[bytes], bool] | None = None,
) -> tuple[SecureChannel, SecureChannel]:
    """Run both sides of a handshake over an in-memory stream pair (or datagram pair,
    losing what ``loss`` says).

    As the agent does, a side that fails closes its carrier, so the other side
    fails too instead of waiting forever; the first error is raised.
    """
    a: Any
    b: Any
    if datagram:
        a, b = memory_datagram_pair(loss_for_testing=loss)
    else:
        a, b = memory_pair()
    negotiation = negotiation_for(initiator, responder)
    peer = expected or responder.card
    mine, theirs = initiator_negotiation or negotiation, responder_negotiation or negotiation
    if datagram:
        first = initiator.binding.initiate_datagram(a, peer, mine)
        second = responder.binding.respond_datagram(b, theirs)
    else:
        first = initiator.binding.initiate(a, peer, mine)
        second = responder.binding.respond(b, theirs)
    sides = [asyncio.create_task(first), asyncio.create_task(second)]
    done, pending = await asyncio.wait(
        sides, timeout=HANDSHAKE_SECONDS, return_when=asyncio.FIRST_EXCEPTION
    )
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


HANDSHAKE_SECONDS = 10.0
"""A handshake over memory takes milliseconds; a loaded CI machine, far less than this."""


class SessionBindingContract:
    """Tests every :class:`~sealwire.binding.SessionBinding` must pass (over an
    in-memory stream pair)."""

    pytestmark = pytest.mark.asyncio
    binding_class: ClassVar[type[SessionBinding]]
    options: ClassVar[Mapping[str, Any]] = {}
    datagram: ClassVar[bool] = False
    frame_sizes: ClassVar[tuple[int, ...]] = (0, 1, 1000, 100_000)
    listen: ClassVar[tuple[str, ...]] = ("tcp://127.0.0.1:1",)

    def party(self) -> Party:
        return make_party(self.binding_class, options=self.options, listen=self.listen)

    async def pair(self, alice: Party, bob: Party, **kwargs: Any) -> tuple[Any, Any]:
        return await handshake(alice, bob, datagram=self.datagram, **kwargs)

    async def test_frames_flow_both_ways(self) -> None:
        alice, bob = self.party(), self.party()
        a, b = await self.pair(alice, bob)
        for size in self.frame_sizes:
            await a.send(b"x" * size)
            assert await b.receive() == b"x" * size
            await b.send(b"y" * size)
            assert await a.receive() == b"y" * size
        await a.close()
        await b.close()

    async def test_each_side_learns_the_verified_peer(self) -> None:
        alice, bob = self.party(), self.party()
        a, b = await self.pair(alice, bob)
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
            await self.pair(
                alice, bob, initiator_negotiation=honest, responder_negotiation=downgraded
            )

    async def test_an_impostor_is_refused(self) -> None:
        alice, bob, carol = self.party(), self.party(), self.party()
        with pytest.raises(SealwireError):
            # Alice means to reach Carol, but Bob answers.
            await self.pair(alice, bob, expected=carol.card)

    async def test_receive_after_peer_close_raises(self) -> None:
        alice, bob = self.party(), self.party()
        a, b = await self.pair(alice, bob)
        await a.close()
        with pytest.raises(SealwireError):
            await asyncio.wait_for(b.receive(), timeout=5)


class DatagramBindingContract(SessionBindingContract):
    """Tests every :class:`~sealwire.binding.DatagramBinding` must pass (over an
    in-memory datagram pair): the session tests, with datagram-sized frames, and
    a handshake that survives a lost datagram."""

    binding_class: ClassVar[type[DatagramBinding]]  # type: ignore[assignment]
    datagram = True
    frame_sizes = (0, 1, 1000)
    listen = ("udp://127.0.0.1:1",)

    async def test_receive_after_peer_close_raises(self) -> None:
        """Datagrams have no close: the closing side's own channel refuses instead."""
        alice, bob = self.party(), self.party()
        a, b = await self.pair(alice, bob)
        await a.close()
        with pytest.raises(SealwireError):
            await a.send(b"after close")
        await b.close()

    async def test_the_handshake_survives_a_lost_datagram(self) -> None:
        lost: list[bytes] = []

        def lose_the_first(datagram: bytes) -> bool:
            if lost:
                return False
            lost.append(datagram)
            return True

        alice, bob = self.party(), self.party()
        a, b = await self.pair(alice, bob, loss=lose_the_first)
        assert lost
        await a.send(b"after a loss")
        assert await b.receive() == b"after a loss"
        await a.close()
        await b.close()
