"""Signal (X3DH / PQXDH + Double Ratchet) mailbox binding for Sealwire.

The protocol cores are sans-I/O: :mod:`X3DH/PQXDH <sealwire_signal._x3dh>`,
the Double Ratchet (core's shared :mod:`sealwire.ratchet`, with its
header-encryption variant, raising this plugin's errors), the
:mod:`wire profile <sealwire_signal._wire>` and the
:mod:`state codec <sealwire_signal._state_codec>`.
"""

from __future__ import annotations

from sealwire.ratchet import (
    MAX_SKIP,
    MAX_SKIPPED_KEYS,
    SKIPPED_KEY_LIFETIME,
    DHKeyPair,
    Header,
    RatchetState,
    Rng,
)
from sealwire_signal._binding import SignalBinding
from sealwire_signal._errors import (
    BadSignatureError,
    DowngradeError,
    DuplicateMessageError,
    EnvelopeDecodeError,
    MessageDecryptError,
    NoSessionError,
    SkippedKeyLimitError,
    UnknownPrekeyError,
    UnsupportedVersionError,
    WeakKeyError,
)
from sealwire_signal._ratchet import decrypt, encrypt, init_alice, init_bob, prune
from sealwire_signal._session import (
    Session,
    accept_session,
    open_envelope,
    seal_frame,
    start_session,
)
from sealwire_signal._state_codec import (
    StoredPrekey,
    card_digest,
    decode_prekey,
    decode_session,
    encode_prekey,
    encode_session,
)
from sealwire_signal._wire import Envelope, PrekeyPart, decode_bundle, encode_bundle
from sealwire_signal._x3dh import (
    Initiation,
    KemPrekey,
    OneTimePrekey,
    PrekeyBundle,
    SharedSecret,
    SignedPrekey,
    VerifiedBundle,
    initial_message_input,
    initiate,
    respond,
    sign_kem_prekey,
    sign_signed_prekey,
    verify_mldsa,
)

__all__ = [
    "MAX_SKIP",
    "MAX_SKIPPED_KEYS",
    "SKIPPED_KEY_LIFETIME",
    "BadSignatureError",
    "DHKeyPair",
    "DowngradeError",
    "DuplicateMessageError",
    "Envelope",
    "EnvelopeDecodeError",
    "Header",
    "Initiation",
    "KemPrekey",
    "MessageDecryptError",
    "NoSessionError",
    "OneTimePrekey",
    "PrekeyBundle",
    "PrekeyPart",
    "RatchetState",
    "Rng",
    "Session",
    "SharedSecret",
    "SignalBinding",
    "SignedPrekey",
    "SkippedKeyLimitError",
    "StoredPrekey",
    "UnknownPrekeyError",
    "UnsupportedVersionError",
    "VerifiedBundle",
    "WeakKeyError",
    "accept_session",
    "card_digest",
    "decode_bundle",
    "decode_prekey",
    "decode_session",
    "decrypt",
    "encode_bundle",
    "encode_prekey",
    "encode_session",
    "encrypt",
    "init_alice",
    "init_bob",
    "initial_message_input",
    "initiate",
    "open_envelope",
    "prune",
    "respond",
    "seal_frame",
    "sign_kem_prekey",
    "sign_signed_prekey",
    "start_session",
    "verify_mldsa",
]
