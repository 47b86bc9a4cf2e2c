"""Double Ratchet building blocks: state, KDF chains, message AEAD, header, skipped keys.

Signal's Double Ratchet specification (rev 1), §3 and §5, with these parameters:

* ``KDF_RK(rk, dh_out)``: HKDF-SHA256, salt ``rk``, IKM ``dh_out``, info
  :data:`ROOT_INFO`, 64 bytes split into the new root key and a chain key (§5.2).
* ``KDF_CK(ck)``: ``mk = HMAC-SHA256(ck, 0x01)``, ``ck' = HMAC-SHA256(ck, 0x02)`` (§5.2).
* ``ENCRYPT(mk, pt, ad)``: AES-256-GCM; key and nonce come from
  HKDF-SHA256(salt = 32 zero bytes, IKM ``mk``, info :data:`MESSAGE_INFO`, 44 bytes),
  which §5.2 allows because each message key is used once.
* ``CONCAT(ad, header)``: ``uint32(len(ad)) || ad || header``, so the pair is parseable.
* ``HEADER(dh, pn, n)``: ``dh (32) || uint32 pn || uint32 n``, big-endian.

State objects are frozen: every step returns a new state, and the skipped-key
map is copied only when it changes, so a failed decrypt leaves the caller's
state exactly as it was.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealwire.ratchet._crypto import (
    KEY_LEN,
    DHKeyPair,
    Rng,
    hkdf_sha256,
    hmac_sha256_pair,
    x25519_public,
)
from sealwire.ratchet._errors import (
    MessageDecryptError,
    RatchetDecodeError,
    SkippedKeyLimitError,
)

__all__ = [
    "HEADER_LEN",
    "MAX_COUNTER",
    "MAX_PREVIOUS_CHAINS",
    "MAX_SKIP",
    "MAX_SKIPPED_KEYS",
    "MESSAGE_INFO",
    "ROOT_HE_INFO",
    "ROOT_INFO",
    "SKIPPED_KEY_LIFETIME",
    "Header",
    "RatchetState",
    "SkippedKeys",
    "aead_decrypt",
    "aead_encrypt",
    "concat",
    "dh_ratchet",
    "kdf_ck",
    "kdf_rk",
    "receive_message",
    "skip_message_keys",
    "take_skipped",
    "with_chains",
]

MAX_SKIP = 1000
"""§3.5 MAX_SKIP: most message keys one header may make us derive and store.

