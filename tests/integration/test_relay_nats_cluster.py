"""A relay on a three-node JetStream cluster, its streams replicated three ways
(``[relay.nats] replicas = 3``; issue 14 item 6.3): the node leading the
mailbox stream killed (kill -9) mid-traffic loses no message the relay
acknowledged (with one replica the same kill loses the stream)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from ports import free_port

from sealwire.identity import Identity
from sealwire.relay import RelayClient, RelayError
from sealwire_relay import RelayConfig, running_relay
from sealwire_relay._nats_backend import NatsBackend

T = TypeVar("T")
NODES = 3
# Messages sent in all; the node is killed once KILL_AFTER are acknowledged.
MESSAGES = 40
KILL_AFTER = 15
# A cluster elects its JetStream leaders within a few seconds; a loaded machine
# takes longer.
FORM_SECONDS = 60.0
RETRY_SECONDS = 0.1


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[list[str], list[subprocess.Popen[bytes]]]]:
    binary = shutil.which("nats-server")
    if binary is None:
        pytest.fail("nats-server is missing: run scripts/install-servers.sh")
    ports = [free_port() for _ in range(NODES)]
    routes = [free_port() for _ in range(NODES)]
    procs = []
    for i in range(NODES):
        others = ",".join(f"nats://127.0.0.1:{r}" for j, r in enumerate(routes) if j != i)
        args = [binary, "-js", "-a", "127.0.0.1", "-p", str(ports[i]), "-n", f"node{i}"]
        args += ["-sd", str(tmp_path / f"node{i}"), "--cluster_name", "sealwire"]
        args += ["--cluster", f"nats://127.0.0.1:{routes[i]}", "--routes", others]
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        yield [f"nats://127.0.0.1:{p}" for p in ports], procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=10)


async def _started(servers: list[str]) -> NatsBackend:
    """A started backend, once the cluster has formed and can create R3 streams."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FORM_SECONDS
    while True:
        backend = NatsBackend(servers, prefix="CL", shared=True, replicas=NODES)
        try:
            await backend.start()
            return backend
        except Exception:  # not formed yet: no JetStream leader, streams refused
            await backend.close()
            if loop.time() > deadline:
                raise
            await asyncio.sleep(RETRY_SECONDS)


async def test_killing_one_node_loses_nothing_acknowledged(
    tmp_path: Path, cluster: tuple[list[str], list[subprocess.Popen[bytes]]]
) -> None:
    servers, procs = cluster
    backend = await _started(servers)
    config = RelayConfig(
        port=free_port(),
        identity_path=tmp_path / "relay.key",
        backend="nats",
        backend_options={"servers": servers, "prefix": "CL", "shared": True, "replicas": NODES},
    )
    alice, bob = Identity.generate(), Identity.generate()
    async with running_relay(config, backend=backend) as relay:
        sender, reader = RelayClient(relay.url, bob), RelayClient(relay.url, alice)
        acknowledged: list[str] = []
        try:
            for i in range(MESSAGES):
                if len(acknowledged) == KILL_AFTER:
                    # The mailbox stream's leader: the node whose loss matters most.
                    info = await backend.streams.js.stream_info("CL_MBOX")
                    victim = procs[int(info.cluster.leader.removeprefix("node"))]
                    victim.send_signal(signal.SIGKILL)
                    victim.wait(timeout=10)
                # While the cluster moves its leaders the relay answers 503: retried.
                await _retried(lambda i=i: sender.send(alice.agent_id, f"m{i}", b"sealed"))
                acknowledged.append(f"m{i}")
            batch = await _retried(lambda: reader.fetch(limit=2 * MESSAGES))
            assert {d.message_id for d in batch} == set(acknowledged)
        finally:
            await sender.close()
            await reader.close()


async def _retried(call: Callable[[], Awaitable[T]]) -> T:
    """``call()`` again while the relay answers with an error, for FORM_SECONDS."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FORM_SECONDS
    while True:
        try:
            return await call()
        except RelayError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(RETRY_SECONDS)
