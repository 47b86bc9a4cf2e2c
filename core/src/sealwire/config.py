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

``[agent.store]`` chooses where the state lives: ``backend`` (``sqlite``, the
default, in ``state.db``; or a store plugin's name, e.g. ``aws`` from
``sealwire-store-aws``) and that backend's options as the table's other keys
(strings). The table is checked when the file is read: an unknown backend names
the package that brings it, an unknown or missing option is named.
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
from sealwire.store import (
    EnumerableStore,
    StateStore,
    StoreError,
    StoreKey,
    copy_store,
    open_store,
    resolve_store_key,
)

if TYPE_CHECKING:
    from sealwire.agent import Agent

__all__ = [
    "HOME_ENV",
    "STORE_PACKAGES",
    "AgentConfig",
    "StoreConfig",
    "check_store",
    "default_home",
    "init_home",
    "migrate_store",
    "open_agent",
    "open_home",
    "relay_address",
]

HOME_ENV = "SEALWIRE_HOME"
CONFIG_FILE = "sealwire.toml"
STORE_FILE = "state.db"
KEY_FILE = "store.key"
IDENTITY_NAMESPACE = "identity"
DEFAULT_STORE_BACKEND = "sqlite"
STORE_PACKAGES = {
    "aws": "sealwire-store-aws",
    "gcp": "sealwire-store-gcp",
    "vault": "sealwire-store-vault",
}
"""Store backends that ship as their own distribution: named in the error when absent."""


def default_home() -> Path:
    return Path(os.environ.get(HOME_ENV, ".sealwire"))


