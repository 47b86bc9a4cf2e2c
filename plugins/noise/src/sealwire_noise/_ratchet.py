"""A Double Ratchet inside an established Noise session (sans-I/O).

The ratchet is core's :mod:`sealwire.ratchet`; this module keys it from the
Noise handshake, binds every message to the live handshake, resumes it across
reconnects, and says what goes on the wire. No sockets, no clock, no implicit
randomness: ``rng`` and ``now`` are parameters, every function returns a new
frozen value and leaves its input unchanged when it raises.

**Keying.** From the finished handshake's hash ``h`` and Split() keys
``k1, k2`` (:meth:`HandshakeState.split_keys`)::

    okm = HKDF-SHA256(salt = h, ikm = k1 || k2, info = "sealwire-noise/ratchet/1 keys", 128)
    SK (32) || bob_chain (32) || bob_seed (32) || resume_key (32) = okm
    ratchet_id = HMAC-SHA256(resume_key, "sealwire-noise/ratchet/1 id")[:16]

The handshake's initiator is the ratchet's Alice, the responder its Bob, whose
first ratchet key pair is X25519(bob_seed). ``bob_chain`` lets Bob send before
he has received anything (core's optional initial chain); the first DH step
with a fresh key happens at the first change of direction, and at every one
after it.

**Messages.** A ratchet message is ``header (40) || AEAD ciphertext`` of
``flags (1) || frame``; its associated data is::

    "sealwire-noise/ratchet/1 msg" || u8 len(h) || h || ratchet_id

so a message opens only inside the Noise session it was sent in (a copy
replayed into a later session fails), and only on the ratchet it belongs to.
``flags`` bit 0 (STEP) marks a message that carries no frame: the receiver of
:data:`STEP_EVERY` messages in a row sends one, which brings its new ratchet
key to the sender, so one direction never runs more than about that many
messages without a DH step. A sender refuses to go beyond
:data:`MAX_CHAIN_MESSAGES` on one chain (:class:`ChainExhaustedError`).

**Resumption.** Each side sends a hello right after the handshake::

    hello = "SWNR" || version (1) || state (1) || [ratchet_id (16) || proof (32)]
    state = 0: no stored ratchet, 1: a stored ratchet (id and proof follow),
            2: busy (another open session with this peer holds the stored ratchet)
    proof = HMAC-SHA256(resume_key, "sealwire-noise/ratchet/1 resume" || role || u8 len(h) || h)

``role`` is 1 from the side that initiated *this* handshake, 0 from the other.
Both sides apply the same rule to the two hellos (:func:`resolve`): a side
busy -> a fresh ratchet kept in memory for this session only, the stored one
left to the session holding it (:attr:`Restart.CONCURRENT`); same ratchet id
and a proof that verifies -> resume the stored ratchet; same id and a proof
that does not -> :class:`RatchetBindingError`, nothing changes; anything else
(a side has no state, or the ids differ) -> a fresh ratchet keyed from this
handshake, reported as a :class:`Restart` with its reason, never silently.
"""

from __future__ import annotations

import enum
import hmac

import attrs

from sealwire import ratchet
from sealwire.errors import AuthenticationError
from sealwire.ratchet import (
    HEADER_LEN,
    KEY_LEN,
    DHKeyPair,
    RatchetDecodeError,
    RatchetState,
    Rng,
    hkdf_sha256,
    hmac_sha256,
)
from sealwire_noise._errors import NoiseDecodeError

__all__ = [
    "FLAG_STEP",
    "HELLO_MAGIC",
    "MAX_CHAIN_MESSAGES",
    "MAX_HELLO_LEN",
    "MAX_RECORD_LEN",
    "RATCHET_ID_LEN",
    "RATCHET_OVERHEAD",
    "STEP_EVERY",
    "Keying",
    "NoiseRatchet",
    "Opened",
    "RatchetBindingError",
    "Restart",
    "decode",
    "encode",
    "hello",
    "keying",
    "open_message",
    "resolve",
    "seal",
    "start",
]

