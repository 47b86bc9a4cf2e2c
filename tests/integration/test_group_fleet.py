"""Items 1-4 of issue 8: fleets of agents in one MLS group over a real relay on loopback.

Each test starts an embedded relay (SQLite) and agents with in-memory stores;
groups are created, grown, shrunk and rekeyed through the public Agent API,
and A2A messages go to the whole group through the relay's ordered log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from ports import free_port
from waiting import until

from sealwire.agent import Agent, TaskContext
from sealwire.identity import Identity
from sealwire.model import TaskState
from sealwire.relay import RelayClient
from sealwire.store import MemoryStore
from sealwire_relay import RelayConfig, running_relay

TIMEOUT = 20


class Fleet:
    """A relay and agents on it; agents are (re)started with their own stores."""

    def __init__(self, url: str, stack: contextlib.AsyncExitStack) -> None:
        self.url = url
        self.stack = stack

    async def agent(
        self,
        name: str,
        identity: Identity | None = None,
        store: MemoryStore | None = None,
        **mls_options: object,
    ) -> Agent:
        identity = identity or Identity.generate()
        relay = RelayClient(self.url, identity)
        self.stack.push_async_callback(relay.close)
        agent = Agent(
            identity, store or MemoryStore(), name=name, relay=relay,
            binding_options={"mls": mls_options},
        )  # fmt: skip

        async def handler(task: TaskContext) -> None:
            text = task.message.parts[0].text or ""
            await task.complete(f"{name}: {text}")

        agent.on_message(handler)
        await agent.start()
        return agent


@pytest.fixture
async def fleet(tmp_path) -> AsyncIterator[Fleet]:
    config = RelayConfig(
        port=free_port(), identity_path=tmp_path / "relay.key", backend="sqlite",
        backend_options={"path": str(tmp_path / "relay.sqlite3")},
    )  # fmt: skip
    async with running_relay(config) as relay, contextlib.AsyncExitStack() as stack:
        yield Fleet(relay.url, stack)


async def test_create_invite_and_send_to_the_group(fleet):
    alice = await fleet.agent("alice")
    bob = await fleet.agent("bob")
    carol = await fleet.agent("carol")
    try:
        group = await alice.create_group()
        await alice.add_to_group(group, [bob.card, carol.card])
        await until(lambda: group in bob.groups() and group in carol.groups(), "the invitations")
        everyone = tuple(sorted([alice.agent_id, bob.agent_id, carol.agent_id]))
        assert alice.groups()[group] == everyone == bob.groups()[group] == carol.groups()[group]
        # A member's garbage in the log is dropped by the others, who carry on.
        await bob.relay.post_group_message(group, 1, b"\x00\x01garbage")
        replies = await alice.send_to_group(group, "status?", timeout=TIMEOUT)
        assert {r.agent_id for r in replies} == {bob.agent_id, carol.agent_id}
        texts = sorted(r.result.status.message.parts[0].text for r in replies)
        assert texts == ["bob: status?", "carol: status?"]
        assert all(r.result.status.state is TaskState.COMPLETED for r in replies)
    finally:
        for agent in (alice, bob, carol):
            await agent.stop()


def _mls(agent: Agent):
    return agent._bindings["mls"]


def _state(agent: Agent, group: bytes):
    """A member's group as stored (a fresh object: what an attacker with the store holds)."""
    from sealwire_mls._storage import GroupStorage

    loaded = GroupStorage(agent.store).load(group, agent.identity.signing_key.private_bytes_raw())
    assert loaded is not None
    return loaded[0].group


def _open_with(group, message: bytes) -> None:
    """Try to open ``message`` with ``group``'s epoch keys, whatever epoch it claims."""
    import attrs

    from sealwire_mls.framing import PrivateMessage, unprotect_private
    from sealwire_mls.welcome import MLSMessage

    body = MLSMessage.from_bytes(message).body
    assert isinstance(body, PrivateMessage)
    epoch = group._epoch
    context = attrs.evolve(epoch.context, epoch=body.epoch)
    unprotect_private(
        group._suite, body, context, epoch.secret_tree, epoch.secrets.sender_data_secret, b""
    )


