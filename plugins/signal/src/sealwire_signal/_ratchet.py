"""The Signal plugin's face of the Double Ratchet: :mod:`sealwire.ratchet`, with this
plugin's errors (:func:`signal_errors`).

The algorithm, its parameters and its header format are the shared toolkit's,
unchanged from when they lived here, so sessions, envelopes and the pinned
vectors are the same bytes.
"""

from __future__ import annotations

from sealwire import ratchet
from sealwire.ratchet import DHKeyPair, RatchetState, Rng
from sealwire_signal._errors import signal_errors

__all__ = ["decrypt", "encrypt", "init_alice", "init_bob", "prune"]


def init_alice(
    secret: bytes, bob_public: bytes, rng: Rng, *, header_encryption: bool = False
) -> RatchetState:
    """RatchetInitAlice (§3.3): Alice knows SK and Bob's ratchet (signed prekey) public key."""
    with signal_errors():
        return ratchet.init_alice(secret, bob_public, rng, header_encryption=header_encryption)


def init_bob(
    secret: bytes, bob_pair: DHKeyPair, *, header_encryption: bool = False
) -> RatchetState:
    """RatchetInitBob (§3.3): Bob's signed prekey pair is his first ratchet key pair."""
    return ratchet.init_bob(secret, bob_pair, header_encryption=header_encryption)


def encrypt(
    state: RatchetState, plaintext: bytes, ad: bytes, rng: Rng
) -> tuple[RatchetState, bytes, bytes]:
    """RatchetEncrypt (§3.4) / RatchetEncryptHE (§4.3): (new state, header, ciphertext)."""
    with signal_errors():
        return ratchet.encrypt(state, plaintext, ad, rng)


def decrypt(
    state: RatchetState, header: bytes, ciphertext: bytes, ad: bytes, *, now: float, rng: Rng
) -> tuple[RatchetState, bytes]:
    """RatchetDecrypt (§3.5) / RatchetDecryptHE (§4.3): (new state, plaintext).

    Raises DuplicateMessageError for a message already read (or whose skipped
    key was discarded), SkippedKeyLimitError beyond MAX_SKIP,
    MessageDecryptError when the message does not authenticate, and
    EnvelopeDecodeError for a malformed header; the given state is unchanged.
    """
    with signal_errors():
        return ratchet.decrypt(state, header, ciphertext, ad, now=now, rng=rng)


def prune(state: RatchetState, now: float) -> RatchetState:
    """Drop skipped message keys whose lifetime has passed (§3.5's deletion policy)."""
    return ratchet.prune(state, now)
