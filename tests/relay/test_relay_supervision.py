"""Supervised background tasks, ``/v1/health`` and ``/metrics``; forwarding across a NATS outage."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from ports import free_port
from waiting import until

from sealwire.identity import Identity
from sealwire.relay import Delivery, RelayClient, RelayUnavailable, mailbox_address
from sealwire_relay import (
    PeerRelay,
    RelayConfig,
    RunningRelay,
    load_or_create_identity,
    running_relay,
)
from sealwire_relay._app import RelayApp
from sealwire_relay._limits import RelayLimits
from sealwire_relay._service import RelayService
from sealwire_relay._sqlite_backend import SqliteBackend
from sealwire_relay._supervisor import Supervisor

# How long NATS stays down: the issue saw the forwarder die on an outage of ~8 s.
OUTAGE_SECONDS = 8.0
BEFORE, AFTER = 10, 10


class NatsProcess:
    """A ``nats-server -js`` of this test alone, so that it can be killed and restarted."""

    def __init__(self, store: Path) -> None:
        binary = shutil.which("nats-server")
        if os.environ.get("SEALWIRE_SKIP_NATS") == "1":
            pytest.skip("SEALWIRE_SKIP_NATS=1: NATS backend not tested")
        if binary is None:
            pytest.fail("nats-server is missing: run scripts/install-servers.sh")
        self.binary, self.store, self.port = binary, store, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("nats-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def nats_process(tmp_path: Path) -> Iterator[NatsProcess]:
    server = NatsProcess(tmp_path / "nats-store")
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def _drain(client: RelayClient, want: int, timeout: float = 60.0) -> list[Delivery]:
    got: list[Delivery] = []

    async def enough() -> None:
        nonlocal got
        while len(got) < want:
            got = await client.fetch(limit=500)
            if len(got) < want:
                await asyncio.sleep(0.1)

    await asyncio.wait_for(enough(), timeout)
    return got


async def _poll(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _send_retrying(client: RelayClient, to: str, mid: str, data: bytes) -> None:
    """Send, retrying while the relay answers 'unavailable' (its NATS reconnecting)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        try:
            await client.send(to, mid, data)
            return
        except RelayUnavailable:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.mark.timeout(150)
async def test_forwarding_resumes_after_a_nats_outage(
    nats_process: NatsProcess, tmp_path: Path
) -> None:
    ports = {n: free_port() for n in "ab"}
    ids = {n: load_or_create_identity(tmp_path / f"{n}.key").agent_id for n in "ab"}

    def config(name: str, other: str) -> RelayConfig:
        return RelayConfig(
            port=ports[name],
            identity_path=tmp_path / f"{name}.key",
            backend="nats",
            backend_options={"servers": [nats_process.url], "prefix": f"OUT{name.upper()}"},
            peers=(PeerRelay(ids[other], f"http://127.0.0.1:{ports[other]}"),),
        )

    bob_id = Identity.generate()
    async with (
        running_relay(config("a", "b")) as a,
        running_relay(config("b", "a")) as b,
        RelayClient(a.url, Identity.generate()) as alice,
        RelayClient(b.url, bob_id) as bob,
        httpx.AsyncClient() as http,
    ):
        address = mailbox_address(b.url, bob_id.agent_id)
        for i in range(BEFORE):
            await alice.send(address, f"before-{i}", b"x")
        assert len(await _drain(bob, BEFORE)) == BEFORE

        nats_process.kill()
        loop = asyncio.get_running_loop()
        back_at = loop.time() + OUTAGE_SECONDS
        health: list[httpx.Response] = []

        async def failing() -> bool:
            health.append(await http.get(a.url + "/v1/health"))
            return health[-1].status_code == 503

        # Health says so while NATS is away (the storage probe, and the forwarder
        # finding its outbox unreadable); NATS stays away at least OUTAGE_SECONDS.
        await _poll(failing, "health to say 503 during the outage")
        assert "storage" in health[-1].json()["failing"]
        # The rest of the outage itself, not a synchronisation.
        await asyncio.sleep(max(0.0, back_at - loop.time()))
        nats_process.start()

        for i in range(AFTER):
            await _send_retrying(alice, address, f"after-{i}", b"y")
        got = await _drain(bob, BEFORE + AFTER)
        ids_got = sorted(d.message_id for d in got)
        assert ids_got == sorted(
            [f"before-{i}" for i in range(BEFORE)] + [f"after-{i}" for i in range(AFTER)]
        )

        async def healthy() -> bool:
            return (await http.get(a.url + "/v1/health")).status_code == 200

        await _poll(healthy, "health back to 200")
        resp = await http.get(a.url + "/v1/health")
        assert resp.json()["tasks"][f"forwarder:{ids['b']}"]["state"] == "running"
        assert resp.json()["tasks"]["storage"]["state"] == "running"
        metrics = (await http.get(a.url + "/metrics")).text
        assert f'sealwire_relay_outbox_depth{{peer="{ids["b"]}"}} 0' in metrics


