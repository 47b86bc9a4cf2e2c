"""The Double Ratchet (Signal specification rev 1) as a public, sans-I/O toolkit.

Shared by every protocol that wants per-message forward secrecy and break-in
recovery: the Signal plugin runs it after X3DH/PQXDH, the Noise plugin inside
an established Noise session. It lives in core rather than in a plugin so that
each plugin depends only on ``sealwire`` (which both already require) and
never on another plugin, and no extra versioned distribution has to move in
lockstep with them.

The API is functional: every call takes a frozen :class:`RatchetState` and
returns a new one; the caller commits the new state before it uses the
output (sends the message or hands on the plaintext). A call that raises
leaves the given state as it was (§3.5 "changes to the state object are
discarded"). Randomness (``rng``) and time (``now``) are parameters.

* :func:`init_alice`, :func:`init_bob` - RatchetInitAlice/Bob (§3.3), with the
  header-encryption variant (§4) and an optional initial chain for Bob.
* :func:`encrypt`, :func:`decrypt` - RatchetEncrypt/Decrypt (§3.4, §3.5).
* :func:`prune` - drop expired skipped keys.
* :func:`state_to_record`, :func:`state_from_record` - a JSON-ready record for
  a protocol's own stored format; :func:`state_to_bytes`,
  :func:`state_from_bytes` - a compact binary one.

Parameters (§5.2): X25519, HKDF-SHA256 for ``KDF_RK``, HMAC-SHA256 for
``KDF_CK``, AES-256-GCM with key and nonce from HKDF for ``ENCRYPT``; a
header is ``dh (32) || uint32 pn || uint32 n``. See :mod:`sealwire.ratchet._chain`.
"""

from __future__ import annotations

from sealwire.ratchet._chain import (
    HEADER_LEN,
    MAX_COUNTER,
    MAX_PREVIOUS_CHAINS,
    MAX_SKIP,
    MAX_SKIPPED_KEYS,
    SKIPPED_KEY_LIFETIME,
    Header,
    RatchetState,
    concat,
)
from sealwire.ratchet._codec import (
    RecordFields,
    b64_field,
    state_from_bytes,
    state_from_record,
    state_to_bytes,
    state_to_record,
)
from sealwire.ratchet._crypto import KEY_LEN, DHKeyPair, Rng, hkdf_sha256, hmac_sha256
from sealwire.ratchet._errors import (
    ChainExhaustedError,
    DuplicateMessageError,
    MessageDecryptError,
    RatchetDecodeError,
    SkippedKeyLimitError,
    UnknownChainError,
    WeakKeyError,
)
from sealwire.ratchet._header_encryption import ENCRYPTED_HEADER_LEN
from sealwire.ratchet._ratchet import decrypt, encrypt, init_alice, init_bob, prune

__all__ = [
    "ENCRYPTED_HEADER_LEN",
    "HEADER_LEN",
    "KEY_LEN",
    "MAX_COUNTER",
    "MAX_PREVIOUS_CHAINS",
    "MAX_SKIP",
    "MAX_SKIPPED_KEYS",
    "SKIPPED_KEY_LIFETIME",
    "ChainExhaustedError",
    "DHKeyPair",
    "DuplicateMessageError",
    "Header",
    "MessageDecryptError",
    "RatchetDecodeError",
    "RatchetState",
    "RecordFields",
    "Rng",
    "SkippedKeyLimitError",
    "UnknownChainError",
    "WeakKeyError",
    "b64_field",
    "concat",
    "decrypt",
    "encrypt",
    "hkdf_sha256",
    "hmac_sha256",
    "init_alice",
    "init_bob",
    "prune",
    "state_from_bytes",
    "state_from_record",
    "state_to_bytes",
    "state_to_record",
]
