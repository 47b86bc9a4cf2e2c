"""The ``gcp`` store's options and defaults, without its SDK: what the plugin
registers when every process starts (the SDK is imported only to open the store)."""

from __future__ import annotations

from sealwire.store import StoreOption, cache_options

__all__ = ["DEFAULT_ATTEMPTS", "DEFAULT_BACKOFF", "DEFAULT_CACHE_FILE", "OPTIONS"]

DEFAULT_CACHE_FILE = "store-cache-gcp.db"
DEFAULT_ATTEMPTS = 5
"""Calls per operation on RESOURCE_EXHAUSTED/UNAVAILABLE (about 3 s of backoff in all)."""
DEFAULT_BACKOFF = 0.2
"""Seconds before the first retry; doubled each time, with jitter."""

OPTIONS = (
    StoreOption(name="project", required=True, help="the project id, e.g. my-project"),
    StoreOption(name="prefix", required=True, help="secret id prefix: letters, digits, - and _"),
    StoreOption(name="endpoint", help="another API endpoint (a regional one, a test server)"),
    StoreOption(
        name="credentials_file",
        help="a service account key file (default: Application Default Credentials)",
    ),
    StoreOption(name="anonymous", help="true: send no credentials (only for a local test server)"),
    *cache_options(DEFAULT_CACHE_FILE),
    StoreOption(
        name="retries",
        help=f"calls per operation on RESOURCE_EXHAUSTED (default {DEFAULT_ATTEMPTS})",
    ),
    StoreOption(
        name="retry_backoff", help=f"seconds before a first retry (default {DEFAULT_BACKOFF})"
    ),
)