@attrs.frozen(kw_only=True)
class StoreConfig:
    """``[agent.store]``: the backend's name and its options (strings)."""

    backend: str = DEFAULT_STORE_BACKEND
    options: Mapping[str, str] = attrs.field(factory=dict)

    @classmethod
    def from_mapping(cls, table: object, *, source: str) -> StoreConfig:
        """Parse the table: ``backend`` (a name) and options (strings, numbers or booleans)."""
        if not isinstance(table, Mapping):
            raise ConfigurationError(f"{source}: [agent.store] must be a table")
        backend = table.get("backend")
        if not isinstance(backend, str) or not backend:
            raise ConfigurationError(
                f"{source}: agent.store.backend must name a store backend (sqlite, aws, ...)"
            )
        options: dict[str, str] = {}
        for name, value in table.items():
            if name == "backend":
                continue
            if isinstance(value, bool):
                options[name] = "true" if value else "false"
            elif isinstance(value, str | int | float):
                options[name] = str(value)
            else:
                raise ConfigurationError(f"{source}: agent.store.{name} must be a string")
        return cls(backend=backend, options=options)

    @classmethod
    def from_cli(cls, backend: str, pairs: list[str]) -> StoreConfig:
        """``--store NAME --store-option KEY=VALUE ...``."""
        options: dict[str, str] = {}
        for pair in pairs:
            name, sep, value = pair.partition("=")
            if not sep or not name:
                raise ConfigurationError(f"--store-option must be KEY=VALUE, not {pair!r}")
            options[name.strip()] = value.strip()
        return cls(backend=backend, options=options)

    def to_toml(self) -> list[str]:
        if self.backend == DEFAULT_STORE_BACKEND and not self.options:
            return []
        lines = ["", "[agent.store]", f"backend = {_toml_string(self.backend)}"]
        lines += [f"{name} = {_toml_string(v)}" for name, v in sorted(self.options.items())]
        return lines


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
    store: StoreConfig = attrs.field(factory=StoreConfig)
    policy: PolicyConfig = attrs.field(factory=PolicyConfig)
    bindings: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    push: Mapping[str, Any] = attrs.field(factory=dict)
    """The ``[push]`` table: a :class:`~sealwire.agent.PushPolicy` (webhooks of push
    notifications: ``enabled``, ``reason``, ``allow_networks``, ``ca_file`` relative
    to the home...)."""

    @classmethod
    def from_toml(
        cls, text: str, *, source: str = CONFIG_FILE, registry: Registry | None = None
    ) -> AgentConfig:
        """Parse and check the file; with ``registry``, check ``[agent.store]`` against
        the loaded store backends too (see :func:`check_store`)."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{source} is not valid TOML: {exc}") from None
        unknown = sorted(set(data) - {"agent", "policy", "bindings", "push"})
        if unknown:
            raise ConfigurationError(f"{source}: unknown table {unknown[0]!r}")
        agent = data.get("agent", {})
        if not isinstance(agent, Mapping):
            raise ConfigurationError(f"{source}: [agent] must be a table")
        bad = sorted(
            set(agent)
            - {"name", "description", "listen", "relay", "relay_id", "relay_ca", "trust", "store"}
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
        push = data.get("push", {})
        if not isinstance(push, Mapping):
            raise ConfigurationError(f"{source}: [push] must be a table")
        from sealwire.agent import PushPolicy

        PushPolicy.from_mapping(push)  # checked now, built when the agent is opened
        store = StoreConfig()
        if "store" in agent:
            store = StoreConfig.from_mapping(agent["store"], source=source)
        if registry is not None:
            check_store(store, registry, source=source)
        return cls(
            name=str(agent.get("name", cls.name)),
            description=str(agent.get("description", cls.description)),
            listen=tuple(listen),
            relay=agent.get("relay"),
            relay_id=relay_id,
            relay_ca=relay_ca,
            trust=trust,
            store=store,
            policy=PolicyConfig.from_mapping(data.get("policy", {})),
            bindings=dict(bindings),
            push=dict(push),
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
        lines += self.store.to_toml()
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


def check_store(store: StoreConfig, registry: Registry, *, source: str = CONFIG_FILE) -> None:
    """:class:`ConfigurationError` unless ``[agent.store]`` names a loaded backend that
    can be configured, with known options and every required one."""
    if store.backend == DEFAULT_STORE_BACKEND:
        if store.options:
            raise ConfigurationError(
                f"{source}: the sqlite store takes no options (it is {STORE_FILE} in the home)"
            )
        return
    backend = registry.store_backends.get(store.backend)
    if backend is None:
        package = STORE_PACKAGES.get(store.backend)
        if package is not None:
            raise ConfigurationError(
                f"{source}: store backend {store.backend!r} needs the package {package}"
                f" (pip install {package})"
            )
        known = sorted(n for n, b in registry.store_backends.items() if b.open_configured)
        raise ConfigurationError(
            f"{source}: no store backend {store.backend!r}"
            f" (known: {', '.join([DEFAULT_STORE_BACKEND, *known])})"
        )
    if backend.open_configured is None:
        raise ConfigurationError(
            f"{source}: store backend {store.backend!r} cannot be chosen in [agent.store]"
        )
    backend.check_options(store.options, source=source)


def _open_state_store(
    home: Path, store: StoreConfig, key: StoreKey, registry: Registry
) -> StateStore:
    check_store(store, registry, source=str(home / CONFIG_FILE))
    if store.backend == DEFAULT_STORE_BACKEND:
        return open_store(str(home / STORE_FILE), key, backends=registry.store_backends)
    opener = registry.store_backends[store.backend].open_configured
    assert opener is not None  # check_store refused a backend without one
    return opener(store.options, key, home)


def _read_config(home: Path, registry: Registry) -> AgentConfig:
    path = home / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return AgentConfig()
    return AgentConfig.from_toml(text, source=str(path), registry=registry)


def _write_config(home: Path, config: AgentConfig) -> None:
    """Replace ``sealwire.toml`` atomically (a crash leaves the old or the new file)."""
    path = home / CONFIG_FILE
    tmp = path.with_name(f".{CONFIG_FILE}.tmp")
    with tmp.open("w", encoding="utf-8") as out:
        out.write(config.to_toml())
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def init_home(
    home: Path,
    *,
    name: str,
    listen: tuple[str, ...] = (),
    relay: str | None = None,
    relay_id: str | None = None,
    relay_ca: str | None = None,
    post_quantum: bool = False,
    store: StoreConfig | None = None,
    registry: Registry | None = None,
) -> Identity:
    """Create a home: configuration, store key, store and a new identity.

    ``relay_id`` pins the relay (see :func:`sealwire.relay.fetch_descriptor`);
    ``relay_ca`` is the relay's CA or certificate file, as written in the config;
    ``store`` is ``[agent.store]`` (default: SQLite in ``state.db``)."""
    registry = registry or load_registry()
    if (home / STORE_FILE).exists():
        raise StateError(f"{home} already holds an agent (remove it to start anew)")
    config_path = home / CONFIG_FILE
    if config_path.exists():
        config = _read_config(home, registry)
    else:
        config = AgentConfig(
            name=name,
            listen=listen,
            relay=relay,
            relay_id=relay_id,
            relay_ca=relay_ca,
            store=store or StoreConfig(),
        )
        check_store(config.store, registry, source=str(config_path))
    home.mkdir(parents=True, exist_ok=True)
    state = _open_state_store(home, config.store, _store_key(home, registry, create=True), registry)
    try:
        if state.get(IDENTITY_NAMESPACE, "self") is not None:
            raise StateError(f"the {config.store.backend} store of {home} already holds an agent")
        identity = Identity.generate(post_quantum=post_quantum)
        state.put(IDENTITY_NAMESPACE, "self", identity.private_bytes_for_storage())
    finally:
        state.close()
    if not config_path.exists():
        _write_config(home, config)
    return identity


def open_home(
    home: Path, registry: Registry | None = None
) -> tuple[AgentConfig, Identity, StateStore]:
    """Read a home made by :func:`init_home`: its configuration, identity and store."""
    registry = registry or load_registry()
    config = _read_config(home, registry)
    if config.store.backend == DEFAULT_STORE_BACKEND and not (home / STORE_FILE).exists():
        raise StateError(f"no agent in {home}: run 'sealwire init' first")
    store = _open_state_store(
        home, config.store, _store_key(home, registry, create=False), registry
    )
    raw = store.get(IDENTITY_NAMESPACE, "self")
    if raw is None:
        store.close()
        raise StateError(f"the store of {home} holds no identity: run 'sealwire init' first")
    return config, Identity.from_storage_bytes(raw), store


def migrate_store(home: Path, target: StoreConfig, registry: Registry | None = None) -> int:
    """Move an agent's state to another store, verified, then point the home at it.

    Order, so that a crash at any point leaves one complete state in use: copy
    every key into the target in one transaction and read each back; replace
    ``sealwire.toml`` atomically; only then retire the source (a SQLite file is
    renamed ``state.db.migrated-N``, kept as a backup; a remote store is emptied).
    The agent must not run meanwhile. :returns: the number of keys moved.
    """
    registry = registry or load_registry()
    config, _identity, source = open_home(home, registry)
    try:
        if target.backend == config.store.backend and target.options == config.store.options:
            raise ConfigurationError(f"the agent's state is already in that {target.backend} store")
        if target.backend == DEFAULT_STORE_BACKEND and (home / STORE_FILE).exists():
            raise StateError(f"{home / STORE_FILE} exists: move it away to migrate back")
        if not isinstance(source, EnumerableStore):
            raise StoreError(f"the {config.store.backend} store cannot list its namespaces")
        key = _store_key(home, registry, create=False)
        destination = _open_state_store(home, target, key, registry)
        try:
            moved = copy_store(source, destination)
        finally:
            destination.close()
        _write_config(home, attrs.evolve(config, store=target))
        if config.store.backend == DEFAULT_STORE_BACKEND:
            source.close()
            n = 1
            while (home / f"{STORE_FILE}.migrated-{n}").exists():
                n += 1
            os.replace(home / STORE_FILE, home / f"{STORE_FILE}.migrated-{n}")
        else:
            names = [(ns, name) for ns in source.namespaces() for name in source.keys(ns)]
            with source.transaction() as txn:
                for namespace, name in names:
                    txn.delete(namespace, name)
    finally:
        source.close()
    return moved


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
    from sealwire.agent import PushPolicy

    push = dict(config.push)
    if isinstance(push.get("ca_file"), str):
        push["ca_file"] = str(home / push["ca_file"])
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
        **({"push": PushPolicy.from_mapping(push)} | agent_options),
    )
