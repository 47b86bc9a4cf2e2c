"""The relay backends this distribution brings, and the choice of one by name.

Apart from :mod:`sealwire_relay._backend` (the contract) so that the backends,
which import the contract, and the table of them import nothing in a circle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sealwire.components import RelayBackendProvider
from sealwire.errors import ConfigurationError
from sealwire_relay._backend import RelayBackend

__all__ = ["BUILTIN_RELAY_BACKENDS", "open_backend"]


def _open_sqlite(options: Mapping[str, Any]) -> RelayBackend:
    from sealwire_relay._sqlite_backend import SqliteBackend

    return SqliteBackend.from_options(options)


def _open_nats(options: Mapping[str, Any]) -> RelayBackend:
    from sealwire_relay._nats_backend import NatsBackend

    return NatsBackend.from_options(options)


BUILTIN_RELAY_BACKENDS: tuple[RelayBackendProvider, ...] = (
    RelayBackendProvider(name="sqlite", open=_open_sqlite),
    RelayBackendProvider(name="nats", open=_open_nats),
)


def open_backend(
    name: str,
    options: Mapping[str, Any],
    providers: Sequence[RelayBackendProvider] = BUILTIN_RELAY_BACKENDS,
) -> RelayBackend:
    """The backend called ``name`` among ``providers`` (the built-in ones by default;
    ``sealwire relay serve`` passes those of every installed plugin)."""
    by_name = {p.name: p for p in providers}
    provider = by_name.get(name)
    if provider is None:
        raise ConfigurationError(
            f"no relay backend {name!r} (available: {', '.join(sorted(by_name))})"
        )
    backend: object = provider.open(options)
    if not isinstance(backend, RelayBackend):
        raise ConfigurationError(f"relay backend {name!r} does not implement RelayBackend")
    return backend
