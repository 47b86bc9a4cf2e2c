"""An agent's home: create it, open it, move its state; what its trust settings mean."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from sealwire.config._defaults import DEFAULT_DESCRIPTION
from sealwire.config._model import (
    CONFIG_FILE,
    DEFAULT_STORE_BACKEND,
    STORE_FILE,
    AgentConfig,
    StoreConfig,
    check_store,
)
from sealwire.errors import ConfigurationError, StateError
from sealwire.identity import Identity, TrustMode
from sealwire.plugins import Registry, load_registry
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
    from sealwire.agent import Agent, PushPolicy

__all__ = [
    "HOME_ENV",
    "KEY_FILE",
    "default_home",
    "describe_trust",
    "init_home",
    "migrate_store",
    "open_agent",
    "open_home",
    "push_policy",
    "read_config",
    "relay_address",
]

HOME_ENV = "SEALWIRE_HOME"
KEY_FILE = "store.key"
IDENTITY_NAMESPACE = "identity"


def default_home() -> Path:
    return Path(os.environ.get(HOME_ENV, ".sealwire"))


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


def _open_state_store(
    home: Path, store: StoreConfig, key: StoreKey, registry: Registry
) -> StateStore:
    check_store(store, registry, source=str(home / CONFIG_FILE))
    if store.backend == DEFAULT_STORE_BACKEND:
        return open_store(str(home / STORE_FILE), key, backends=registry.store_backends)
    opener = registry.store_backends[store.backend].open_configured
    assert opener is not None  # check_store refused a backend without one
    return opener(store.options, key, home)


def _config_text(home: Path) -> str | None:
    try:
        return (home / CONFIG_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8"
        raise ConfigurationError(f"cannot read {home / CONFIG_FILE}: {why}") from None


def read_config(home: Path, registry: Registry | None = None) -> AgentConfig:
    """The home's ``sealwire.toml``, checked against the loaded plugins (the defaults
    when the file is absent)."""
    registry = registry or load_registry()
    text = _config_text(home)
    if text is None:
        return AgentConfig()
    return AgentConfig.from_toml(text, source=str(home / CONFIG_FILE), registry=registry)


def _checked(text: str, path: Path, registry: Registry) -> AgentConfig:
    """The configuration ``text`` holds, when it is a file every command can read: UTF-8
    (a command-line argument that was not UTF-8 comes as lone surrogates) and valid as
    :meth:`AgentConfig.from_toml` reads it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(
            f"{path}: a value (name, description, URL or option) is not UTF-8 text"
        ) from None
    return AgentConfig.from_toml(text, source=str(path), registry=registry)


def _write_config(home: Path, text: str) -> None:
    """Replace ``sealwire.toml`` atomically (a crash leaves the old or the new file)."""
    path = home / CONFIG_FILE
    tmp = path.with_name(f".{CONFIG_FILE}.tmp")
    with tmp.open("w", encoding="utf-8") as out:
        out.write(text)
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
    description: str | None = None,
) -> Identity:
    """Create a home: configuration, store key, store and a new identity.

    The configuration is checked as every command will read it (names, URLs, the
    loaded plugins) before anything is created: a bad ``listen`` URL creates nothing.

    ``relay_id`` pins the relay (see :func:`sealwire.relay.fetch_descriptor`);
    ``relay_ca`` is the relay's CA or certificate file, as written in the config;
    ``store`` is ``[agent.store]`` (default: SQLite in ``state.db``)."""
    registry = registry or load_registry()
    if (home / STORE_FILE).exists():
        raise StateError(f"{home} already holds an agent (remove it to start anew)")
    config_path = home / CONFIG_FILE
    text = None
    if config_path.exists():
        config = read_config(home, registry)
    else:  # written by the TOML writer, then read back as any command will read it
        text = AgentConfig(
            name=name,
            description=DEFAULT_DESCRIPTION if description is None else description,
            listen=tuple(listen),
            relay=relay,
            relay_id=relay_id,
            relay_ca=relay_ca,
            store=store or StoreConfig(),
        ).to_toml()
        config = _checked(text, config_path, registry)
    home.mkdir(parents=True, exist_ok=True)
    state = _open_state_store(home, config.store, _store_key(home, registry, create=True), registry)
    try:
        if state.get(IDENTITY_NAMESPACE, "self") is not None:
            raise StateError(f"the {config.store.backend} store of {home} already holds an agent")
        identity = Identity.generate(post_quantum=post_quantum)
        state.put(IDENTITY_NAMESPACE, "self", identity.private_bytes_for_storage())
    finally:
        state.close()
    if text is not None:
        _write_config(home, text)
    return identity


