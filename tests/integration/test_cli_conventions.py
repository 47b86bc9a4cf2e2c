"""Issue 17, items 2 and 3: the CLI's conventions, driven as a user would, in subprocesses.

Options before or after the command, ``SEALWIRE_*`` variables, ``--json`` shapes,
exit codes (0, 1 failed task, 2 usage, 3 unreachable, 4 configuration, 5 timed
out), one-line errors and ``--debug`` tracebacks, a closed stdout, ``trust list``,
``policy explain``, ``send`` (the binding it used, a failed task, a timeout that
names the task, the offline fallback to the mailbox) and ``task get|list|cancel``.
Homes are made once per module: each process costs about half a second of imports.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import Cli
from ports import free_port
from waiting import until

from sealwire.identity import Identity
from sealwire_relay import RelayConfig, running_relay

HANDLER = """
import asyncio

async def handle(task):
    text = task.message.parts[0].text
    if text == "fail":
        raise RuntimeError("asked to fail")
    if text == "wait":
        await asyncio.Event().wait()  # until canceled
    await task.complete("echo: " + text)
"""

TIMEOUT = 90


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALWIRE_")}
    return {**env, **extra}


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sealwire.cli", *args],
        cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if not line.startswith("#")]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``server`` (Noise over TCP) and ``client``, their cards, and the handler module."""
    root = tmp_path_factory.mktemp("cli")
    (root / "handler.py").write_text(HANDLER)
    url = f"tcp://127.0.0.1:{free_port()}"
    for name, extra in (("server", ["--listen", url]), ("client", [])):
        done = run("init", "--home", name, "--name", name, *extra, cwd=root)
        assert done.returncode == 0, done.stderr
        card = run("card", cwd=root, SEALWIRE_HOME=name)  # the variable, not the option
        assert card.returncode == 0, card.stderr
        (root / f"{name}.json").write_text(card.stdout)
    yield root


def test_options_after_the_command_environment_and_json(homes: Path) -> None:
    after = run("card", "--home", "server", "--json", cwd=homes)
    before = run("--home=server", "card", cwd=homes)
    assert after.returncode == before.returncode == 0, after.stderr + before.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout)
    listed = run("plugins", cwd=homes, SEALWIRE_JSON="1", SEALWIRE_LOG_LEVEL="debug",
                 SEALWIRE_LOG_FORMAT="json")  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    shape = json.loads(listed.stdout)
    assert set(shape) == {"plugins", "bindings", "commands"}
    assert {"name", "version", "uri", "shape", "properties"} == set(shape["bindings"][0])
    assert "group" in shape["commands"] and "relay" in shape["commands"]
    for line in listed.stderr.splitlines():  # logs, if any, are JSON objects
        assert json.loads(line)["level"]
    assert "task" in run("--help", cwd=homes).stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["send", "client.json"],  # missing TEXT
        ["send", "client.json", "hi", "--situation", "sometimes", "--no-such-option"],
        ["card", "--log-format", "xml"],  # a global option's bad value, after the command
    ],
)
def test_usage_errors_exit_2_without_a_traceback(homes: Path, argv: list[str]) -> None:
    done = run("--home", "client", *argv, cwd=homes)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Error:" in done.stderr


def test_errors_are_one_line_and_debug_shows_the_traceback(homes: Path) -> None:
    missing = run("card", "--home", "nobody", cwd=homes)
    assert missing.returncode == 1
    assert (
        one_error_line(missing) == "sealwire: error: no agent in nobody: run 'sealwire init' first"
    )
    debugged = run("card", "--home", "nobody", cwd=homes, SEALWIRE_DEBUG="1")  # as --debug
    assert debugged.returncode == 1
    assert "Traceback (most recent call last)" in debugged.stderr
    assert debugged.stderr.rstrip().endswith("run 'sealwire init' first")
    bad = homes / "bad"
    bad.mkdir(exist_ok=True)
    (bad / "sealwire.toml").write_text("[agent\n")
    invalid = run("card", "--home", "bad", cwd=homes)
    assert invalid.returncode == 4, invalid.stderr  # configuration
    assert "not valid TOML" in one_error_line(invalid)
    unwritable = run("plugin", "new", "zed", "--into", "server.json/sub", cwd=homes)
    assert unwritable.returncode == 1  # a file error is one line too
    assert one_error_line(unwritable).startswith("sealwire: error: server.json/sub")


