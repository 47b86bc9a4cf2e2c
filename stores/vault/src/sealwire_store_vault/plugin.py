"""Entry point ``store-vault`` (group ``sealwire``): the ``vault`` store and key provider.

Every Sealwire process loads this at start-up; the store's SDK is imported only
when a vault store is opened or its key loaded.
"""

from __future__ import annotations

from collections.abc import Sequence

from sealwire import hookimpl
from sealwire.components import StoreKeyProvider
from sealwire.plugins import imported_when_called
from sealwire.store import StoreBackend
from sealwire_store_vault._options import OPTIONS

_OPEN = "sealwire_store_vault._open"


@hookimpl
def sealwire_state_stores() -> Sequence[StoreBackend]:
    return [
        StoreBackend(
            "vault",
            imported_when_called(_OPEN, "open_from_location"),
            options=OPTIONS,
            open_configured=imported_when_called(_OPEN, "open_vault_store"),
        )
    ]


@hookimpl
def sealwire_store_key_providers() -> Sequence[StoreKeyProvider]:
    return [StoreKeyProvider(name="vault-kv", load=imported_when_called(_OPEN, "load_store_key"))]
