"""MLS (RFC 9420) group binding and engine for Sealwire.

The engine is sans-I/O: :mod:`sealwire_mls.codec` (presentation language),
:mod:`sealwire_mls.crypto` (cipher suites), :mod:`sealwire_mls.hpke`
(RFC 9180) and the protocol modules built on them.
"""

from sealwire_mls.codec import Reader, Writer, decode_exact
from sealwire_mls.crypto import SUPPORTED_CIPHER_SUITES, CipherSuite, cipher_suite
from sealwire_mls.errors import (
    MLSAuthenticationError,
    MLSDecodeError,
    MLSLocalError,
    MLSProtocolError,
    MLSStateError,
)

__all__ = [
    "SUPPORTED_CIPHER_SUITES",
    "CipherSuite",
    "MLSAuthenticationError",
    "MLSDecodeError",
    "MLSLocalError",
    "MLSProtocolError",
    "MLSStateError",
    "Reader",
    "Writer",
    "cipher_suite",
    "decode_exact",
]