def test_a_closed_stdout_exits_quietly(homes: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sealwire.cli", "--home", "server", "plugins", "--json"],
        cwd=homes, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # as `| head -c0` would, before anything is written
    err = process.stderr.read()
    process.stderr.close()
    assert process.wait(timeout=TIMEOUT) == 1
    assert err == b""


def test_trust_list_shows_pins_allow_and_deny(homes: Path) -> None:
    other = Identity.generate().agent_id
    assert run("trust", "pin", "server.json", "--home", "client", cwd=homes).returncode == 0
    assert run("--home", "client", "trust", "allow", other, cwd=homes).returncode == 0
    denied = run("--home", "client", "--json", "trust", "deny", other, cwd=homes)
    assert json.loads(denied.stdout) == {"action": "deny", "agent_id": other}
    listed = json.loads(run("--home", "client", "trust", "list", "--json", cwd=homes).stdout)
    server_id = json.loads((homes / "server.json").read_text())
    assert listed["mode"] == "tofu"
    assert [p["agent_id"] for p in listed["pinned"]] == [_agent_id(server_id)]
    assert listed["allowed"] == [other] and listed["denied"] == [other]
    table = run("--home", "client", "trust", "list", cwd=homes).stdout
    assert _agent_id(server_id) in table and other in table and "denied" in table
    forgot = run("--home", "client", "trust", "forget", other, cwd=homes)
    assert forgot.returncode == 0 and forgot.stdout == f"forget: {other}\n"


def _agent_id(card: dict[str, object]) -> str:
    found = re.search(r"sw1[a-z2-7]{50,}", json.dumps(card))
    assert found is not None
    return found.group(0)


def test_policy_explain_offline_does_not_say_online(homes: Path) -> None:
    done = run("--home", "client", "policy", "explain", "server.json", "--situation", "offline",
               cwd=homes)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "the peer is online" not in done.stdout
    assert "peer offline" in done.stdout and "noise" in done.stdout
    shaped = run("--home", "client", "--json", "policy", "explain", "server.json", cwd=homes)
    decision = json.loads(shaped.stdout)
    assert set(decision) == {"peer", "situation", "binding", "uri", "url", "reason", "session",
                             "rejected"}  # fmt: skip
    assert decision["binding"] == "noise" and decision["situation"] == "peer online"


def test_send_exit_codes_timeout_and_task_commands(homes: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "sealwire.cli", "serve", "--handler", "handler:handle",
         "--home", "server", "--json", "--log-format", "json"],
        cwd=homes, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        serving = json.loads(server.stdout.readline())["serving"]
        assert serving["name"] == "server" and serving["offers"][0]["binding"] == "noise"
        sent = run("--home", "client", "send", "server.json", "hello", cwd=homes)
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout)["status"]["state"] == "TASK_STATE_COMPLETED"
        assert "# via noise (tcp://" in sent.stderr and "# protocol: Noise_" in sent.stderr
        assert "# suite: " in sent.stderr
        quiet = run("--home", "client", "send", "server.json", "hello", "--quiet", cwd=homes)
        assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr

        failed = run("--home", "client", "send", "server.json", "fail", cwd=homes)
        assert failed.returncode == 1, failed.stderr  # the task failed
        assert json.loads(failed.stdout)["status"]["state"] == "TASK_STATE_FAILED"

        waited = run("--home", "client", "send", "server.json", "wait", "--timeout", "10",
                     cwd=homes)  # fmt: skip
        assert waited.returncode == 5, waited.stderr  # timed out
        found = re.search(r"task (\S+) has not settled", waited.stderr)
        assert found is not None, waited.stderr
        task_id = found.group(1)
        assert f"task get server.json {task_id}" in waited.stderr
        assert waited.stderr.rstrip().endswith("sealwire: error: no answer within 10 s")

        got = run("--home", "client", "task", "get", "server.json", task_id, cwd=homes)
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["status"]["state"] == "TASK_STATE_WORKING"
        listed = run("--home", "client", "--json", "task", "list", "server.json", cwd=homes)
        assert task_id in [t["id"] for t in json.loads(listed.stdout)["tasks"]]
        table = run("--home", "client", "task", "list", "server.json", cwd=homes).stdout
        assert task_id in table and "working" in table
        canceled = run("--home", "client", "task", "cancel", "server.json", task_id, cwd=homes)
        assert canceled.returncode == 0, canceled.stderr
        assert json.loads(canceled.stdout)["status"]["state"] == "TASK_STATE_CANCELED"
        unknown = run("--home", "client", "task", "get", "server.json", "no-such-task", cwd=homes)
        assert unknown.returncode == 1
        assert one_error_line(unknown).startswith("sealwire: error: ")
    finally:
        server.terminate()
        _out, err = server.communicate(timeout=TIMEOUT)
    assert server.returncode == 0, err
    logged = [json.loads(line) for line in err.splitlines()]  # --log-format json: all JSON
    assert any(e["message"].startswith("handler failed for task") for e in logged), err
    nobody = run("--home", "client", "send", "server.json", "hello", "--timeout", "20", cwd=homes)
    assert nobody.returncode == 3, nobody.stderr  # unreachable, and no mailbox to fall back on
    assert "cannot connect" in one_error_line(nobody)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, and SIGKILL if it has not exited within the grace period."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.communicate(), STOP_GRACE)
    except TimeoutError:
        process.kill()
        await process.communicate()