def _app(tmp_path: Path) -> tuple[RelayApp, SqliteBackend, Supervisor]:
    backend = SqliteBackend(str(tmp_path / "relay.sqlite3"))
    service = RelayService(
        backend=backend, public_url="http://relay", limits=RelayLimits(), peers={}, clock=time.time
    )
    supervisor = Supervisor(service.metrics)
    app = RelayApp(service, Identity.generate(), random=os.urandom, supervisor=supervisor)
    return app, backend, supervisor


async def test_a_failing_task_is_restarted_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sealwire.relay.supervisor")
    app, backend, supervisor = _app(tmp_path)
    await backend.start()
    runs = 0
    release = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            await release.wait()
            raise RuntimeError("boom")
        await asyncio.Event().wait()  # healthy from the third run on

    supervisor.start("flaky", flaky)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
            assert (await http.get("/v1/health")).status_code == 200
            release.set()
            await until(lambda: supervisor.states()["flaky"].restarts >= 1, "a first restart")
            await until(lambda: runs >= 3, "the third run")
            await until(lambda: not supervisor.failing(), "the task running again")
            health = (await http.get("/v1/health")).json()
            assert health["tasks"]["flaky"] == {
                "state": "running",
                "restarts": 2,
                "last_error": "RuntimeError",
            }
            metrics = await http.get("/metrics")
            assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
            assert 'sealwire_relay_task_restarts_total{task="flaky"} 2' in metrics.text
            assert 'sealwire_relay_task_up{task="flaky"} 1' in metrics.text
        failures = [r for r in caplog.records if "failed (RuntimeError)" in r.getMessage()]
        assert len(failures) == 2 and all(r.exc_info for r in failures)
        assert "relay task flaky restarted (restart 2)" in caplog.text
    finally:
        await supervisor.stop()
        await backend.close()


async def test_health_is_503_while_a_task_restarts(tmp_path: Path) -> None:
    app, backend, supervisor = _app(tmp_path)
    await backend.start()

    async def broken() -> None:
        raise RuntimeError("always")

    supervisor.start("broken", broken)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
            await until(lambda: supervisor.states()["broken"].restarts >= 3, "restarts")
            # Between restarts the backoff grows; catch it in a "restarting" phase.
            await until(lambda: supervisor.failing() == ["broken"], "the restarting state")
            resp = await http.get("/v1/health")
            assert resp.status_code == 503
            assert resp.json()["failing"] == ["broken"]
    finally:
        await supervisor.stop()
        await backend.close()


async def test_metrics_count_requests_messages_and_refusals(
    relay: RunningRelay, clients: Callable[..., RelayClient]
) -> None:
    alice = clients()
    await alice.send(alice.agent_id, "m1", b"12345")
    await alice.send(alice.agent_id, "m1", b"12345")  # a duplicate: not counted
    await alice.ack(await alice.fetch())
    async with httpx.AsyncClient() as http:
        await http.post(relay.url + "/v1/mailbox/fetch", json={})  # no token
        resp = await http.get(relay.url + "/metrics")
    assert resp.status_code == 200
    text = resp.text
    assert "sealwire_relay_messages_enqueued_total 1" in text
    assert "sealwire_relay_messages_acked_total 1" in text
    assert "sealwire_relay_message_bytes_total 5" in text
    assert 'result="ok",route="/v1/mailbox/send"} 2' in text
    assert 'result="unauthenticated",route="/v1/mailbox/fetch"} 1' in text
    assert "sealwire_relay_websockets_open 0" in text
