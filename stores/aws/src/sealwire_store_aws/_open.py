"""Opening an AWS store from ``[agent.store]`` options or a store URL, and the key provider."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from pathlib import Path

from sealwire.errors import ConfigurationError
from sealwire.store import (
    CallCounter,
    ManagedStore,
    StoreKey,
    location_options,
    open_behind_cache,
    option_number,
)
from sealwire_store_aws._aws import (
    AwsSecretsBackend,
    make_client,
)
from sealwire_store_aws._options import (
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
    "open_aws_store",
    "open_from_location",
]

KEY_SECRET_ENV = "SEALWIRE_AWS_STORE_KEY_SECRET"
REGION_ENV = "SEALWIRE_AWS_REGION"
ENDPOINT_ENV = "SEALWIRE_AWS_ENDPOINT_URL"


def open_aws_store(
    options: Mapping[str, str],
    key: StoreKey,
    home: Path,
    *,
    counter: CallCounter | None = None,
) -> ManagedStore:
    """The agent's store in Secrets Manager, with its cache in ``home``."""
    for required in ("prefix", "region"):
        if not options.get(required):
            raise ConfigurationError(f"the aws store needs option {required!r}")
    counter = counter or CallCounter()
    factory = partial(
        make_client,
        region=options["region"],
        endpoint_url=options.get("endpoint_url") or None,
        profile=options.get("profile") or None,
    )
    backend = AwsSecretsBackend(
        factory,
        options["prefix"],
        attempts=int(option_number(options, "retries", DEFAULT_ATTEMPTS)) or 1,
        backoff=option_number(options, "retry_backoff", DEFAULT_BACKOFF),
        counter=counter,
        tags={"sealwire": "agent-state"},
    )
    cache = home / options.get("cache", DEFAULT_CACHE_FILE)
    return open_behind_cache(
        backend, key, cache, options, label=f"aws:{backend.prefix}", counter=counter
    )


def open_from_location(location: str, key: StoreKey) -> ManagedStore:
    """``aws:PREFIX?region=R&endpoint_url=U&cache=/path/cache.db`` (a store URL)."""
    options, home = location_options(location, DEFAULT_CACHE_FILE)
    return open_aws_store(options, key, home)


def load_store_key() -> StoreKey | None:
    """The store key from the secret ``$SEALWIRE_AWS_STORE_KEY_SECRET`` (base64 text), if set.

    Region from ``$SEALWIRE_AWS_REGION`` (else ``$AWS_REGION``), endpoint from
    ``$SEALWIRE_AWS_ENDPOINT_URL``; credentials from boto3's usual chain."""
    secret = os.environ.get(KEY_SECRET_ENV)
    if not secret:
        return None
    region = os.environ.get(REGION_ENV) or os.environ.get("AWS_REGION")
    if not region:
        raise ConfigurationError(f"{KEY_SECRET_ENV} is set but no region: set {REGION_ENV}")
    backend = AwsSecretsBackend(
        partial(make_client, region=region, endpoint_url=os.environ.get(ENDPOINT_ENV) or None),
        secret,
    )
    try:
        result = backend._call("get_secret_value", SecretId=secret)
    except Exception as exc:
        raise ConfigurationError(
            f"cannot read the store key secret {secret!r}: {type(exc).__name__}"
        ) from None
    finally:
        backend.close()
    text = result.get("SecretString")
    if not isinstance(text, str):
        raise ConfigurationError(f"the secret {secret!r} holds no store key text")
    try:
        return StoreKey.from_text(text)
    except ConfigurationError:
        raise ConfigurationError(f"the secret {secret!r} does not hold a valid store key") from None
