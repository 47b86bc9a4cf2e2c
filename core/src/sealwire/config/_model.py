"""The parsed configuration (frozen attrs types) and its checks against the loaded plugins."""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from sealwire.binding import CarrierBinding
from sealwire.config._defaults import (
    CONFIG_FILE,
    DEFAULT_DESCRIPTION,
    DEFAULT_NAME,
    DEFAULT_STORE_BACKEND,
    STORE_FILE,
)
from sealwire.errors import ConfigurationError
from sealwire.identity import TrustMode
from sealwire.plugins import Registry
from sealwire.policy import PolicyConfig

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_STORE_BACKEND",
    "STORE_FILE",
    "STORE_PACKAGES",
    "AgentConfig",
    "StoreConfig",
    "check_names",
    "check_store",
    "listen_schemes",
]

STORE_PACKAGES = {
    "aws": "sealwire-store-aws",
    "gcp": "sealwire-store-gcp",
    "vault": "sealwire-store-vault",
}
"""Store backends that ship as their own distribution: named in the error when absent."""


@attrs.frozen(kw_only=True)
class StoreConfig:
    """``[agent.store]``: the backend's name and its options (strings)."""

    backend: str = DEFAULT_STORE_BACKEND
    options: Mapping[str, str] = attrs.field(factory=dict)

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

    @property
    def is_default(self) -> bool:
        return self.backend == DEFAULT_STORE_BACKEND and not self.options


@attrs.frozen(kw_only=True)
class AgentConfig:
    """The parsed ``sealwire.toml`` of an agent."""

    name: str = DEFAULT_NAME
    description: str = DEFAULT_DESCRIPTION
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
        """Parse and check the file (:mod:`sealwire.config._schema`): every error is one
        :class:`ConfigurationError` naming ``source``, the key and what it allows. With
        ``registry``, every name is checked against the loaded plugins too
        (:func:`check_names`)."""
        from sealwire.config._schema import validate_document  # pydantic: when a file is read

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{source} is not valid TOML: {exc}") from None
        document = validate_document(data, source=source)
        agent = document.agent
        try:
            policy = PolicyConfig.from_mapping(document.policy)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source}: {exc}") from None
        from sealwire.agent import PushPolicy

        try:
            PushPolicy.from_mapping(document.push)  # checked now, built when the agent opens
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source}: {exc}") from None
        store = StoreConfig()
        if agent.store is not None:
            store = StoreConfig(backend=agent.store.backend, options=agent.store.options())
        config = cls(
            name=agent.name,
            description=agent.description,
            listen=tuple(agent.listen),
            relay=agent.relay,
            relay_id=agent.relay_id,
            relay_ca=agent.relay_ca,
            trust=TrustMode(agent.trust),
            store=store,
            policy=policy,
            bindings=document.bindings,
            push=document.push,
        )
        if registry is not None:
            check_names(config, registry, source=source)
        return config

    def to_toml(self) -> str:
        """The file, written by a TOML writer (tomlkit, :mod:`sealwire.config._write`)."""
        import tomlkit  # when a file is written: reading needs only tomllib

        from sealwire.config._write import plain, policy_table, store_table

        doc = tomlkit.document()
        agent = tomlkit.table()
        agent.add("name", self.name)
        agent.add("description", self.description)
        agent.add("listen", list(self.listen))
        agent.add("trust", self.trust.value)
        for key in ("relay", "relay_id", "relay_ca"):
            value = getattr(self, key)
            if value:
                agent.add(key, value)
        if not self.store.is_default:
            agent.add("store", store_table(self.store.backend, self.store.options))
        doc.add("agent", agent)
        if self.bindings:
            bindings = tomlkit.table(is_super_table=True)
            for name, options in sorted(self.bindings.items()):
                bindings.add(name, plain(options))
            doc.add("bindings", bindings)
        if self.push:
            doc.add("push", plain(self.push))
        doc.add("policy", policy_table(self.policy))  # last: a line appended lands in it
        return tomlkit.dumps(doc)


def listen_schemes(registry: Registry, denied: Collection[str] = ()) -> list[str]:
    """The URL schemes an agent can listen on: the transports' and those of the
    bindings that bring a carrier of their own (as :class:`~sealwire.agent.Agent` serves
    them), less those of the ``denied`` bindings (the agent does not run them)."""
    schemes = set(registry.transports)
    for name, cls in registry.bindings.items():
        if issubclass(cls, CarrierBinding) and name not in denied:
            schemes |= cls.info.schemes
    return sorted(schemes)


def check_names(config: AgentConfig, registry: Registry, *, source: str = CONFIG_FILE) -> None:
    """:class:`ConfigurationError` unless every name the configuration uses exists in the
    loaded plugins: listen URL schemes, ``[bindings.<name>]`` and each binding's options
    (:meth:`~sealwire.binding.Binding.check_options`), the bindings ``[policy]`` names and
    the store backend. The error lists the valid values."""
    schemes = listen_schemes(registry, config.policy.deny_bindings)
    for i, url in enumerate(config.listen):
        scheme = urlsplit(url).scheme
        if scheme not in schemes:
            raise ConfigurationError(
                f"{source}: agent.listen[{i}]: no transport or binding serves {scheme!r}"
                f" (allowed schemes: {', '.join(schemes)})"
            )
    loaded = ", ".join(sorted(registry.bindings)) or "none"
    for name, options in config.bindings.items():
        cls = registry.bindings.get(name)
        if cls is None:
            raise ConfigurationError(
                f"{source}: [bindings.{name}]: no binding {name!r} is loaded (loaded: {loaded})"
            )
        try:
            cls.check_options(options)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source}: {exc}") from None
    policy = config.policy
    # the default order names every binding Sealwire ships, loaded or not: only a
    # configured one must name loaded bindings
    prefer = policy.prefer if policy.prefer != PolicyConfig().prefer else ()
    named = [("policy.prefer", n) for n in prefer]
    named += [("policy.deny_bindings", n) for n in sorted(policy.deny_bindings)]
    for peer, override in policy.peers.items():
        where = f"policy.peers.{peer}"
        if override.binding is not None:
            named.append((f"{where}.binding", override.binding))
        named += [(f"{where}.deny_bindings", n) for n in sorted(override.deny_bindings)]
    for key, name in named:
        if name not in registry.bindings:
            raise ConfigurationError(
                f"{source}: {key}: no binding {name!r} is loaded (loaded: {loaded})"
            )
    check_store(config.store, registry, source=source)


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
