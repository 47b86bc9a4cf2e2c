"""Groups of agents over a real relay, on each backend (SQLite and NATS, see conftest.py):
answers to group requests reach the requester alone (issue 14.4), membership ends
only by an MLS removal (15.2), a member cannot rewrite the relay's list (15.3),
and no commit, however bad, wedges the group (15.4)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from async_generators import left_to_the_collector
from relay_process import RelayProcess
from waiting import until

from sealwire.agent import Agent, TaskContext
from sealwire.identity import Identity
from sealwire.relay import (
    ForbiddenError,
    GroupLogEntry,
    LimitExceeded,
    RelayClient,
    RelayUnavailable,
)
from sealwire.store import MemoryStore
from sealwire_relay import RelayConfig, RunningRelay

TIMEOUT = 30


class Agents:
    def __init__(self, url: str, stack: contextlib.AsyncExitStack) -> None:
        self.url, self.stack = url, stack

    async def start(self, name: str, relay: Any = None) -> Agent:
        identity = Identity.generate()
        client = relay or RelayClient(self.url, identity)
        if relay is None:
            self.stack.push_async_callback(client.close)
        agent = Agent(
            identity, MemoryStore(), name=name, relay=client,
        )  # fmt: skip

        async def handler(task: TaskContext) -> None:
            await task.complete(f"{name}: {task.message.parts[0].text}")

        agent.on_message(handler)
        await agent.start()
        self.stack.push_async_callback(agent.stop)
        return agent


@pytest.fixture
async def agents(relay: RunningRelay) -> AsyncIterator[Agents]:
    async with contextlib.AsyncExitStack() as stack:
        yield Agents(relay.url, stack)


def _mls(agent: Agent) -> Any:
    return agent._bindings["mls"]


async def _group(agents: Agents, *names: str) -> tuple[bytes, list[Agent]]:
    members = [await agents.start(n) for n in names]
    group = await members[0].create_group()
    await members[0].add_to_group(group, [m.card for m in members[1:]])
    await until(lambda: all(group in m.groups() for m in members), "the joins")
    return group, members


async def _all_answer(asker: Agent, group: bytes, others: list[Agent], text: str) -> None:
    replies = await asker.send_to_group(group, text, timeout=TIMEOUT)
    assert [r.error for r in replies] == [None] * len(others)
    got = sorted(r.result.status.message.parts[0].text for r in replies)
    assert got == sorted(f"{m.name}: {text}" for m in others)


async def test_answers_reach_the_requester_alone(agents: Agents) -> None:
    """14.4: the request is the only new entry of the log; each answer goes to the
    requester's mailbox (today every member posted its answer to the log)."""
    group, (alice, bob, carol, dave) = await _group(agents, "alice", "bob", "carol", "dave")
    before = await alice.relay.fetch_group_log(group, 0, 500)
    await _all_answer(alice, group, [bob, carol, dave], "status?")
    await _all_answer(carol, group, [alice, bob, dave], "and you?")
    after = await alice.relay.fetch_group_log(group, before[-1].seq, 500)
    assert [(e.kind, e.sender) for e in after] == [
        ("application", alice.agent_id),
        ("application", carol.agent_id),
    ]


async def test_an_answer_crossing_a_commit_still_opens(agents: Agents) -> None:
    """The answer key is the request epoch's: a commit between request and answer
    (here, made while Bob's handler runs) changes nothing for the answer."""
    group, (alice, bob) = await _group(agents, "alice", "bob")
    release = asyncio.Event()

    async def slow(task: TaskContext) -> None:
        await release.wait()
        await task.complete("bob, later")

    bob.on_message(slow)
    asking = asyncio.create_task(alice.send_to_group(group, "wait", timeout=TIMEOUT))
    await until(lambda: bob.tasks.handler is slow and bob._groups._serving, "Bob serving")
    epoch = _mls(alice).epoch(group)
    await alice.update_group_keys(group)
    await until(lambda: _mls(bob).epoch(group) == epoch + 1, "Bob in the new epoch")
    release.set()
    (reply,) = await asking
    assert reply.error is None and reply.result.status.message.parts[0].text == "bob, later"


