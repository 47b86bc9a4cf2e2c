"""The a2a-sdk adapters (install core with its ``a2a`` extra)."""

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
