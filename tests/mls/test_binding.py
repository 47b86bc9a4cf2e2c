"""The MLS group binding over an in-memory relay: the GroupBinding contract, state in the
store across restarts, crash recovery of a commit, and hostile input.

The fake relay keeps the group log and the KeyPackage directory in memory and
refuses a second commit for an epoch, as the real relay does; invitations sent
to a mailbox are kept in a list the tests hand to ``join``.
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sealwire_mls.plugin
from sealwire.agent._card import build_card
from sealwire.binding import (
    BindingContext,
    GroupMembershipChanged,
    GroupMessage,
    Property,
    Shape,
)
from sealwire.errors import AuthenticationError, SealwireError, StateError, TrustError
from sealwire.identity import Identity, TrustMode, TrustStore, verify_card
from sealwire.plugins import load_registry
from sealwire.relay import (
    EpochConflictError,
    GroupLogEntry,
    NotFoundError,
    RelayUnavailable,
    unwrap,
)
from sealwire.store import MemoryStore
from sealwire_mls._binding import KEY_PACKAGE_TARGET, MlsBinding
from sealwire_mls._storage import NS_RATCHETS
from sealwire_mls.welcome import MLSMessage

RELAY = "http://relay.invalid"


class FakeRelay:
    """The relay API the binding uses, in memory, shared by every agent."""

    def __init__(self) -> None:
        self.key_packages: dict[str, list[bytes]] = {}
        self.logs: dict[bytes, list[tuple[str, int, bytes]]] = {}
        self.members: dict[bytes, list[str]] = {}
        self.mail: dict[str, list[bytes]] = {}
        self.cards: dict[str, dict] = {}
        self.fail_after_append = False
        self.failing_sends = 0

    def client(self, agent_id: str) -> FakeClient:
        return FakeClient(self, agent_id)


class FakeClient:
    url = "http://relay.test"

    def __init__(self, relay: FakeRelay, agent_id: str) -> None:
        self.relay, self.agent_id = relay, agent_id

    def signed_in_at(self, url: str) -> FakeClient:
        assert url == self.url, "one relay here"
        return self

    async def count_key_packages(self) -> int:
        return len(self.relay.key_packages.get(self.agent_id, []))

    async def publish_key_package(self, key_package_id: str, data: bytes) -> None:
        self.relay.key_packages.setdefault(self.agent_id, []).append(data)

    async def fetch_key_package(self, agent_id: str) -> bytes:
        available = self.relay.key_packages.get(agent_id)
        if not available:
            raise NotFoundError("no KeyPackage left for this agent")
        return available.pop(0)

    async def set_group_members(self, group_id: bytes, members: list[str]) -> None:
        self.relay.members.setdefault(group_id, list(members))

    async def publish_card(self, card: dict) -> None:
        self.relay.cards[self.agent_id] = card

    async def fetch_cards(self, agent_ids: list[str]) -> dict[str, dict]:
        return {a: self.relay.cards[a] for a in agent_ids if a in self.relay.cards}

    async def append_commit(
        self,
        group_id: bytes,
        epoch: int,
        message: bytes,
        *,
        members: list[str] | None = None,
        supersedes: int | None = None,
    ) -> int:
        """The relay's rule: the next epoch, or the latest commit's epoch naming it."""
        log = self.relay.logs.setdefault(group_id, [])
        commits = [(i + 1, e) for i, (kind, e, _) in enumerate(log) if kind == "commit"]
        latest = commits[-1] if commits else None
        if latest is not None:
            seq, last = latest
            fits = epoch == last + 1 if supersedes is None else (supersedes, epoch) == latest
            if not fits:
                raise EpochConflictError("epoch taken", expected_epoch=last + 1, commit_seq=seq)
        log.append(("commit", epoch, message))
        if members is not None:
            self.relay.members[group_id] = list(members)
        if self.relay.fail_after_append:
            raise RelayUnavailable("the answer was lost")
        return len(log)

    async def post_group_message(
        self, group_id: bytes, epoch: int, message: bytes, *, admit: list[str] = ()
    ) -> int:
        log = self.relay.logs.setdefault(group_id, [])
        log.append(("application", epoch, message))
        return len(log)

    async def fetch_group_log(self, group_id: bytes, after: int = 0, limit: int = 100) -> list:
        log = self.relay.logs.get(group_id, [])
        return [
            GroupLogEntry(seq=i + 1, kind=k, epoch=e, sender="", message=m, received_at=0.0)
            for i, (k, e, m) in enumerate(log)
        ][after : after + limit]

    async def send(self, recipient: str, message_id: str, envelope: bytes) -> None:
        if self.relay.failing_sends:
            self.relay.failing_sends -= 1
            raise RelayUnavailable("a passing failure")
        agent_id = recipient.rsplit("/", 1)[-1]
        self.relay.mail.setdefault(agent_id, []).append(envelope)


class Member:
    """An agent's identity, store and MLS binding (re-creatable: a restart)."""

    def __init__(self, relay: FakeRelay, name: str) -> None:
        self.relay, self.name = relay, name
        self.identity = Identity.generate()
        self.store = MemoryStore()
        card = build_card(
            self.identity, name=name, description=name, version="1", bindings=[MlsBinding],
            listen_urls=(), relay_address=f"{RELAY}/mailbox/{self.identity.agent_id}",
            options={},
        )  # fmt: skip
        self.card = verify_card(card)
        self.binding = self.restart()

    @property
    def agent_id(self) -> str:
        return self.identity.agent_id

    def restart(self) -> MlsBinding:
        self.binding = MlsBinding(
            BindingContext(
                identity=self.identity, card=self.card, store=self.store,
                trust=TrustStore(self.store, TrustMode.TOFU),
                relay=self.relay.client(self.agent_id), clock=lambda: 1_800_000_000,
            )
        )  # fmt: skip
        return self.binding

    async def accept_invites(self) -> list[GroupMembershipChanged]:
        events = []
        for payload in self.relay.mail.pop(self.agent_id, []):
            name, invite = unwrap(payload)
            assert name == "mls"
            event, _seq = await self.binding.join(invite)
            events.append(event)
        return events

    async def catch_up(self, group_id: bytes, start: int = 0) -> list[Any]:
        events = []
        for _kind, _epoch, message in self.relay.logs[group_id][start:]:
            try:
                events.append(await self.binding.process(group_id, message))
            except SealwireError as exc:
                events.append(exc)
        return events


