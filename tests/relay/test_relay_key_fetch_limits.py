"""Prekey and KeyPackage fetches are rate-limited per requester and per target (issue 15.11)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from sealwire.identity import Identity
from sealwire.relay import LimitExceeded, RelayClient
from sealwire_relay import RelayConfig, RelayLimits, RunningRelay, running_relay

POOL = 100
STRANGER_FETCHES = 150


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def start(make_config: Callable[..., RelayConfig], clock: Clock) -> Callable[[RelayLimits], Any]:
    def run(limits: RelayLimits) -> Any:
        return running_relay(make_config(limits=limits), clock=clock)

    return run


@pytest.fixture
async def made() -> AsyncIterator[Callable[[RunningRelay], RelayClient]]:
    clients: list[RelayClient] = []

    def new(relay: RunningRelay) -> RelayClient:
        clients.append(RelayClient(relay.url, Identity.generate()))
        return clients[-1]

    yield new
    for client in clients:
        await client.close()


async def test_one_stranger_cannot_drain_a_pool(
    start: Callable[[RelayLimits], Any], made: Callable[[RunningRelay], RelayClient]
) -> None:
    async with start(RelayLimits()) as relay:
        alice, mallory = made(relay), made(relay)
        keys = {str(i): bytes([i % 256]) * 32 for i in range(POOL)}
        await alice.publish_prekeys("signal", b"B", {"otk": keys})
        refused = 0
        for _ in range(STRANGER_FETCHES):
            try:
                await mallory.fetch_prekeys(alice.agent_id, "signal")
            except LimitExceeded as exc:
                assert exc.limit in ("key_fetch", "key_fetch_target")
                assert exc.retry_after is not None and exc.retry_after > 0
                refused += 1
        defaults = RelayLimits()
        burst = min(defaults.key_fetch_burst_per_requester, defaults.key_fetch_burst_per_target)
        assert burst < POOL
        assert refused == STRANGER_FETCHES - burst
        assert await alice.count_prekeys("signal") == {"otk": POOL - burst}


async def test_many_strangers_are_held_by_the_target_limit(
    start: Callable[[RelayLimits], Any],
    made: Callable[[RunningRelay], RelayClient],
    clock: Clock,
) -> None:
    limits = RelayLimits(
        key_fetch_burst_per_requester=2,
        key_fetch_rate_per_requester=1.0,
        key_fetch_burst_per_target=5,
        key_fetch_rate_per_target=1.0,
    )
    async with start(limits) as relay:
        alice = made(relay)
        await alice.publish_prekeys("signal", b"B", {"otk": {str(i): b"k" for i in range(20)}})
        await alice.publish_key_package("kp1", b"KP1")
        sybils = [made(relay) for _ in range(4)]
        taken = 0
        for sybil in sybils:
            for _ in range(2):
                try:
                    await sybil.fetch_prekeys(alice.agent_id, "signal")
                    taken += 1
                except LimitExceeded as exc:
                    assert exc.limit == "key_fetch_target"
                    assert exc.retry_after is not None and exc.retry_after > 0
        assert taken == 5
        assert await alice.count_prekeys("signal") == {"otk": 15}
        # KeyPackages have a target bucket of their own.
        assert await sybils[-1].fetch_key_package(alice.agent_id) == b"KP1"
        clock.now += 1.0  # one second refills one token of each bucket
        await sybils[0].fetch_prekeys(alice.agent_id, "signal")
        with pytest.raises(LimitExceeded):
            await sybils[1].fetch_prekeys(alice.agent_id, "signal")


async def test_one_requester_sweeping_many_targets_is_held(
    start: Callable[[RelayLimits], Any], made: Callable[[RunningRelay], RelayClient]
) -> None:
    limits = RelayLimits(key_fetch_burst_per_requester=3, key_fetch_rate_per_requester=1.0)
    async with start(limits) as relay:
        targets = [made(relay) for _ in range(4)]
        for target in targets:
            await target.publish_key_package("kp", b"KP")
        mallory = made(relay)
        for target in targets[:3]:
            assert await mallory.fetch_key_package(target.agent_id) == b"KP"
        with pytest.raises(LimitExceeded) as info:
            await mallory.fetch_key_package(targets[3].agent_id)
        assert info.value.limit == "key_fetch"
        assert await targets[3].count_key_packages() == 1  # nothing taken when refused


async def test_a_low_pool_is_logged_and_counted(
    start: Callable[[RelayLimits], Any],
    made: Callable[[RunningRelay], RelayClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with start(RelayLimits(prekey_low_water=3)) as relay:
        alice, bob = made(relay), made(relay)
        await alice.publish_prekeys("signal", b"B", {"otk": {str(i): b"k" for i in range(4)}})
        await alice.publish_key_package("kp1", b"KP1")
        with caplog.at_level(logging.WARNING, logger="sealwire.relay"):
            await bob.fetch_prekeys(alice.agent_id, "signal")  # 3 left: not yet low
            assert "replenish" not in caplog.text
            await bob.fetch_prekeys(alice.agent_id, "signal")  # 2 left
            await bob.fetch_key_package(alice.agent_id)  # 0 left
        assert caplog.text.count("should replenish") == 2
        assert alice.agent_id in caplog.text
        async with httpx.AsyncClient() as http:
            text = (await http.get(relay.url + "/metrics")).text
        assert 'sealwire_relay_prekey_pool_low_total{kind="prekeys"} 1' in text
        assert 'sealwire_relay_prekey_pool_low_total{kind="key_packages"} 1' in text
        assert "sealwire_relay_refusals_total" in text


def test_fetch_limits_from_mapping() -> None:
    limits = RelayLimits.from_mapping(
        {"key_fetch_rate_per_requester": 0.5, "key_fetch_burst_per_target": 10}
    )
    assert limits.key_fetch_rate_per_requester == 0.5
    assert limits.key_fetch_burst_per_target == 10