async def test_a_member_cannot_lock_the_others_out(agents: Agents) -> None:
    """15.3: a member naming only itself as the group's members is refused."""
    group, (alice, bob, carol) = await _group(agents, "alice", "bob", "carol")
    with pytest.raises(ForbiddenError):
        await bob.relay.set_group_members(group, [bob.agent_id])
    assert sorted(await carol.relay.group_members(group)) == sorted(
        a.agent_id for a in (alice, bob, carol)
    )
    await _all_answer(carol, group, [alice, bob], "still here")


async def test_no_commit_wedges_the_group(agents: Agents) -> None:
    """15.4: a commit signed by a removed member, garbage, and a replayed old commit,
    each accepted by the relay as the next epoch's commit: every member skips it, the
    next valid commit (an add, an update, a removal) supersedes it, and all go on."""
    group, members = await _group(agents, "alice", "bob", "carol", "mallory")
    alice, bob, carol, mallory = members
    dave, erin = await agents.start("dave"), await agents.start("erin")
    old_commit = [e for e in await alice.relay.fetch_group_log(group, 0, 100)][-1].message
    # Carol signs a commit, then is removed: she may still append (the relay lets the
    # members of the epoch before the latest commit read and commit).
    stale_state = _mls(carol).registry.roster(group).group
    signed_by_carol, _ = stale_state.commit(os.urandom)
    stale_state.discard_pending_commit()
    await alice.remove_from_group(group, [carol.agent_id])
    await until(lambda: group not in carol.groups(), "Carol's removal")
    everyone = [alice, bob, mallory]

    async def bad_commit(author: Agent, message: bytes) -> None:
        epoch = _mls(alice).epoch(group)
        await author.relay.append_commit(
            group, epoch, message, members=[author.agent_id]
        )  # and a list that locks everyone else out

    async def settled(expected: list[Agent]) -> None:
        epoch = max(_mls(m).epoch(group) for m in expected)  # the committer's
        await until(lambda: all(_mls(m).epoch(group) == epoch for m in expected), "one epoch")

    await bad_commit(carol, signed_by_carol)
    await alice.add_to_group(group, [dave.card])  # a valid add supersedes it
    await until(lambda: group in dave.groups(), "Dave's join")
    everyone.append(dave)
    await settled(everyone)
    await bad_commit(mallory, b"\x00\x01\x00\x02 garbage")
    await bob.update_group_keys(group)  # a valid update
    await settled(everyone)
    await bad_commit(mallory, old_commit)
    await alice.remove_from_group(group, [mallory.agent_id])  # a valid removal
    everyone.remove(mallory)
    await settled(everyone)
    await alice.add_to_group(group, [erin.card])  # and the next epoch as usual
    await until(lambda: group in erin.groups(), "Erin's join")
    everyone.append(erin)
    await settled(everyone)
    auth = {_mls(m).epoch_authenticator(group) for m in everyone}
    assert len(auth) == 1
    for asker in (alice, dave):
        await _all_answer(asker, group, [m for m in everyone if m is not asker], "go on")
    assert sorted(await alice.relay.group_members(group)) == sorted(m.agent_id for m in everyone)


class Faulty:
    """A relay port whose group log subscriptions (``faults``) and card lookups
    (``card_faults``) first fail as told, then work; ``card_lookups`` lists the agent
    ids of every card lookup asked for."""

    def __init__(
        self,
        real: RelayClient,
        faults: list[Exception],
        card_faults: list[Exception] | None = None,
    ) -> None:
        self._real, self.faults = real, faults
        self.card_faults = [] if card_faults is None else card_faults
        self.card_lookups: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def fetch_cards(self, agent_ids: list[str]) -> dict[str, Any]:
        self.card_lookups += agent_ids
        if self.card_faults:
            raise self.card_faults.pop(0)
        return await self._real.fetch_cards(agent_ids)

    def subscribe_group(
        self, group_id: bytes, after: int = 0
    ) -> AsyncGenerator[GroupLogEntry, None]:
        if self.faults:
            return self._fail(self.faults.pop(0))
        return self._real.subscribe_group(group_id, after)

    async def _fail(self, exc: Exception) -> AsyncGenerator[GroupLogEntry, None]:
        raise exc
        yield  # an async generator