High enough for a mailbox that lost or reordered a long burst, low enough that
a forged header costs at most a thousand HMACs before it is rejected."""

MAX_SKIPPED_KEYS = 2000
"""Total skipped keys kept per session (oldest evicted first): bounds state size."""

SKIPPED_KEY_LIFETIME = 7 * 24 * 3600.0
"""Seconds a skipped key is kept (§3.5 suggests deleting them after a while):
a relay mailbox keeps undelivered messages about this long."""

MAX_PREVIOUS_CHAINS = 16
"""Earlier receiving chains remembered to name a late copy a duplicate, not a forgery."""

MAX_COUNTER = 0xFFFF_FFFF
"""Header counters are uint32; a chain never gets this long."""

HEADER_LEN = KEY_LEN + 8
ROOT_INFO = b"Sealwire_DoubleRatchet_Root"
ROOT_HE_INFO = b"Sealwire_DoubleRatchet_RootHE"
MESSAGE_INFO = b"Sealwire_DoubleRatchet_MessageKeys"
_AEAD_KEY_LEN = 32
_NONCE_LEN = 12

SkippedKeys = Mapping[tuple[bytes, int], tuple[bytes, float]]
"""(ratchet public key, or header key in HE mode; n) -> (message key, expiry time)."""


@attrs.frozen
class Header:
    """HEADER(dh_pair, pn, n) of §3.1."""

    dh: bytes
    pn: int
    n: int

    def to_bytes(self) -> bytes:
        return self.dh + self.pn.to_bytes(4, "big") + self.n.to_bytes(4, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> Header:
        if len(data) != HEADER_LEN:
            raise RatchetDecodeError("ratchet header must be 40 bytes", field="header")
        return cls(
            bytes(data[:KEY_LEN]),
            int.from_bytes(data[KEY_LEN : KEY_LEN + 4], "big"),
            int.from_bytes(data[KEY_LEN + 4 :], "big"),
        )


@attrs.frozen(kw_only=True)
class RatchetState:
    """The state variables of §3.2 (and §4.2 when ``header_encryption`` is set).

    ``previous`` lists the chain ids (DHr, or HKr in HE mode) of earlier
    receiving chains, newest last, bounded by :data:`MAX_PREVIOUS_CHAINS`.
    """

    dhs: DHKeyPair = attrs.field(repr=False)
    dhr: bytes | None
    rk: bytes = attrs.field(repr=False)
    cks: bytes | None = attrs.field(repr=False)
    ckr: bytes | None = attrs.field(repr=False)
    ns: int = 0
    nr: int = 0
    pn: int = 0
    skipped: SkippedKeys = attrs.field(factory=dict, repr=False)
    previous: tuple[bytes, ...] = attrs.field(default=(), repr=False)
    header_encryption: bool = False
    hks: bytes | None = attrs.field(default=None, repr=False)
    hkr: bytes | None = attrs.field(default=None, repr=False)
    nhks: bytes | None = attrs.field(default=None, repr=False)
    nhkr: bytes | None = attrs.field(default=None, repr=False)

    @property
    def receiving_chain_id(self) -> bytes | None:
        """What skipped keys of the current receiving chain are filed under."""
        return self.hkr if self.header_encryption else self.dhr


def with_chains(
    state: RatchetState, *, cks: bytes | None, ns: int, ckr: bytes | None, nr: int
) -> RatchetState:
    """``state`` with its chain keys and counters replaced, every other field carried:
    one construction for a message's step (``attrs.evolve`` walks the fields each time)."""
    return RatchetState(
        dhs=state.dhs, dhr=state.dhr, rk=state.rk, cks=cks, ckr=ckr, ns=ns, nr=nr,
        pn=state.pn, skipped=state.skipped, previous=state.previous,
        header_encryption=state.header_encryption, hks=state.hks, hkr=state.hkr,
        nhks=state.nhks, nhkr=state.nhkr,
    )  # fmt: skip


def kdf_rk(rk: bytes, dh_out: bytes, info: bytes, length: int) -> tuple[bytes, ...]:
    """KDF_RK (§5.2), or KDF_RK_HE (§4.2) when ``length`` is 96: split into 32-byte keys."""
    out = hkdf_sha256(dh_out, salt=rk, info=info, length=length)
    return tuple(out[i : i + KEY_LEN] for i in range(0, length, KEY_LEN))


def kdf_ck(ck: bytes) -> tuple[bytes, bytes]:
    """KDF_CK (§5.2): (next chain key, message key)."""
    return hmac_sha256_pair(ck, b"\x02", b"\x01")


def concat(ad: bytes, header: bytes) -> bytes:
    """CONCAT(ad, header) (§3.1), length-prefixed so (ad, header) parses uniquely."""
    return len(ad).to_bytes(4, "big") + ad + header


def _message_cipher(mk: bytes) -> tuple[AESGCM, bytes]:
    okm = hkdf_sha256(mk, salt=bytes(KEY_LEN), info=MESSAGE_INFO, length=_AEAD_KEY_LEN + 12)
    return AESGCM(okm[:_AEAD_KEY_LEN]), okm[_AEAD_KEY_LEN:]


