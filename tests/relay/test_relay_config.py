"""The relay's configuration file and backend selection."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sealwire.errors import ConfigurationError
from sealwire.identity import Identity
from sealwire_relay import RelayConfig, load_or_create_identity, open_backend
from sealwire_relay._sqlite_backend import SqliteBackend


def test_from_toml(tmp_path: Path) -> None:
    peer = Identity.generate().agent_id
    (tmp_path / "relay.toml").write_text(
        f"""
[relay]
host = "127.0.0.1"
port = 9100
identity = "keys/relay.key"
backend = "sqlite"
[relay.sqlite]
path = "data/relay.db"
[relay.limits]
max_mailbox_depth = 5
[[relay.peers]]
relay_id = "{peer}"
url = "http://127.0.0.1:9101/"
"""
    )
    config = RelayConfig.from_toml(tmp_path / "relay.toml")
    assert config.url == "http://127.0.0.1:9100"
    assert config.identity_path == tmp_path / "keys/relay.key"
    assert config.backend_options == {"path": str(tmp_path / "data/relay.db")}
    assert config.limits.max_mailbox_depth == 5
    assert [(p.relay_id, p.url) for p in config.peers] == [(peer, "http://127.0.0.1:9101")]
    assert RelayConfig.from_mapping({}).backend == "sqlite"


@pytest.mark.parametrize(
    "text",
    [
        "[relay]\nport = 'x'",
        "[relay]\nport = true",
        "[relay]\npublic_url = 5",
        "[relay]\npeers = [{relay_id = 'x'}]",
        "[relay]\nunknown = 1",
        "[relay]\nhost = '0.0.0.0'",  # every interface: which URL do agents sign?
        "[relay]\nhost = '::'",
        "[relay]\npeers = [{relay_id = 'nope', url = 'http://x'}]",
        "[relay.limits]\nmax_message_bytes = -1",
        "relay = 3",
        "not toml [",
    ],
)
def test_bad_configuration(tmp_path: Path, text: str) -> None:
    (tmp_path / "relay.toml").write_text(text)
    with pytest.raises(ConfigurationError):
        RelayConfig.from_toml(tmp_path / "relay.toml")


def test_every_interface_with_the_url_agents_dial(tmp_path: Path) -> None:
    (tmp_path / "relay.toml").write_text(
        "[relay]\nhost = '0.0.0.0'\npublic_url = 'https://relay.example.org/'"
    )
    assert RelayConfig.from_toml(tmp_path / "relay.toml").url == "https://relay.example.org"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        RelayConfig.from_toml(tmp_path / "absent.toml")


def test_identity_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "id" / "relay.key"
    first = load_or_create_identity(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_identity(path).agent_id == first.agent_id


def test_open_backend(tmp_path: Path) -> None:
    backend = open_backend("sqlite", {"path": str(tmp_path / "x.db")})
    assert isinstance(backend, SqliteBackend)
    with pytest.raises(ConfigurationError):
        open_backend("nope", {})
    with pytest.raises(ConfigurationError):
        open_backend("sqlite", {"bogus": 1})
    with pytest.raises(ConfigurationError):
        open_backend("nats", {"servers": "nats://x"})


def test_open_backend_from_a_plugin(tmp_path: Path) -> None:
    """A plugin's backend comes through the ``sealwire_relay_backends`` hook; the server is
    handed the providers (it never loads plugins itself)."""
    from sealwire import hookimpl, plugins
    from sealwire.components import RelayBackendProvider

    made = SqliteBackend(tmp_path / "plugin.db")

    class Plugin:
        @hookimpl
        def sealwire_relay_backends(self) -> list[RelayBackendProvider]:
            return [
                RelayBackendProvider(name="custom", open=lambda options: made),
                RelayBackendProvider(name="broken", open=lambda options: object()),
            ]

    registry = plugins.load_registry(extra_plugins=[Plugin()])
    assert {"sqlite", "nats", "custom"} <= set(registry.relay_backends)  # entry point + plugin
    providers = list(registry.relay_backends.values())
    assert open_backend("custom", {}, providers) is made
    with pytest.raises(ConfigurationError, match="custom"):
        open_backend("custom", {})  # not among the built-in providers
    with pytest.raises(ConfigurationError, match="does not implement"):
        open_backend("broken", {}, providers)
