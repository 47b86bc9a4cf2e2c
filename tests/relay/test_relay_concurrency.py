"""Atomicity under concurrent requests: keys handed out once, one commit per epoch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from sealwire.relay import EpochConflictError, ForbiddenError, NotFoundError, RelayClient

NewClient = Callable[..., RelayClient]
KEYS = 12
FETCHERS = 30


async def test_one_time_prekeys_handed_out_once(clients: NewClient) -> None:
    alice = clients()
    pools = {"otk": {str(i): bytes([i]) for i in range(KEYS)}, "pq": {"only": b"pq"}}
    await alice.publish_prekeys("signal", b"B", pools)
    fetchers = [clients() for _ in range(FETCHERS)]
    results = await asyncio.gather(*(f.fetch_prekeys(alice.agent_id, "signal") for f in fetchers))
    otk = [r.one_time["otk"] for r in results if r.one_time["otk"] is not None]
    pq = [r.one_time["pq"] for r in results if r.one_time["pq"] is not None]
    assert sorted(otk) == sorted((str(i), bytes([i])) for i in range(KEYS))
    assert pq == [("only", b"pq")]
    assert await alice.count_prekeys("signal") == {"otk": 0, "pq": 0}


async def test_key_packages_handed_out_once(clients: NewClient) -> None:
    alice = clients()
    for i in range(KEYS):
        await alice.publish_key_package(f"kp{i}", f"KP{i}".encode())
    fetchers = [clients() for _ in range(FETCHERS)]

    async def take(client: RelayClient) -> bytes | None:
        try:
            return await client.fetch_key_package(alice.agent_id)
        except NotFoundError:
            return None

    got = [kp for kp in await asyncio.gather(*(take(f) for f in fetchers)) if kp is not None]
    assert sorted(got) == sorted(f"KP{i}".encode() for i in range(KEYS))


async def test_one_commit_per_epoch_under_concurrency(clients: NewClient) -> None:
    members = [clients() for _ in range(8)]
    gid = b"race"
    await members[0].set_group_members(gid, [m.agent_id for m in members])
    await members[0].append_commit(gid, 0, b"genesis")

    async def commit(i: int, client: RelayClient) -> int | None:
        try:
            return await client.append_commit(gid, 1, f"commit by {i}".encode())
        except EpochConflictError as exc:
            assert exc.expected_epoch == 2
            return None

    outcome = await asyncio.gather(*(commit(i, m) for i, m in enumerate(members)))
    winners = [seq for seq in outcome if seq is not None]
    assert len(winners) == 1
    chatter = await asyncio.gather(*(m.post_group_message(gid, 1, b"hi") for m in members))
    assert len(set(chatter)) == len(members)
    log = await members[1].fetch_group_log(gid)
    assert [e.kind for e in log].count("commit") == 2
    assert [e.seq for e in log] == sorted(e.seq for e in log)


async def test_member_lists_of_racing_committers_end_with_the_winner(
    clients: NewClient,
) -> None:
    """Two members commit at once with different lists: the list is the winner's."""
    a, b, c, d = (clients() for _ in range(4))
    gid = b"lists"
    everyone = [m.agent_id for m in (a, b, c, d)]
    await a.set_group_members(gid, everyone)
    await a.append_commit(gid, 0, b"genesis")
    lists = {a.agent_id: everyone[:3], b.agent_id: everyone[:2]}

    async def commit(client: RelayClient) -> bool:
        try:
            await client.append_commit(
                gid, 1, b"commit@1 by " + client.agent_id.encode(), members=lists[client.agent_id]
            )
        except EpochConflictError:
            return False
        return True

    won = await asyncio.gather(commit(a), commit(b))
    assert sorted(won) == [False, True]
    winner = a if won[0] else b
    assert sorted(await winner.group_members(gid)) == sorted(lists[winner.agent_id])
    await winner.append_commit(gid, 2, b"commit@2", members=lists[winner.agent_id])
    with pytest.raises(ForbiddenError):
        await d.fetch_group_log(gid)


async def test_one_supersede_wins_under_concurrency(clients: NewClient) -> None:
    members = [clients() for _ in range(6)]
    everyone = [m.agent_id for m in members]
    gid = b"supersedes"
    await members[0].set_group_members(gid, everyone)
    await members[0].append_commit(gid, 0, b"genesis")
    garbage = await members[0].append_commit(gid, 1, b"garbage")

    async def supersede(client: RelayClient) -> int | None:
        try:
            return await client.append_commit(
                gid, 1, b"valid by " + client.agent_id.encode(), supersedes=garbage
            )
        except EpochConflictError as exc:
            assert exc.commit_seq is not None and exc.commit_seq != garbage
            return None

    outcome = await asyncio.gather(*(supersede(m) for m in members[1:]))
    assert len([seq for seq in outcome if seq is not None]) == 1
    log = await members[1].fetch_group_log(gid)
    assert [e.kind for e in log].count("commit") == 3
