"""Persistent agent state (ARCHITECTURE layer 7): keys, sessions, group states, trust.

:class:`SqliteStore` is the default: one file, WAL, every value sealed with
AES-256-GCM (namespaces and key names are stored in the clear).
:class:`MemoryStore` has the same semantics without persistence.
:class:`ManagedStore` keeps the state in a secrets manager through a
:class:`SecretsBackend` (the store plugins bring one each). Plugins add
backends through the ``sealwire_state_stores`` hook (:class:`StoreBackend`)
and key sources through ``sealwire_store_key_providers``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs

from sealwire.errors import ConfigurationError
from sealwire.store._base import (
    MAX_NAME_LENGTH,
    MAX_VALUE_SIZE,
    EnumerableStore,
    MemoryStore,
    StateStore,
    StoreConflictError,
    StoreCredentialsError,
    StoreError,
    StoreThrottledError,
    StoreTransaction,
    StoreUnavailableError,
    check_name,
    check_prefix,
    check_value,
)
from sealwire.store._keys import (
    DEFAULT_KEY_ENV,
    STORE_KEY_SIZE,
    StoreKey,
    require_private_file,
    resolve_store_key,
)
from sealwire.store._managed import MAX_REBASES, ManagedStore
from sealwire.store._managed_open import location_options, open_behind_cache, option_number
from sealwire.store._manifest import CHUNK_MAX, HEAD_MAX, INLINE_MAX
from sealwire.store._secrets import CallCounter, LostRace, SecretsBackend
from sealwire.store._sqlite import SCHEMA_VERSION, VALUE_FORMAT, SqliteStore
from sealwire.store._sqlite import seal as seal_value
from sealwire.store._sqlite import unseal as unseal_value

__all__ = [
    "BUILTIN_BACKENDS",
    "CHUNK_MAX",
    "CallCounter",
    "DEFAULT_KEY_ENV",
    "EnumerableStore",
    "HEAD_MAX",
    "INLINE_MAX",
    "LostRace",
    "MAX_NAME_LENGTH",
    "MAX_REBASES",
    "MAX_VALUE_SIZE",
    "ManagedStore",
    "MemoryStore",
    "SCHEMA_VERSION",
    "STORE_KEY_SIZE",
    "SecretsBackend",
    "SqliteStore",
    "StateStore",
    "StoreBackend",
    "StoreConflictError",
    "StoreCredentialsError",
    "StoreError",
    "StoreKey",
    "StoreOption",
    "StoreThrottledError",
    "StoreTransaction",
    "StoreUnavailableError",
    "VALUE_FORMAT",
    "cache_options",
    "check_name",
    "check_prefix",
    "check_value",
    "copy_store",
    "location_options",
    "open_behind_cache",
    "open_store",
    "option_number",
    "require_private_file",
    "resolve_store_key",
    "seal_value",
    "unseal_value",
]


@attrs.frozen(kw_only=True)
class StoreOption:
    """An option a store backend takes in ``[agent.store]`` (all values are strings)."""

    name: str
    help: str
    required: bool = False


def cache_options(default_cache: str) -> tuple[StoreOption, ...]:
    """The options :func:`open_behind_cache` reads (``cache``, ``max_unflushed``), for a
    store that opens through it; ``default_cache`` is its cache's file name."""
    return (
        StoreOption(name="cache", help=f"the local write-ahead cache (default {default_cache})"),
        StoreOption(
            name="max_unflushed",
            help="commits kept only on this host before a flush (default 0: write-through)",
        ),
    )


@attrs.frozen
class StoreBackend:
    """A kind of state store, selected by the scheme of a store URL.

    ``open(location, key)`` gets the URL without ``"<name>:"`` and without a
    following ``"//"`` (``"sqlite:///var/a.db"`` gives ``"/var/a.db"``).

    A backend chosen in ``[agent.store]`` of ``sealwire.toml`` declares its
    ``options`` (checked when the file is read: an unknown or missing one is a
    :class:`ConfigurationError`) and opens through ``open_configured(options,
    key, home)``, ``home`` being the agent's folder (for a local cache).
    """

    name: str
    open: Callable[[str, StoreKey], StateStore]
    options: tuple[StoreOption, ...] = ()
    open_configured: Callable[[Mapping[str, str], StoreKey, Path], StateStore] | None = None

    def check_options(self, options: Mapping[str, str], *, source: str) -> None:
        """:class:`ConfigurationError` naming an unknown or a missing required option."""
        known = {o.name: o for o in self.options}
        for name in sorted(options):
            if name not in known:
                raise ConfigurationError(
                    f"{source}: store backend {self.name!r} has no option {name!r}"
                    f" (options: {', '.join(sorted(known)) or 'none'})"
                )
        for option in self.options:
            if option.required and option.name not in options:
                raise ConfigurationError(
                    f"{source}: store backend {self.name!r} needs option {option.name!r}"
                    f" ({option.help})"
                )


def _open_memory(location: str, key: StoreKey) -> StateStore:
    return MemoryStore()


BUILTIN_BACKENDS = (
    StoreBackend("sqlite", SqliteStore.open),
    StoreBackend("memory", _open_memory),
)

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")  # two characters or more: "C:" is a path


def open_store(
    url: str, key: StoreKey, *, backends: Mapping[str, StoreBackend] | None = None
) -> StateStore:
    """Open the store a URL names.

    ``url`` is a file path (SQLite), ``"sqlite:///path"``, ``"sqlite://:memory:"``,
    ``"memory:"``, or ``"<backend>:..."`` for a backend in ``backends`` (the
    built-in ones when ``None``).

    :raises ConfigurationError: the URL names no known backend.
    """
    known = {b.name: b for b in BUILTIN_BACKENDS} if backends is None else dict(backends)
    match = _SCHEME.match(url)
    if match is None:
        name, location = "sqlite", url
    else:
        name, location = match.group(1).lower(), url[match.end() :]
        location = location.removeprefix("//")
    backend = known.get(name)
    if backend is None:
        raise ConfigurationError(
            f"no store backend {name!r} (known: {sorted(known)}); write ./{url} for a file path"
        )
    if name == "sqlite" and not location:
        raise ConfigurationError("a sqlite store URL needs a path")
    return backend.open(location, key)


def copy_store(source: EnumerableStore, target: StateStore) -> int:
    """Copy every key of ``source`` into ``target`` in one transaction, then read each back.

    A key the target already holds with the same value is fine (a copy interrupted
    and run again). :returns: the number of keys copied. :raises StoreError: the
    target holds a key with another value, or a value read back differs (nothing
    is removed from ``source``).
    """
    items: list[tuple[str, str, bytes]] = []
    for namespace in source.namespaces():
        for key in source.keys(namespace):
            value = source.get(namespace, key)
            if value is not None:
                items.append((namespace, key, value))
    with target.transaction() as txn:
        for namespace, key, value in items:
            if txn.get(namespace, key) not in (None, value):
                raise StoreError(f"the target store already holds {namespace}/{key}")
            txn.put(namespace, key, value)
    for namespace, key, value in items:
        if target.get(namespace, key) != value:
            raise StoreError(f"verification failed: {namespace}/{key} differs in the target")
    return len(items)
