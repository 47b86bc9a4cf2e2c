"""Two agents run from the command line: `serve` with a handler module, `send` from another home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ports import free_port

HANDLER = """
async def handle(task):
    text = task.message.parts[0].text
    await task.artifact(text[::-1], name="reversed")
    await task.complete("reversed it")
"""


def sealwire(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sealwire.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_and_send(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SEALWIRE_STORE_KEY"}
    (tmp_path / "reverser.py").write_text(HANDLER)
    url = f"tcp://127.0.0.1:{free_port()}"
    assert (
        sealwire(
            "--home", "server", "init", "--name", "reverser", "--listen", url, cwd=tmp_path, env=env
        ).returncode
        == 0
    )
    assert (
        sealwire("--home", "client", "init", "--name", "caller", cwd=tmp_path, env=env).returncode
        == 0
    )
    card = sealwire("--home", "server", "card", cwd=tmp_path, env=env)
    (tmp_path / "server-card.json").write_text(card.stdout)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sealwire.cli",
            "--home",
            "server",
            "serve",
            "--handler",
            "reverser:handle",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert "is serving" in server.stdout.readline()
        sent = sealwire(
            "--home", "client", "send", "server-card.json", "hello", cwd=tmp_path, env=env
        )
        assert sent.returncode == 0, sent.stderr
        task = json.loads(sent.stdout)
        assert task["status"]["state"] == "TASK_STATE_COMPLETED"
        assert task["artifacts"][0]["parts"][0]["text"] == "olleh"
        assert "via noise" in sent.stderr
    finally:
        server.terminate()
        _out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err


def test_send_to_nobody_fails_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SEALWIRE_STORE_KEY"}
    url = f"tcp://127.0.0.1:{free_port()}"
    sealwire("--home", "server", "init", "--listen", url, cwd=tmp_path, env=env)
    sealwire("--home", "client", "init", cwd=tmp_path, env=env)
    card = sealwire("--home", "server", "card", cwd=tmp_path, env=env)
    (tmp_path / "card.json").write_text(card.stdout)
    sent = sealwire(
        "--home", "client", "send", "card.json", "hi", "--timeout", "5", cwd=tmp_path, env=env
    )
    assert sent.returncode == 3  # unreachable (docs/cli.md)
    lines = [line for line in sent.stderr.splitlines() if not line.startswith("#")]
    assert len(lines) == 1 and lines[0].startswith("sealwire: error: ")


def test_sidecar_command_serves_the_upstreams_card_signed(tmp_path: Path) -> None:
    import asyncio
    import threading

    import httpx

    from sealwire.identity import verify_card

    upstream_port = free_port()
    card = {"name": "legacy", "description": "an A2A server in another language",
            "version": "9", "skills": [{"id": "s", "name": "s", "description": "d", "tags": []}],
            "supportedInterfaces": [{"url": f"http://127.0.0.1:{upstream_port}/",
                                     "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
            "capabilities": {}, "defaultInputModes": [], "defaultOutputModes": []}  # fmt: skip

    async def app(scope, receive, send):  # a minimal upstream: only its card
        body = json.dumps(card).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=upstream_port,
                                           lifespan="off", log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    env = {k: v for k, v in os.environ.items() if k != "SEALWIRE_STORE_KEY"}
    sealwire(
        "--home",
        "side",
        "init",
        "--listen",
        f"tcp://127.0.0.1:{free_port()}",
        cwd=tmp_path,
        env=env,
    )
    local = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sealwire.cli",
            "--home",
            "side",
            "sidecar",
            "--upstream",
            f"http://127.0.0.1:{upstream_port}",
            "--local",
            f"127.0.0.1:{local}",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert "sidecar" in process.stdout.readline()
        served = httpx.get(f"http://127.0.0.1:{local}/.well-known/agent-card.json",
                           timeout=10, trust_env=False).json()  # fmt: skip
        verified = verify_card(served)
        assert served["name"] == "legacy" and served["skills"][0]["id"] == "s"
        assert verified.offers and verified.offers[0].name == "noise"
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=20)
        server.should_exit = True
        thread.join(timeout=10)
    assert process.returncode == 0, err
