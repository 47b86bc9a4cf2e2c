"""Challenge-response authentication and who may do what (both backends)."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.errors import DecodeError
from sealwire.identity import Identity
from sealwire.relay import Delivery, ForbiddenError, RelayAuthError, RelayClient
from sealwire_relay import RunningRelay
from sealwire_relay._auth import Authenticator, auth_payload

NewClient = Callable[..., RelayClient]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def _challenge(http: httpx.AsyncClient, url: str) -> tuple[str, bytes]:
    answer = (await http.post(url + "/v1/auth/challenge", json={})).json()
    return answer["relay_id"], unb64(answer["challenge"])


async def _login(http: httpx.AsyncClient, url: str, body: Mapping[str, Any]) -> httpx.Response:
    return await http.post(url + "/v1/auth/session", json=body)


async def test_login_and_wrong_key(relay: RunningRelay) -> None:
    me, other = Identity.generate(), Identity.generate()
    async with httpx.AsyncClient() as http:
        relay_id, nonce = await _challenge(http, relay.url)
        assert relay_id == relay.relay_id
        # Signed by another key than the identity presented: refused.
        bad = {
            "challenge": b64(nonce),
            "url": relay.url,
            "signature": b64(other.sign(auth_payload(relay_id, relay.url, nonce))),
            "identity": me.public.to_json(),
        }
        resp = await _login(http, relay.url, bad)
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "unauthenticated"
        # The challenge was consumed by the failed attempt: a correct one now fails too.
        good = dict(bad, signature=b64(me.sign(auth_payload(relay_id, relay.url, nonce))))
        assert (await _login(http, relay.url, good)).status_code == 401
        relay_id, nonce = await _challenge(http, relay.url)
        good = dict(
            good,
            challenge=b64(nonce),
            signature=b64(me.sign(auth_payload(relay_id, relay.url, nonce))),
        )
        resp = await _login(http, relay.url, good)
        assert resp.status_code == 200
        assert resp.json()["agent_id"] == me.agent_id
        # Replaying the same signed challenge is refused.
        assert (await _login(http, relay.url, good)).status_code == 401


async def test_signature_for_another_relay_is_refused(relay: RunningRelay) -> None:
    me = Identity.generate()
    async with httpx.AsyncClient() as http:
        _, nonce = await _challenge(http, relay.url)
        body = {
            "challenge": b64(nonce),
            "url": relay.url,
            "signature": b64(me.sign(auth_payload(Identity.generate().agent_id, relay.url, nonce))),
            "identity": me.public.to_json(),
        }
        assert (await _login(http, relay.url, body)).status_code == 401


async def test_login_with_a_signed_card_or_a_forged_identity(relay: RunningRelay) -> None:
    me = Identity.generate()
    forged = dict(me.public.to_json(), agentId=Identity.generate().agent_id)
    async with httpx.AsyncClient() as http:
        relay_id, nonce = await _challenge(http, relay.url)
        body = {
            "challenge": b64(nonce),
            "url": relay.url,
            "signature": b64(me.sign(auth_payload(relay_id, relay.url, nonce))),
            "identity": forged,
        }
        assert (await _login(http, relay.url, body)).status_code == 401
        body["identity"] = {"agentId": 3}
        resp = await _login(http, relay.url, body)
        assert resp.status_code == 400


async def test_requests_need_a_valid_token(relay: RunningRelay) -> None:
    async with httpx.AsyncClient() as http:
        for headers in (
            {},
            {"authorization": "Bearer " + b64(b"x" * 32)},
            {"authorization": "Basic x"},
        ):
            resp = await http.post(relay.url + "/v1/mailbox/fetch", json={}, headers=headers)
            assert resp.status_code == 401
        assert (await http.post(relay.url + "/v1/nowhere", json={})).status_code == 404
        assert (await http.get(relay.url + "/v1/mailbox/fetch")).status_code == 404
        info = (await http.get(relay.url + "/v1/info")).json()
        assert info["relay_id"] == relay.relay_id


async def test_client_reauthenticates_when_the_session_is_gone(
    clients: NewClient, relay: RunningRelay
) -> None:
    alice = clients()
    await alice.fetch()
    alice._token = b64(b"\x00" * 32)  # as after a relay restart
    assert await alice.fetch() == []


async def test_own_mailbox_and_prekeys_only(clients: NewClient) -> None:
    alice, mallory = clients(), clients()
    await mallory.send(alice.agent_id, "m", b"for alice")
    await alice.publish_prekeys("signal", b"alice's", {})
    # Mallory's calls are about Mallory: there is no way to name Alice's mailbox.
    assert await mallory.fetch() == []
    forged = Delivery(message_id="m", sender=mallory.agent_id, envelope=b"", received_at=0.0)
    await mallory.ack([forged])
    assert [d.message_id for d in await alice.fetch()] == ["m"]
    await mallory.publish_prekeys("signal", b"mallory's", {})
    got = await alice.fetch_prekeys(alice.agent_id, "signal")
    assert got.bundle == b"alice's"
    with pytest.raises(ForbiddenError):  # only peer relays may deliver
        await mallory._session.call("/v1/federation/deliver", {"items": []})


async def test_client_checks_the_relay_identity(relay: RunningRelay) -> None:
    me = Identity.generate()
    async with RelayClient(relay.url, me, relay_id=relay.relay_id) as ok:
        assert await ok.fetch() == []
    async with RelayClient(relay.url, me, relay_id=Identity.generate().agent_id) as wrong:
        with pytest.raises(RelayAuthError):
            await wrong.fetch()


def test_challenges_expire_and_are_bounded() -> None:
    now = [1000.0]
    counter = iter(range(10**6))
    auth = Authenticator(
        "relay",
        url="http://relay.test",
        clock=lambda: now[0],
        random=lambda n: next(counter).to_bytes(n, "big"),
    )
    me = Identity.generate()
    nonce = auth.challenge()
    now[0] += 61
    body = {
        "challenge": b64(nonce),
        "url": "http://relay.test",
        "signature": b64(me.sign(auth_payload("relay", "http://relay.test", nonce))),
        "identity": me.public.to_json(),
    }
    with pytest.raises(RelayAuthError):
        auth.login(body)
    with pytest.raises(DecodeError):
        auth.login({"challenge": 5})
    nonce = auth.challenge()
    body.update(
        challenge=b64(nonce),
        signature=b64(me.sign(auth_payload("relay", "http://relay.test", nonce))),
    )
    token, who = auth.login(body)
    assert who.agent_id == me.agent_id and not who.is_peer_relay
    assert auth.principal("Bearer " + b64(token)) == who
    now[0] += 3601
    with pytest.raises(RelayAuthError):
        auth.principal("Bearer " + b64(token))


_ME = Identity.generate()


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=63), st.integers(min_value=1, max_value=255))
def test_tampered_signature_fails_and_creates_no_session(index: int, flip: int) -> None:
    auth = Authenticator("relay", url="http://relay.test", clock=lambda: 0.0, random=os.urandom)
    nonce = auth.challenge()
    signature = bytearray(_ME.sign(auth_payload("relay", "http://relay.test", nonce)))
    signature[index] ^= flip
    body = {"challenge": b64(nonce), "signature": b64(bytes(signature)),
            "url": "http://relay.test", "identity": _ME.public.to_json()}  # fmt: skip
    with pytest.raises(RelayAuthError):
        auth.login(body)
    assert auth._sessions == {}


def test_a_challenge_passed_on_by_another_relay_gets_no_session() -> None:
    """Relay M passes relay A's challenge (and id) to an agent that dialled M: what the
    agent signs names M's URL, and A refuses it, whichever URL the login claims."""
    a = Authenticator("relay-a", url="https://a.test", clock=lambda: 0.0, random=os.urandom)
    nonce = a.challenge()
    signed_for_m = b64(_ME.sign(auth_payload("relay-a", "https://m.test", nonce)))
    body = {"challenge": b64(nonce), "signature": signed_for_m,
            "url": "https://m.test", "identity": _ME.public.to_json()}  # fmt: skip
    with pytest.raises(RelayAuthError, match="public URL"):
        a.login(body)
    nonce = a.challenge()
    signed_for_m = b64(_ME.sign(auth_payload("relay-a", "https://m.test", nonce)))
    body.update(challenge=b64(nonce), url="https://a.test", signature=signed_for_m)
    with pytest.raises(RelayAuthError, match="signature"):
        a.login(body)
    assert a._sessions == {}