GROUP = b"fleet-1"


@pytest.fixture
def relay() -> FakeRelay:
    return FakeRelay()


async def _trio(relay: FakeRelay) -> tuple[Member, Member, Member]:
    alice, bob, carol = (Member(relay, n) for n in ("alice", "bob", "carol"))
    for m in (alice, bob, carol):
        await m.binding.publish_key_packages()
    await alice.binding.create_group(GROUP)
    await alice.binding.add_members(GROUP, [bob.card, carol.card])
    for m in (bob, carol):
        (event,) = await m.accept_invites()
        assert event.members == tuple(sorted(x.agent_id for x in (alice, bob, carol)))
    return alice, bob, carol


def test_binding_declares_a_group_binding():
    info = MlsBinding.info
    assert info.shape is Shape.GROUP and info.uri == "urn:sealwire:binding:mls:1"
    assert {Property.MUTUAL_AUTH, Property.FORWARD_SECRECY, Property.POST_COMPROMISE_SECURITY,
            Property.GROUP, Property.ASYNC} <= info.properties  # fmt: skip
    assert sealwire_mls.plugin.sealwire_bindings() == [MlsBinding]
    assert [c.name for c in sealwire_mls.plugin.sealwire_cli_commands()] == ["group"]
    registry = load_registry()
    assert registry.bindings["mls"] is MlsBinding  # through the entry point
    assert "group" in registry.cli_commands


async def test_key_packages_are_published_and_replenished(relay):
    _alice, bob, _ = await _trio(relay)
    assert len(relay.key_packages[bob.agent_id]) == KEY_PACKAGE_TARGET  # topped up after join
    await bob.binding.publish_key_packages()
    assert len(relay.key_packages[bob.agent_id]) == KEY_PACKAGE_TARGET


async def test_messages_reach_every_member_with_the_senders_card(relay):
    alice, bob, carol = await _trio(relay)
    sealed = await bob.binding.seal(GROUP, b"frame")
    for reader in (alice, carol):
        event = await reader.binding.process(GROUP, sealed)
        assert isinstance(event, GroupMessage)
        assert event.message.frame == b"frame"
        assert event.message.sender.agent_id == bob.agent_id
        assert event.message.sender.card.identity == bob.card.identity
    exports = {m.binding.export_secret(GROUP, "x", b"", 16) for m in (alice, bob, carol)}
    assert len(exports) == 1


async def test_commits_from_others_are_processed_and_state_survives_restarts(relay):
    alice, bob, carol = await _trio(relay)
    start = len(relay.logs[GROUP])
    await bob.binding.update(GROUP)
    await bob.binding.remove_members(GROUP, [carol.agent_id])
    alice.restart()  # Alice was offline: her state comes from her store
    events = await alice.catch_up(GROUP, start)
    assert [type(e) for e in events] == [GroupMembershipChanged, GroupMembershipChanged]
    assert events[1].removed == (carol.agent_id,)
    assert alice.binding.members(GROUP) == tuple(sorted([alice.agent_id, bob.agent_id]))
    assert alice.binding.epoch_authenticator(GROUP) == bob.binding.epoch_authenticator(GROUP)
    carol_events = await carol.catch_up(GROUP, start)
    assert carol.agent_id in carol_events[1].removed
    with pytest.raises(SealwireError):
        await carol.binding.seal(GROUP, b"still here?")
    bob.restart()
    sealed = await bob.binding.seal(GROUP, b"after restart")
    assert (await alice.binding.process(GROUP, sealed)).message.frame == b"after restart"


