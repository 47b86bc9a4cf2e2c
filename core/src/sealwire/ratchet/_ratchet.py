"""The Double Ratchet algorithm (Signal specification rev 1): the sans-I/O functions.

Every function takes a frozen :class:`RatchetState` and returns a new one; the
caller commits the new state (to the store) before it uses the output. A call
that raises leaves the state it was given untouched, as §3.5 requires
("changes to the state object are discarded").

Time and randomness are parameters: ``now`` (UNIX seconds) dates skipped keys,
``rng`` draws new ratchet key pairs and header-encryption nonces.
"""

from __future__ import annotations

import attrs

from sealwire.errors import InternalError, StateError
from sealwire.ratchet._chain import (
    MAX_COUNTER,
    ROOT_INFO,
    Header,
    RatchetState,
    aead_decrypt,
    aead_encrypt,
    concat,
    dh_ratchet,
    kdf_ck,
    kdf_rk,
    receive_message,
    skip_message_keys,
    take_skipped,
    with_chains,
)
from sealwire.ratchet._crypto import DHKeyPair, Rng
from sealwire.ratchet._errors import (
    ChainExhaustedError,
    DuplicateMessageError,
    MessageDecryptError,
    UnknownChainError,
)
from sealwire.ratchet._header_encryption import decrypt_he, hencrypt, init_alice_he, init_bob_he

__all__ = ["decrypt", "encrypt", "init_alice", "init_bob", "prune"]


def init_alice(
    secret: bytes, bob_public: bytes, rng: Rng, *, header_encryption: bool = False,
    bob_chain: bytes | None = None,
) -> RatchetState:  # fmt: skip
    """RatchetInitAlice (§3.3): Alice knows SK and Bob's ratchet (signed prekey) public key.

    ``bob_chain`` (an extension, not in the specification) is a chain key both
    sides derived from the key agreement: Bob sends on it under his initial
    ratchet key before he has received anything, and Alice receives on it.
    Without it (the specification's case) Bob must receive before he sends.
    """
    if header_encryption:
        if bob_chain is not None:
            raise StateError("an initial chain for Bob is not defined with header encryption")
        return init_alice_he(secret, bob_public, rng)
    dhs = DHKeyPair.generate(rng)
    rk, cks = kdf_rk(secret, dhs.exchange(bob_public), ROOT_INFO, 64)
    return RatchetState(dhs=dhs, dhr=bob_public, rk=rk, cks=cks, ckr=bob_chain)


def init_bob(
    secret: bytes, bob_pair: DHKeyPair, *, header_encryption: bool = False,
    bob_chain: bytes | None = None,
) -> RatchetState:  # fmt: skip
    """RatchetInitBob (§3.3): Bob's signed prekey pair is his first ratchet key pair.

    ``bob_chain``: see :func:`init_alice`; Bob's first sending chain.
    """
    if header_encryption:
        if bob_chain is not None:
            raise StateError("an initial chain for Bob is not defined with header encryption")
        return init_bob_he(secret, bob_pair)
    return RatchetState(dhs=bob_pair, dhr=None, rk=secret, cks=bob_chain, ckr=None)


def encrypt(
    state: RatchetState, plaintext: bytes, ad: bytes, rng: Rng, *, limit: int = MAX_COUNTER
) -> tuple[RatchetState, bytes, bytes]:
    """RatchetEncrypt (§3.4) / RatchetEncryptHE (§4.3): (new state, header, ciphertext).

    In HE mode the returned header is the encrypted header. ``limit`` bounds
    the messages of one sending chain (a protocol's bound between DH steps):
    :class:`ChainExhaustedError` once ``ns`` reaches it.
    """
    if state.cks is None:
        raise StateError("no sending chain yet: Bob must receive before he sends")
    if state.ns >= min(limit, MAX_COUNTER):
        raise ChainExhaustedError("sending chain exhausted: a DH step must come first")
    cks, mk = kdf_ck(state.cks)
    header = Header(state.dhs.public, state.pn, state.ns)
    if state.header_encryption:
        if state.hks is None:
            raise InternalError("header-encryption state with a sending chain but no HKs")
        wire_header = hencrypt(state.hks, header, rng)
    else:
        wire_header = header.to_bytes()
    ciphertext = aead_encrypt(mk, plaintext, concat(ad, wire_header))
    stepped = with_chains(state, cks=cks, ns=state.ns + 1, ckr=state.ckr, nr=state.nr)
    return stepped, wire_header, ciphertext


def decrypt(
    state: RatchetState, header: bytes, ciphertext: bytes, ad: bytes, *, now: float, rng: Rng
) -> tuple[RatchetState, bytes]:
    """RatchetDecrypt (§3.5) / RatchetDecryptHE (§4.3): (new state, plaintext).

    Raises DuplicateMessageError for a message already read (or whose skipped
    key was discarded), SkippedKeyLimitError beyond MAX_SKIP,
    MessageDecryptError when the message does not authenticate, and
    RatchetDecodeError for a malformed header.
    """
    if state.header_encryption:
        return decrypt_he(state, header, ciphertext, ad, now=now, rng=rng)
    parsed = Header.from_bytes(header)
    full_ad = concat(ad, header)
    found = take_skipped(state, parsed.dh, parsed.n, now)
    if found is not None:
        rest, mk = found
        plaintext = aead_decrypt(mk, ciphertext, full_ad)
        return attrs.evolve(state, skipped=rest), plaintext
    stepped = state
    if parsed.dh != state.dhr:
        if parsed.dh in state.previous:
            raise DuplicateMessageError("message already received or its key expired")
        stepped = skip_message_keys(stepped, parsed.pn, now)
        stepped = dh_ratchet(stepped, parsed.dh, rng)
        try:
            return receive_message(stepped, parsed, ciphertext, full_ad, now)
        except MessageDecryptError:
            raise UnknownChainError("header of an unknown ratchet chain") from None
    if parsed.n < state.nr:
        raise DuplicateMessageError("message already received or its key expired")
    return receive_message(stepped, parsed, ciphertext, full_ad, now)


def prune(state: RatchetState, now: float) -> RatchetState:
    """Drop skipped message keys whose lifetime has passed (§3.5's deletion policy)."""
    kept = {k: v for k, v in state.skipped.items() if v[1] > now}
    if len(kept) == len(state.skipped):
        return state
    return attrs.evolve(state, skipped=kept)
