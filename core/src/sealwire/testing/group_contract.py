"""The group binding contract suite, public for group plugin authors.

Usage in a plugin's tests (``sealwire[testing]`` and ``sealwire-relay``
installed: the relay's pytest plugin gives the ``relay_port_for`` fixture)::

    class TestMlsContract(GroupBindingContract):
        binding_class = MlsBinding

The suite drives the binding as the agent's group router does: invitations
arrive in the member's mailbox (``wrap(binding name, invite)``), the group's
log is read from the relay (``fetch_group_log``) and each entry processed in
order. What it holds a binding to: members added by a commit join from their
invitation and agree on members, epoch and exported secrets; a posted frame
opens at every other member, naming its sender; a tampered log entry is refused
with a :class:`~sealwire.errors.SealwireError` and changes nothing; what
``keep`` writes commits with the new state or not at all; a removed member
learns it and reads nothing after; the state survives a new binding instance
on the same store (a restart).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import pytest

from sealwire.binding import GroupBinding, GroupEvent, GroupMembershipChanged, GroupMessage
from sealwire.errors import SealwireError
from sealwire.identity import Identity
from sealwire.relay import unwrap
from sealwire.relay.port import RelayPort
from sealwire.store import StoreTransaction
from sealwire.testing.contract import Party, make_party

__all__ = ["GroupBindingContract"]

PortFor = Callable[[Identity], RelayPort]
KEPT = "contract-kept"
GROUP_ID = b"contract-group"


class _Refused(Exception):
    """Raised by a ``keep`` that refuses (nothing may commit)."""


@attrs.define
class Member:
    """A party of the suite, with its relay port and how far it has read the log."""

    party: Party
    read: int = 0

    @property
    def binding(self) -> Any:
        return self.party.binding

    @property
    def port(self) -> RelayPort:
        port: RelayPort = self.party.binding.context.relay
        return port

    @property
    def agent_id(self) -> str:
        return self.party.card.agent_id


class GroupBindingContract:
    """Subclass and set ``binding_class`` (and ``options``); needs ``relay_port_for``."""

    pytestmark = pytest.mark.asyncio
    binding_class: ClassVar[type[GroupBinding]]
    options: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def members(self, relay_port_for: PortFor) -> Callable[[], Any]:
        async def new_member() -> Member:
            party = make_party(
                self.binding_class, relay_for=relay_port_for, options=self.options, listen=()
            )
            await party.binding.publish_key_packages()
            return Member(party)

        return new_member

    # -- driving the binding as the agent's router does ---------------------------------

    async def accept_invitations(self, member: Member) -> list[GroupMembershipChanged]:
        joined = []
        deliveries = await member.port.fetch()
        for delivery in deliveries:
            name, invite = unwrap(delivery.envelope)
            if name == self.binding_class.info.name:
                event, after = await member.binding.join(invite)
                member.read = after
                joined.append(event)
        await member.port.ack(deliveries)
        return joined

    async def catch_up(self, member: Member, *, keep: Any = None) -> list[GroupEvent]:
        events = []
        for entry in await member.port.fetch_group_log(GROUP_ID, member.read):
            event = await member.binding.process(GROUP_ID, entry.message, keep=keep)
            member.read = entry.seq
            if event is not None:
                events.append(event)
        return events

    async def group_of(self, members: Any, size: int) -> list[Member]:
        """A group created by the first of ``size`` new members, the others added and joined."""
        group = [await members() for _ in range(size)]
        await group[0].binding.create_group(GROUP_ID)
        await group[0].binding.add_members(GROUP_ID, [m.party.card for m in group[1:]])
        await self.catch_up(group[0])
        for member in group[1:]:
            (joined,) = await self.accept_invitations(member)
            assert member.agent_id in joined.members
        return group

    # -- the contract ---------------------------------------------------------------------

    async def test_members_join_and_agree(self, members: Any) -> None:
        alice, bob, carol = await self.group_of(members, 3)
        expected = {alice.agent_id, bob.agent_id, carol.agent_id}
        for member in (alice, bob, carol):
            assert set(member.binding.members(GROUP_ID)) == expected
        epochs = {m.binding.epoch(GROUP_ID) for m in (alice, bob, carol)}
        assert len(epochs) == 1
        secrets = {m.binding.export_secret(GROUP_ID, "contract", b"ctx", 32) for m in (alice, bob)}
        assert len(secrets) == 1

    async def test_a_posted_frame_opens_at_every_other_member(self, members: Any) -> None:
        alice, bob, carol = await self.group_of(members, 3)
        await bob.binding.post(GROUP_ID, b"from bob")
        for member in (alice, carol):
            messages = [e for e in await self.catch_up(member) if isinstance(e, GroupMessage)]
            assert [(m.message.frame, m.message.sender.agent_id) for m in messages] == [
                (b"from bob", bob.agent_id)
            ]

    async def test_a_tampered_entry_is_refused_and_changes_nothing(self, members: Any) -> None:
        alice, bob = await self.group_of(members, 2)
        await alice.binding.post(GROUP_ID, b"genuine")
        (entry,) = await bob.port.fetch_group_log(GROUP_ID, bob.read)
        epoch = bob.binding.epoch(GROUP_ID)
        for position in (len(entry.message) // 2, len(entry.message) - 1):
            tampered = bytearray(entry.message)
            tampered[position] ^= 0x01
            with pytest.raises(SealwireError):
                await bob.binding.process(GROUP_ID, bytes(tampered))
        assert bob.binding.epoch(GROUP_ID) == epoch
        event = await bob.binding.process(GROUP_ID, entry.message)
        assert isinstance(event, GroupMessage) and event.message.frame == b"genuine"

    async def test_keep_commits_with_the_state_or_nothing_commits(self, members: Any) -> None:
        alice, bob = await self.group_of(members, 2)
        await alice.binding.post(GROUP_ID, b"kept")
        (entry,) = await bob.port.fetch_group_log(GROUP_ID, bob.read)
        store = bob.party.binding.context.store

        def refuse(tx: StoreTransaction, event: GroupEvent | None) -> None:
            tx.put(KEPT, "refused", b"x")
            raise _Refused

        with pytest.raises(_Refused):
            await bob.binding.process(GROUP_ID, entry.message, keep=refuse)
        assert store.get(KEPT, "refused") is None

        def keep(tx: StoreTransaction, event: GroupEvent | None) -> None:
            assert isinstance(event, GroupMessage)
            tx.put(KEPT, "kept", event.message.frame)

        event = await bob.binding.process(GROUP_ID, entry.message, keep=keep)
        assert isinstance(event, GroupMessage) and store.get(KEPT, "kept") == b"kept"

    async def test_a_removed_member_learns_it_and_reads_nothing_after(self, members: Any) -> None:
        alice, bob, carol = await self.group_of(members, 3)
        await alice.binding.remove_members(GROUP_ID, [carol.agent_id])
        await alice.binding.post(GROUP_ID, b"without carol")
        changes = [e for e in await self.catch_up(bob) if isinstance(e, GroupMembershipChanged)]
        assert changes and carol.agent_id in changes[-1].removed
        assert carol.agent_id not in bob.binding.members(GROUP_ID)
        seen: list[bytes] = []
        for entry in await carol.port.fetch_group_log(GROUP_ID, carol.read):
            try:
                event = await carol.binding.process(GROUP_ID, entry.message)
            except SealwireError:
                continue
            if isinstance(event, GroupMessage):
                seen.append(event.message.frame)
        assert b"without carol" not in seen

    async def test_the_state_survives_a_restart(self, members: Any) -> None:
        alice, bob = await self.group_of(members, 2)
        await alice.binding.update(GROUP_ID)
        await alice.binding.post(GROUP_ID, b"after the update")
        restarted = attrs.evolve(
            bob, party=attrs.evolve(bob.party, binding=self.binding_class(bob.binding.context))
        )
        frames = [
            e.message.frame for e in await self.catch_up(restarted) if isinstance(e, GroupMessage)
        ]
        assert frames == [b"after the update"]
        assert restarted.binding.epoch(GROUP_ID) == alice.binding.epoch(GROUP_ID)
