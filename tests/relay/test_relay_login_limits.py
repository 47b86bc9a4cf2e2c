"""Logins are limited per client address apart from agents' requests; every 429 says when to retry.

Driven in process through the ASGI app with an injected clock: a fleet of 1,000
agents behind one NAT address logs in again after a relay restart, each agent
retrying after the ``retry_after`` it is told, in simulated time.
"""

from __future__ import annotations

import heapq
import json
import random
from pathlib import Path
from typing import Any

import httpx

from sealwire.identity import Identity
from sealwire.relay.wire import auth_payload, b64d, b64e
from sealwire_relay._app import RelayApp
from sealwire_relay._limits import RelayLimits
from sealwire_relay._service import RelayService
from sealwire_relay._sqlite_backend import SqliteBackend

FLEET = 1_000
RELOGIN_WITHIN_SECONDS = 60.0
NAT_ADDRESS = ("203.0.113.7", 40000)
# A refused agent waits the retry_after it is told plus a random jitter of up to
# this, as clients must when many share one limit (else all retry at once).
RETRY_JITTER_SECONDS = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _app(tmp_path: Path, clock: Clock, limits: RelayLimits | None = None) -> RelayApp:
    service = RelayService(
        backend=SqliteBackend(str(tmp_path / "r.sqlite3")),  # logins never touch it
        public_url="http://relay",
        limits=limits or RelayLimits(),
        peers={},
        clock=clock,
    )
    counter = iter(range(1, 10**9))
    return RelayApp(service, Identity.generate(), random=lambda n: next(counter).to_bytes(n, "big"))


async def _post(
    http: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any], httpx.Headers]:
    resp = await http.post(path, content=json.dumps(body).encode())
    return resp.status_code, resp.json(), resp.headers


def _client(app: RelayApp) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=NAT_ADDRESS)
    return httpx.AsyncClient(transport=transport, base_url="http://relay")


async def test_a_fleet_behind_one_address_logs_in_again_within_a_minute(tmp_path: Path) -> None:
    clock = Clock()
    app = _app(tmp_path, clock)
    fleet = [Identity.generate() for _ in range(FLEET)]
    start = clock.now
    # (time, agent index, step): step 0 asks a challenge, step 1 signs in with it.
    queue: list[tuple[float, int, int]] = [(start, i, 0) for i in range(FLEET)]
    challenges: dict[int, bytes] = {}
    done_at: dict[int, float] = {}
    refused = 0
    rng = random.Random(7)
    async with _client(app) as http:
        while queue:
            when, i, step = heapq.heappop(queue)
            clock.now = when
            if step == 0:
                status, answer, headers = await _post(http, "/v1/auth/challenge", {})
            else:
                identity = fleet[i]
                signature = identity.sign(
                    auth_payload(app.auth.relay_id, app.auth.url, challenges[i])
                )
                body = {
                    "challenge": b64e(challenges[i]),
                    "url": app.auth.url,
                    "signature": b64e(signature),
                    "identity": identity.public.to_json(),
                }
                status, answer, headers = await _post(http, "/v1/auth/session", body)
            if status == 429:
                refused += 1
                retry = answer["error"]["retry_after"]
                assert isinstance(retry, float) and retry > 0
                assert int(headers["retry-after"]) >= 1
                heapq.heappush(
                    queue, (when + retry + rng.uniform(0, RETRY_JITTER_SECONDS), i, step)
                )
                continue
            assert status == 200, answer
            if step == 0:
                challenges[i] = b64d(answer["challenge"], "challenge")
                heapq.heappush(queue, (when, i, 1))
            else:
                assert answer["agent_id"] == fleet[i].agent_id
                done_at[i] = when
    assert len(done_at) == FLEET
    assert max(done_at.values()) - start <= RELOGIN_WITHIN_SECONDS
    assert refused > 0  # the bucket did act: this is the limit, not the absence of one


async def test_one_address_cannot_flood_challenges(tmp_path: Path) -> None:
    clock = Clock()
    limits = RelayLimits()
    app = _app(tmp_path, clock, limits)
    granted = 0
    async with _client(app) as http:
        for second in range(3):
            clock.now += 1.0 if second else 0.0
            for _ in range(limits.login_burst + 200):
                status, answer, _ = await _post(http, "/v1/auth/challenge", {})
                if status == 200:
                    granted += 1
                else:
                    assert status == 429
                    assert answer["error"]["limit"] == "rate"
                    assert answer["error"]["retry_after"] > 0
    # The burst, then the refill rate, and never more.
    assert granted <= limits.login_burst + 2 * limits.login_rate_per_second + 1


async def test_logins_do_not_spend_the_agents_request_bucket(tmp_path: Path) -> None:
    """A fleet's logins from one address leave each agent's own request budget whole."""
    clock = Clock()
    limits = RelayLimits(rate_per_second=1.0, rate_burst=3)
    app = _app(tmp_path, clock, limits)
    async with _client(app) as http:
        for _ in range(10):  # more logins than the per-agent burst
            status, _, _ = await _post(http, "/v1/auth/challenge", {})
            assert status == 200


def test_the_per_agent_default_serves_a_busy_agent() -> None:
    limits = RelayLimits()
    # A busy agent at the relay's own HTTP ceiling (~1,600 requests/s measured):
    # its sustained rate must not be refused.
    assert limits.rate_per_second >= 1_000
    assert limits.rate_burst >= 2 * 1_000


async def test_every_429_carries_retry_after(tmp_path: Path) -> None:
    """A limit without a wait of its own (a full KeyPackage stock) still says when to retry."""
    clock = Clock()
    app = _app(tmp_path, clock, RelayLimits(max_key_packages=1))
    backend = app.service.backend
    await backend.start()
    try:
        async with _client(app) as http:
            token = await _login(http, app, Identity.generate())
            headers = {"authorization": "Bearer " + token}
            for n in range(2):
                resp = await http.post(
                    "/v1/key-packages/publish",
                    json={"key_package_id": f"k{n}", "key_package": b64e(b"kp")},
                    headers=headers,
                )
            assert resp.status_code == 429
            assert resp.json()["error"]["limit"] == "key_packages"
            assert resp.json()["error"]["retry_after"] > 0
            assert resp.headers["retry-after"] == "1"
    finally:
        await backend.close()


async def _login(http: httpx.AsyncClient, app: RelayApp, identity: Identity) -> str:
    _, answer, _ = await _post(http, "/v1/auth/challenge", {})
    challenge = b64d(answer["challenge"], "challenge")
    signature = identity.sign(auth_payload(app.auth.relay_id, app.auth.url, challenge))
    body = {
        "challenge": answer["challenge"],
        "url": app.auth.url,
        "signature": b64e(signature),
        "identity": identity.public.to_json(),
    }
    _, answer, _ = await _post(http, "/v1/auth/session", body)
    return str(answer["token"])
