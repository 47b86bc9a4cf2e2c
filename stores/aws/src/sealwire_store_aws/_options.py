"""The ``aws`` store's options and defaults, without its SDK: what the plugin
registers when every process starts (the SDK is imported only to open the store)."""

from __future__ import annotations

from sealwire.store import StoreOption, cache_options

__all__ = ["DEFAULT_ATTEMPTS", "DEFAULT_BACKOFF", "DEFAULT_CACHE_FILE", "OPTIONS"]

DEFAULT_CACHE_FILE = "store-cache-aws.db"
DEFAULT_ATTEMPTS = 5
"""Calls per operation on throttling or an unreachable endpoint: with the backoff
below about 3 s in all, past which the agent hears of it rather than hangs."""
DEFAULT_BACKOFF = 0.2
"""Seconds before the first retry; doubled each time, with jitter."""

OPTIONS = (
    StoreOption(name="prefix", required=True, help="secret name prefix, e.g. sealwire/agent-1"),
    StoreOption(name="region", required=True, help="AWS region, e.g. eu-west-1"),
    StoreOption(name="endpoint_url", help="another endpoint (a VPC endpoint, a test server)"),
    StoreOption(name="profile", help="a profile of ~/.aws/config (default: the usual chain)"),
    *cache_options(DEFAULT_CACHE_FILE),
    StoreOption(
        name="retries", help=f"calls per operation on throttling (default {DEFAULT_ATTEMPTS})"
    ),
    StoreOption(
        name="retry_backoff", help=f"seconds before a first retry (default {DEFAULT_BACKOFF})"
    ),
)