async def test_a_losing_commit_is_retried_on_the_new_epoch(relay):
    alice, bob, carol = await _trio(relay)
    dave = Member(relay, "dave")
    await dave.binding.publish_key_packages()
    start = len(relay.logs[GROUP])
    # Alice's commit wins epoch 2 first; Bob's removal then meets a taken epoch.
    await alice.binding.update(GROUP)
    bob_task = asyncio.create_task(bob.binding.remove_members(GROUP, [carol.agent_id]))
    await asyncio.sleep(0.05)
    assert not bob_task.done()  # waiting for the winning commit to be processed
    await bob.catch_up(GROUP, start)  # what the agent's group router does
    await asyncio.wait_for(bob_task, 5)
    await alice.catch_up(GROUP, start + 1)
    assert alice.binding.members(GROUP) == tuple(sorted([alice.agent_id, bob.agent_id]))
    await alice.binding.add_members(GROUP, [dave.card])
    await dave.accept_invites()
    await bob.catch_up(GROUP, start + 2)
    auth = {m.binding.epoch_authenticator(GROUP) for m in (alice, bob, dave)}
    assert len(auth) == 1


async def test_a_commit_accepted_while_we_crashed_is_merged_from_the_log(relay):
    alice, bob, _ = await _trio(relay)
    relay.fail_after_append = True
    with pytest.raises(RelayUnavailable):
        await alice.binding.update(GROUP)
    relay.fail_after_append = False
    epoch = alice.binding.epoch(GROUP)
    alice.restart()  # the staged commit was stored before it was offered
    own = relay.logs[GROUP][-1][2]
    event = await alice.binding.process(GROUP, own)
    assert isinstance(event, GroupMembershipChanged) and event.epoch == epoch + 1
    await bob.binding.process(GROUP, own)
    assert alice.binding.epoch_authenticator(GROUP) == bob.binding.epoch_authenticator(GROUP)
    assert await alice.binding.process(GROUP, own) is None  # an echo of a past epoch


async def test_tampering_gives_an_error_and_changes_nothing(relay):
    alice, bob, _ = await _trio(relay)
    sealed = await alice.binding.seal(GROUP, b"frame")
    before = bob.store.get(NS_RATCHETS, GROUP.hex())
    for i in (len(sealed) - 1, len(sealed) - 20, 40):
        bad = bytearray(sealed)
        bad[i] ^= 0x01
        with pytest.raises((AuthenticationError, SealwireError)):
            await bob.binding.process(GROUP, bytes(bad))
        assert bob.store.get(NS_RATCHETS, GROUP.hex()) == before
    assert (await bob.binding.process(GROUP, sealed)).message.frame == b"frame"


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_tampering_anywhere_never_yields_a_message_nor_changes_state(data):
    """One group for all examples: a refused message must leave it exactly as it was."""
    _alice, bob, sealed = _tamper_group()
    ciphertext_len = len(MLSMessage.from_bytes(sealed).body.ciphertext)
    before = bob.store.get(NS_RATCHETS, GROUP.hex())
    position = data.draw(st.integers(0, len(sealed) - 1))
    bad = bytearray(sealed)
    bad[position] ^= data.draw(st.integers(1, 255))

    async def run() -> None:
        try:
            event = await bob.binding.process(GROUP, bytes(bad))
        except AuthenticationError:
            pass
        except SealwireError:
            assert position < len(sealed) - ciphertext_len  # only a damaged header
        else:
            assert event is None  # a header naming a past epoch: ignored as stale
        assert bob.store.get(NS_RATCHETS, GROUP.hex()) == before

    asyncio.run(run())


@functools.cache
def _tamper_group() -> tuple[Member, Member, bytes]:
    async def build() -> tuple[Member, Member, bytes]:
        alice, bob, _ = await _trio(FakeRelay())
        return alice, bob, await alice.binding.seal(GROUP, b"frame" * 20)

    return asyncio.run(build())


