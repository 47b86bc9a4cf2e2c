"""Errors of the MLS engine, subclassing the categories of :mod:`sealwire.errors`.

The ``code`` values are informal wire reasons for the MLS binding; RFC 9420
itself defines no error codes on the wire.
"""

from __future__ import annotations

from sealwire.errors import (
    AuthenticationError,
    DecodeError,
    LocalProtocolError,
    RemoteProtocolError,
    StateError,
)

__all__ = [
    "MLSAuthenticationError",
    "MLSDecodeError",
    "MLSLocalError",
    "MLSProtocolError",
    "MLSStateError",
]


class MLSDecodeError(DecodeError):
    """Malformed MLS bytes (RFC 9420 §2.1 presentation language)."""

    code = "mls.decode"


class MLSProtocolError(RemoteProtocolError):
    """Well-formed MLS input whose content the protocol forbids."""

    code = "mls.protocol"


class MLSLocalError(LocalProtocolError):
    """We were asked to encode or do something MLS forbids (a local misuse)."""

    code = "mls.local"


class MLSAuthenticationError(AuthenticationError):
    """A signature, AEAD tag, membership tag or confirmation tag failed."""

    code = "mls.authentication"


class MLSStateError(StateError):
    """The MLS API was used out of order (a state the call does not allow)."""

    code = "mls.state"
