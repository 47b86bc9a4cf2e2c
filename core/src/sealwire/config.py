"""An agent's home folder: its configuration, its store and the store's key.

Layout of a home (``--home``, ``$SEALWIRE_HOME``, default ``./.sealwire``)::

    sealwire.toml   configuration: [agent], [policy], [bindings.<name>]
    state.db        the SQLite store (encrypted at rest), holding the identity
    store.key       the store key, mode 0600 (unless $SEALWIRE_STORE_KEY or a
                    key provider plugin supplies it)

``[agent]`` keys: ``name``, ``description``, ``listen`` (transport URLs),
``relay`` (relay URL), ``relay_id`` (the relay's id, pinned: written by
``sealwire init --relay`` from the relay's signed descriptor; every login then
requires the relay to prove it), ``relay_ca`` (a PEM file of CA certificates, or
the relay's own certificate, that an ``https://`` relay must chain to instead of
the system store; relative to the home), ``trust`` (``tofu``, ``pinned`` or
``allowlist``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from sealwire.errors import ConfigurationError, StateError
from sealwire.identity import Identity, TrustMode, is_agent_id
from sealwire.plugins import Registry, load_registry
from sealwire.policy import PolicyConfig
from sealwire.store import StateStore, StoreKey, open_store, resolve_store_key

if TYPE_CHECKING:
    from sealwire.agent import Agent

__all__ = [
    "AgentConfig",
    "HOME_ENV",
    "default_home",
    "init_home",
    "open_agent",
    "open_home",
    "relay_address",
]

HOME_ENV = "SEALWIRE_HOME"
CONFIG_FILE = "sealwire.toml"
STORE_FILE = "state.db"
KEY_FILE = "store.key"
IDENTITY_NAMESPACE = "identity"


def default_home() -> Path:
    return Path(os.environ.get(HOME_ENV, ".sealwire"))


@attrs.frozen(kw_only=True)
class AgentConfig:
    """The parsed ``sealwire.toml`` of an agent."""

    name: str = "sealwire-agent"
    description: str = "A Sealwire agent"
    listen: tuple[str, ...] = ()
    relay: str | None = None
    relay_id: str | None = None
    relay_ca: str | None = None
    trust: TrustMode = TrustMode.TOFU
    policy: PolicyConfig = attrs.field(factory=PolicyConfig)
    bindings: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)

    @classmethod
    def from_toml(cls, text: str, *, source: str = CONFIG_FILE) -> AgentConfig:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{source} is not valid TOML: {exc}") from None
        unknown = sorted(set(data) - {"agent", "policy", "bindings"})
        if unknown:
            raise ConfigurationError(f"{source}: unknown table {unknown[0]!r}")
        agent = data.get("agent", {})
        if not isinstance(agent, Mapping):
            raise ConfigurationError(f"{source}: [agent] must be a table")
        bad = sorted(
            set(agent) - {"name", "description", "listen", "relay", "relay_id", "relay_ca", "trust"}
        )
        if bad:
            raise ConfigurationError(f"{source}: unknown key agent.{bad[0]}")
        listen = agent.get("listen", [])
        if not isinstance(listen, list) or not all(isinstance(u, str) for u in listen):
            raise ConfigurationError(f"{source}: agent.listen must be a list of URLs")
        try:
            trust = TrustMode[str(agent.get("trust", "tofu")).upper()]
        except KeyError:
            raise ConfigurationError(
                f"{source}: agent.trust must be tofu, pinned or allowlist"
            ) from None
        relay_id = agent.get("relay_id")
        if relay_id is not None and not is_agent_id(relay_id):
            raise ConfigurationError(f"{source}: agent.relay_id must be a relay id (sw1...)")
        relay_ca = agent.get("relay_ca")
        if relay_ca is not None and not isinstance(relay_ca, str):
            raise ConfigurationError(f"{source}: agent.relay_ca must be a file name")
        bindings = data.get("bindings", {})
        if not isinstance(bindings, Mapping) or not all(
            isinstance(v, Mapping) for v in bindings.values()
        ):
            raise ConfigurationError(f"{source}: [bindings.<name>] must be tables")
        return cls(
            name=str(agent.get("name", cls.name)),
            description=str(agent.get("description", cls.description)),
            listen=tuple(listen),
            relay=agent.get("relay"),
            relay_id=relay_id,
            relay_ca=relay_ca,
            trust=trust,
            policy=PolicyConfig.from_mapping(data.get("policy", {})),
            bindings=dict(bindings),
        )

    def to_toml(self) -> str:
        listen = ", ".join(f'"{u}"' for u in self.listen)
        lines = [
            "[agent]",
            f'name = "{self.name}"',
            f'description = "{self.description}"',
            f"listen = [{listen}]",
            f'trust = "{self.trust.name.lower()}"',
        ]
        if self.relay:
            lines.append(f'relay = "{self.relay}"')
        if self.relay_id:
            lines.append(f'relay_id = "{self.relay_id}"')
        if self.relay_ca:
            lines.append(f"relay_ca = {_toml_string(self.relay_ca)}")
        lines += [
            "",
            "[policy]",
            '# require = ["mutual_auth", "forward_secrecy"]',
            "# deny_bindings = []",
            "# deny_peers = []",
            "",
        ]
        return "\n".join(lines)


def _toml_string(value: str) -> str:
    """``value`` as a TOML basic string (a file name may hold quotes or backslashes)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _store_key(home: Path, registry: Registry, *, create: bool) -> StoreKey:
    """The store key from $SEALWIRE_STORE_KEY, ``store.key`` or a provider plugin;
    on ``create`` with none of them, a new key written to ``store.key`` (0600)."""
    key_file = home / KEY_FILE
    providers = [p.load for p in registry.store_key_providers]
    try:
        return resolve_store_key(
            key_file=key_file if key_file.exists() else None, providers=providers
        )
    except ConfigurationError:
        if not create:
            raise
    key = StoreKey.generate()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.export_for_file())
    return key