LABEL = b"sealwire-noise/ratchet/1"
HELLO_MAGIC = b"SWNR"
HELLO_VERSION = 1
RATCHET_ID_LEN = 16
"""Bytes of a ratchet's id: names one ratchet lineage between two agents."""
_PROOF_LEN = 32
MAX_HELLO_LEN = len(HELLO_MAGIC) + 2 + RATCHET_ID_LEN + _PROOF_LEN
FLAG_STEP = 0x01
_KNOWN_FLAGS = FLAG_STEP
_TAG_LEN = 16
RATCHET_OVERHEAD = HEADER_LEN + 1 + _TAG_LEN
"""Bytes a ratchet message adds to a frame: header, flags byte, AEAD tag."""
STEP_EVERY = 256
"""Messages received in a row on one chain before the receiver answers with a
STEP message, so the sender's next message makes a DH step: the bound on
messages between DH steps in a one-way flow. 256 keeps the extra traffic
below 0.5 % of messages while a key compromise heals within 256 messages."""
MAX_CHAIN_MESSAGES = 1 << 16
"""Messages a sender puts on one chain before it refuses to send more until a
DH step (its peer's STEP, or any reply, arrives): STEP_EVERY with ample room
for messages in flight, so only a peer that stops reading ever meets it."""
MAX_RECORD_LEN = 1 << 20
"""A stored ratchet holds at most MAX_SKIPPED_KEYS skipped keys (~150 KiB); 1 MiB bounds it."""
RECORD_MAGIC = b"SWNS"
RECORD_VERSION = 1
_RECORD_HEAD = len(RECORD_MAGIC) + 1 + RATCHET_ID_LEN + KEY_LEN + 1 + 2


class RatchetBindingError(AuthenticationError):
    """The peer's resumption proof does not bind the stored ratchet to this handshake
    (a hello replayed from another session, or a peer without the resume key).
    The stored ratchet is unchanged and nothing is sent or handed on."""

    code = "noise.ratchet_binding"


class Restart(enum.StrEnum):
    """How a channel's ratchet began: resumed, or started fresh and why."""

    RESUMED = "resumed"
    NEW = "new"  # neither side had a ratchet for the other
    PEER_LOST_STATE = "peer_lost_state"  # we had one, the peer has none
    LOCAL_STATE_MISSING = "local_state_missing"  # the peer has one, we have none
    DIVERGED = "diverged"  # both have one, not the same lineage
    CONCURRENT = "concurrent"  # another open session holds the stored one: memory only


@attrs.frozen
class Keying:
    """What one finished handshake gives the ratchet (secrets hidden from reprs)."""

    handshake_hash: bytes = attrs.field(repr=False)
    secret: bytes = attrs.field(repr=False)
    bob_chain: bytes = attrs.field(repr=False)
    bob_seed: bytes = attrs.field(repr=False)
    resume_key: bytes = attrs.field(repr=False)


def keying(handshake_hash: bytes, k1: bytes, k2: bytes) -> Keying:
    """The labelled HKDF of the module docstring over the handshake's hash and split."""
    okm = hkdf_sha256(k1 + k2, salt=handshake_hash, info=LABEL + b" keys", length=4 * KEY_LEN)
    parts = [okm[i : i + KEY_LEN] for i in range(0, 4 * KEY_LEN, KEY_LEN)]
    return Keying(handshake_hash, *parts)


@attrs.frozen(kw_only=True)
class NoiseRatchet:
    """One side's ratchet with a peer, as committed to the store.

    ``alice`` is the role in the ratchet (the initiator of the handshake that
    started it), fixed for its lifetime whoever initiates later sessions.
    ``received_in_row`` counts messages received since we last sent.
    """

    ratchet_id: bytes
    resume_key: bytes = attrs.field(repr=False)
    alice: bool
    state: RatchetState = attrs.field(repr=False)
    received_in_row: int = 0


def _ratchet_id(resume_key: bytes) -> bytes:
    return hmac_sha256(resume_key, LABEL + b" id")[:RATCHET_ID_LEN]


def start(keys: Keying, *, initiator: bool, rng: Rng) -> NoiseRatchet:
    """A fresh ratchet keyed from this handshake (the initiator is Alice)."""
    bob = DHKeyPair.from_private_bytes(keys.bob_seed)
    if initiator:
        state = ratchet.init_alice(keys.secret, bob.public, rng, bob_chain=keys.bob_chain)
    else:
        state = ratchet.init_bob(keys.secret, bob, bob_chain=keys.bob_chain)
    return NoiseRatchet(
        ratchet_id=_ratchet_id(keys.resume_key),
        resume_key=keys.resume_key,
        alice=initiator,
        state=state,
    )


