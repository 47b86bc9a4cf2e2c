"""Persistent agent state (ARCHITECTURE layer 7): keys, sessions, group states, trust.

:class:`SqliteStore` is the default: one file, WAL, every value sealed with
AES-256-GCM (namespaces and key names are stored in the clear).
:class:`MemoryStore` has the same semantics without persistence. Plugins add
backends through the ``sealwire_state_stores`` hook (:class:`StoreBackend`)
and key sources through ``sealwire_store_key_providers``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import attrs

from sealwire.errors import ConfigurationError
from sealwire.store._base import (
    MAX_NAME_LENGTH,
    MAX_VALUE_SIZE,
    MemoryStore,
    StateStore,
    StoreError,
    StoreTransaction,
)
from sealwire.store._keys import DEFAULT_KEY_ENV, STORE_KEY_SIZE, StoreKey, resolve_store_key
from sealwire.store._sqlite import SCHEMA_VERSION, VALUE_FORMAT, SqliteStore

__all__ = [
    "BUILTIN_BACKENDS",
    "DEFAULT_KEY_ENV",
    "MAX_NAME_LENGTH",
    "MAX_VALUE_SIZE",
    "SCHEMA_VERSION",
    "STORE_KEY_SIZE",
    "VALUE_FORMAT",
    "MemoryStore",
    "SqliteStore",
    "StateStore",
    "StoreBackend",
    "StoreError",
    "StoreKey",
    "StoreTransaction",
    "open_store",
    "resolve_store_key",
]


@attrs.frozen
class StoreBackend:
    """A kind of state store, selected by the scheme of a store URL.

    ``open(location, key)`` gets the URL without ``"<name>:"`` and without a
    following ``"//"`` (``"sqlite:///var/a.db"`` gives ``"/var/a.db"``).
    """

    name: str
    open: Callable[[str, StoreKey], StateStore]


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
