"""The group WebSocket: a removed member is cut off (4403), a bad cursor refused (4400)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import websockets

from sealwire.errors import DecodeError
from sealwire.relay import ForbiddenError, RelayClient
from sealwire.relay.wire import b64e
from sealwire_relay import RunningRelay

NewClient = Callable[..., RelayClient]
WAIT = 30.0


async def _raw_group_ws(
    relay: RunningRelay, client: RelayClient, group_id: bytes, after: str
) -> websockets.ClientConnection:
    await client.fetch()  # logs in
    token = client._session.token
    url = relay.url.replace("http", "ws") + f"/v1/groups/ws?group_id={b64e(group_id)}&after={after}"
    return await websockets.connect(url, additional_headers={"authorization": f"Bearer {token}"})


async def test_a_removed_member_is_disconnected(relay: RunningRelay, clients: NewClient) -> None:
    alice, bob = clients(), clients()
    await alice.set_group_members(b"g", [alice.agent_id, bob.agent_id])
    await alice.post_group_message(b"g", 0, b"hello")
    stream = bob.subscribe_group(b"g")
    assert (await asyncio.wait_for(anext(stream), WAIT)).message == b"hello"
    raw = await _raw_group_ws(relay, bob, b"g", "0")
    try:
        assert b64e(b"hello") in str(await asyncio.wait_for(raw.recv(), WAIT))
        # Bob removed by a commit; he may read on until the next commit (to see his
        # removal), then his sockets are refused.
        await alice.append_commit(b"g", 0, b"commit 0", members=[alice.agent_id])
        await alice.append_commit(b"g", 1, b"commit 1", members=[alice.agent_id])
        with pytest.raises(ForbiddenError):
            for _ in range(4):  # at most the two commits come before the refusal
                await asyncio.wait_for(anext(stream), WAIT)
        with pytest.raises(websockets.ConnectionClosed) as info:
            for _ in range(4):
                await asyncio.wait_for(raw.recv(), WAIT)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4403
    finally:
        await stream.aclose()
        await raw.close()
    # What alice posts afterwards never reaches bob's (closed) sockets; alice's own
    # subscription still works.
    await alice.post_group_message(b"g", 0, b"secret")
    own = alice.subscribe_group(b"g")
    try:
        got = [(await asyncio.wait_for(anext(own), WAIT)).message for _ in range(4)]
        assert got == [b"hello", b"commit 0", b"commit 1", b"secret"]
    finally:
        await own.aclose()


@pytest.mark.parametrize("after", [str(2**63), str(2**64 + 5), "-1", "1e3", "9" * 400])
async def test_a_cursor_out_of_range_is_refused(
    relay: RunningRelay, clients: NewClient, after: str
) -> None:
    alice = clients()
    await alice.set_group_members(b"g", [alice.agent_id])
    raw = await _raw_group_ws(relay, alice, b"g", after)
    try:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(raw.recv(), WAIT)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4400
        assert info.value.rcvd.reason == "bad_request"
    finally:
        await raw.close()


async def test_the_largest_cursor_is_served(relay: RunningRelay, clients: NewClient) -> None:
    """2**63 - 1 is in range: an empty log after it, the socket stays open."""
    alice = clients()
    await alice.set_group_members(b"g", [alice.agent_id])
    raw = await _raw_group_ws(relay, alice, b"g", str(2**63 - 1))
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(raw.recv(), 0.5)
    finally:
        await raw.close()


async def test_log_cursor_in_a_body_is_bounded(clients: NewClient) -> None:
    alice = clients()
    await alice.set_group_members(b"g", [alice.agent_id])
    with pytest.raises(DecodeError):
        await alice.fetch_group_log(b"g", after=2**63)
    assert await alice.fetch_group_log(b"g", after=2**63 - 1) == []
