"""Entry point ``store-gcp`` (group ``sealwire``): the ``gcp`` store and key provider."""

from __future__ import annotations

from collections.abc import Sequence

from sealwire import hookimpl
from sealwire.components import StoreKeyProvider
from sealwire.store import StoreBackend
from sealwire_store_gcp._open import OPTIONS, load_store_key, open_from_location, open_gcp_store


@hookimpl
def sealwire_state_stores() -> Sequence[StoreBackend]:
    return [
        StoreBackend("gcp", open_from_location, options=OPTIONS, open_configured=open_gcp_store)
    ]


@hookimpl
def sealwire_store_key_providers() -> Sequence[StoreKeyProvider]:
    return [StoreKeyProvider(name="gcp-secret-manager", load=load_store_key)]
