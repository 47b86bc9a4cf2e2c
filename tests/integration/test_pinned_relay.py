"""An agent pins its relay (issue 14 item 6.2).

``sealwire init --relay URL`` fetches the relay's signed descriptor
(``GET /v1/info``), shows the relay id and stores it as ``[agent] relay_id``;
the agent's relay client then asks the relay to prove that id at every login
(``client_nonce``). Another relay answering on the same URL (a new identity,
an impostor) is refused with :class:`RelayIdentityError` before the agent signs
anything for it or takes a token from it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_runner import Cli
from ports import free_port

from sealwire.config import AgentConfig, open_agent
from sealwire.errors import ConfigurationError
from sealwire.identity import Identity
from sealwire.relay import RelayClient, RelayIdentityError, verify_descriptor
from sealwire_relay import RelayConfig, running_relay

TIMEOUT = 60.0


def _relay_config(tmp_path: Path, name: str, port: int) -> RelayConfig:
    return RelayConfig(
        port=port,
        identity_path=tmp_path / f"{name}.key",
        backend="sqlite",
        backend_options={"path": str(tmp_path / f"{name}.sqlite3")},
    )


async def test_an_agent_refuses_another_relay_on_its_relays_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEALWIRE_STORE_KEY", raising=False)
    port = free_port()
    cli = Cli(tmp_path)
    home = tmp_path / "alice"
    async with running_relay(_relay_config(tmp_path, "a", port)) as first:
        out = await cli("--home", "alice", "init", "--name", "alice", "--relay", first.url)
        assert first.relay_id in out
        config = AgentConfig.from_toml((home / "sealwire.toml").read_text())
        assert (config.relay, config.relay_id) == (first.url, first.relay_id)
        agent = open_agent(home)
        try:
            assert agent.relay is not None
            assert await agent.relay.count_key_packages() == 0  # the relay proved its id
        finally:
            await agent.relay.close()
            agent.store.close()

    async with running_relay(_relay_config(tmp_path, "b", port)) as second:
        assert second.url == first.url and second.relay_id != first.relay_id
        agent = open_agent(home)
        client = agent.relay
        assert isinstance(client, RelayClient)
        posted: list[str] = []
        real_post = client._session.post

        async def recording(path: str, body: Any, token: str | None) -> dict[str, Any]:
            posted.append(path)
            return await real_post(path, body, token)

        monkeypatch.setattr(client._session, "post", recording)
        try:
            with pytest.raises(RelayIdentityError, match="not the configured") as refused:
                await client.count_key_packages()
        finally:
            await client.close()
            agent.store.close()
        assert (refused.value.expected, refused.value.claimed) == (
            first.relay_id,
            second.relay_id,
        )
        assert posted == ["/v1/auth/challenge"]  # nothing signed for it, no token asked


async def test_init_refuses_a_relay_that_is_not_the_expected_one(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    async with running_relay(_relay_config(tmp_path, "a", free_port())) as relay:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sealwire.cli", "--home", "h", "init", "--relay", relay.url,
            "--relay-id", Identity.generate().agent_id, cwd=tmp_path, env=cli.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 1
    assert f"the relay at {relay.url} is {relay.relay_id}, not the expected" in err.decode()
    assert not (tmp_path / "h" / "state.db").exists()


async def test_the_descriptor_is_signed_by_the_relay(tmp_path: Path) -> None:
    async with (
        running_relay(_relay_config(tmp_path, "a", free_port())) as relay,
        httpx.AsyncClient() as http,
    ):
        answer = (await http.get(relay.url + "/v1/info")).json()
    descriptor = verify_descriptor(answer, url=relay.url)
    assert (descriptor.relay_id, descriptor.url) == (relay.relay_id, relay.url)
    impostor = Identity.generate()
    for tampered in (
        {**answer, "url": "http://elsewhere:1"},
        {**answer, "version": "0.0.0"},
        {**answer, "relay_id": impostor.agent_id},
        {**answer, "identity": impostor.public.to_json()},
    ):
        with pytest.raises(RelayIdentityError):
            verify_descriptor(tampered, url=relay.url)
    with pytest.raises(RelayIdentityError, match="names itself"):
        verify_descriptor(answer, url="http://127.0.0.1:1")


def test_an_agent_with_an_unpinned_relay_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sealwire.config import init_home

    monkeypatch.delenv("SEALWIRE_STORE_KEY", raising=False)
    init_home(tmp_path, name="r", relay="http://127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="relay_id"):
        open_agent(tmp_path)
