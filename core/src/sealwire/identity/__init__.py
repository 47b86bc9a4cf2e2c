"""Agent identity (core layer 2): keys, agent id, the signed agent card, the trust store.

* :class:`Identity` / :class:`PublicIdentity` - Ed25519 signing and X25519
  agreement keys, optionally ML-DSA-65 and ML-KEM-768; the agent id is a
  fingerprint of the signing key (:func:`agent_id_for`).
* :func:`build_identity_extension`, :func:`sign_card`, :func:`verify_card` -
  the agent card signed as A2A v1.0 §8.4 says (JWS EdDSA over RFC 8785), and
  the trusted :class:`VerifiedCard` with its :class:`OfferedBinding` list.
* :class:`TrustStore` - pinned keys, allow-list or trust on first use.
"""

from __future__ import annotations

from sealwire.identity._canonical import MAX_CARD_DEPTH, canonical_card_bytes
from sealwire.identity._card import (
    BINDING_URI_PREFIX,
    IDENTITY_EXTENSION_URI,
    MAX_CARD_SIGNATURES,
    MAX_SUPPORTED_INTERFACES,
    OfferedBinding,
    VerifiedCard,
    binding_uri,
    build_identity_extension,
    find_identity_extension,
    parse_binding_uri,
    sign_card,
    verify_card,
)
from sealwire.identity._keys import (
    AGENT_ID_PREFIX,
    STORAGE_FORMAT_VERSION,
    Identity,
    PublicIdentity,
    agent_id_for,
    is_agent_id,
)
from sealwire.identity._trust import (
    MAX_CHECKED_IDENTITIES,
    TRUST_NAMESPACE,
    TrustListing,
    TrustMode,
    TrustStore,
)

__all__ = [
    "AGENT_ID_PREFIX",
    "BINDING_URI_PREFIX",
    "IDENTITY_EXTENSION_URI",
    "MAX_CARD_DEPTH",
    "MAX_CARD_SIGNATURES",
    "MAX_CHECKED_IDENTITIES",
    "MAX_SUPPORTED_INTERFACES",
    "STORAGE_FORMAT_VERSION",
    "TRUST_NAMESPACE",
    "Identity",
    "OfferedBinding",
    "PublicIdentity",
    "TrustListing",
    "TrustMode",
    "TrustStore",
    "VerifiedCard",
    "agent_id_for",
    "binding_uri",
    "build_identity_extension",
    "canonical_card_bytes",
    "find_identity_extension",
    "is_agent_id",
    "parse_binding_uri",
    "sign_card",
    "verify_card",
]
