"""Entry point ``store-gcp`` (group ``sealwire``): the ``gcp`` store and key provider.

Every Sealwire process loads this at start-up; the store's SDK is imported only
when a gcp store is opened or its key loaded.
"""

from __future__ import annotations

from collections.abc import Sequence

from sealwire import hookimpl
from sealwire.components import StoreKeyProvider
from sealwire.plugins import imported_when_called
from sealwire.store import StoreBackend
from sealwire_store_gcp._options import OPTIONS

_OPEN = "sealwire_store_gcp._open"


@hookimpl
def sealwire_state_stores() -> Sequence[StoreBackend]:
    return [
        StoreBackend(
            "gcp",
            imported_when_called(_OPEN, "open_from_location"),
            options=OPTIONS,
            open_configured=imported_when_called(_OPEN, "open_gcp_store"),
        )
    ]


@hookimpl
def sealwire_store_key_providers() -> Sequence[StoreKeyProvider]:
    return [
        StoreKeyProvider(
            name="gcp-secret-manager", load=imported_when_called(_OPEN, "load_store_key")
        )
    ]
