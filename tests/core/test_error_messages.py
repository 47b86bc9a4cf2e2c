"""Errors that name their cause (issue 17): the OS's reason for a failed listen or
connect, the reason a relay is unreachable; and every bad configuration input of the
issue through the real ``sealwire`` command in a subprocess (argv and output text only:
the CLI's internals change)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ports import free_port

from sealwire.identity import Identity
from sealwire.relay import RelayClient, RelayUnavailable, fetch_descriptor
from sealwire.transport import TransportError, connect, serve


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port that a listening socket holds."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield int(s.getsockname()[1])


@pytest.fixture
def closed() -> int:
    """A loopback port nothing listens on."""
    return free_port()


async def _never(stream: object) -> None:
    raise AssertionError("no connection expected")


@pytest.mark.parametrize("scheme", ["tcp", "ws"])
async def test_listening_on_a_taken_port_says_address_already_in_use(
    taken: int, scheme: str
) -> None:
    with pytest.raises(TransportError) as caught:
        await serve(f"{scheme}://127.0.0.1:{taken}", _never)  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"cannot listen on {scheme}://127.0.0.1:{taken}: address already in use"
    )


@pytest.mark.parametrize("scheme", ["tcp", "ws"])
async def test_connecting_to_a_closed_port_says_connection_refused(
    closed: int, scheme: str
) -> None:
    with pytest.raises(TransportError) as caught:
        await connect(f"{scheme}://127.0.0.1:{closed}")
    assert str(caught.value).endswith(": connection refused"), str(caught.value)


async def test_an_unreachable_relay_says_why(closed: int) -> None:
    url = f"http://127.0.0.1:{closed}"
    with pytest.raises(RelayUnavailable) as caught:
        await fetch_descriptor(url)
    assert str(caught.value) == f"relay {url} unreachable: connection refused"
    client = RelayClient(url, Identity.generate(), relay_id=Identity.generate().agent_id)
    try:
        with pytest.raises(RelayUnavailable, match="unreachable: connection refused"):
            await client.fetch()
    finally:
        await client.close()


async def test_a_relay_name_that_does_not_resolve_says_so() -> None:
    with pytest.raises(RelayUnavailable) as caught:
        await fetch_descriptor("http://no-such-host.invalid:8700")
    reason = str(caught.value).rpartition("unreachable: ")[2]
    assert reason and "ConnectError" not in reason  # the resolver's words ("name ... not known")
    assert reason[0].islower()


# -- the real command -------------------------------------------------------------------

HANDLERS = """
def plain(task):
    return None


async def good(task):
    await task.complete("ok")
"""


def sealwire(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SEALWIRE_STORE_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "sealwire.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def error_text(done: subprocess.CompletedProcess[str]) -> str:
    """The error the command printed, whitespace normalised: it failed, with no traceback
    (the CLI's own framing, exit code and line wrapping are the CLI's to choose)."""
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    return " ".join(done.stderr.split())


def test_cli_names_with_quotes_and_backslashes_work_and_bad_listen_urls_are_refused(
    tmp_path: Path,
) -> None:
    name = 'my "quoted" \\ agent'
    made = sealwire(tmp_path, "--home", "a", "init", "--name", name)
    assert made.returncode == 0, made.stderr
    card = sealwire(tmp_path, "--home", "a", "card")
    assert card.returncode == 0, card.stderr
    assert json.loads(card.stdout)["name"] == name

    injected = 'tcp://127.0.0.1:7000", "tcp://0.0.0.0:7001'
    line = error_text(sealwire(tmp_path, "--home", "b", "init", "--listen", injected))
    assert f"agent.listen[0]: {injected!r} is not a URL" in line
    assert not (tmp_path / "b").exists()

    line = error_text(sealwire(tmp_path, "--home", "c", "init", "--listen", "foo://bar:1"))
    assert "agent.listen[0]: no transport or binding serves 'foo' (allowed schemes: " in line
    assert "tcp" in line and "https" in line


def test_cli_refuses_unknown_bindings_options_and_loose_key_files(tmp_path: Path) -> None:
    assert sealwire(tmp_path, "--home", "a", "init", "--name", "a").returncode == 0
    config = tmp_path / "a" / "sealwire.toml"
    good = config.read_text()
    for extra, expected in [
        ('prefer = ["nosuch"]\n', "policy.prefer: no binding 'nosuch' is loaded (loaded: "),
        ("\n[bindings.nosuch]\n", "[bindings.nosuch]: no binding 'nosuch' is loaded (loaded: "),
        (
            '\n[bindings.noise]\npatterns = ["ZZ"]\n',
            "bindings.noise.patterns: 'ZZ' is not supported (allowed: IK, XX, XK)",
        ),
    ]:
        config.write_text(good + extra)
        line = error_text(sealwire(tmp_path, "--home", "a", "card"))
        assert f"{config.relative_to(tmp_path)}: " in line and expected in line, line
    config.write_text(good)
    key = tmp_path / "a" / "store.key"
    key.chmod(0o644)
    line = error_text(sealwire(tmp_path, "--home", "a", "card"))
    assert f"run 'chmod 600 {key.relative_to(tmp_path)}'" in line, line


def test_cli_serve_refuses_a_plain_handler_and_names_a_taken_port(
    tmp_path: Path, taken: int
) -> None:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    made = sealwire(tmp_path, "--home", "a", "init", "--listen", f"tcp://127.0.0.1:{taken}")
    assert made.returncode == 0, made.stderr
    line = error_text(sealwire(tmp_path, "--home", "a", "serve", "--handler", "handlers:plain"))
    assert "the message handler handlers.plain must be an async function" in line
    line = error_text(sealwire(tmp_path, "--home", "a", "serve", "--handler", "handlers:good"))
    assert f"cannot listen on tcp://127.0.0.1:{taken}: address already in use" in line


def test_cli_init_with_an_unreachable_relay_says_connection_refused(
    tmp_path: Path, closed: int
) -> None:
    url = f"http://127.0.0.1:{closed}"
    line = error_text(sealwire(tmp_path, "--home", "a", "init", "--relay", url))
    assert f"relay {url} unreachable: connection refused" in line