async def _log(agent: Agent, group: bytes):
    return await agent.relay.fetch_group_log(group, 0, 500)


async def test_removed_members_cannot_read_later_epochs(fleet):
    from sealwire.relay import ForbiddenError
    from sealwire_mls.errors import MLSAuthenticationError

    alice, bob, carol = [await fleet.agent(n) for n in ("alice", "bob", "carol")]
    try:
        group = await alice.create_group()
        await alice.add_to_group(group, [bob.card, carol.card])
        await until(lambda: group in carol.groups() and group in bob.groups(), "the joins")
        before = _state(carol, group)  # Carol's keys just before her removal
        await alice.remove_from_group(group, [carol.agent_id])
        await until(lambda: group not in carol.groups(), "Carol leaving")
        assert alice.groups()[group] == tuple(sorted([alice.agent_id, bob.agent_id]))
        await until(lambda: _mls(bob).epoch(group) == _mls(alice).epoch(group), "Bob")
        # Carol may still read the log up to the next commit (her removal is in it).
        await alice.update_group_keys(group)
        replies = await alice.send_to_group(group, "secret plans", timeout=TIMEOUT)
        assert [r.agent_id for r in replies] == [bob.agent_id]
        with pytest.raises(ForbiddenError):
            await carol.relay.fetch_group_log(group)
        later = [e for e in await _log(alice, group) if e.kind == "application"]
        assert later
        for entry in later:
            with pytest.raises(MLSAuthenticationError):
                _open_with(before, entry.message)
            assert await _mls(carol).process(group, entry.message) is None
        label, ctx = "test", b"ctx"
        assert before.export_secret(b"test", ctx, 32) != _mls(alice).export_secret(
            group, label, ctx, 32
        )
    finally:
        for agent in (alice, bob, carol):
            await agent.stop()


async def test_joiners_cannot_read_earlier_epochs(fleet):
    from sealwire_mls.errors import MLSAuthenticationError

    alice, bob, dave = [await fleet.agent(n) for n in ("alice", "bob", "dave")]
    try:
        group = await alice.create_group()
        await alice.add_to_group(group, [bob.card])
        await until(lambda: group in bob.groups(), "Bob's join")
        assert len(await alice.send_to_group(group, "before Dave", timeout=TIMEOUT)) == 1
        await alice.update_group_keys(group)
        await alice.add_to_group(group, [dave.card])
        await until(lambda: group in dave.groups(), "Dave's join")
        earlier = [e for e in await _log(alice, group) if e.kind == "application"]
        assert earlier
        joined = _state(dave, group)
        for entry in earlier:
            with pytest.raises(MLSAuthenticationError):
                _open_with(joined, entry.message)
            assert await _mls(dave).process(group, entry.message) is None
        replies = await alice.send_to_group(group, "after", timeout=TIMEOUT)
        assert sorted(r.agent_id for r in replies) == sorted([bob.agent_id, dave.agent_id])
        assert all(r.error is None for r in replies)
    finally:
        for agent in (alice, bob, dave):
            await agent.stop()


