"""Several relay processes on one JetStream prefix (issue 14 item 6.3).

Two real ``python -m sealwire_relay`` processes share a NATS prefix with
``[relay.nats] shared = true``: an agent may use either and finds its mailbox
and its groups; the mailbox depth limit is exact across the processes (the
server keeps it: one slot per pending message, ``discard_new_per_subject``),
and a group log accepts one commit per epoch whichever process it reaches.
Killing one process (kill -9) loses nothing: the agent goes on through the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from relay_process import RelayProcess, nats_server

from sealwire.identity import Identity
from sealwire.relay import EpochConflictError, LimitExceeded, RelayClient

DEPTH = 5
# Senders racing for the DEPTH slots of one mailbox, half through each relay.
SENDERS = 12


@pytest.fixture
async def two_relays(tmp_path: Path) -> AsyncIterator[tuple[RelayProcess, RelayProcess]]:
    with nats_server(tmp_path / "nats") as url:
        relays = []
        for name in ("one", "two"):
            (tmp_path / name).mkdir()
            relays.append(
                RelayProcess(
                    tmp_path / name,
                    backend="nats",
                    backend_options={"servers": [url], "prefix": "SHARED", "shared": True},
                    limits={"max_mailbox_depth": DEPTH},
                )
            )
        try:
            await asyncio.gather(*(asyncio.to_thread(r.start) for r in relays))
            yield relays[0], relays[1]
        finally:
            await asyncio.gather(*(asyncio.to_thread(r.kill) for r in relays))


async def _send(client: RelayClient, to: str, message_id: str) -> bool | str:
    try:
        await client.send(to, message_id, b"sealed " + message_id.encode())
    except LimitExceeded as exc:
        assert exc.limit == "mailbox_depth"
        return "full"
    return True


async def test_two_relay_processes_share_mailboxes_and_groups_exactly(
    two_relays: tuple[RelayProcess, RelayProcess],
) -> None:
    one, two = two_relays
    alice = Identity.generate()
    senders = [Identity.generate() for _ in range(SENDERS)]
    clients = [RelayClient((one if i % 2 else two).url, s) for i, s in enumerate(senders)]
    at_one, at_two = RelayClient(one.url, alice), RelayClient(two.url, alice)
    try:
        # The depth limit holds across both processes: exactly DEPTH admitted.
        results = await asyncio.gather(
            *(_send(c, alice.agent_id, f"m{i}") for i, c in enumerate(clients))
        )
        assert results.count(True) == DEPTH and results.count("full") == SENDERS - DEPTH

        # Alice reads her mailbox through the other process than some senders used,
        # acknowledges two through the first: exactly two more are admitted.
        pending = await at_two.fetch(limit=100)
        assert len(pending) == DEPTH
        await at_one.ack(pending[:2])
        more = await asyncio.gather(
            *(_send(c, alice.agent_id, f"n{i}") for i, c in enumerate(clients[:6]))
        )
        assert more.count(True) == 2

        # One commit per epoch, whichever process each commit reaches.
        group = bytes(range(16))
        await at_one.set_group_members(group, [alice.agent_id, senders[0].agent_id])
        bob_at_two = RelayClient(two.url, senders[0])
        try:
            outcomes = await asyncio.gather(
                at_one.append_commit(group, 0, b"commit a"),
                bob_at_two.append_commit(group, 0, b"commit b"),
                return_exceptions=True,
            )
            assert sum(isinstance(o, int) for o in outcomes) == 1
            assert sum(isinstance(o, EpochConflictError) for o in outcomes) == 1
            assert len(await bob_at_two.fetch_group_log(group)) == 1
        finally:
            await bob_at_two.close()

        # A relay process killed: the agent goes on through the other, nothing lost.
        await asyncio.to_thread(one.kill)
        left = await at_two.fetch(limit=100)
        assert {d.message_id for d in left} == (
            {d.message_id for d in pending[2:]} | {f"n{i}" for i, r in enumerate(more) if r is True}
        )
        await at_two.ack(left)
        assert await at_two.fetch(limit=100) == []
    finally:
        await asyncio.gather(*(c.close() for c in (*clients, at_one, at_two)))
