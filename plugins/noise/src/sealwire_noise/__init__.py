"""Noise (XX, IK, NK, XK...) live sessions for Sealwire over TCP, WebSocket and UDP.

The sans-I/O core implements the Noise Protocol Framework revision 34 on
``cryptography``: patterns as data (:mod:`._patterns`), CipherState and
SymmetricState (:mod:`._symmetric`), HandshakeState (:mod:`._handshake`) and
the transport phase (:mod:`._transport`), plus an optional ML-KEM-768 hybrid.
"""

from __future__ import annotations

from sealwire_noise._errors import (
    NoiseAuthenticationError,
    NoiseConfigurationError,
    NoiseDecodeError,
    NoiseNonceExhausted,
    NoiseRemoteProtocolError,
    NoiseStateError,
    NoiseTrustError,
    ReplayedPacketError,
)
from sealwire_noise._handshake import PSK_LEN, HandshakeState, HandshakeStatus, NoiseProtocol
from sealwire_noise._hybrid import KEM_CIPHERTEXT_LEN, KEM_NAME, KEM_PUBLIC_LEN
from sealwire_noise._patterns import HandshakePattern, Token, parse_pattern, supported_patterns
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
    "MAX_EPOCH_SKIP",
    "MAX_MESSAGE_LEN",
    "MAX_NONCE",
    "MAX_PAYLOAD_LEN",
    "PSK_LEN",
    "REPLAY_WINDOW",
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
    "NoiseNonceExhausted",
    "NoiseProtocol",
    "NoiseRemoteProtocolError",
    "NoiseStateError",
    "NoiseTrustError",
    "PublicKey",
    "ReplayWindow",
    "ReplayedPacketError",
    "StatelessTransportState",
    "SymmetricState",
    "Token",
    "TransportState",
    "cipher_suite",
    "parse_pattern",
    "supported_patterns",
]
