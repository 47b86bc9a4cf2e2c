"""`sealwire policy explain` and `sealwire send` with post-quantum agents (issue 20).

Two agents made with `init --post-quantum`, each with the Noise ML-KEM hybrid on and
`require = ["post_quantum", "post_quantum_auth"]`: the policy picks Noise (it used to
refuse it: "lacks required properties: post_quantum"), explains the hybrid protocol,
and a real `serve` / `send` pair of processes talks over it and says so. A
third agent without the hybrid is refused with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ports import free_port

HANDLER = """
async def handle(task):
    await task.complete("ok")
"""
PQ_CONFIG = """require = ["post_quantum", "post_quantum_auth"]

[bindings.noise]
post_quantum = true
"""


def sealwire(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sealwire.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def make_home(name: str, *extra: str, cwd: Path, env: dict[str, str], pq: bool = True) -> None:
    flags = ["--post-quantum"] if pq else []
    done = sealwire("--home", name, "init", "--name", name, *flags, *extra, cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    if pq:
        with (cwd / name / "sealwire.toml").open("a", encoding="utf-8") as config:
            config.write(PQ_CONFIG)


def card_of(name: str, cwd: Path, env: dict[str, str]) -> Path:
    card = sealwire("--home", name, "card", cwd=cwd, env=env)
    assert card.returncode == 0, card.stderr
    path = cwd / f"{name}.json"
    path.write_text(card.stdout)
    return path


def test_explain_and_send_verbose_between_post_quantum_agents(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SEALWIRE_STORE_KEY"}
    (tmp_path / "okhandler.py").write_text(HANDLER)
    url = f"tcp://127.0.0.1:{free_port()}"
    make_home("server", "--listen", url, cwd=tmp_path, env=env)
    make_home("client", cwd=tmp_path, env=env)
    server_card = card_of("server", tmp_path, env)
    assert json.loads(server_card.read_text())["supportedInterfaces"], "noise is offered"

    explained = sealwire(
        "--home", "client", "policy", "explain", str(server_card), "--json", cwd=tmp_path, env=env
    )
    assert explained.returncode == 0, explained.stderr
    decision = json.loads(explained.stdout)
    out = "\n".join(decision["session"])
    assert decision["binding"] == "noise"
    assert "protocol: Noise_IKhfs_25519+MLKEM768_ChaChaPoly_SHA256" in out
    assert "suite: 25519+MLKEM768_ChaChaPoly_SHA256" in out
    assert "key exchange: post-quantum" in out and "authentication: post-quantum" in out

    server = subprocess.Popen(
        [sys.executable, "-m", "sealwire.cli", "--home", "server", "serve",
         "--handler", "okhandler:handle"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        assert "is serving" in server.stdout.readline()
        sent = sealwire("--home", "client", "send", str(server_card), "hi", cwd=tmp_path, env=env)
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout)["status"]["state"] == "TASK_STATE_COMPLETED"
        assert "# via noise " in sent.stderr
        assert "# protocol: Noise_IKhfs_25519+MLKEM768_ChaChaPoly_SHA256" in sent.stderr
        assert "# key exchange: post-quantum" in sent.stderr
        assert "# authentication: post-quantum" in sent.stderr
    finally:
        server.terminate()
        _out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err


def test_explain_refuses_a_classical_peer_with_the_reason(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SEALWIRE_STORE_KEY"}
    make_home(
        "classic", "--listen", f"tcp://127.0.0.1:{free_port()}", cwd=tmp_path, env=env, pq=False
    )
    make_home("client", cwd=tmp_path, env=env)
    card = card_of("classic", tmp_path, env)
    explained = sealwire("--home", "client", "policy", "explain", str(card), cwd=tmp_path, env=env)
    assert explained.returncode == 1
    assert "lacks required properties: post_quantum, post_quantum_auth" in explained.stderr