def _proof(resume_key: bytes, handshake_hash: bytes, *, initiator: bool) -> bytes:
    role = b"\x01" if initiator else b"\x00"
    data = LABEL + b" resume" + role + bytes([len(handshake_hash)]) + handshake_hash
    return hmac_sha256(resume_key, data)


_NO_STATE, _STATE, _BUSY = 0, 1, 2


def hello(
    mine: NoiseRatchet | None, handshake_hash: bytes, *, initiator: bool, busy: bool = False
) -> bytes:
    """Our hello for this session: the stored ratchet's id and a proof bound to ``h``
    (or that we have none, or that another session of ours holds it: ``busy``)."""
    head = HELLO_MAGIC + bytes([HELLO_VERSION])
    if busy:
        return head + bytes((_BUSY,))
    if mine is None:
        return head + bytes((_NO_STATE,))
    proof = _proof(mine.resume_key, handshake_hash, initiator=initiator)
    return head + b"\x01" + mine.ratchet_id + proof


def _parse_hello(data: bytes) -> tuple[int, bytes, bytes]:
    """``(state, ratchet_id, proof)``; the id and proof are empty unless state is 1."""
    if len(data) > MAX_HELLO_LEN or data[: len(HELLO_MAGIC)] != HELLO_MAGIC:
        raise NoiseDecodeError("not a ratchet hello", field="noise.ratchet_hello")
    rest = data[len(HELLO_MAGIC) :]
    if len(rest) < 2 or rest[0] != HELLO_VERSION or rest[1] not in (_NO_STATE, _STATE, _BUSY):
        raise NoiseDecodeError("unknown ratchet hello version", field="noise.ratchet_hello")
    if rest[1] != _STATE:
        if len(rest) != 2:
            raise NoiseDecodeError("trailing bytes", field="noise.ratchet_hello")
        return rest[1], b"", b""
    if len(rest) != 2 + RATCHET_ID_LEN + _PROOF_LEN:
        raise NoiseDecodeError("bad ratchet hello length", field="noise.ratchet_hello")
    return _STATE, rest[2 : 2 + RATCHET_ID_LEN], rest[2 + RATCHET_ID_LEN :]


def resolve(
    mine: NoiseRatchet | None, peer_hello: bytes, keys: Keying, *, initiator: bool, rng: Rng,
    busy: bool = False,
) -> tuple[NoiseRatchet, Restart]:  # fmt: skip
    """Decide from both hellos whether to resume ``mine`` or start fresh (see the
    module docstring). Both sides reach the same decision from the same two hellos.
    ``busy`` is what our hello said. A :attr:`Restart.CONCURRENT` ratchet must not
    be stored: the stored one belongs to the other open session.

    Raises :class:`RatchetBindingError` when the peer names our ratchet but its
    proof does not verify for this handshake, :class:`NoiseDecodeError` for a
    malformed hello; neither changes anything.
    """
    state, their_id, their_proof = _parse_hello(peer_hello)
    if busy or state == _BUSY:
        return start(keys, initiator=initiator, rng=rng), Restart.CONCURRENT
    if mine is not None and state == _STATE and hmac.compare_digest(their_id, mine.ratchet_id):
        expected = _proof(mine.resume_key, keys.handshake_hash, initiator=not initiator)
        if not hmac.compare_digest(their_proof, expected):
            raise RatchetBindingError("the peer's hello does not bind our ratchet to this session")
        return mine, Restart.RESUMED
    if mine is None and state == _NO_STATE:
        reason = Restart.NEW
    elif state == _NO_STATE:
        reason = Restart.PEER_LOST_STATE
    elif mine is None:
        reason = Restart.LOCAL_STATE_MISSING
    else:
        reason = Restart.DIVERGED
    return start(keys, initiator=initiator, rng=rng), reason


def _ad(r: NoiseRatchet, handshake_hash: bytes) -> bytes:
    return LABEL + b" msg" + bytes([len(handshake_hash)]) + handshake_hash + r.ratchet_id


