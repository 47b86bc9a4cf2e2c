"""The header-encryption variant of the Double Ratchet (Double Ratchet rev 1, §4).

* Initial keys: X3DH's SK is expanded with HKDF-SHA256 (zero salt, info
  :data:`HEADER_KEYS_INFO`, 96 bytes) into the first root key, ``shared_hka``
  and ``shared_nhkb`` (§4.1 leaves their derivation to the key agreement).
* ``KDF_RK_HE``: as ``KDF_RK`` with info :data:`ROOT_HE_INFO` and 96 bytes of
  output: root key, chain key, next header key (§4.2).
* ``HENCRYPT(hk, header)``: AES-256-GCM under ``hk`` with a random 12-byte
  nonce sent in front, since one header key encrypts many headers (§4.2).

Decryption follows §4.3. Its search order is reorganised only for speed: the
current header key is tried first, then each distinct header key that still
has skipped message keys (once per key, not once per stored message key), then
the next header key. A header can open under one key only, so the outcome is
the specification's.
"""

from __future__ import annotations

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealwire.ratchet._chain import (
    HEADER_LEN,
    ROOT_HE_INFO,
    Header,
    RatchetState,
    SkippedKeys,
    aead_decrypt,
    concat,
    dh_ratchet,
    kdf_rk,
    receive_message,
    skip_message_keys,
    take_skipped,
)
from sealwire.ratchet._crypto import KEY_LEN, DHKeyPair, Rng, hkdf_sha256
from sealwire.ratchet._errors import (
    DuplicateMessageError,
    MessageDecryptError,
    RatchetDecodeError,
)

__all__ = [
    "ENCRYPTED_HEADER_LEN",
    "HEADER_KEYS_INFO",
    "decrypt_he",
    "hdecrypt",
    "hencrypt",
    "init_alice_he",
    "init_bob_he",
]

HEADER_KEYS_INFO = b"Sealwire_DoubleRatchet_HeaderKeys"
_NONCE_LEN = 12
ENCRYPTED_HEADER_LEN = _NONCE_LEN + HEADER_LEN + 16


def _initial_keys(secret: bytes) -> tuple[bytes, bytes, bytes]:
    okm = hkdf_sha256(secret, salt=bytes(KEY_LEN), info=HEADER_KEYS_INFO, length=3 * KEY_LEN)
    return okm[:KEY_LEN], okm[KEY_LEN : 2 * KEY_LEN], okm[2 * KEY_LEN :]


def init_alice_he(secret: bytes, bob_public: bytes, rng: Rng) -> RatchetState:
    """RatchetInitAliceHE (§4.3)."""
    rk, shared_hka, shared_nhkb = _initial_keys(secret)
    dhs = DHKeyPair.generate(rng)
    rk, cks, nhks = kdf_rk(rk, dhs.exchange(bob_public), ROOT_HE_INFO, 96)
    return RatchetState(
        dhs=dhs, dhr=bob_public, rk=rk, cks=cks, ckr=None, header_encryption=True,
        hks=shared_hka, hkr=None, nhks=nhks, nhkr=shared_nhkb,
    )  # fmt: skip


def init_bob_he(secret: bytes, bob_pair: DHKeyPair) -> RatchetState:
    """RatchetInitBobHE (§4.3)."""
    rk, shared_hka, shared_nhkb = _initial_keys(secret)
    return RatchetState(
        dhs=bob_pair, dhr=None, rk=rk, cks=None, ckr=None, header_encryption=True,
        hks=None, hkr=None, nhks=shared_nhkb, nhkr=shared_hka,
    )  # fmt: skip


def hencrypt(hk: bytes, header: Header, rng: Rng) -> bytes:
    """HENCRYPT(hk, header) (§4.2): nonce || AES-256-GCM(hk, nonce, header)."""
    nonce = rng(_NONCE_LEN)
    return nonce + AESGCM(hk).encrypt(nonce, header.to_bytes(), None)


def hdecrypt(hk: bytes, encrypted: bytes) -> Header | None:
    """HDECRYPT(hk, encrypted header) (§4.2): the header, or None when it does not open."""
    try:
        plain = AESGCM(hk).decrypt(encrypted[:_NONCE_LEN], encrypted[_NONCE_LEN:], None)
    except InvalidTag:
        return None
    return Header.from_bytes(plain)


def decrypt_he(
    state: RatchetState, encrypted_header: bytes, ciphertext: bytes, ad: bytes, *,
    now: float, rng: Rng,
) -> tuple[RatchetState, bytes]:  # fmt: skip
    """RatchetDecryptHE (§4.3); the given state is never modified."""
    if len(encrypted_header) != ENCRYPTED_HEADER_LEN:
        raise RatchetDecodeError("encrypted header has the wrong length", field="header")
    full_ad = concat(ad, encrypted_header)
    if state.hkr is not None and (header := hdecrypt(state.hkr, encrypted_header)):
        found = take_skipped(state, state.hkr, header.n, now)
        if found is not None:
            return _with_skipped(state, found, ciphertext, full_ad)
        if header.n < state.nr:
            raise DuplicateMessageError("message already received")
        return receive_message(state, header, ciphertext, full_ad, now)
    for hk in _older_header_keys(state):
        header = hdecrypt(hk, encrypted_header)
        if header is not None:
            found = take_skipped(state, hk, header.n, now)
            if found is None:
                raise DuplicateMessageError("message already received or its key expired")
            return _with_skipped(state, found, ciphertext, full_ad)
    if state.nhkr is not None and (header := hdecrypt(state.nhkr, encrypted_header)):
        stepped = skip_message_keys(state, header.pn, now)
        stepped = dh_ratchet(stepped, header.dh, rng)
        return receive_message(stepped, header, ciphertext, full_ad, now)
    raise MessageDecryptError()


def _older_header_keys(state: RatchetState) -> list[bytes]:
    keys = dict.fromkeys(chain for chain, _ in state.skipped)
    keys.update(dict.fromkeys(state.previous))
    if state.hkr is not None:
        keys.pop(state.hkr, None)
    return list(keys)


def _with_skipped(
    state: RatchetState, found: tuple[SkippedKeys, bytes], ciphertext: bytes, ad: bytes
) -> tuple[RatchetState, bytes]:
    rest, mk = found
    plaintext = aead_decrypt(mk, ciphertext, ad)
    return attrs.evolve(state, skipped=rest), plaintext
