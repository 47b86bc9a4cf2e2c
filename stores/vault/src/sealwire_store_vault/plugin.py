"""Entry point ``store-vault`` (group ``sealwire``): the ``vault`` store and key provider."""

from __future__ import annotations

from collections.abc import Sequence

from sealwire import hookimpl
from sealwire.components import StoreKeyProvider
from sealwire.store import StoreBackend
from sealwire_store_vault._open import (
    OPTIONS,
    load_store_key,
    open_from_location,
    open_vault_store,
)


@hookimpl
def sealwire_state_stores() -> Sequence[StoreBackend]:
    return [
        StoreBackend("vault", open_from_location, options=OPTIONS, open_configured=open_vault_store)
    ]


@hookimpl
def sealwire_store_key_providers() -> Sequence[StoreKeyProvider]:
    return [StoreKeyProvider(name="vault-kv", load=load_store_key)]