def seal(
    r: NoiseRatchet, frame: bytes, handshake_hash: bytes, rng: Rng, *, flags: int = 0
) -> tuple[NoiseRatchet, bytes]:
    """One ratchet message carrying ``frame`` (or a STEP when ``flags`` says so).

    Commit the returned ratchet before the message leaves.
    """
    state, header, ciphertext = ratchet.encrypt(
        r.state, bytes([flags]) + frame, _ad(r, handshake_hash), rng, limit=MAX_CHAIN_MESSAGES
    )
    return attrs.evolve(r, state=state, received_in_row=0), header + ciphertext


@attrs.frozen
class Opened:
    """An opened message: the new ratchet to commit, the frame (``None`` for a
    STEP), and whether a STEP is due back (the bound between DH steps)."""

    ratchet: NoiseRatchet = attrs.field(repr=False)
    frame: bytes | None = attrs.field(repr=False)
    step_due: bool


def open_message(
    r: NoiseRatchet, message: bytes, handshake_hash: bytes, *, now: float, rng: Rng
) -> Opened:
    """Open one ratchet message; typed errors (decode, unknown chain, skip bound,
    duplicate, authentication) leave ``r`` as it was, and nothing is handed on."""
    if len(message) < HEADER_LEN + 1 + _TAG_LEN:
        raise RatchetDecodeError("ratchet message too short", field="noise.ratchet")
    state, plaintext = ratchet.decrypt(
        r.state, message[:HEADER_LEN], message[HEADER_LEN:], _ad(r, handshake_hash),
        now=now, rng=rng,
    )  # fmt: skip
    flags = plaintext[0]
    if flags & ~_KNOWN_FLAGS:
        raise RatchetDecodeError("unknown ratchet flags", field="noise.ratchet")
    in_row = min(r.received_in_row + 1, STEP_EVERY)
    step_due = in_row >= STEP_EVERY
    opened = attrs.evolve(r, state=ratchet.prune(state, now), received_in_row=in_row)
    return Opened(opened, None if flags & FLAG_STEP else plaintext[1:], step_due)


# -- the stored form -----------------------------------------------------------------
#
#   record = "SWNS" || version (1) = 1 || ratchet_id (16) || resume_key (32)
#            || alice (1: 0 or 1) || received_in_row (uint16) || sealwire.ratchet.state_to_bytes


def encode(r: NoiseRatchet) -> bytes:
    """The ratchet as stored (secrets included: the agent's store encrypts it)."""
    return b"".join((
        RECORD_MAGIC, bytes((RECORD_VERSION,)), r.ratchet_id, r.resume_key,
        bytes((int(r.alice),)), r.received_in_row.to_bytes(2, "big"),
        ratchet.state_to_bytes(r.state),
    ))  # fmt: skip


def decode(data: bytes) -> NoiseRatchet:
    """Read a stored ratchet (untrusted): NoiseDecodeError or RatchetDecodeError if corrupt."""
    if len(data) > MAX_RECORD_LEN:
        raise NoiseDecodeError("record too large", field="noise.ratchet_record")
    if len(data) < _RECORD_HEAD or data[: len(RECORD_MAGIC)] != RECORD_MAGIC:
        raise NoiseDecodeError("not a stored ratchet", field="noise.ratchet_record")
    pos = len(RECORD_MAGIC)
    if data[pos] != RECORD_VERSION:
        raise NoiseDecodeError("unknown record version", field="noise.ratchet_record")
    pos += 1
    ratchet_id, pos = data[pos : pos + RATCHET_ID_LEN], pos + RATCHET_ID_LEN
    resume_key, pos = data[pos : pos + KEY_LEN], pos + KEY_LEN
    alice, in_row = data[pos], int.from_bytes(data[pos + 1 : pos + 3], "big")
    if alice > 1 or in_row > STEP_EVERY:
        raise NoiseDecodeError("field out of range", field="noise.ratchet_record")
    return NoiseRatchet(
        ratchet_id=ratchet_id, resume_key=resume_key, alice=bool(alice),
        state=ratchet.state_from_bytes(data[_RECORD_HEAD:]), received_in_row=in_row,
    )  # fmt: skip
