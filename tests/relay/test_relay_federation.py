"""Federation: three relays on loopback, two restarted while messages wait in between."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest
from ports import free_port

from sealwire.identity import Identity
from sealwire.relay import Delivery, NotFoundError, RelayClient, mailbox_address
from sealwire_relay import (
    PeerRelay,
    RelayConfig,
    RelayLimits,
    load_or_create_identity,
    running_relay,
)
from sealwire_relay._service import dead_letter_name, outbox_name

NAMES = ("a", "b", "c")
BATCH = 20


def _federation(make_config: Callable[..., RelayConfig]) -> dict[str, RelayConfig]:
    """Three relay configurations, each with the other two as peers."""
    ports = {n: free_port() for n in NAMES}
    plain = {n: make_config(n, port=ports[n]) for n in NAMES}
    ids = {n: load_or_create_identity(c.identity_path).agent_id for n, c in plain.items()}
    return {
        n: make_config(
            n,
            port=ports[n],
            peers=tuple(PeerRelay(ids[m], plain[m].url) for m in NAMES if m != n),
        )
        for n in NAMES
    }


async def _drain(client: RelayClient, want: int, timeout: float = 10.0) -> list[Delivery]:
    """Fetch (without acking) until ``want`` messages wait, or fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = await client.fetch(limit=500)
        if len(got) >= want or loop.time() > deadline:
            return got
        await asyncio.sleep(0.05)


# Seen once to hang in a full-suite run (nats backend, not reproduced alone): a
# bounded wait and a rerun, until the cause is found.
@pytest.mark.timeout(60)
@pytest.mark.flaky(reruns=2)
async def test_forwarding_across_three_relays_with_a_restart(
    make_config: Callable[..., RelayConfig],
) -> None:
    configs = _federation(make_config)
    alice_id, bob_id, carol_id = (Identity.generate() for _ in NAMES)
    bob_address = mailbox_address(configs["b"].url, bob_id.agent_id)
    async with contextlib.AsyncExitStack() as stack:
        c = await stack.enter_async_context(running_relay(configs["c"]))
        a_stack, b_stack = contextlib.AsyncExitStack(), contextlib.AsyncExitStack()
        await a_stack.enter_async_context(running_relay(configs["a"]))
        await b_stack.enter_async_context(running_relay(configs["b"]))
        alice = await stack.enter_async_context(RelayClient(configs["a"].url, alice_id))
        carol = await stack.enter_async_context(RelayClient(c.url, carol_id))
        bob = await stack.enter_async_context(RelayClient(configs["b"].url, bob_id))

        await alice.send(bob_address, "hello", b"from alice via a")
        await carol.send(bob_address, "hello", b"from carol via c")
        got = await _drain(bob, 2)
        assert sorted((d.sender, d.message_id, d.envelope) for d in got) == sorted(
            [
                (alice_id.agent_id, "hello", b"from alice via a"),
                (carol_id.agent_id, "hello", b"from carol via c"),
            ]
        )
        await bob.ack(got)

        await b_stack.aclose()  # b goes down; a keeps accepting for it
        for i in range(BATCH):
            await alice.send(bob_address, f"m{i}", f"{i}".encode())
        await alice.send(bob_address, "m0", b"0")  # a retry: no duplicate
        await alice.send(bob_address, "hello", b"from alice via a")  # already acked at b
        await a_stack.aclose()  # a restarts too, its outbox for b still full
        await stack.enter_async_context(running_relay(configs["a"]))
        async with running_relay(configs["b"]):
            got = await _drain(bob, BATCH)
            assert sorted(d.message_id for d in got) == sorted(f"m{i}" for i in range(BATCH))
            assert all(d.sender == alice_id.agent_id for d in got)
            await asyncio.sleep(0.3)  # nothing more arrives
            assert len(await bob.fetch(limit=500)) == BATCH
            # And the other way: b forwards to a for alice.
            await bob.send(mailbox_address(configs["a"].url, alice_id.agent_id), "back", b"!")
            assert [d.message_id for d in await _drain(alice, 1)] == ["back"]


async def test_unknown_home_relay_is_refused(make_config: Callable[..., RelayConfig]) -> None:
    async with (
        running_relay(make_config()) as relay,
        RelayClient(relay.url, Identity.generate()) as alice,
    ):
        elsewhere = mailbox_address("http://127.0.0.1:9", alice.agent_id)
        with pytest.raises(NotFoundError):
            await alice.send(elsewhere, "m", b"x")


async def test_a_message_the_home_relay_refuses_is_kept(
    make_config: Callable[..., RelayConfig],
) -> None:
    """The home relay allows smaller messages: the copy stays in a dead-letter box."""
    ports = {n: free_port() for n in ("a", "b")}
    plain = {n: make_config(n, port=ports[n]) for n in ports}
    ids = {n: load_or_create_identity(c.identity_path).agent_id for n, c in plain.items()}
    a_config = make_config("a", port=ports["a"], peers=(PeerRelay(ids["b"], plain["b"].url),))
    b_config = make_config(
        "b",
        port=ports["b"],
        peers=(PeerRelay(ids["a"], plain["a"].url),),
        limits=RelayLimits(max_message_bytes=100),
    )
    bob_id = Identity.generate()
    async with (
        running_relay(a_config) as a,
        running_relay(b_config) as b,
        RelayClient(a.url, Identity.generate()) as alice,
        RelayClient(b.url, bob_id) as bob,
    ):
        address = mailbox_address(b.url, bob_id.agent_id)
        await alice.send(address, "big", b"x" * 500)
        await alice.send(address, "small", b"x" * 50)
        assert [d.message_id for d in await _drain(bob, 1)] == ["small"]
        kept: list[Delivery] = []
        for _ in range(100):
            kept = await a.service.backend.fetch(dead_letter_name(ids["b"]), 10)
            if kept:
                break
            await asyncio.sleep(0.05)
        assert [d.sender for d in kept] == [alice.agent_id]
        assert await a.service.backend.fetch(outbox_name(ids["b"]), 10) == []
