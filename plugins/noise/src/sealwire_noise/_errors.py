"""Errors of the Noise plugin, each under a ``sealwire.errors`` category.

Wire codes (``code``) are short stable strings a binding can log or send in a
close reason; they never carry key material or plaintext.
"""

from __future__ import annotations

from sealwire.errors import (
    AuthenticationError,
    ConfigurationError,
    DecodeError,
    LocalProtocolError,
    RemoteProtocolError,
    StateError,
    TrustError,
)

__all__ = [
    "NoiseAuthenticationError",
    "NoiseConfigurationError",
    "NoiseDecodeError",
    "NoiseDowngradeError",
    "NoiseNonceExhausted",
    "NoiseRemoteProtocolError",
    "NoiseSignatureError",
    "NoiseStateError",
    "NoiseTrustError",
    "ReplayedPacketError",
]


class NoiseDecodeError(DecodeError):
    """A Noise message or record is malformed (too short, too long, bad header)."""

    code = "noise.decode"


class NoiseAuthenticationError(AuthenticationError):
    """A Noise AEAD tag did not verify (spec §5.1 DecryptWithAd); opaque on purpose."""

    code = "noise.decrypt"


class NoiseStateError(StateError):
    """The handshake or transport API was called out of turn (misuse)."""

    code = "noise.state"


class NoiseConfigurationError(ConfigurationError):
    """Unknown protocol name, unsupported primitive, or a key the pattern needs is missing."""

    code = "noise.config"


class NoiseNonceExhausted(LocalProtocolError):
    """The 64-bit nonce space of a CipherState is used up (spec §5.1: 2^64-1 is reserved)."""

    code = "noise.nonce"


class NoiseRemoteProtocolError(RemoteProtocolError):
    """The peer broke a rule above the cipher layer (record sequencing, negotiation)."""

    code = "noise.protocol"


class ReplayedPacketError(RemoteProtocolError):
    """A datagram's counter was already accepted or fell behind the replay window."""

    code = "noise.replay"


class NoiseTrustError(TrustError):
    """The peer's Noise static key does not match its signed card or the trust store."""

    code = "noise.trust"


class NoiseDowngradeError(NoiseRemoteProtocolError):
    """Both signed cards offer the ML-KEM hybrid and the handshake runs the classical
    protocol: a downgrade. The handshake fails; no channel is handed on."""

    code = "noise.downgrade"


class NoiseSignatureError(AuthenticationError):
    """The peer's card lists an ML-DSA-65 key and its handshake payload carries no valid
    ML-DSA-65 signature over the handshake hash (or carries one its card cannot check)."""

    code = "noise.signature"
