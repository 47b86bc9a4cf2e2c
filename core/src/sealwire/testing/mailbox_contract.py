"""The mailbox binding contract suite, public for mailbox plugin authors.

Usage in a plugin's tests (``sealwire[testing]`` and ``sealwire-relay``
installed: the relay's pytest plugin gives the ``relay_port_for`` fixture, a
relay on loopback)::

    class TestSignalContract(MailboxBindingContract):
        binding_class = SignalBinding

What the suite holds a binding to: a sealed frame opens at its recipient only,
naming its sender; a replayed, tampered or misaddressed envelope, or one sealed
under another negotiation, is refused with a :class:`~sealwire.errors.SealwireError`
and changes nothing (the next genuine envelope still opens); what ``keep``
writes commits with the new state or not at all; the state survives a new
binding instance on the same store (a restart).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import pytest

from sealwire.binding import MailboxBinding, Negotiation, OpenedMessage
from sealwire.errors import SealwireError
from sealwire.identity import Identity
from sealwire.relay.port import RelayPort
from sealwire.store import StoreTransaction
from sealwire.testing.contract import Party, make_party, negotiation_for

__all__ = ["MailboxBindingContract"]

PortFor = Callable[[Identity], RelayPort]

KEPT = "contract-kept"
"""The namespace the suite's ``keep`` writes to."""


class _Refused(Exception):
    """Raised by a ``keep`` that refuses (nothing may commit)."""


class MailboxBindingContract:
    """Subclass and set ``binding_class`` (and ``options``); needs ``relay_port_for``."""

    pytestmark = pytest.mark.asyncio
    binding_class: ClassVar[type[MailboxBinding]]
    options: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def parties(self, relay_port_for: PortFor) -> Callable[[], Any]:
        async def new_party() -> Party:
            party = make_party(
                self.binding_class, relay_for=relay_port_for, options=self.options, listen=()
            )
            await party.binding.publish_prekeys()
            return party

        return new_party

    @staticmethod
    async def seal(sender: Party, recipient: Party, frame: bytes, **changes: Any) -> bytes:
        negotiation: Negotiation = attrs.evolve(negotiation_for(sender, recipient), **changes)
        envelope: bytes = await sender.binding.seal(recipient.card, frame, negotiation)
        return envelope

    async def test_frames_open_at_their_recipient_both_ways(self, parties: Any) -> None:
        alice, bob = await parties(), await parties()
        for n in range(3):
            opened = await bob.binding.open(await self.seal(alice, bob, b"to bob %d" % n))
            assert (opened.frame, opened.sender.agent_id) == (b"to bob %d" % n, alice.card.agent_id)
            opened = await alice.binding.open(await self.seal(bob, alice, b"to alice %d" % n))
            assert (opened.frame, opened.sender.agent_id) == (b"to alice %d" % n, bob.card.agent_id)

    async def test_message_ids_are_unique(self, parties: Any) -> None:
        alice, bob = await parties(), await parties()
        ids = set()
        for _ in range(3):
            ids.add((await bob.binding.open(await self.seal(alice, bob, b"m"))).message_id)
        assert len(ids) == 3

    async def test_a_replayed_envelope_is_refused_and_changes_nothing(self, parties: Any) -> None:
        alice, bob = await parties(), await parties()
        first = await self.seal(alice, bob, b"once")
        await bob.binding.open(first)
        with pytest.raises(SealwireError):
            await bob.binding.open(first)
        assert (await bob.binding.open(await self.seal(alice, bob, b"next"))).frame == b"next"

    async def test_a_tampered_envelope_is_refused_and_changes_nothing(self, parties: Any) -> None:
        alice, bob = await parties(), await parties()
        envelope = await self.seal(alice, bob, b"genuine")
        for position in (0, len(envelope) // 2, len(envelope) - 1):
            tampered = bytearray(envelope)
            tampered[position] ^= 0x01
            with pytest.raises(SealwireError):
                await bob.binding.open(bytes(tampered))
        with pytest.raises(SealwireError):
            await bob.binding.open(envelope[: len(envelope) // 2])
        assert (await bob.binding.open(envelope)).frame == b"genuine"

    async def test_an_envelope_for_another_agent_is_refused(self, parties: Any) -> None:
        alice, bob, carol = await parties(), await parties(), await parties()
        envelope = await self.seal(alice, bob, b"for bob")
        with pytest.raises(SealwireError):
            await carol.binding.open(envelope)
        assert (await bob.binding.open(envelope)).frame == b"for bob"

    async def test_another_negotiation_is_refused(self, parties: Any) -> None:
        alice, bob = await parties(), await parties()
        downgraded = await self.seal(alice, bob, b"downgraded", initiator_offers=())
        with pytest.raises(SealwireError):
            await bob.binding.open(downgraded)

    async def test_keep_commits_with_the_state_or_nothing_commits(self, parties: Any) -> None:
        alice, bob = await parties(), await parties()
        envelope = await self.seal(alice, bob, b"kept")

        def refuse(tx: StoreTransaction, opened: OpenedMessage) -> None:
            tx.put(KEPT, "refused", opened.frame)
            raise _Refused

        with pytest.raises(_Refused):
            await bob.binding.open(envelope, keep=refuse)
        assert bob.binding.context.store.get(KEPT, "refused") is None

        def keep(tx: StoreTransaction, opened: OpenedMessage) -> None:
            tx.put(KEPT, "kept", opened.frame)

        opened = await bob.binding.open(envelope, keep=keep)  # nothing was committed before
        assert opened.frame == b"kept"
        assert bob.binding.context.store.get(KEPT, "kept") == b"kept"

    async def test_the_state_survives_a_restart(self, parties: Any) -> None:
        alice, bob = await parties(), await parties()
        await bob.binding.open(await self.seal(alice, bob, b"before"))
        await alice.binding.open(await self.seal(bob, alice, b"answer"))
        restarted = attrs.evolve(bob, binding=self.binding_class(bob.binding.context))
        opened = await restarted.binding.open(await self.seal(alice, restarted, b"after"))
        assert opened.frame == b"after"
        again = await alice.binding.open(await self.seal(restarted, alice, b"and back"))
        assert again.frame == b"and back"