STOP_GRACE = 20.0
"""Seconds a stopped agent may take to exit before it is killed (a loaded machine)."""


@pytest.mark.slow
async def test_send_to_an_offline_peer_falls_back_to_its_mailbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --situation: the live session cannot reach the peer, so the message waits in the
    peer's mailbox at the relay; the peer starts later, answers, and send prints the task.
    Only ``send`` and Bob's ``serve`` are processes (the homes are made in this one)."""
    from sealwire.cli import main
    from sealwire.config import open_agent

    monkeypatch.delenv("SEALWIRE_STORE_KEY", raising=False)
    (tmp_path / "handler.py").write_text(HANDLER)
    config = RelayConfig(
        port=free_port(), identity_path=tmp_path / "relay.key", backend="sqlite",
        backend_options={"path": str(tmp_path / "relay.sqlite3")},
    )  # fmt: skip
    cli = Cli(tmp_path)
    url = f"tcp://127.0.0.1:{free_port()}"
    async with running_relay(config) as relay:
        for name, extra in (("bob", ["--listen", url]), ("alice", [])):
            argv = ["--home", str(tmp_path / name), "init", "--relay", relay.url, *extra]
            assert await asyncio.to_thread(main, argv) == 0
        # Bob starts once, to publish his prekeys at the relay, and stops: offline.
        bob_agent = open_agent(tmp_path / "bob")
        try:
            async with bob_agent:
                (tmp_path / "bob.json").write_text(json.dumps(dict(bob_agent.card.card)))
        finally:
            assert bob_agent.relay is not None
            await bob_agent.relay.close()
            bob_agent.store.close()
        sender = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sealwire.cli", "send", "bob.json", "hello", "--home", "alice",
            "--timeout", "120", cwd=tmp_path, env=cli.env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        said: list[bytes] = []

        async def read_stderr() -> None:
            assert sender.stderr is not None
            async for line in sender.stderr:
                said.append(line)

        reader = asyncio.create_task(read_stderr())
        bob = None
        try:
            await until(lambda: any(b"# via signal" in line for line in said), "mailbox", 60)
            bob = await cli.serve("bob")  # back online: reads his mailbox and answers
            assert sender.stdout is not None
            try:  # within the test's own time limit, to say what was seen
                out = await asyncio.wait_for(sender.stdout.read(), 80)
            except TimeoutError:
                raise AssertionError(f"no answer; send said {b''.join(said)!r}") from None
            assert await sender.wait() == 0, b"".join(said)
        finally:
            if bob is not None:
                await _stop(bob)
            await _stop(sender)
            await reader
    task = json.loads(out)
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    assert task["status"]["message"]["parts"][0]["text"] == "echo: hello"
    text = b"".join(said).decode()
    assert "noise cannot reach the peer" in text and "trying signal" in text
