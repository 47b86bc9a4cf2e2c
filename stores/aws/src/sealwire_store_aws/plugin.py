"""Entry point ``store-aws`` (group ``sealwire``): the ``aws`` store and key provider.

Every Sealwire process loads this at start-up; the store's SDK is imported only
when an aws store is opened or its key loaded.
"""

from __future__ import annotations

from collections.abc import Sequence

from sealwire import hookimpl
from sealwire.components import StoreKeyProvider
from sealwire.plugins import imported_when_called
from sealwire.store import StoreBackend
from sealwire_store_aws._options import OPTIONS

_OPEN = "sealwire_store_aws._open"


@hookimpl
def sealwire_state_stores() -> Sequence[StoreBackend]:
    return [
        StoreBackend(
            "aws",
            imported_when_called(_OPEN, "open_from_location"),
            options=OPTIONS,
            open_configured=imported_when_called(_OPEN, "open_aws_store"),
        )
    ]


@hookimpl
def sealwire_store_key_providers() -> Sequence[StoreKeyProvider]:
    return [
        StoreKeyProvider(
            name="aws-secrets-manager", load=imported_when_called(_OPEN, "load_store_key")
        )
    ]