async def test_only_an_authenticated_removal_ends_membership(agents: Agents) -> None:
    """15.2: a rate limit, a refusal and an unreachable relay while following the log
    are retried (the reader supervised, failures counted); the agent stays in the
    group, and leaves it only when a commit removes it."""
    alice = await agents.start("alice")
    group = await alice.create_group()
    bob_identity = Identity.generate()
    real = RelayClient(agents.url, bob_identity)
    agents.stack.push_async_callback(real.close)
    faults: list[Exception] = []
    port = Faulty(real, faults)
    bob = Agent(bob_identity, MemoryStore(), name="bob", relay=port)

    async def handler(task: TaskContext) -> None:
        await task.complete("bob: here")

    bob.on_message(handler)
    await bob.start()
    agents.stack.push_async_callback(bob.stop)
    with left_to_the_collector() as dropped:  # from before the first subscription
        faults += [
            LimitExceeded("rate", "slow down", retry_after=0.3),
            ForbiddenError("not a member of this group"),
            RelayUnavailable("relay down"),
        ]
        await alice.add_to_group(group, [bob.card])
        await until(lambda: not faults and group in bob.groups(), "the faults, then the join")
        await until(lambda: bob._groups.reader_failures.get(group) == 3, "three failures counted")
        assert group in bob.groups()
        (reply,) = await alice.send_to_group(group, "there?", timeout=TIMEOUT)
        assert reply.error is None
        await alice.remove_from_group(group, [bob.agent_id])
        await until(lambda: group not in bob.groups(), "Bob leaving on his removal")
    assert "follow" not in dropped  # the log's WebSocket closed by the reader as it left


async def test_a_card_not_fetched_yet_delays_a_message_and_loses_none(agents: Agents) -> None:
    """A joiner looks up no card at its join, only the card of a member whose message
    comes. While that lookup fails (the relay down, limiting), the log entry is read
    again later from the stored position; it is not skipped, and the request it
    carries is answered."""
    alice, carol = await agents.start("alice"), await agents.start("carol")
    group = await alice.create_group()
    bob_identity = Identity.generate()
    real = RelayClient(agents.url, bob_identity)
    agents.stack.push_async_callback(real.close)
    card_faults: list[Exception] = []
    port = Faulty(real, [], card_faults)
    bob = Agent(bob_identity, MemoryStore(), name="bob", relay=port)

    async def handler(task: TaskContext) -> None:
        await task.complete(f"bob: {task.message.parts[0].text}")

    bob.on_message(handler)
    await bob.start()
    agents.stack.push_async_callback(bob.stop)
    await alice.add_to_group(group, [bob.card, carol.card])
    await until(lambda: group in bob.groups() and group in carol.groups(), "the joins")
    assert port.card_lookups == []
    card_faults += [RelayUnavailable("relay down"), LimitExceeded("rate", "slow down")]
    await _all_answer(alice, group, [bob, carol], "there?")
    assert not card_faults and port.card_lookups == [alice.agent_id] * 3
    assert bob._groups.reader_failures.get(group) == 2
    await _all_answer(alice, group, [bob, carol], "again")
    assert port.card_lookups == [alice.agent_id] * 3  # known now; Carol's never asked for


async def test_a_relay_killed_and_restarted_ends_no_membership(
    make_config: Callable[..., RelayConfig], tmp_path: Path
) -> None:
    """15.2 with a process fault: the relay is killed (SIGKILL) under a group and
    comes back; the members stay members and the group carries on."""
    config = make_config("killed")
    proc = RelayProcess.for_config(config, tmp_path)
    await asyncio.to_thread(proc.start)
    try:
        async with contextlib.AsyncExitStack() as stack:
            agents = Agents(config.url, stack)
            group, (alice, bob, carol) = await _group(agents, "alice", "bob", "carol")
            await _all_answer(alice, group, [bob, carol], "before")
            for agent in (alice, bob, carol):  # answers acknowledged: the mailbox router
                await agent.sync_groups(TIMEOUT)  # (not this test's) dies on a failed ack
            proc.kill()
            with pytest.raises(RelayUnavailable):
                await bob.relay.fetch_group_log(group)
            await asyncio.to_thread(proc.start)
            assert all(group in a.groups() for a in (alice, bob, carol))
            await bob.update_group_keys(group)
            epoch = _mls(bob).epoch(group)
            await until(lambda: _mls(carol).epoch(group) == epoch, "Carol following")
            await _all_answer(carol, group, [alice, bob], "after")
    finally:
        proc.kill()
