"""An agent's home: its configuration file, store key and identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealwire.agent import Agent
from sealwire.config import AgentConfig, init_home, open_agent, open_home
from sealwire.errors import ConfigurationError, SealwireError, StateError
from sealwire.identity import Identity, TrustMode
from sealwire.relay import RelayClient
from sealwire.store import MemoryStore, StoreKey


def test_config_round_trip_and_defaults() -> None:
    config = AgentConfig(name="a", listen=("tcp://127.0.0.1:1",), relay="http://r:8700")
    again = AgentConfig.from_toml(config.to_toml())
    assert (again.name, again.listen, again.relay, again.trust) == (
        "a",
        ("tcp://127.0.0.1:1",),
        "http://r:8700",
        TrustMode.TOFU,
    )


@pytest.mark.parametrize(
    "text",
    [
        "[agent]\nlisten = 'tcp://x'",
        "[agent]\ntrust = 'blind'",
        "[agent]\ncolour = 'red'",
        "[nonsense]\n",
        "[bindings]\nnoise = 3",
        "[agent\n",
    ],
)
def test_bad_configuration_is_one_clear_error(text: str) -> None:
    with pytest.raises(ConfigurationError):
        AgentConfig.from_toml(text)


def test_home_with_env_key_writes_no_key_file(tmp_path: Path, monkeypatch) -> None:
    key = StoreKey.generate()
    monkeypatch.setenv("SEALWIRE_STORE_KEY", key.export_for_file().decode().strip())
    identity = init_home(tmp_path, name="env")
    assert not (tmp_path / "store.key").exists()
    _config, loaded, store = open_home(tmp_path)
    store.close()
    assert loaded.agent_id == identity.agent_id
    monkeypatch.setenv("SEALWIRE_STORE_KEY", StoreKey.generate().export_for_file().decode())
    with pytest.raises(SealwireError):
        open_home(tmp_path)  # the wrong key does not open the store


def test_open_agent_uses_the_configured_relay(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SEALWIRE_STORE_KEY", raising=False)
    relay_id = Identity.generate().agent_id
    identity = init_home(tmp_path, name="r", relay="http://127.0.0.1:9", relay_id=relay_id)
    agent = open_agent(tmp_path)
    assert agent.relay is not None
    assert agent.relay_address == "http://127.0.0.1:9/v1/mailboxes/" + identity.agent_id
    agent.store.close()


def test_an_agent_offers_its_mailbox_on_its_relay_by_default() -> None:
    """Given only a relay, the card's mailbox address is the relay's for this agent;
    an address given (a public URL in front of the relay) is kept."""
    identity = Identity.generate()
    relay = RelayClient("http://127.0.0.1:9", identity)
    assert Agent(identity, MemoryStore(), relay=relay).relay_address == relay.mailbox_address
    public = "https://relay.example/v1/mailboxes/" + identity.agent_id
    kept = Agent(identity, MemoryStore(), relay=relay, relay_address=public)
    assert kept.relay_address == public
    assert Agent(identity, MemoryStore()).relay_address is None


def test_missing_home(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="sealwire init"):
        open_home(tmp_path / "none")
