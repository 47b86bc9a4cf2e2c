"""MLS (RFC 9420) group binding and engine for Sealwire.

The engine is sans-I/O: :mod:`sealwire_mls.codec` (presentation language),
:mod:`sealwire_mls.crypto` (cipher suites), :mod:`sealwire_mls.hpke`
(RFC 9180) and the protocol modules built on them.

Supported API (the names below; modules with a leading underscore are not):
:class:`Group` (create, join from a Welcome, commit, process, protect, export),
:func:`build_key_package` (a KeyPackage for a cipher suite, credential,
capabilities and lifetime), the records they take (:class:`KeyPackage`,
:class:`LeafNode`, :class:`Lifetime`, :class:`Capabilities`, :class:`Credential`),
the cipher suites, the codec and the errors; and :class:`MlsBinding`, the
Sealwire group binding on top of them.
"""

from sealwire_mls._binding import MlsBinding
from sealwire_mls.codec import Reader, Writer, decode_exact
from sealwire_mls.credentials import Credential, CredentialType
from sealwire_mls.crypto import SUPPORTED_CIPHER_SUITES, CipherSuite, cipher_suite
from sealwire_mls.errors import (
    MLSAuthenticationError,
    MLSDecodeError,
    MLSLocalError,
    MLSProtocolError,
    MLSStateError,
)
from sealwire_mls.extensions import Capabilities
from sealwire_mls.group import Group
from sealwire_mls.keypackage import (
    KeyPackage,
    KeyPackageWithKeys,
    LeafNode,
    Lifetime,
    build_key_package,
)

__all__ = [
    "SUPPORTED_CIPHER_SUITES",
    "Capabilities",
    "CipherSuite",
    "Credential",
    "CredentialType",
    "Group",
    "KeyPackage",
    "KeyPackageWithKeys",
    "LeafNode",
    "Lifetime",
    "MLSAuthenticationError",
    "MLSDecodeError",
    "MLSLocalError",
    "MLSProtocolError",
    "MLSStateError",
    "MlsBinding",
    "Reader",
    "Writer",
    "build_key_package",
    "cipher_suite",
    "decode_exact",
]