async def test_concurrent_commits_lose_nothing(fleet):
    from sealwire.relay import EpochConflictError

    alice, bob, carol, dave = [await fleet.agent(n) for n in ("alice", "bob", "carol", "dave")]
    try:
        group = await alice.create_group()
        await alice.add_to_group(group, [bob.card])
        await until(lambda: group in bob.groups(), "Bob's join")
        # Bob's first commit is held until Alice's is in: both are made for the same
        # epoch, so the relay refuses Bob's and he must process Alice's and retry.
        alice_in = asyncio.Event()
        conflicts = []
        real_alice, real_bob = alice.relay.append_commit, bob.relay.append_commit

        async def alice_append(*args, **kwargs):
            try:
                return await real_alice(*args, **kwargs)
            finally:
                alice_in.set()

        async def bob_append(*args, **kwargs):
            await alice_in.wait()
            try:
                return await real_bob(*args, **kwargs)
            except EpochConflictError:
                conflicts.append(args[1])
                raise

        alice.relay.append_commit, bob.relay.append_commit = alice_append, bob_append
        await asyncio.wait_for(
            asyncio.gather(
                alice.add_to_group(group, [carol.card]), bob.add_to_group(group, [dave.card])
            ),
            TIMEOUT,
        )
        assert conflicts, "Bob's commit should have lost its epoch once"
        everyone = tuple(sorted(a.agent_id for a in (alice, bob, carol, dave)))
        await until(lambda: all(group in a.groups() for a in (carol, dave)), "the joins")
        for agent in (alice, bob, carol, dave):
            await until(lambda a=agent: a.groups()[group] == everyone, "the same members")
        auth = {_mls(a).epoch_authenticator(group) for a in (alice, bob, carol, dave)}
        assert len(auth) == 1
    finally:
        for agent in (alice, bob, carol, dave):
            await agent.stop()


async def test_state_survives_restarts_and_offline_members_catch_up(fleet):
    alice = await fleet.agent("alice")
    bob_id, bob_store = Identity.generate(), MemoryStore()
    carol_id, carol_store = Identity.generate(), MemoryStore()
    bob = await fleet.agent("bob", bob_id, bob_store)
    carol = await fleet.agent("carol", carol_id, carol_store)
    carol_card = carol.card
    await carol.stop()  # KeyPackages published; Carol is offline from here on
    try:
        group = await alice.create_group()
        await alice.add_to_group(group, [bob.card])
        await until(lambda: group in bob.groups(), "Bob's join")
        await bob.stop()  # Bob goes offline for many epochs
        for _ in range(5):
            await alice.update_group_keys(group)
        await alice.add_to_group(group, [carol_card])  # Carol's invitation waits in her mailbox
        await alice.update_group_keys(group)
        epoch = _mls(alice).epoch(group)
        bob = await fleet.agent("bob", bob_id, bob_store)
        carol = await fleet.agent("carol", carol_id, carol_store)
        await until(lambda: group in carol.groups(), "Carol's join from her mailbox")
        for agent in (bob, carol):
            await until(lambda a=agent: _mls(a).epoch(group) == epoch, "catching up")
        replies = await alice.send_to_group(group, "welcome back", timeout=TIMEOUT)
        assert sorted(r.result.status.message.parts[0].text for r in replies) == [
            "bob: welcome back",
            "carol: welcome back",
        ]
    finally:
        for agent in (alice, bob, carol):
            await agent.stop()


async def test_a_frame_opened_before_a_crash_is_handled_after_the_restart(fleet):
    alice = await fleet.agent("alice")
    bob_id, bob_store = Identity.generate(), MemoryStore()
    bob = await fleet.agent("bob", bob_id, bob_store)
    try:
        group = await alice.create_group()
        await alice.add_to_group(group, [bob.card])
        await until(lambda: group in bob.groups(), "Bob's join")
        opened = []

        def crash(*args: object) -> None:  # Bob dies after opening, before handling
            opened.append(args)
            raise asyncio.CancelledError

        bob._groups._on_frame = crash
        asking = asyncio.create_task(alice.send_to_group(group, "still there?", timeout=TIMEOUT))
        await until(lambda: opened, "Bob opening the request")
        await bob.stop()
        assert bob_store.keys("group.inbox")  # kept with the ratchet that opened it
        bob = await fleet.agent("bob", bob_id, bob_store)
        replies = await asking
        assert [r.result.status.message.parts[0].text for r in replies] == ["bob: still there?"]
        assert not bob_store.keys("group.inbox")
    finally:
        for agent in (alice, bob):
            await agent.stop()
