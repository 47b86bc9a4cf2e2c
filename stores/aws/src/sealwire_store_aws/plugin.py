"""Entry point ``store-aws`` (group ``sealwire``): the ``aws`` store and key provider."""

from __future__ import annotations

from collections.abc import Sequence

from sealwire import hookimpl
from sealwire.components import StoreKeyProvider
from sealwire.store import StoreBackend
from sealwire_store_aws._open import OPTIONS, load_store_key, open_aws_store, open_from_location


@hookimpl
def sealwire_state_stores() -> Sequence[StoreBackend]:
    return [
        StoreBackend("aws", open_from_location, options=OPTIONS, open_configured=open_aws_store)
    ]


@hookimpl
def sealwire_store_key_providers() -> Sequence[StoreKeyProvider]:
    return [StoreKeyProvider(name="aws-secrets-manager", load=load_store_key)]