def aead_encrypt(mk: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """ENCRYPT(mk, plaintext, associated_data) (§3.1, §5.2)."""
    cipher, nonce = _message_cipher(mk)
    return cipher.encrypt(nonce, plaintext, ad)


def aead_decrypt(mk: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    """DECRYPT(mk, ciphertext, associated_data); MessageDecryptError when it does not verify."""
    cipher, nonce = _message_cipher(mk)
    try:
        return cipher.decrypt(nonce, ciphertext, ad)
    except InvalidTag:
        raise MessageDecryptError() from None


def take_skipped(
    state: RatchetState, chain: bytes, n: int, now: float
) -> tuple[SkippedKeys, bytes] | None:
    """TrySkippedMessageKeys (§3.5): the stored key for (chain, n), and the map without it."""
    entry = state.skipped.get((chain, n))
    if entry is None or entry[1] <= now:
        return None
    rest = {k: v for k, v in state.skipped.items() if k != (chain, n) and v[1] > now}
    return rest, entry[0]


def skip_message_keys(state: RatchetState, until: int, now: float) -> RatchetState:
    """SkipMessageKeys (§3.5 / §4.2): store the keys of messages ``nr .. until-1``."""
    if state.nr + MAX_SKIP < until:
        raise SkippedKeyLimitError(f"header skips more than {MAX_SKIP} messages")
    chain = state.receiving_chain_id
    if state.ckr is None or state.nr >= until or chain is None:
        return state
    ckr, nr = state.ckr, state.nr
    expiry = now + SKIPPED_KEY_LIFETIME
    skipped = {k: v for k, v in state.skipped.items() if v[1] > now}
    while nr < until:
        ckr, mk = kdf_ck(ckr)
        skipped[(chain, nr)] = (mk, expiry)
        nr += 1
    for key in list(skipped)[: max(0, len(skipped) - MAX_SKIPPED_KEYS)]:
        del skipped[key]  # dicts keep insertion order: the oldest go first
    return attrs.evolve(state, ckr=ckr, nr=nr, skipped=skipped)


def _remember_chain(state: RatchetState) -> tuple[bytes, ...]:
    chain = state.receiving_chain_id
    if chain is None:
        return state.previous
    return (*state.previous, chain)[-MAX_PREVIOUS_CHAINS:]


def dh_ratchet(state: RatchetState, dh: bytes, rng: Rng) -> RatchetState:
    """DHRatchet (§3.5), or DHRatchetHE (§4.3) for a header-encryption state."""
    previous = _remember_chain(state)
    peer = x25519_public(dh)  # loaded once for both exchanges
    if not state.header_encryption:
        rk, ckr = kdf_rk(state.rk, state.dhs.exchange(peer), ROOT_INFO, 64)
        dhs = DHKeyPair.generate(rng)
        rk, cks = kdf_rk(rk, dhs.exchange(peer), ROOT_INFO, 64)
        return attrs.evolve(
            state, pn=state.ns, ns=0, nr=0, dhr=dh, rk=rk, ckr=ckr, dhs=dhs, cks=cks,
            previous=previous,
        )  # fmt: skip
    rk, ckr, nhkr = kdf_rk(state.rk, state.dhs.exchange(peer), ROOT_HE_INFO, 96)
    dhs = DHKeyPair.generate(rng)
    rk, cks, nhks = kdf_rk(rk, dhs.exchange(peer), ROOT_HE_INFO, 96)
    return attrs.evolve(
        state, pn=state.ns, ns=0, nr=0, dhr=dh, rk=rk, ckr=ckr, dhs=dhs, cks=cks,
        hks=state.nhks, hkr=state.nhkr, nhks=nhks, nhkr=nhkr, previous=previous,
    )  # fmt: skip


def receive_message(
    state: RatchetState, header: Header, ciphertext: bytes, ad: bytes, now: float
) -> tuple[RatchetState, bytes]:
    """The tail of RatchetDecrypt (§3.5): skip to ``header.n``, step the chain, decrypt."""
    state = skip_message_keys(state, header.n, now)
    if state.ckr is None:
        raise MessageDecryptError()
    ckr, mk = kdf_ck(state.ckr)
    plaintext = aead_decrypt(mk, ciphertext, ad)
    return with_chains(state, cks=state.cks, ns=state.ns, ckr=ckr, nr=state.nr + 1), plaintext
