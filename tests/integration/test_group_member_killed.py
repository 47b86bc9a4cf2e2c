"""A group member's process killed with SIGKILL keeps its group state.

Bob runs as ``sealwire serve`` (an encrypted SQLite store in his home, as a real agent
keeps it); Alice and Carol, in this process, both send requests to the group, so his
secret tree holds a ratchet of each (one record per sender). Bob is killed with
SIGKILL and started again: his state loads from those records and he answers every
sender; a request he had already answered is not served again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

from ports import free_port

from sealwire.agent import Agent, TaskContext
from sealwire.identity import Identity
from sealwire.relay import RelayClient
from sealwire.store import MemoryStore
from sealwire_relay import RelayConfig, running_relay

TIMEOUT = 30
HANDLER = """
async def handle(task):
    await task.complete("bob: " + task.message.parts[0].text)
"""


async def _cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A CLI command, run beside the event loop (the relay it may call runs on it)."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "sealwire.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


async def _serve_bob(cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    bob = subprocess.Popen(
        [sys.executable, "-m", "sealwire.cli", "--home", "bob", "serve", "--handler", "bob:handle"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert bob.stdout is not None
    assert "is serving" in await asyncio.to_thread(bob.stdout.readline)
    return bob


async def _kill(bob: subprocess.Popen[str]) -> None:
    """SIGKILL: nothing of Bob's runs after it."""
    bob.kill()
    await asyncio.to_thread(bob.wait, 10)
    assert bob.stdout is not None
    bob.stdout.close()


async def _agent(url: str, name: str, stack: contextlib.AsyncExitStack) -> Agent:
    identity = Identity.generate()
    relay = RelayClient(url, identity)
    stack.push_async_callback(relay.close)
    agent = Agent(identity, MemoryStore(), name=name, relay=relay)

    async def handler(task: TaskContext) -> None:
        await task.complete(f"{name}: {task.message.parts[0].text}")

    agent.on_message(handler)
    await agent.start()
    stack.push_async_callback(agent.stop)
    return agent


async def _bobs_answer(asker: Agent, group: bytes, bob_id: str, text: str) -> str:
    replies = await asker.send_to_group(group, text, timeout=TIMEOUT)
    (reply,) = [r for r in replies if r.agent_id == bob_id]
    assert reply.error is None, reply.error
    assert reply.result is not None
    return str(reply.result.status.message.parts[0].text)  # type: ignore[union-attr]


async def test_a_member_killed_answers_every_sender_after_its_restart(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SEALWIRE_STORE_KEY"}
    (tmp_path / "bob.py").write_text(HANDLER)
    config = RelayConfig(
        port=free_port(), identity_path=tmp_path / "relay.key", backend="sqlite",
        backend_options={"path": str(tmp_path / "relay.sqlite3")},
    )  # fmt: skip
    async with running_relay(config) as relay, contextlib.AsyncExitStack() as stack:
        await _cli(
            "--home", "bob", "init", "--name", "bob", "--relay", relay.url, cwd=tmp_path, env=env
        )
        bob_card = json.loads((await _cli("--home", "bob", "card", cwd=tmp_path, env=env)).stdout)
        bob = await _serve_bob(tmp_path, env)
        try:
            alice = await _agent(relay.url, "alice", stack)
            carol = await _agent(relay.url, "carol", stack)
            bob_id = alice.peer(bob_card).agent_id
            group = await alice.create_group()
            await alice.add_to_group(group, [bob_card, carol.card])
            for asker in (alice, carol, alice, carol):  # each sender's ratchet stepped
                assert await _bobs_answer(asker, group, bob_id, "before") == "bob: before"

            await _kill(bob)
            bob = await _serve_bob(tmp_path, env)
            for asker in (carol, alice):
                assert await _bobs_answer(asker, group, bob_id, "after") == "bob: after"
        finally:
            await _kill(bob)