def init_home(
    home: Path,
    *,
    name: str,
    listen: tuple[str, ...] = (),
    relay: str | None = None,
    relay_id: str | None = None,
    relay_ca: str | None = None,
    post_quantum: bool = False,
    registry: Registry | None = None,
) -> Identity:
    """Create a home: configuration, store key, store and a new identity.

    ``relay_id`` pins the relay (see :func:`sealwire.relay.fetch_descriptor`);
    ``relay_ca`` is the relay's CA or certificate file, as written in the config."""
    registry = registry or load_registry()
    if (home / STORE_FILE).exists():
        raise StateError(f"{home} already holds an agent (remove it to start anew)")
    home.mkdir(parents=True, exist_ok=True)
    config_path = home / CONFIG_FILE
    if not config_path.exists():
        config = AgentConfig(
            name=name, listen=listen, relay=relay, relay_id=relay_id, relay_ca=relay_ca
        )
        config_path.write_text(config.to_toml())
    store = open_store(
        str(home / STORE_FILE),
        _store_key(home, registry, create=True),
        backends=registry.store_backends,
    )
    try:
        identity = Identity.generate(post_quantum=post_quantum)
        store.put(IDENTITY_NAMESPACE, "self", identity.private_bytes_for_storage())
    finally:
        store.close()
    return identity


def open_home(
    home: Path, registry: Registry | None = None
) -> tuple[AgentConfig, Identity, StateStore]:
    """Read a home made by :func:`init_home`: its configuration, identity and store."""
    registry = registry or load_registry()
    if not (home / STORE_FILE).exists():
        raise StateError(f"no agent in {home}: run 'sealwire init' first")
    try:
        config = AgentConfig.from_toml(
            (home / CONFIG_FILE).read_text(encoding="utf-8"), source=str(home / CONFIG_FILE)
        )
    except FileNotFoundError:
        config = AgentConfig()
    store = open_store(
        str(home / STORE_FILE),
        _store_key(home, registry, create=False),
        backends=registry.store_backends,
    )
    raw = store.get(IDENTITY_NAMESPACE, "self")
    if raw is None:
        store.close()
        raise StateError(f"the store in {home} holds no identity")
    return config, Identity.from_storage_bytes(raw), store


def relay_address(config: AgentConfig, identity: Identity) -> str | None:
    """The mailbox address the card names: this agent's mailbox on its relay."""
    if not config.relay:
        return None
    from sealwire.relay import mailbox_address

    return mailbox_address(config.relay, identity.agent_id)


def open_agent(home: Path, registry: Registry | None = None, **agent_options: Any) -> Agent:
    """An :class:`~sealwire.agent.Agent` configured from a home (not started yet).

    With ``[agent] relay`` set, the agent gets a relay client and offers its
    mailbox there; ``relay_id`` must be set too (the relay is pinned: every
    login asks it to prove that id, see :class:`~sealwire.relay.RelayClient`),
    else :class:`~sealwire.errors.ConfigurationError`. ``agent_options`` go to
    :class:`~sealwire.agent.Agent` (a ``dispatcher``, a ``card_base``). Stopping the
    agent does not close the store.
    """
    from sealwire.agent import Agent

    registry = registry or load_registry()
    config, identity, store = open_home(home, registry)
    relay = None
    if config.relay:
        from sealwire.relay import RelayClient

        if config.relay_id is None:
            store.close()
            raise ConfigurationError(
                f"{home / CONFIG_FILE}: agent.relay is set but agent.relay_id is not: the "
                "relay is not pinned. Run 'sealwire init --relay URL' in a new home, or add "
                'relay_id = "sw1..." (the relay id its signed GET /v1/info shows)'
            )

        ca = home / config.relay_ca if config.relay_ca else None
        relay = RelayClient(config.relay, identity, relay_id=config.relay_id, ca=ca)
    return Agent(
        identity,
        store,
        name=config.name,
        description=config.description,
        listen=config.listen,
        relay=relay,
        relay_address=relay_address(config, identity),
        policy=config.policy,
        trust_mode=config.trust,
        registry=registry,
        binding_options=config.bindings,
        **agent_options,
    )
