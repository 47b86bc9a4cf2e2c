"""The relay as an operator runs it (``python -m sealwire_relay``), under process faults:
its port taken, its NATS down at start or killed while it runs, a wrong configuration.

Each expected failure is one line on standard error and a documented exit code
(3 unreachable, 4 configuration), never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ports import free_port
from waiting import until

from sealwire_relay._server import EXIT_CONFIGURATION, EXIT_UNREACHABLE

pytestmark = pytest.mark.skipif(shutil.which("nats-server") is None, reason="needs nats-server")

# A relay that failed to start exits well within this (its backend wait below is 2 s).
EXIT_SECONDS = 60.0


def _relay(config: Path, *extra: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    out = log.open("ab") if log else subprocess.PIPE
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "sealwire_relay", "--config", str(config), *extra],
            stdout=out,
            stderr=subprocess.STDOUT if log else subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        if log and not isinstance(out, int):
            out.close()


def _nats(port: int, store: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("nats-server")
    assert binary is not None
    return subprocess.Popen(
        [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        _stop(proc)


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=1.0).status_code
    except httpx.HTTPError:
        return None


def _nats_config(tmp_path: Path, port: int, nats_port: int, wait: float) -> Path:
    config = tmp_path / "relay.toml"
    config.write_text(
        f"[relay]\nport = {port}\nidentity = 'relay.key'\nbackend = 'nats'\n"
        f"backend_start_seconds = {wait}\n"
        f"[relay.nats]\nservers = ['nats://127.0.0.1:{nats_port}']\n"
    )
    return config


def test_port_taken_is_one_line_and_code_3(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "relay.toml"
        config.write_text(f"[relay]\nport = {port}\nidentity = 'relay.key'\n")
        done = subprocess.run(
            [sys.executable, "-m", "sealwire_relay", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=EXIT_SECONDS,
        )
    assert done.returncode == EXIT_UNREACHABLE == 3
    assert done.stderr == f"error: cannot listen on 127.0.0.1:{port}: address already in use\n"
    assert done.stdout == ""


def test_nats_down_at_start_retries_then_exits_3(tmp_path: Path) -> None:
    nats_port = free_port()  # nothing listens there
    config = _nats_config(tmp_path, free_port(), nats_port, wait=2)
    done = subprocess.run(
        [sys.executable, "-m", "sealwire_relay", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=EXIT_SECONDS,
    )
    assert done.returncode == EXIT_UNREACHABLE
    lines = done.stderr.splitlines()
    assert "Traceback" not in done.stderr
    attempts = [line for line in lines if "unreachable, attempt" in line]
    assert len(attempts) >= 2
    assert all(f"nats://127.0.0.1:{nats_port}" in line for line in attempts)
    # one line per attempt, then the final one, and nothing else
    assert len(lines) == len(attempts) + 1
    assert lines[-1].startswith("error: relay storage (nats) unreachable after")
    assert "ConnectionRefusedError" in lines[-1]


async def test_nats_started_late_the_relay_comes_up(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    nats_port, port = free_port(), free_port()
    log = tmp_path / "relay.log"
    procs.append(_relay(_nats_config(tmp_path, port, nats_port, wait=120), log=log))
    await until(lambda: "attempt 1" in log.read_text(), "a first failed attempt", 60)
    procs.append(_nats(nats_port, tmp_path / "js"))
    url = f"http://127.0.0.1:{port}"
    await until(lambda: _status(url + "/v1/health") == 200, "the relay up and healthy", 90)
    assert procs[0].poll() is None
    assert "Traceback" not in log.read_text()


async def test_nats_killed_while_running_relay_stays_and_recovers(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    nats_port, port = free_port(), free_port()
    store = tmp_path / "js"
    nats = _nats(nats_port, store)
    procs.append(nats)
    log = tmp_path / "relay.log"
    relay = _relay(_nats_config(tmp_path, port, nats_port, wait=60), log=log)
    procs.append(relay)
    health = f"http://127.0.0.1:{port}/v1/health"
    await until(lambda: _status(health) == 200, "the relay healthy", 90)

    nats.send_signal(signal.SIGKILL)
    nats.wait(timeout=10)
    await until(lambda: _status(health) == 503, "health reporting the storage down", 60)
    answer = httpx.get(health, timeout=5).json()
    assert "storage" in answer["failing"]
    assert relay.poll() is None

    procs.append(_nats(nats_port, store))
    await until(lambda: _status(health) == 200, "health recovered", 90)
    assert relay.poll() is None
    text = log.read_text()
    assert "Traceback" not in text
    assert "NATS connection lost" in text


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[relay]\nprot = 1\n", ["'prot'", "allowed:", "port", "public_url"]),
        ("[relay.nats]\nserver = ['x']\n", ["[relay.nats]", "'server'", "servers"]),
        ("[relay.limits]\nmax_mesage_bytes = 5\n", ["'max_mesage_bytes'", "max_message_bytes"]),
        ("[relay]\nport = 70000\n", ["port", "0..65535"]),
        ("[relay]\nport = 'x'\n", ["port", "an integer"]),
    ],
)
def test_bad_configuration_names_file_key_and_allowed(
    tmp_path: Path, text: str, named: list[str]
) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "sealwire_relay", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=EXIT_SECONDS,
    )
    assert done.returncode == EXIT_CONFIGURATION == 4
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f"error: {config}: ")
    for part in named:
        assert part in done.stderr


def test_unusable_identity_path_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("")
    config = tmp_path / "relay.toml"
    config.write_text(f"[relay]\nport = {free_port()}\nidentity = 'not-a-folder/relay.key'\n")
    done = subprocess.run(
        [sys.executable, "-m", "sealwire_relay", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=EXIT_SECONDS,
    )
    assert done.returncode == EXIT_CONFIGURATION
    assert done.stderr == (
        f"error: cannot read or create the relay's identity "
        f"{tmp_path / 'not-a-folder' / 'relay.key'}: not a directory\n"
    )


async def test_json_log_lines(tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    port = free_port()
    config = tmp_path / "relay.toml"
    config.write_text(f"[relay]\nport = {port}\nidentity = 'relay.key'\n")
    log = tmp_path / "relay.log"
    relay = _relay(config, "--log-level", "info", "--log-format", "json", log=log)
    procs.append(relay)
    url = f"http://127.0.0.1:{port}"
    await until(lambda: _status(url + "/v1/info") == 200, "the relay up", 60)
    await until(lambda: "/v1/info" in log.read_text(), "the request line", 30)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    request = next(line for line in lines if line.get("route") == "/v1/info")
    assert request["status"] == 200 and request["result"] == "ok"
    assert isinstance(request["duration_ms"], float)
    assert request["who"] == "127.0.0.1"
