"""What every secrets-manager store plugin does to open a :class:`ManagedStore` from
its options: read numeric options, put the manager behind its local cache, read a
store URL. One place, so the plugins differ only in their manager."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl

from sealwire.errors import ConfigurationError
from sealwire.store._keys import StoreKey
from sealwire.store._managed import ManagedStore
from sealwire.store._secrets import CallCounter, SecretsBackend
from sealwire.store._sqlite import SqliteStore

__all__ = ["location_options", "open_behind_cache", "option_number"]


def option_number(options: Mapping[str, str], name: str, default: float) -> float:
    """The non-negative number of option ``name`` (``default`` when absent)."""
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"store option {name} must be a number, not {raw!r}") from None
    if value < 0:
        raise ConfigurationError(f"store option {name} must not be negative")
    return value


def open_behind_cache(
    backend: SecretsBackend,
    key: StoreKey,
    cache_path: Path,
    options: Mapping[str, str],
    *,
    label: str,
    counter: CallCounter,
) -> ManagedStore:
    """``backend`` behind its write-ahead cache at ``cache_path`` (option
    ``max_unflushed``); the backend is closed when the cache cannot be opened."""
    try:
        cache = SqliteStore.open(cache_path, key)
    except BaseException:
        backend.close()
        raise
    return ManagedStore.open(
        backend,
        key,
        label=label,
        cache=cache,
        max_unflushed=int(option_number(options, "max_unflushed", 0)),
        counter=counter,
    )


def location_options(location: str, default_cache: str) -> tuple[dict[str, str], Path]:
    """A store URL's ``PREFIX?name=value&...`` as options (``prefix`` among them) and the
    folder of its cache, whose file name (``cache``, else ``default_cache``) is the
    options' ``cache``."""
    prefix, _, query = location.partition("?")
    options = {"prefix": prefix, **dict(parse_qsl(query))}
    cache = Path(options.pop("cache", default_cache))
    return {**options, "cache": cache.name}, cache.parent
