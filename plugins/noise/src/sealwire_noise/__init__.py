"""Noise (XX, IK, NK, XK...) live sessions for Sealwire over TCP, WebSocket and UDP.

The sans-I/O core implements the Noise Protocol Framework revision 34 on
``cryptography``: patterns as data (:mod:`._patterns`), CipherState and
SymmetricState (:mod:`._symmetric`), HandshakeState (:mod:`._handshake`) and
the transport phase (:mod:`._transport`), plus an optional ML-KEM-768 hybrid,
and an optional Double Ratchet inside the session (:mod:`._ratchet`, on core's
:mod:`sealwire.ratchet`; docs/noise-ratchet.md).
"""

from __future__ import annotations

from sealwire_noise._errors import (
    NoiseAuthenticationError,
    NoiseConfigurationError,
    NoiseDecodeError,
    NoiseDowngradeError,
    NoiseNonceExhausted,
    NoiseRemoteProtocolError,
    NoiseSignatureError,
    NoiseStateError,
    NoiseTrustError,
    ReplayedPacketError,
)
from sealwire_noise._handshake import PSK_LEN, HandshakeState, HandshakeStatus, NoiseProtocol
from sealwire_noise._hybrid import KEM_CIPHERTEXT_LEN, KEM_NAME, KEM_PUBLIC_LEN
from sealwire_noise._patterns import HandshakePattern, Token, parse_pattern, supported_patterns
from sealwire_noise._ratchet import (
    MAX_CHAIN_MESSAGES,
    STEP_EVERY,
    NoiseRatchet,
    RatchetBindingError,
    Restart,
)
from sealwire_noise._ratchet_channel import RatchetChannel
from sealwire_noise._session import encode_first_frame
from sealwire_noise._symmetric import (
    MAX_NONCE,
    TAG_LEN,
    CipherState,
    CipherSuite,
    KeyPair,
    PublicKey,
    SymmetricState,
    cipher_suite,
)
from sealwire_noise._transport import (
    COUNTER_LEN,
    MAX_EPOCH_SKIP,
    MAX_MESSAGE_LEN,
    MAX_PAYLOAD_LEN,
    REPLAY_WINDOW,
    DatagramTransport,
    ReplayWindow,
    StatelessTransportState,
    TransportState,
)

__all__ = [
    "COUNTER_LEN",
    "KEM_CIPHERTEXT_LEN",
    "KEM_NAME",
    "KEM_PUBLIC_LEN",
    "MAX_CHAIN_MESSAGES",
    "MAX_EPOCH_SKIP",
    "MAX_MESSAGE_LEN",
    "MAX_NONCE",
    "MAX_PAYLOAD_LEN",
    "PSK_LEN",
    "REPLAY_WINDOW",
    "STEP_EVERY",
    "TAG_LEN",
    "CipherState",
    "CipherSuite",
    "DatagramTransport",
    "HandshakePattern",
    "HandshakeState",
    "HandshakeStatus",
    "KeyPair",
    "NoiseAuthenticationError",
    "NoiseConfigurationError",
    "NoiseDecodeError",
    "NoiseDowngradeError",
    "NoiseNonceExhausted",
    "NoiseProtocol",
    "NoiseRatchet",
    "NoiseRemoteProtocolError",
    "NoiseSignatureError",
    "NoiseStateError",
    "NoiseTrustError",
    "PublicKey",
    "RatchetBindingError",
    "RatchetChannel",
    "ReplayWindow",
    "ReplayedPacketError",
    "Restart",
    "StatelessTransportState",
    "SymmetricState",
    "Token",
    "TransportState",
    "cipher_suite",
    "encode_first_frame",
    "parse_pattern",
    "supported_patterns",
]
