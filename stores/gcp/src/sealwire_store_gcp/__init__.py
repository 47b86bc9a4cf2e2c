"""Sealwire agent state and store key in Google Cloud Secret Manager.

``[agent.store] backend = "gcp"`` with ``project`` and ``prefix``: the state is
one sealed manifest per head version, made current by an etag-checked update of
the head secret (see :mod:`sealwire_store_gcp._gcp` and
:class:`sealwire.store.ManagedStore`), large values in content-addressed blob
secrets, and a local encrypted write-ahead cache in the agent's home.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sealwire.plugins import lazy_attributes
from sealwire_store_gcp._options import DEFAULT_CACHE_FILE, OPTIONS

if TYPE_CHECKING:
    from sealwire_store_gcp._gcp import CURRENT_ANNOTATION, GcpSecretsBackend
    from sealwire_store_gcp._open import KEY_SECRET_ENV, load_store_key, make_client, open_gcp_store

__all__ = [
    "CURRENT_ANNOTATION",
    "DEFAULT_CACHE_FILE",
    "KEY_SECRET_ENV",
    "OPTIONS",
    "GcpSecretsBackend",
    "load_store_key",
    "make_client",
    "open_gcp_store",
]

__version__ = "0.1.0"

# Names that need the SDK, imported on first use: importing the package, as the
# plugin loader does in every process, does not import the SDK.
__getattr__ = lazy_attributes(
    __name__,
    {
        "CURRENT_ANNOTATION": "_gcp",
        "GcpSecretsBackend": "_gcp",
        "KEY_SECRET_ENV": "_open",
        "load_store_key": "_open",
        "make_client": "_open",
        "open_gcp_store": "_open",
    },
)
