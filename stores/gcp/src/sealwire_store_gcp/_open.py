"""Opening a GCP store from ``[agent.store]`` options or a store URL, and the key provider."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sealwire.errors import ConfigurationError
from sealwire.store import (
    CallCounter,
    ManagedStore,
    StoreKey,
    location_options,
    open_behind_cache,
    option_number,
)
from sealwire_store_gcp._gcp import (
    REQUEST_TIMEOUT,
    GcpSecretsBackend,
)
from sealwire_store_gcp._options import (
    DEFAULT_ATTEMPTS,
    DEFAULT_BACKOFF,
    DEFAULT_CACHE_FILE,
    OPTIONS,
)

__all__ = [
    "DEFAULT_CACHE_FILE",
    "KEY_SECRET_ENV",
    "OPTIONS",
    "load_store_key",
    "make_client",
    "open_from_location",
    "open_gcp_store",
]

KEY_SECRET_ENV = "SEALWIRE_GCP_STORE_KEY_SECRET"
"""``projects/P/secrets/S`` (its latest version holds the base64 store key)."""
ENDPOINT_ENV = "SEALWIRE_GCP_ENDPOINT"
_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,150}")  # secret ids: 255 characters, blobs add 70


def make_client(
    *, endpoint: str | None = None, credentials_file: str | None = None, anonymous: bool = False
) -> Any:
    """A Secret Manager client over REST (HTTP/1.1 + JSON)."""
    from google.api_core.client_options import ClientOptions
    from google.cloud import secretmanager_v1 as sm

    credentials: Any = None
    if anonymous:
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    elif credentials_file:
        from google.oauth2 import service_account

        credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            credentials_file, scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
    client_options = ClientOptions(api_endpoint=endpoint) if endpoint else None
    return sm.SecretManagerServiceClient(
        transport="rest", credentials=credentials, client_options=client_options
    )


def open_gcp_store(
    options: Mapping[str, str],
    key: StoreKey,
    home: Path,
    *,
    counter: CallCounter | None = None,
) -> ManagedStore:
    """The agent's store in Secret Manager, with its cache in ``home``."""
    for required in ("project", "prefix"):
        if not options.get(required):
            raise ConfigurationError(f"the gcp store needs option {required!r}")
    if not _PREFIX.fullmatch(options["prefix"]):
        raise ConfigurationError("gcp store option prefix: 1 to 150 letters, digits, - or _")
    credentials_file = options.get("credentials_file")
    if credentials_file:
        credentials_file = str(home / credentials_file)
    anonymous = options.get("anonymous", "false").lower() == "true"
    counter = counter or CallCounter()
    backend = GcpSecretsBackend(
        lambda: make_client(
            endpoint=options.get("endpoint") or None,
            credentials_file=credentials_file,
            anonymous=anonymous,
        ),
        options["project"],
        options["prefix"],
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
        label=f"gcp:{backend.project}/{backend.prefix}",
        counter=counter,
    )


def open_from_location(location: str, key: StoreKey) -> ManagedStore:
    """``gcp:PREFIX?project=P&endpoint=E&cache=/path/cache.db`` (a store URL)."""
    options, home = location_options(location, DEFAULT_CACHE_FILE)
    return open_gcp_store(options, key, home)


def load_store_key() -> StoreKey | None:
    """The store key from the secret ``$SEALWIRE_GCP_STORE_KEY_SECRET`` (latest version),
    with Application Default Credentials (endpoint from ``$SEALWIRE_GCP_ENDPOINT``)."""
    secret = os.environ.get(KEY_SECRET_ENV)
    if not secret:
        return None
    client = make_client(endpoint=os.environ.get(ENDPOINT_ENV) or None)
    try:
        result = client.access_secret_version(
            name=f"{secret}/versions/latest", timeout=REQUEST_TIMEOUT
        )
        text = bytes(result.payload.data).decode("ascii")
    except Exception as exc:
        raise ConfigurationError(
            f"cannot read the store key secret {secret!r}: {type(exc).__name__}"
        ) from None
    finally:
        client.transport.close()
    try:
        return StoreKey.from_text(text)
    except ConfigurationError:
        raise ConfigurationError(f"the secret {secret!r} does not hold a valid store key") from None
