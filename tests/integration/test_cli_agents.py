"""Two agents run from the command line: `serve` with a handler module, `send` from another home."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

HANDLER = """
async def handle(task):
    text = task.message.parts[0].text
    await task.artifact(text[::-1], name="reversed")
    await task.complete("reversed it")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    url = f"tcp://127.0.0.1:{_free_port()}"
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
    url = f"tcp://127.0.0.1:{_free_port()}"
    sealwire("--home", "server", "init", "--listen", url, cwd=tmp_path, env=env)
    sealwire("--home", "client", "init", cwd=tmp_path, env=env)
    card = sealwire("--home", "server", "card", cwd=tmp_path, env=env)
    (tmp_path / "card.json").write_text(card.stdout)
    sent = sealwire(
        "--home", "client", "send", "card.json", "hi", "--timeout", "5", cwd=tmp_path, env=env
    )
    assert sent.returncode == 1
    lines = [line for line in sent.stderr.splitlines() if not line.startswith("#")]
    assert len(lines) == 1 and lines[0].startswith("sealwire: error: ")
