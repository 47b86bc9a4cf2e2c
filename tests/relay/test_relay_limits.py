"""Each configurable limit refuses with a clear error and drops nothing accepted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from sealwire.identity import Identity
from sealwire.relay import LimitExceeded, RelayClient
from sealwire_relay import RelayConfig, RelayLimits, RunningRelay, running_relay
from sealwire_relay._app import MAX_REQUEST_BYTES

LIMITS = RelayLimits(
    max_message_bytes=1000,
    max_mailbox_depth=3,
    max_one_time_per_pool=3,
    max_pools=2,
    max_key_packages=2,
    max_group_log=3,
    rate_per_second=0.5,
    rate_burst=40,
)


@pytest.fixture
async def small(make_config: Callable[..., RelayConfig]) -> AsyncIterator[RunningRelay]:
    async with running_relay(make_config(limits=LIMITS)) as running:
        yield running


async def test_message_size(small: RunningRelay) -> None:
    async with RelayClient(small.url, Identity.generate()) as alice:
        await alice.send(alice.agent_id, "ok", b"x" * 1000)
        with pytest.raises(LimitExceeded) as info:
            await alice.send(alice.agent_id, "big", b"x" * 1001)
        assert info.value.limit == "message_size"
        with pytest.raises(LimitExceeded):
            await alice.publish_key_package("kp", b"x" * 1001)
        assert [d.message_id for d in await alice.fetch()] == ["ok"]
    async with httpx.AsyncClient() as http:
        resp = await http.post(
            small.url + "/v1/auth/session", content=b"x" * (MAX_REQUEST_BYTES + 1)
        )
        assert resp.status_code == 413
        assert resp.json()["error"]["limit"] == "request_size"


async def test_mailbox_depth(small: RunningRelay) -> None:
    async with RelayClient(small.url, Identity.generate()) as alice:
        for i in range(3):
            await alice.send(alice.agent_id, f"m{i}", b"x")
        with pytest.raises(LimitExceeded) as info:
            await alice.send(alice.agent_id, "m3", b"x")
        assert info.value.limit == "mailbox_depth"
        await alice.send(alice.agent_id, "m1", b"x")  # a duplicate is still answered "accepted"
        assert [d.message_id for d in await alice.fetch()] == ["m0", "m1", "m2"]
        await alice.ack((await alice.fetch())[:1])
        await alice.send(alice.agent_id, "m3", b"x")
        assert [d.message_id for d in await alice.fetch()] == ["m1", "m2", "m3"]


async def test_prekey_and_key_package_limits(small: RunningRelay) -> None:
    async with RelayClient(small.url, Identity.generate()) as alice:
        await alice.publish_prekeys("s", b"B", {"a": {"1": b"1", "2": b"2"}})
        with pytest.raises(LimitExceeded) as info:
            await alice.publish_prekeys("s", b"B2", {"a": {"3": b"3", "4": b"4"}})
        assert info.value.limit == "prekeys"
        with pytest.raises(LimitExceeded):
            await alice.publish_prekeys("s", b"B2", {"b": {}, "c": {}})
        assert await alice.count_prekeys("s") == {"a": 2}  # the refused publishes stored nothing
        assert (await alice.fetch_prekeys(alice.agent_id, "s")).bundle == b"B"
        await alice.publish_key_package("1", b"1")
        await alice.publish_key_package("2", b"2")
        with pytest.raises(LimitExceeded) as info:
            await alice.publish_key_package("3", b"3")
        assert info.value.limit == "key_packages"
        assert await alice.count_key_packages() == 2


async def test_group_log_limit(small: RunningRelay) -> None:
    async with RelayClient(small.url, Identity.generate()) as alice:
        await alice.set_group_members(b"g", [alice.agent_id])
        for i in range(3):
            await alice.post_group_message(b"g", 0, bytes([i]))
        with pytest.raises(LimitExceeded) as info:
            await alice.append_commit(b"g", 0, b"c")
        assert info.value.limit == "group_log"
        assert len(await alice.fetch_group_log(b"g")) == 3


async def test_rate_limit(small: RunningRelay) -> None:
    async with RelayClient(small.url, Identity.generate()) as alice:
        with pytest.raises(LimitExceeded) as info:
            for _ in range(60):
                await alice.fetch()
        assert info.value.limit == "rate"
        assert info.value.retry_after is not None and info.value.retry_after > 0
    async with RelayClient(small.url, Identity.generate()) as bob:  # per agent
        await bob.send(bob.agent_id, "fine", b"x")


def test_limits_from_mapping() -> None:
    assert RelayLimits.from_mapping({"max_mailbox_depth": 7}).max_mailbox_depth == 7
    assert RelayLimits.from_mapping({"rate_per_second": 2.5}).rate_per_second == 2.5
    from sealwire.errors import ConfigurationError

    for bad in (
        {"nope": 1},
        {"max_mailbox_depth": 0},
        {"max_mailbox_depth": 1.5},
        {"rate_burst": True},
    ):
        with pytest.raises(ConfigurationError):
            RelayLimits.from_mapping(bad)