def open_home(
    home: Path, registry: Registry | None = None
) -> tuple[AgentConfig, Identity, StateStore]:
    """Read a home made by :func:`init_home`: its configuration, identity and store."""
    registry = registry or load_registry()
    config = read_config(home, registry)
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
        from sealwire.config._write import with_store

        path = home / CONFIG_FILE
        current = _config_text(home)
        text = (
            attrs.evolve(config, store=target).to_toml()
            if current is None
            # the person's comments and keys kept
            else with_store(current, None if target.is_default else target.backend, target.options)
        )
        _checked(text, path, registry)  # before any copy
        key = _store_key(home, registry, create=False)
        destination = _open_state_store(home, target, key, registry)
        try:
            moved = copy_store(source, destination)
        finally:
            destination.close()
        _write_config(home, text)
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
        policy=config.policy,
        trust_mode=config.trust,
        registry=registry,
        binding_options=config.bindings,
        **({"push": push_policy(config, home)} | agent_options),
    )


def push_policy(config: AgentConfig, home: Path) -> PushPolicy:
    """The push-notification policy of ``[agent.push]`` (a relative ``ca_file`` is in
    the home)."""
    from sealwire.agent import PushPolicy

    push = dict(config.push)
    if isinstance(push.get("ca_file"), str):
        push["ca_file"] = str(home / push["ca_file"])
    return PushPolicy.from_mapping(push)


def describe_trust(config: AgentConfig) -> list[str]:
    """Lines saying which peers this configuration admits: the trust mode, how TLS
    clients enrol, which relay is pinned (``sealwire init`` prints them)."""
    mode = config.trust
    if mode is TrustMode.TOFU:
        lines = [
            "trust: tofu (trust on first use): any agent that reaches a listener with a "
            "valid signed card is admitted and its keys are pinned at that first contact; "
            "a later card of the same agent id with other keys is refused",
            'to admit only the agents you choose, set trust = "pinned" (then '
            "'sealwire trust pin CARD_FILE' each peer) or \"allowlist\" (then 'sealwire "
            "trust allow AGENT_ID') in [agent] of sealwire.toml",
        ]
    elif mode is TrustMode.PINNED:
        lines = [
            "trust: pinned: only agents pinned with 'sealwire trust pin CARD_FILE' are "
            "admitted, and only with exactly the keys pinned",
        ]
    else:
        lines = [
            "trust: allowlist: only agent ids allowed with 'sealwire trust allow AGENT_ID' "
            "are admitted (their keys are not pinned)",
        ]
    lines.append("'sealwire trust deny AGENT_ID' refuses an agent in every mode")
    tls = config.bindings.get("tls", {})
    if "tls" in config.bindings or any(u.startswith("https:") for u in config.listen):
        if tls.get("enroll", True):
            lines.append(
                "tls: enrolment is on (the default): a Sealwire agent calling over HTTPS "
                "may enrol its certificate, admitted once its signed card passes the trust "
                "mode above; any other HTTPS client must be pinned, or hold a certificate "
                "from [bindings.tls] ca_certificate or client_certificates "
                "(enroll = false turns enrolment off)"
            )
        else:
            lines.append(
                "tls: enrolment is off: an HTTPS client needs a certificate from "
                "[bindings.tls] ca_certificate or client_certificates"
            )
    if config.relay:
        lines.append(
            f"relay: {config.relay}, pinned to relay id {config.relay_id}: it carries "
            "only ciphertext, and must prove that id at every login"
        )
    return lines
