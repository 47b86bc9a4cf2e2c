"""Property tests of the relay's wire helpers and of the SQLite backend's contract."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.errors import DecodeError, SealwireError
from sealwire.identity import Identity
from sealwire.relay import Delivery, GroupLogEntry, LimitExceeded
from sealwire.relay._stream import _send_item
from sealwire.relay.errors import EpochConflictError, error_from_wire, error_to_wire
from sealwire.relay.wire import (
    b64d,
    b64e,
    decode_body,
    delivery_from_json,
    delivery_to_json,
    entry_from_json,
    entry_to_json,
    parse_mailbox_address,
)
from sealwire_relay._app import RelayApp
from sealwire_relay._auth import Principal
from sealwire_relay._backend import GroupAppend
from sealwire_relay._limits import RelayLimits
from sealwire_relay._service import RelayService
from sealwire_relay._sqlite_backend import SqliteBackend
from sealwire_relay._stream import _delivery_header

AGENTS = [Identity.generate().agent_id for _ in range(3)]
FAST = settings(max_examples=150, deadline=None)
# text as hostile clients send it: lone surrogates included (issue 18 item 3)
texts = st.text(max_size=20) | st.builds(
    lambda head, lone: head + lone, st.text(max_size=8), st.sampled_from(["\ud800", "\udfff"])
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@FAST
@given(st.binary(max_size=300))
def test_b64_round_trip(data: bytes) -> None:
    assert b64d(b64e(data), "x") == data


@FAST
@given(st.binary(max_size=200))
def test_decode_body_gives_an_object_or_decode_error(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):
        assert isinstance(decode_body(raw), dict)


@FAST
@given(
    st.text(min_size=1, max_size=50),
    st.sampled_from(AGENTS),
    st.binary(max_size=100),
    st.floats(min_value=0, max_value=2e9),
)
def test_delivery_json_round_trip(mid: str, sender: str, envelope: bytes, at: float) -> None:
    d = Delivery(message_id=mid, sender=sender, envelope=envelope, received_at=at)
    assert delivery_from_json(json.loads(json.dumps(delivery_to_json(d)))) == d


@FAST
@given(
    texts, st.sampled_from(AGENTS), st.floats(min_value=0, max_value=2e18) | st.integers(0, 2**40)
)
def test_a_pushed_delivery_header_is_what_json_writes(mid: str, sender: str, at: float) -> None:
    d = Delivery(message_id=mid, sender=sender, envelope=b"", received_at=at)
    fields = {"message_id": mid, "sender": sender, "received_at": float(at)}
    assert _delivery_header(d) == json.dumps(fields, separators=(",", ":"))


@FAST
@given(st.integers(0, 2**63), texts, texts)
def test_a_streamed_send_item_is_what_json_writes(rid: int, recipient: str, mid: str) -> None:
    fields = {"id": rid, "recipient": recipient, "message_id": mid}
    assert _send_item(rid, recipient, mid) == json.dumps(fields, separators=(",", ":"))


@FAST
@given(
    st.integers(min_value=0, max_value=2**62),
    st.sampled_from(["commit", "application"]),
    st.integers(min_value=0, max_value=2**62),
    st.binary(max_size=100),
)
def test_entry_json_round_trip(seq: int, kind: str, epoch: int, message: bytes) -> None:
    e = GroupLogEntry(
        seq=seq, kind=kind, epoch=epoch, sender=AGENTS[0], message=message, received_at=1.5
    )
    assert entry_from_json(json.loads(json.dumps(entry_to_json(e)))) == e


@FAST
@given(json_values)
def test_hostile_answers_decode_or_raise_decode_error(value: object) -> None:
    for parse in (delivery_from_json, entry_from_json):
        with contextlib.suppress(DecodeError):
            parse(value)


@FAST
@given(st.integers(min_value=100, max_value=599), json_values)
def test_error_answers_always_become_sealwire_errors(status: int, body: object) -> None:
    assert isinstance(error_from_wire(status, {"error": body}), SealwireError)
    assert isinstance(error_from_wire(status, body), SealwireError)


def test_errors_survive_the_wire() -> None:
    for exc in (
        LimitExceeded("rate", "slow down", retry_after=1.5),
        EpochConflictError("taken", expected_epoch=4),
        DecodeError("bad", field="envelope"),
    ):
        status, body = error_to_wire(exc)
        back = error_from_wire(status, json.loads(json.dumps(body)))
        assert type(back) is type(exc) and str(back) == str(exc)
    back = error_from_wire(429, error_to_wire(LimitExceeded("rate", "x", retry_after=2))[1])
    assert isinstance(back, LimitExceeded) and back.retry_after == 2


@FAST
@given(st.text(max_size=120))
def test_mailbox_addresses_parse_or_raise(value: str) -> None:
    try:
        home, agent = parse_mailbox_address(value)
    except DecodeError:
        return
    assert agent in value and (home is None or value.startswith(home))


ops = st.lists(
    st.tuples(st.sampled_from(["send", "ack"]), st.sampled_from(AGENTS), st.integers(0, 5)),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_sqlite_mailbox_matches_a_model(program: list[tuple[str, str, int]]) -> None:
    """Sends are idempotent by (sender, id) forever; an ack removes that sender's copy only."""

    async def run() -> None:
        backend = SqliteBackend(":memory:")
        await backend.start()
        pending: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        for op, sender, n in program:
            mid = f"m{n}"
            if op == "send":
                d = Delivery(message_id=mid, sender=sender, envelope=b"e", received_at=1.0)
                fresh = await backend.enqueue("box", d, max_depth=1000)
                assert fresh == ((sender, mid) not in seen)
                if fresh:
                    seen.add((sender, mid))
                    pending.append((sender, mid))
            else:
                removed = await backend.ack("box", [(sender, mid)])
                assert removed == ((sender, mid) in pending)
                pending = [p for p in pending if p != (sender, mid)]
            got = await backend.fetch("box", 1000)
            assert [(d.sender, d.message_id) for d in got] == pending
        await backend.close()

    asyncio.run(run())


