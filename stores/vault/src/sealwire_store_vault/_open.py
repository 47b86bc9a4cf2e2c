"""Opening a Vault store from ``[agent.store]`` options or a store URL, and the key provider."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import hvac

from sealwire.errors import ConfigurationError
from sealwire.store import (
    CallCounter,
    ManagedStore,
    StoreKey,
    location_options,
    open_behind_cache,
    option_number,
)
from sealwire_store_vault._options import (
    DEFAULT_ATTEMPTS,
    DEFAULT_BACKOFF,
    DEFAULT_CACHE_FILE,
    OPTIONS,
)
from sealwire_store_vault._vault import (
    REQUEST_TIMEOUT,
    VaultSecretsBackend,
)

__all__ = [
    "DEFAULT_CACHE_FILE",
    "KEY_PATH_ENV",
    "OPTIONS",
    "load_store_key",
    "open_from_location",
    "open_vault_store",
]

KEY_PATH_ENV = "SEALWIRE_VAULT_STORE_KEY_PATH"
"""``mount/path`` of a KV v2 secret whose field ``key`` holds the base64 store key."""

_MAX_TOKEN_FILE = 4096
"""A Vault token is about a hundred bytes; never read more than this from its file."""


def _token(token_file: str | None) -> str:
    if token_file:
        try:
            with open(token_file, "rb") as f:
                return f.read(_MAX_TOKEN_FILE).decode("ascii").strip()
        except (OSError, UnicodeDecodeError):
            raise ConfigurationError(f"cannot read the Vault token file {token_file}") from None
    token = os.environ.get("VAULT_TOKEN", "")
    if not token:
        raise ConfigurationError("no Vault token: set token_file or $VAULT_TOKEN")
    return token


def _client_factory(options: Mapping[str, str], home: Path | None) -> hvac.Client:
    token_file = options.get("token_file")
    if token_file and home is not None:
        token_file = str(home / token_file)
    ca = options.get("ca")
    verify: bool | str = str(home / ca) if ca and home is not None else (ca or True)
    return hvac.Client(
        url=options["url"],
        token=_token(token_file),
        namespace=options.get("namespace") or None,
        verify=verify,
        timeout=REQUEST_TIMEOUT,
    )


def open_vault_store(
    options: Mapping[str, str],
    key: StoreKey,
    home: Path,
    *,
    counter: CallCounter | None = None,
) -> ManagedStore:
    """The agent's store in a Vault KV v2 mount, with its cache in ``home``."""
    for required in ("url", "prefix"):
        if not options.get(required):
            raise ConfigurationError(f"the vault store needs option {required!r}")
    counter = counter or CallCounter()
    backend = VaultSecretsBackend(
        lambda: _client_factory(options, home),
        options["prefix"],
        mount=options.get("mount", "secret"),
        attempts=int(option_number(options, "retries", DEFAULT_ATTEMPTS)) or 1,
        backoff=option_number(options, "retry_backoff", DEFAULT_BACKOFF),
        counter=counter,
    )
    cache = home / options.get("cache", DEFAULT_CACHE_FILE)
    return open_behind_cache(
        backend,
        key,
        cache,
        options,
        label=f"vault:{backend.mount}/{backend.prefix}",
        counter=counter,
    )


def open_from_location(location: str, key: StoreKey) -> ManagedStore:
    """``vault:PREFIX?url=U&mount=M&cache=/path/cache.db`` (token from $VAULT_TOKEN)."""
    options, home = location_options(location, DEFAULT_CACHE_FILE)
    return open_vault_store(options, key, home)


def load_store_key() -> StoreKey | None:
    """The store key from ``$SEALWIRE_VAULT_STORE_KEY_PATH`` (``mount/path``, field ``key``).

    Server from ``$VAULT_ADDR``, token from ``$VAULT_TOKEN``."""
    location = os.environ.get(KEY_PATH_ENV)
    if not location:
        return None
    mount, _, path = location.strip("/").partition("/")
    url = os.environ.get("VAULT_ADDR")
    if not url or not path:
        raise ConfigurationError(f"{KEY_PATH_ENV} needs the form mount/path and $VAULT_ADDR")
    client = hvac.Client(url=url, token=_token(None), timeout=REQUEST_TIMEOUT)
    try:
        result = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, raise_on_deleted_version=True
        )
        text = result["data"]["data"]["key"]
    except Exception as exc:
        raise ConfigurationError(
            f"cannot read the store key from vault {location!r}: {type(exc).__name__}"
        ) from None
    finally:
        client.adapter.close()
    try:
        return StoreKey.from_text(str(text))
    except ConfigurationError:
        raise ConfigurationError(f"vault {location!r} does not hold a valid store key") from None
