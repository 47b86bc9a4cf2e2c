"""The command line: init, card, plugins, policy explain; errors are one line, exit non-zero."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sealwire.cli import main
from sealwire.config import open_agent
from sealwire.identity import verify_card


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.delenv("SEALWIRE_STORE_KEY", raising=False)
    path = tmp_path / "agent"
    assert (
        main(
            [
                "--home",
                str(path),
                "init",
                "--name",
                "alice",
                "--listen",
                "tcp://127.0.0.1:7000",
                "--listen",
                "ws://127.0.0.1:7001",
            ]
        )
        == 0
    )
    return path


def test_init_says_which_peers_it_admits(tmp_path: Path, capsys) -> None:
    assert main(["--home", str(tmp_path / "a"), "init"]) == 0
    assert "trust: tofu (trust on first use)" in capsys.readouterr().out
    assert main(["--home", str(tmp_path / "b"), "init", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["trust"][0].startswith("trust: tofu") and shown["agent_id"].startswith("sw1")


def test_init_creates_home_with_private_key_file(home: Path, capsys) -> None:
    assert (home / "state.db").exists() and (home / "sealwire.toml").exists()
    assert oct((home / "store.key").stat().st_mode & 0o777) == "0o600"
    assert main(["--home", str(home), "init"]) == 1
    assert "already holds an agent" in capsys.readouterr().err


def test_card_is_signed_and_verifies(home: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["--home", str(home), "card"]) == 0
    card = json.loads(capsys.readouterr().out)
    verified = verify_card(card)
    assert card["name"] == "alice"
    assert card["signatures"]
    assert verified.identity.agent_id.startswith("sw1")


def test_policy_explain_prints_the_decision(home: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "bob"
    main(["--home", str(other), "init", "--name", "bob", "--listen", "tcp://127.0.0.1:7100"])
    capsys.readouterr()
    main(["--home", str(other), "card"])
    card_file = tmp_path / "bob.json"
    card_file.write_text(capsys.readouterr().out)
    code = main(["--home", str(home), "policy", "explain", str(card_file), "--json"])
    out, err = capsys.readouterr()
    if code == 0:
        decision = json.loads(out)
        assert decision["binding"] and decision["reason"] and decision["session"]
    else:  # no session binding installed in this environment
        assert err.startswith("sealwire: error: ") and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["card"],
        ["policy", "explain", "/nonexistent/card.json"],
    ],
)
def test_errors_are_one_line_and_non_zero(tmp_path: Path, argv: list[str], capsys) -> None:
    code = main(["--home", str(tmp_path / "nothing"), *argv])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("sealwire: error: ") and err.count("\n") == 1


def test_tampered_card_is_refused(home: Path, tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    main(["--home", str(home), "card"])
    card = json.loads(capsys.readouterr().out)
    card["name"] = "mallory"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(card))
    assert main(["--home", str(home), "policy", "explain", str(path)]) == 1
    assert "signature" in capsys.readouterr().err


def test_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sealwire.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert {"name": "builtins", "distribution": "sealwire"}.items() <= listed["plugins"][-1].items()


def test_relay_serve_runs_a_relay(tmp_path: Path) -> None:
    import socket
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "relay.toml"
    config.write_text(
        f'[relay]\nport = {port}\nidentity = "{tmp_path / "relay.key"}"\n'
        f'[relay.sqlite]\npath = "{tmp_path / "relay.db"}"\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "sealwire.cli", "relay", "serve", "--config", str(config)],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/v1/info", timeout=1).json()
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "relay did not start"
                time.sleep(0.2)
        assert info
    finally:
        process.terminate()
        process.communicate(timeout=15)


@pytest.mark.parametrize("push", [None, "\n[push]\nenabled = false\n"])
async def test_the_card_printed_is_the_card_the_agent_serves(
    tmp_path: Path, monkeypatch, capsys, push: str | None
) -> None:
    """`sealwire card` prints what the running agent presents (it said
    ``pushNotifications`` nowhere: a peer holding the printed card held another card
    than the agent's own, and took the agent's for a new one)."""
    monkeypatch.delenv("SEALWIRE_STORE_KEY", raising=False)
    path = tmp_path / "bob"
    assert main(["--home", str(path), "init", "--name", "bob"]) == 0
    if push is not None:
        config = path / "sealwire.toml"
        config.write_text(config.read_text() + push)
    capsys.readouterr()
    assert main(["--home", str(path), "card"]) == 0
    printed = json.loads(capsys.readouterr().out)
    agent = open_agent(path)
    try:
        served = await agent.start()
        await agent.stop()
    finally:
        agent.store.close()
    assert printed == dict(served.card)