member_ops = st.lists(
    st.tuples(
        st.sampled_from(["commit", "supersede", "stale", "plain"]),
        st.integers(0, 4),
        st.integers(0, 2),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(member_ops)
def test_sqlite_member_lists_change_only_with_commits(program: list[tuple[str, int, int]]) -> None:
    """A commit lands iff it is for the next epoch, or names the latest commit it
    supersedes (same epoch); the member list is the last landed commit's."""

    async def run() -> None:
        backend = SqliteBackend(":memory:")
        await backend.start()
        gid = b"g"
        members = frozenset(AGENTS)
        await backend.create_group(gid, members)
        last: int | None = None
        commit_seq: int | None = None
        for op, epoch, who in program:
            wanted = frozenset(AGENTS[: who + 1])
            kind = "application" if op == "plain" else "commit"
            entry = GroupLogEntry(
                seq=0, kind=kind, epoch=epoch, sender=AGENTS[0], message=b"", received_at=1
            )
            supersedes = None
            if op == "supersede":
                supersedes = commit_seq if commit_seq is not None else 0
            elif op == "stale":
                supersedes = (commit_seq or 0) + 1
            request = GroupAppend(members=wanted if kind == "commit" else None,
                                  supersedes=supersedes)  # fmt: skip
            if kind == "application":
                fits = True
            elif supersedes is None:
                fits = last is None or epoch == last + 1
            else:
                fits = commit_seq is not None and supersedes == commit_seq and epoch == last
            try:
                seq = await backend.append_group(
                    gid, entry, request, max_entries=100, max_members=10
                )
            except EpochConflictError as exc:
                assert not fits and exc.commit_seq == commit_seq
            else:
                assert fits
                if kind == "commit":
                    last, commit_seq, members = epoch, seq, wanted
            access = await backend.group_access(gid)
            assert access is not None
            assert (access.members, access.last_commit, access.commit_seq) == (
                members,
                last,
                commit_seq,
            )
        await backend.close()

    asyncio.run(run())


ROUTES = [
    "/v1/prekeys/publish", "/v1/prekeys/fetch", "/v1/prekeys/count",
    "/v1/key-packages/publish", "/v1/key-packages/fetch", "/v1/key-packages/count",
    "/v1/mailbox/send", "/v1/mailbox/fetch", "/v1/mailbox/ack",
    "/v1/groups/members", "/v1/groups/get-members", "/v1/groups/commit",
    "/v1/groups/message", "/v1/groups/log", "/v1/federation/deliver",
    "/v1/cards/publish", "/v1/cards/fetch",
    "/v1/auth/session", "/v1/auth/challenge",
]  # fmt: skip
field_names = st.sampled_from(
    ["binding", "bundle", "one_time", "agent_id", "key_package_id", "key_package", "recipient",
     "message_id", "envelope", "limit", "message_ids", "group_id", "members", "epoch",
     "message", "after", "items", "challenge", "signature", "identity", "card", "client_nonce",
     "agent_ids"]
)  # fmt: skip
bodies = st.dictionaries(
    field_names, json_values | texts | st.just(AGENTS[0]) | st.just("AAAA"), max_size=6
)


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(ROUTES), bodies | json_values.map(lambda v: {"x": v}), st.booleans())
def test_hostile_requests_get_clean_errors(route: str, body: object, raw: bool) -> None:
    """Any body on any route: 200 or a 4xx JSON error, never a 500, never a crash."""

    async def run() -> None:
        backend = SqliteBackend(":memory:")
        await backend.start()
        service = RelayService(
            backend=backend,
            public_url="http://relay",
            limits=RelayLimits(),
            peers={},
            clock=lambda: 1.0,
        )
        app = RelayApp(service, RELAY_IDENTITY, random=lambda n: b"\x01" * n)
        token = b"\x02" * 32
        app.auth._sessions[hashlib.sha256(token).digest()] = (
            Principal(AGENTS[1]),
            1e12,
        )
        headers = {"authorization": "Bearer " + b64e(token)}
        content = json.dumps(body).encode()
        content = content[:-1] if raw else content  # truncated: not JSON any more
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
            resp = await http.post(route, content=content, headers=headers)
        assert resp.status_code == 200 or 400 <= resp.status_code < 500, resp.text
        assert isinstance(resp.json(), dict)
        await backend.close()

    asyncio.run(run())


RELAY_IDENTITY = Identity.generate()


LONE_SURROGATE_BODIES = [
    b'{"a":"\\ud800"}',  # an escape without its pair
    b'{"\\udfff":1}',  # as a key
    '{"a":["\ud800"]}'.encode("utf-8", "surrogatepass"),  # encoded in the bytes
]


@pytest.mark.parametrize("raw", LONE_SURROGATE_BODIES)
def test_bodies_with_lone_surrogates_are_refused(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_body(raw)
    assert decode_body(b'{"a":"\\ud83d\\ude00"}') == {"a": "\U0001f600"}  # a pair is text


def test_a_lone_surrogate_in_a_stored_id_is_a_400_not_a_500() -> None:
    """Before, the SQLite write failed on it: the relay answered 500 with a traceback."""

    async def run() -> None:
        backend = SqliteBackend(":memory:")
        await backend.start()
        service = RelayService(backend=backend, public_url="http://relay", limits=RelayLimits(),
                               peers={}, clock=lambda: 1.0)  # fmt: skip
        app = RelayApp(service, RELAY_IDENTITY, random=lambda n: b"\x01" * n)
        token = b"\x02" * 32
        app.auth._sessions[hashlib.sha256(token).digest()] = (Principal(AGENTS[1]), 1e12)
        headers = {"authorization": "Bearer " + b64e(token)}
        body = '{"recipient":"' + AGENTS[0] + '","message_id":"m\\ud800","envelope":"AAAA"}'
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
            resp = await http.post("/v1/mailbox/send", content=body.encode(), headers=headers)
        assert resp.status_code == 400, resp.text
        await backend.close()

    asyncio.run(run())