async def test_a_member_whose_card_does_not_match_its_leaf_stays_unverified(relay):
    alice, bob, _ = await _trio(relay)
    mallory = Member(relay, "mallory")
    await mallory.binding.publish_key_packages()
    import sealwire_mls._committing as committing_module

    real = committing_module.encode_cards
    committing_module.encode_cards = lambda cards: real([dict(bob.card.card)])  # a lie
    try:
        await alice.binding.add_members(GROUP, [mallory.card])
    finally:
        committing_module.encode_cards = real
    commit = relay.logs[GROUP][-1][2]
    event = await bob.binding.process(GROUP, commit)
    assert mallory.agent_id in event.added
    await mallory.accept_invites()
    relay.cards[mallory.agent_id] = dict(bob.card.card)  # the directory lies too
    sealed = await mallory.binding.seal(GROUP, b"hi")
    with pytest.raises(TrustError):
        await bob.binding.process(GROUP, sealed)
    relay.cards[mallory.agent_id] = dict(mallory.card.card)  # the true card, published later
    with pytest.raises(TrustError):  # not looked up again so soon
        await bob.binding.process(GROUP, await mallory.binding.seal(GROUP, b"hi"))
    # the retry time has passed: fetched, tied to the leaf
    bob.binding.processor.card_misses.clear()
    assert await bob.binding.process(GROUP, await mallory.binding.seal(GROUP, b"hi"))


async def test_group_ids_and_membership_are_checked(relay):
    alice = Member(relay, "alice")
    with pytest.raises(StateError):
        await alice.binding.create_group(b"")
    await alice.binding.create_group(GROUP)
    with pytest.raises(StateError):
        await alice.binding.create_group(GROUP)
    with pytest.raises(StateError):
        await alice.binding.remove_members(GROUP, [alice.agent_id])
    with pytest.raises(StateError):
        await alice.binding.seal(b"other", b"x")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300), prefix=st.sampled_from([b"", b"\x00\x01\x00\x02"]))
def test_arbitrary_bytes_give_events_or_typed_errors(data, prefix):
    async def run() -> None:
        _alice, bob, _ = await _trio(FakeRelay())
        before = bob.store.get(NS_RATCHETS, GROUP.hex())
        try:
            await bob.binding.process(GROUP, prefix + data)
        except SealwireError:
            assert bob.store.get(NS_RATCHETS, GROUP.hex()) == before
        with pytest.raises(SealwireError):
            await bob.binding.join(data)

    asyncio.run(run())


async def test_invalid_commits_are_skipped_and_superseded(relay):
    """Issue 15.4: garbage, a replayed old commit, a commit signed by a removed member and
    a member's application message, each taken by the relay as the next epoch's commit,
    do not wedge the group."""
    alice, bob, carol = await _trio(relay)
    start = len(relay.logs[GROUP])
    old_commit = relay.logs[GROUP][-1][2]  # the commit that added bob and carol
    # Carol's commit, made (and signed) by her before she is removed, offered later.
    forged, _ = carol.binding.registry.roster(GROUP).group.commit(os.urandom)
    carol.binding.registry.roster(GROUP).group.discard_pending_commit()
    await alice.binding.remove_members(GROUP, [carol.agent_id])
    await bob.catch_up(GROUP, start)
    await carol.catch_up(GROUP, start)
    assert carol.agent_id not in bob.binding.members(GROUP)
    epoch = alice.binding.epoch(GROUP)
    not_a_commit = await alice.binding.seal(GROUP, b"an application message")
    for bad in (b"\x00\x01 garbage", old_commit, forged, not_a_commit):
        before = len(relay.logs[GROUP])
        await FakeClient(relay, "mallory").append_commit(GROUP, epoch, bad)
        task = asyncio.create_task(bob.binding.update(GROUP))
        await asyncio.sleep(0)
        events = await bob.catch_up(GROUP, before)  # the router feeds bob the log
        assert not isinstance(events[0], GroupMembershipChanged)  # not taken as a commit
        await asyncio.wait_for(task, 5)
        assert relay.logs[GROUP][-1][1] == epoch  # bob's commit superseded the bad one
        await bob.catch_up(GROUP, before + 1)  # the echo of his own: merged already
        for member in (alice,):
            events = await member.catch_up(GROUP, before)
            assert isinstance(events[-1], GroupMembershipChanged)
        epoch += 1
        assert alice.binding.epoch(GROUP) == bob.binding.epoch(GROUP) == epoch
    sealed = await bob.binding.seal(GROUP, b"after all that")
    assert (await alice.binding.process(GROUP, sealed)).message.frame == b"after all that"


async def test_an_invitation_survives_a_passing_relay_failure(relay):
    alice, bob = Member(relay, "alice"), Member(relay, "bob")
    await bob.binding.publish_key_packages()
    await alice.binding.create_group(GROUP)
    relay.failing_sends = 2  # the commit is in; the invitation's first two sends fail
    await alice.binding.add_members(GROUP, [bob.card])
    (event,) = await bob.accept_invites()
    assert event.members == tuple(sorted([alice.agent_id, bob.agent_id]))
