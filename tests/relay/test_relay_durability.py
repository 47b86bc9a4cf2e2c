"""Durability: a relay process killed with SIGKILL loses nothing and duplicates nothing.

The relay runs as ``python -m sealwire.relay --config FILE`` (what ``sealwire
relay serve`` runs), on each backend.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from sealwire.identity import Identity
from sealwire.relay import RelayClient
from sealwire_relay import RelayConfig

MESSAGES = 40
ACKED = 10


def _toml(config: RelayConfig, path: Path) -> Path:
    lines = [
        "[relay]",
        f'host = "{config.host}"',
        f"port = {config.port}",
        f'identity = "{config.identity_path}"',
        f'backend = "{config.backend}"',
        f"[relay.{config.backend}]",
    ]
    lines += [f"{k} = {json.dumps(v)}" for k, v in config.backend_options.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _start(config_file: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sealwire_relay", "--config", str(config_file)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v1/info", timeout=0.5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"relay did not start: {log.read_text()}")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


async def test_sigkill_loses_and_duplicates_nothing(
    make_config: Callable[..., RelayConfig], tmp_path: Path
) -> None:
    config = make_config("durable")
    config_file = _toml(config, tmp_path / "relay.toml")
    log = tmp_path / "relay.log"
    proc = await asyncio.to_thread(_start, config_file, config.url, log)
    alice, bob = Identity.generate(), Identity.generate()
    try:
        async with RelayClient(config.url, alice) as a, RelayClient(config.url, bob) as b:
            await a.publish_key_package("kp", b"KP")
            for i in range(MESSAGES):
                await b.send(alice.agent_id, f"m{i}", f"payload {i}".encode())
            await a.ack((await a.fetch(limit=500))[:ACKED])
            _kill(proc)
            proc = await asyncio.to_thread(_start, config_file, config.url, log)
            # The client notices the new relay process and authenticates again.
            for i in range(MESSAGES):  # the sender retries everything: no duplicates
                await b.send(alice.agent_id, f"m{i}", f"payload {i}".encode())
            got = await a.fetch(limit=500)
            assert [d.message_id for d in got] == [f"m{i}" for i in range(ACKED, MESSAGES)]
            assert [d.envelope for d in got] == [
                f"payload {i}".encode() for i in range(ACKED, MESSAGES)
            ]
            assert await b.fetch_key_package(alice.agent_id) == b"KP"
            await a.ack(got)
            assert await a.fetch() == []
    finally:
        _kill(proc)
