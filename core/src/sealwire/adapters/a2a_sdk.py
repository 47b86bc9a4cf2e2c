"""The a2a-sdk adapters (install core with its ``a2a`` extra: ``sealwire[a2a]``)."""

try:
    import a2a  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
    raise ImportError("sealwire.adapters.a2a_sdk needs a2a-sdk: install 'sealwire[a2a]'") from exc

from sealwire.adapters._a2a_sdk_client import (
    SealwireClientTransport,
    register_sealwire_transports,
    sealwire_binding_uris,
)
from sealwire.adapters._a2a_sdk_server import A2ASdkDispatcher, SealwireUser

__all__ = [
    "A2ASdkDispatcher",
    "SealwireClientTransport",
    "SealwireUser",
    "register_sealwire_transports",
    "sealwire_binding_uris",
]
