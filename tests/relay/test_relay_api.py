"""Every API path of the relay, against both backends (see conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import websockets

from sealwire.identity import Identity
from sealwire.relay import (
    Delivery,
    EpochConflictError,
    ForbiddenError,
    NotFoundError,
    RelayClient,
    mailbox_address,
)
from sealwire_relay import RelayConfig, RunningRelay, running_relay

NewClient = Callable[..., RelayClient]


async def test_prekeys_publish_fetch_count(clients: NewClient) -> None:
    alice, bob = clients(), clients()
    await alice.publish_prekeys(
        "signal", b"B1", {"otk": {"1": b"k1", "2": b"k2"}, "pq": {"9": b"q"}}
    )
    assert await alice.count_prekeys("signal") == {"otk": 2, "pq": 1}
    first = await bob.fetch_prekeys(alice.agent_id, "signal")
    assert first.bundle == b"B1"
    assert first.one_time == {"otk": ("1", b"k1"), "pq": ("9", b"q")}
    second = await bob.fetch_prekeys(alice.agent_id, "signal")
    assert second.one_time == {"otk": ("2", b"k2"), "pq": None}
    third = await bob.fetch_prekeys(alice.agent_id, "signal")
    assert third.one_time == {"otk": None, "pq": None}
    assert await alice.count_prekeys("signal") == {"otk": 0, "pq": 0}


async def test_prekeys_publish_replaces_bundle_and_adds_keys(clients: NewClient) -> None:
    alice, bob = clients(), clients()
    await alice.publish_prekeys("signal", b"old", {"otk": {"1": b"k1"}})
    await alice.publish_prekeys("signal", b"new", {"otk": {"1": b"other", "2": b"k2"}})
    assert await alice.count_prekeys("signal") == {"otk": 2}
    got = await bob.fetch_prekeys(alice.agent_id, "signal")
    assert got.bundle == b"new"
    assert got.one_time["otk"] == ("1", b"k1")  # an existing key id is kept as it was


async def test_prekeys_unknown_agent_or_binding(clients: NewClient) -> None:
    alice, bob = clients(), clients()
    with pytest.raises(NotFoundError):
        await bob.fetch_prekeys(alice.agent_id, "signal")
    await alice.publish_prekeys("signal", b"B", {})
    with pytest.raises(NotFoundError):
        await bob.fetch_prekeys(alice.agent_id, "other")
    assert await alice.count_prekeys("other") == {}


async def test_key_packages_are_one_use(clients: NewClient) -> None:
    alice, bob = clients(), clients()
    assert await alice.count_key_packages() == 0
    await alice.publish_key_package("a", b"KP-a")
    await alice.publish_key_package("b", b"KP-b")
    await alice.publish_key_package("a", b"KP-a")  # same id again: stored once
    assert await alice.count_key_packages() == 2
    assert await bob.fetch_key_package(alice.agent_id) == b"KP-a"
    assert await bob.fetch_key_package(alice.agent_id) == b"KP-b"
    with pytest.raises(NotFoundError):
        await bob.fetch_key_package(alice.agent_id)
    assert await alice.count_key_packages() == 0


async def test_mailbox_send_fetch_ack(clients: NewClient, relay: RunningRelay) -> None:
    alice, bob = clients(), clients()
    await bob.send(alice.mailbox_address, "m1", b"one")
    await bob.send(alice.agent_id, "m2", b"two")
    assert alice.mailbox_address == mailbox_address(relay.url, alice.agent_id)
    got = await alice.fetch()
    assert [(d.message_id, d.sender, d.envelope) for d in got] == [
        ("m1", bob.agent_id, b"one"),
        ("m2", bob.agent_id, b"two"),
    ]
    assert await alice.fetch() == got  # at-least-once: again until acknowledged
    assert await alice.fetch(limit=1) == got[:1]
    await alice.ack(got[:1])
    assert [d.message_id for d in await alice.fetch()] == ["m2"]
    unknown = Delivery(message_id="unknown", sender=bob.agent_id, envelope=b"", received_at=0.0)
    await alice.ack([got[1], unknown])
    assert await alice.fetch() == []
    assert await bob.fetch() == []


async def test_mailbox_idempotent_by_message_id(clients: NewClient) -> None:
    alice, bob, carol = clients(), clients(), clients()
    for _ in range(3):
        await bob.send(alice.agent_id, "same", b"x")
    await carol.send(alice.agent_id, "same", b"from carol")  # another sender: another message
    got = await alice.fetch()
    assert sorted((d.sender, d.envelope) for d in got) == sorted(
        [(bob.agent_id, b"x"), (carol.agent_id, b"from carol")]
    )
    from_bob = [d for d in got if d.sender == bob.agent_id]
    await alice.ack(from_bob)  # by sender and id: Carol's "same" stays
    assert [(d.sender, d.envelope) for d in await alice.fetch()] == [
        (carol.agent_id, b"from carol")
    ]
    await alice.ack(got)
    await bob.send(alice.agent_id, "same", b"x")  # a late retry after the ack
    assert await alice.fetch() == []


async def test_subscribe_pushes_and_redelivers_unacked(clients: NewClient) -> None:
    alice, bob = clients(), clients()
    await bob.send(alice.agent_id, "early", b"0")
    stream = alice.subscribe()
    first = await asyncio.wait_for(anext(stream), 5)
    assert first.message_id == "early"
    await bob.send(alice.agent_id, "live", b"1")
    second = await asyncio.wait_for(anext(stream), 5)
    assert (second.message_id, second.envelope) == ("live", b"1")
    await alice.ack([first])
    await stream.aclose()
    again = alice.subscribe()  # reconnect: the unacknowledged one comes again
    redelivered = await asyncio.wait_for(anext(again), 5)
    assert redelivered.message_id == "live"
    await again.aclose()


async def test_group_log_commits_and_fan_out(clients: NewClient) -> None:
    alice, bob, carol = clients(), clients(), clients()
    gid = b"\x00group\xff"
    await alice.set_group_members(gid, [alice.agent_id, bob.agent_id])
    assert sorted(await bob.group_members(gid)) == sorted([alice.agent_id, bob.agent_id])
    s0 = await alice.append_commit(gid, 5, b"commit@5")
    with pytest.raises(EpochConflictError) as info:
        await bob.append_commit(gid, 5, b"late commit@5")
    assert info.value.expected_epoch == 6
    with pytest.raises(EpochConflictError):
        await bob.append_commit(gid, 7, b"skips an epoch")
    bob_stream = bob.subscribe_group(gid)
    alice_stream = alice.subscribe_group(gid, after=s0)
    s1 = await bob.post_group_message(gid, 6, b"hello group")
    s2 = await bob.append_commit(gid, 6, b"commit@6")
    assert s0 < s1 < s2
    seen_bob = [await asyncio.wait_for(anext(bob_stream), 5) for _ in range(3)]
    seen_alice = [await asyncio.wait_for(anext(alice_stream), 5) for _ in range(2)]
    assert [(e.kind, e.epoch, e.message) for e in seen_bob] == [
        ("commit", 5, b"commit@5"),
        ("application", 6, b"hello group"),
        ("commit", 6, b"commit@6"),
    ]
    assert seen_alice == seen_bob[1:]
    assert seen_bob[1].sender == bob.agent_id
    await bob_stream.aclose()
    await alice_stream.aclose()
    log = await carol_log_attempt(carol, gid)
    assert log == "forbidden"
    assert [e.seq for e in await alice.fetch_group_log(gid, after=s0, limit=1)] == [s1]


async def carol_log_attempt(carol: RelayClient, gid: bytes) -> str:
    try:
        await carol.fetch_group_log(gid)
    except ForbiddenError:
        return "forbidden"
    return "allowed"


async def test_group_membership_rules(clients: NewClient) -> None:
    alice, bob, carol = clients(), clients(), clients()
    gid = b"g2"
    with pytest.raises(NotFoundError):
        await alice.fetch_group_log(gid)
    with pytest.raises(ForbiddenError):  # a creator must be a member
        await alice.set_group_members(gid, [bob.agent_id])
    await alice.set_group_members(gid, [alice.agent_id])
    await alice.set_group_members(gid, [alice.agent_id])  # a retry of the creation
    with pytest.raises(ForbiddenError):  # a non-member cannot take the group over
        await carol.set_group_members(gid, [carol.agent_id])
    with pytest.raises(ForbiddenError):
        await carol.append_commit(gid, 0, b"x")
    with pytest.raises(ForbiddenError):
        await carol.post_group_message(gid, 0, b"x")
    await alice.append_commit(gid, 0, b"adds bob", members=[alice.agent_id, bob.agent_id])
    await bob.post_group_message(gid, 1, b"now a member")
    with pytest.raises(ForbiddenError):  # a committer stays in its own list
        await bob.append_commit(gid, 1, b"x", members=[alice.agent_id])
    await bob.append_commit(gid, 1, b"bob removes alice", members=[bob.agent_id])
    # Alice reads on until the next commit: she sees the commit that removes her.
    assert [e.message for e in await alice.fetch_group_log(gid)][-1] == b"bob removes alice"
    await bob.append_commit(gid, 2, b"an update", members=[bob.agent_id])
    with pytest.raises(ForbiddenError):
        await alice.fetch_group_log(gid)
    stream = alice.subscribe_group(gid)
    with pytest.raises(ForbiddenError):
        await asyncio.wait_for(anext(stream), 5)


async def test_a_member_cannot_rewrite_the_list_without_a_commit(clients: NewClient) -> None:
    """Issue 15.3: a member naming only itself used to lock every other member out."""
    alice, bob, carol = clients(), clients(), clients()
    gid = b"lockout"
    everyone = [alice.agent_id, bob.agent_id, carol.agent_id]
    await alice.set_group_members(gid, everyone)
    for epoch in (None, 0, 1):
        with pytest.raises(ForbiddenError):
            await bob._session.call(  # the wire request, with and without an epoch
                "/v1/groups/members",
                {"group_id": "bG9ja291dA", "members": [bob.agent_id], "epoch": epoch},
            )
    await alice.append_commit(gid, 0, b"commit@0")
    with pytest.raises(ForbiddenError):
        await bob.set_group_members(gid, [bob.agent_id])
    assert sorted(await carol.group_members(gid)) == sorted(everyone)
    await carol.post_group_message(gid, 1, b"still in")


async def test_an_invalid_commit_is_superseded_by_a_member_of_its_epoch(
    clients: NewClient,
) -> None:
    """Issue 15.4, the relay's half: a second commit for an epoch needs the first's name."""
    alice, bob, carol, dave = clients(), clients(), clients(), clients()
    gid = b"supersede"
    everyone = [alice.agent_id, bob.agent_id, carol.agent_id]
    await alice.set_group_members(gid, everyone)
    await alice.append_commit(gid, 0, b"genesis")
    # Bob's garbage commit for epoch 1 names a list that locks the others out.
    garbage = await bob.append_commit(gid, 1, b"garbage", members=[bob.agent_id])
    with pytest.raises(EpochConflictError) as info:
        await alice.append_commit(gid, 1, b"alice@1")
    assert info.value.expected_epoch == 2 and info.value.commit_seq == garbage
    assert [e.seq for e in await alice.fetch_group_log(gid)][-1] == garbage  # still reads
    with pytest.raises(EpochConflictError):  # not the latest commit
        await alice.append_commit(gid, 1, b"alice@1", members=everyone, supersedes=garbage - 1)
    with pytest.raises(ForbiddenError):  # not a member of epoch 1
        await dave.append_commit(gid, 1, b"dave@1", supersedes=garbage)
    valid = await alice.append_commit(gid, 1, b"alice@1", members=everyone, supersedes=garbage)
    with pytest.raises(EpochConflictError) as info:  # a second supersede of the same one
        await carol.append_commit(gid, 1, b"carol@1", members=everyone, supersedes=garbage)
    assert info.value.commit_seq == valid
    assert sorted(await carol.group_members(gid)) == sorted(everyone)
    await carol.append_commit(gid, 2, b"carol@2", members=everyone)
    log = [(e.kind, e.epoch, e.message) for e in await carol.fetch_group_log(gid)]
    assert log == [
        ("commit", 0, b"genesis"),
        ("commit", 1, b"garbage"),
        ("commit", 1, b"alice@1"),
        ("commit", 2, b"carol@2"),
    ]


async def test_an_admitted_agent_reads_and_commits_once(clients: NewClient) -> None:
    alice, bob, eve = clients(), clients(), clients()
    gid = b"admit"
    await alice.set_group_members(gid, [alice.agent_id])
    with pytest.raises(ForbiddenError):
        await bob.fetch_group_log(gid)
    await alice.post_group_message(gid, 0, b"note", admit=[bob.agent_id])
    with pytest.raises(ForbiddenError):  # only a member admits
        await eve.post_group_message(gid, 0, b"note", admit=[eve.agent_id])
    assert len(await bob.fetch_group_log(gid)) == 1
    with pytest.raises(ForbiddenError):  # admitted: a commit, not messages
        await bob.post_group_message(gid, 0, b"hello")
    await bob.append_commit(gid, 0, b"external", members=[alice.agent_id, bob.agent_id])
    await bob.post_group_message(gid, 1, b"hello")


async def test_subscriptions_survive_a_relay_restart(
    make_config: Callable[..., RelayConfig],
) -> None:
    config = make_config("restart")
    async with running_relay(config) as relay:
        alice = RelayClient(relay.url, Identity.generate())
        bob = RelayClient(relay.url, Identity.generate())
        await alice.set_group_members(b"g", [alice.agent_id])
        await alice.append_commit(b"g", 0, b"c0")
        inbox, log = alice.subscribe(), alice.subscribe_group(b"g")
        await bob.send(alice.agent_id, "before", b"1")
        assert (await asyncio.wait_for(anext(inbox), 5)).message_id == "before"
        assert (await asyncio.wait_for(anext(log), 5)).message == b"c0"
    # The relay is down; the subscriptions reconnect (and authenticate again) once it is back.
    async with running_relay(config):
        await bob.send(alice.agent_id, "after", b"2")
        await alice.append_commit(b"g", 1, b"c1")
        seen = [(await asyncio.wait_for(anext(inbox), 10)).message_id for _ in range(2)]
        assert seen == ["before", "after"]  # the unacknowledged one again, then the new one
        assert (await asyncio.wait_for(anext(log), 10)).message == b"c1"  # no repeat of c0
        await inbox.aclose()
        await log.aclose()
    await alice.close()
    await bob.close()


async def test_websocket_refusals(clients: NewClient, relay: RunningRelay) -> None:
    alice = clients()
    await alice.fetch()
    stream = alice.subscribe_group(b"nope")
    with pytest.raises(NotFoundError):  # a group that does not exist
        await asyncio.wait_for(anext(stream), 5)
    await stream.aclose()
    async with websockets.connect(relay.url.replace("http", "ws") + "/v1/mailbox/ws") as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 4401


async def test_subscribe_waits_for_a_relay_that_is_not_up_yet(
    make_config: Callable[..., RelayConfig],
) -> None:
    config = make_config("late")
    alice = RelayClient(config.url, Identity.generate())
    inbox = alice.subscribe()
    first = asyncio.ensure_future(anext(inbox))
    await asyncio.sleep(0.3)
    assert not first.done()
    async with running_relay(config):
        async with RelayClient(config.url, Identity.generate()) as bob:
            await bob.send(alice.agent_id, "hi", b"!")
        assert (await asyncio.wait_for(first, 10)).message_id == "hi"
        await inbox.aclose()
    await alice.close()


async def test_member_lists_follow_the_commits(clients: NewClient) -> None:
    """The list changes with each commit that carries one, atomically with it."""
    alice, bob, carol = clients(), clients(), clients()
    gid = b"epochs"
    everyone = [alice.agent_id, bob.agent_id, carol.agent_id]
    await alice.set_group_members(gid, everyone)
    await alice.append_commit(gid, 0, b"commit@0")  # no list: unchanged
    assert sorted(await bob.group_members(gid)) == sorted(everyone)
    await alice.append_commit(gid, 1, b"commit@1 removes carol", members=everyone[:2])
    for stale in (0, 1, 3):
        with pytest.raises(EpochConflictError) as info:
            await alice.append_commit(gid, stale, b"x", members=[alice.agent_id])
        assert info.value.expected_epoch == 2
    assert sorted(await bob.group_members(gid)) == sorted(everyone[:2])
    await bob.append_commit(gid, 2, b"commit@2 re-adds carol", members=everyone)
    assert sorted(await carol.group_members(gid)) == sorted(everyone)
