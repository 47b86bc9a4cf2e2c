"""A relay as a real process (``python -m sealwire_relay --config relay.toml``), and a
``nats-server -js`` for its NATS backend: to kill -9 and restart them in tests."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from ports import free_port

__all__ = ["RelayProcess", "nats_server"]

START_SECONDS = 20.0
"""A relay or nats-server that does not answer within this did not start (a loaded
2-core machine starts one in about a second)."""


@contextlib.contextmanager
def nats_server(store: Path) -> Iterator[str]:
    """A JetStream server on a free loopback port, storing in ``store``; its URL."""
    binary = shutil.which("nats-server")
    if binary is None:
        raise RuntimeError("nats-server is missing: run scripts/install-servers.sh")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not listen on {port}")
            time.sleep(0.02)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class RelayProcess:
    """A relay run as its own process on a fixed port and storage: :meth:`start` it,
    :meth:`kill` it with SIGKILL, start it again on the same port and files."""

    def __init__(
        self,
        directory: Path,
        *,
        backend: str,
        backend_options: Mapping[str, Any],
        limits: Mapping[str, float] | None = None,
        port: int | None = None,
        identity: Path | None = None,
        peers: Mapping[str, str] | None = None,
    ) -> None:
        """``peers``: the federation's other relays, relay id -> base URL."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "relay.log"
        self.config = directory / "relay.toml"
        lines = [
            "[relay]",
            'host = "127.0.0.1"',
            f"port = {self.port}",
            f'identity = "{identity or directory / "relay.key"}"',
            f'backend = "{backend}"',
            f"[relay.{backend}]",
        ]
        lines += [f"{k} = {json.dumps(v)}" for k, v in backend_options.items()]
        if limits:
            lines.append("[relay.limits]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in limits.items()]
        for relay_id, url in (peers or {}).items():
            lines += ["[[relay.peers]]", f'relay_id = "{relay_id}"', f'url = "{url}"']
        self.config.write_text("\n".join(lines) + "\n")
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_config(cls, config: Any, directory: Path) -> RelayProcess:
        """The relay a ``sealwire_relay.RelayConfig`` describes (its port, identity and
        backend), as a process: what ``make_config`` of the relay fixtures builds."""
        return cls(
            directory,
            backend=config.backend,
            backend_options=config.backend_options,
            port=config.port,
            identity=config.identity_path,
        )

    def start(self) -> None:
        """Start the relay and return once it answers (blocking: run it in a thread)."""
        with self.log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sealwire_relay", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self._proc = proc
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/v1/info", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise AssertionError(f"relay exited: {self.log.read_text()}")
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"relay did not start: {self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL the relay and reap it (blocking)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=10)
            self._proc = None
