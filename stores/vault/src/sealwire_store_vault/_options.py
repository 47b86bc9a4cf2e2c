"""The ``vault`` store's options and defaults, without its SDK: what the plugin
registers when every process starts (the SDK is imported only to open the store)."""

from __future__ import annotations

from sealwire.store import StoreOption, cache_options

__all__ = ["DEFAULT_ATTEMPTS", "DEFAULT_BACKOFF", "DEFAULT_CACHE_FILE", "OPTIONS"]

DEFAULT_CACHE_FILE = "store-cache-vault.db"
DEFAULT_ATTEMPTS = 5
"""Calls per operation on 429/5xx or an unreachable server (about 3 s of backoff in all)."""
DEFAULT_BACKOFF = 0.2
"""Seconds before the first retry; doubled each time, with jitter."""

OPTIONS = (
    StoreOption(name="url", required=True, help="the server, e.g. https://vault.internal:8200"),
    StoreOption(name="prefix", required=True, help="path under the mount, e.g. sealwire/agent-1"),
    StoreOption(name="mount", help="the KV version 2 mount (default secret)"),
    StoreOption(
        name="token_file",
        help="a file holding the token, read again when it is refused (a Vault Agent sink);"
        " default $VAULT_TOKEN",
    ),
    StoreOption(name="namespace", help="a Vault Enterprise namespace"),
    StoreOption(name="ca", help="CA certificates (PEM) for an https:// server"),
    *cache_options(DEFAULT_CACHE_FILE),
    StoreOption(
        name="retries", help=f"calls per operation on 429/5xx (default {DEFAULT_ATTEMPTS})"
    ),
    StoreOption(
        name="retry_backoff", help=f"seconds before a first retry (default {DEFAULT_BACKOFF})"
    ),
)
