"""The relay's card directory (``/v1/cards/{publish,fetch}``), against both backends.

An agent publishes its own signed card (verified by the relay, RFC 8785 form
bounded by ``max_card_bytes``, at most ``max_cards`` of them); any
authenticated agent fetches up to ``MAX_CARDS_PER_FETCH`` of them at once and
verifies them itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealwire.errors import DecodeError, LocalProtocolError
from sealwire.identity import Identity, verify_card
from sealwire.relay import MAX_CARDS_PER_FETCH, ForbiddenError, LimitExceeded, RelayClient
from sealwire.relay.wire import b64e
from sealwire_relay import RelayConfig, RelayLimits, RunningRelay, running_relay
from sealwire_relay._app import RelayApp
from sealwire_relay._auth import Principal
from sealwire_relay._service import RelayService
from sealwire_relay._sqlite_backend import SqliteBackend

NewClient = Callable[..., RelayClient]
SignedCard = Callable[..., dict[str, Any]]


def fake_agent_id(n: int) -> str:
    """A well-formed agent id of no one (the format of ``agent_id_for``)."""
    digest = hashlib.sha256(n.to_bytes(8, "big")).digest()
    return "sw1" + base64.b32encode(digest).decode("ascii").rstrip("=").lower()


async def test_publish_and_fetch_round_trip(clients: NewClient, signed_card: SignedCard) -> None:
    alice, bob = clients(), clients()
    card = signed_card(alice._identity)
    await alice.publish_card(card)
    got = await bob.fetch_cards([alice.agent_id])
    assert got == {alice.agent_id: card}
    assert verify_card(got[alice.agent_id]).agent_id == alice.agent_id
    assert await alice.fetch_cards([alice.agent_id, alice.agent_id]) == got  # asking twice


async def test_publish_replaces_the_previous_card(
    clients: NewClient, signed_card: SignedCard
) -> None:
    alice, bob = clients(), clients()
    await alice.publish_card(signed_card(alice._identity, name="first"))
    await bob.publish_card(signed_card(bob._identity))
    await alice.publish_card(signed_card(alice._identity, name="second"))
    got = await bob.fetch_cards([alice.agent_id, bob.agent_id])
    assert got[alice.agent_id]["name"] == "second"
    assert got[bob.agent_id] == signed_card(bob._identity)


async def test_a_card_of_another_agent_is_refused(
    clients: NewClient, signed_card: SignedCard
) -> None:
    alice, mallory = clients(), clients()
    with pytest.raises(ForbiddenError):
        await mallory.publish_card(signed_card(alice._identity))
    assert await mallory.fetch_cards([alice.agent_id, mallory.agent_id]) == {}


async def test_a_tampered_card_is_refused(clients: NewClient, signed_card: SignedCard) -> None:
    alice = clients()
    genuine = signed_card(alice._identity, name="alice")
    await alice.publish_card(genuine)
    for tampered in (
        dict(genuine, name="mallory"),
        dict(genuine, signatures=[]),
        {k: v for k, v in genuine.items() if k != "signatures"},
    ):
        with pytest.raises(ForbiddenError):
            await alice.publish_card(tampered)
    with pytest.raises(DecodeError):  # no identity extension at all: malformed
        await alice.publish_card({"name": "x", "signatures": genuine["signatures"]})
    assert await alice.fetch_cards([alice.agent_id]) == {alice.agent_id: genuine}


async def test_unknown_agents_are_absent(clients: NewClient, signed_card: SignedCard) -> None:
    alice, bob = clients(), clients()
    await alice.publish_card(signed_card(alice._identity))
    got = await bob.fetch_cards([fake_agent_id(1), alice.agent_id, bob.agent_id])
    assert list(got) == [alice.agent_id]
    assert await bob.fetch_cards([]) == {}


async def test_fetch_bounds_and_validates_ids(clients: NewClient) -> None:
    bob = clients()
    ids = [fake_agent_id(i) for i in range(MAX_CARDS_PER_FETCH + 1)]
    assert await bob.fetch_cards(ids[:MAX_CARDS_PER_FETCH]) == {}
    with pytest.raises(DecodeError) as info:
        await bob.fetch_cards(ids)
    assert info.value.field == "agent_ids"
    with pytest.raises(DecodeError):
        await bob.fetch_cards([ids[0], "not-an-agent-id"])
    with pytest.raises(LocalProtocolError):
        await bob.fetch_cards(ids[0])


async def test_card_calls_need_a_session(relay: RunningRelay, signed_card: SignedCard) -> None:
    card = signed_card(Identity.generate())
    async with httpx.AsyncClient() as http:
        for path, body in (
            ("/v1/cards/publish", {"card": card}),
            ("/v1/cards/fetch", {"agent_ids": [fake_agent_id(0)]}),
        ):
            for headers in ({}, {"authorization": "Bearer " + b64e(b"x" * 32)}):
                resp = await http.post(relay.url + path, json=body, headers=headers)
                assert resp.status_code == 401
                assert resp.json()["error"]["code"] == "unauthenticated"


SMALL = RelayLimits(max_card_bytes=2_000, max_cards=2)


@pytest.fixture
async def small(make_config: Callable[..., RelayConfig]) -> AsyncIterator[RunningRelay]:
    async with running_relay(make_config(limits=SMALL)) as running:
        yield running


async def test_card_size_and_count_limits(small: RunningRelay, signed_card: SignedCard) -> None:
    async with contextlib.AsyncExitStack() as stack:
        alice, bob, carol = [
            await stack.enter_async_context(RelayClient(small.url, Identity.generate()))
            for _ in range(3)
        ]
        big = signed_card(alice._identity, description="x" * SMALL.max_card_bytes)
        with pytest.raises(LimitExceeded) as info:
            await alice.publish_card(big)
        assert info.value.limit == "card_size"
        await alice.publish_card(signed_card(alice._identity))
        await bob.publish_card(signed_card(bob._identity))
        with pytest.raises(LimitExceeded) as info:
            await carol.publish_card(signed_card(carol._identity))
        assert info.value.limit == "cards"
        await alice.publish_card(signed_card(alice._identity, name="again"))  # a replacement
        got = await carol.fetch_cards([alice.agent_id, bob.agent_id, carol.agent_id])
        assert sorted(got) == sorted([alice.agent_id, bob.agent_id])
        assert got[alice.agent_id]["name"] == "again"


# -- the client checks the shape of the answer ----------------------------------------


async def _client_answering(answer: object) -> RelayClient:
    client = RelayClient("http://relay.invalid", Identity.generate())
    await client._session.http.aclose()
    client._session.http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    )
    client._session.token = "session"
    return client


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"cards": []},
        {"cards": {fake_agent_id(9): {}}},  # not asked for
        {"cards": {fake_agent_id(1): "card"}},
        {"cards": {fake_agent_id(1): None}},
    ],
)
async def test_client_refuses_malformed_answers(answer: object) -> None:
    async with await _client_answering(answer) as client:
        with pytest.raises(DecodeError):
            await client.fetch_cards([fake_agent_id(1), fake_agent_id(2)])


async def test_client_returns_cards_unverified() -> None:
    unverified = {"name": "anything"}
    async with await _client_answering({"cards": {fake_agent_id(1): unverified}}) as client:
        assert await client.fetch_cards([fake_agent_id(1)]) == {fake_agent_id(1): unverified}


# -- storage ---------------------------------------------------------------------------


async def test_an_older_sqlite_file_gains_the_card_table(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    backend = SqliteBackend(path)
    await backend.start()
    await backend.close()
    with contextlib.closing(sqlite3.connect(path)) as db:  # as written before cards existed
        db.execute("DROP TABLE cards")
        db.commit()
    await backend.start()
    await backend.put_card(fake_agent_id(1), b"{}", max_count=1)
    with pytest.raises(LimitExceeded):
        await backend.put_card(fake_agent_id(2), b"{}", max_count=1)
    assert await backend.get_cards([fake_agent_id(1), fake_agent_id(2)]) == {
        fake_agent_id(1): b"{}"
    }
    await backend.close()


# -- hostile bodies -----------------------------------------------------------------------

ME = Identity.generate()
OTHER = Identity.generate()
RELAY_IDENTITY = Identity.generate()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _card_values(signed_card: SignedCard) -> st.SearchStrategy[object]:
    mine, theirs = signed_card(ME), signed_card(OTHER)
    tampered = st.builds(
        lambda key, value: {**mine, key: value}, st.sampled_from(sorted(mine)), json_values
    )
    return st.sampled_from([mine, theirs]) | tampered | json_values


def _id_lists() -> st.SearchStrategy[object]:
    ids = st.sampled_from([ME.agent_id, OTHER.agent_id, fake_agent_id(3)])
    return st.lists(ids | json_values, max_size=5) | st.lists(ids, max_size=300) | json_values


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_hostile_card_requests_get_clean_answers(
    signed_card: SignedCard, data: st.DataObject
) -> None:
    """Any body: 200 or a 4xx JSON error, never a 500; a card is stored only on a 200."""
    route = data.draw(st.sampled_from(["/v1/cards/publish", "/v1/cards/fetch"]))
    body = data.draw(
        st.fixed_dictionaries(
            {}, optional={"card": _card_values(signed_card), "agent_ids": _id_lists()}
        )
        | json_values
    )
    status, stored = asyncio.run(_post_in_process(route, body))
    assert status == 200 or 400 <= status < 500
    if route == "/v1/cards/publish":
        assert stored == (status == 200)


async def _post_in_process(route: str, body: object) -> tuple[int, bool]:
    backend = SqliteBackend(":memory:")
    await backend.start()
    service = RelayService(
        backend=backend, public_url="http://relay", limits=RelayLimits(), peers={}, clock=lambda: 1
    )
    app = RelayApp(service, RELAY_IDENTITY, random=lambda n: b"\x01" * n)
    token = b"\x02" * 32
    app.auth._sessions[hashlib.sha256(token).digest()] = (Principal(ME.agent_id), 1e12)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
        resp = await http.post(
            route,
            content=json.dumps(body).encode(),
            headers={"authorization": "Bearer " + b64e(token)},
        )
    assert isinstance(resp.json(), dict)
    stored = bool(await backend.get_cards([ME.agent_id]))
    await backend.close()
    return resp.status_code, stored
