"""A pairwise Signal session and its sans-I/O operations: start, seal, accept, open.

A :class:`Session` is one X3DH/PQXDH agreement plus the Double Ratchet state
that follows it. The initiator attaches the initial-message fields
(:class:`PrekeyPart`) to every envelope until the peer's first reply arrives
(X3DH §3.3 lets the initial message carry several ratchet messages; a mailbox
may lose or reorder the first one). The ratchet's associated data is the X3DH
``AD`` followed by the envelope's associated prefix, so the sender and
recipient ids, the message id, the negotiation transcript and the prekey ids
are all authenticated.
"""

from __future__ import annotations

import attrs
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey

from sealwire.errors import RemoteProtocolError
from sealwire.ratchet import DHKeyPair, RatchetState, Rng
from sealwire_signal import _ratchet
from sealwire_signal._wire import MESSAGE_ID_LEN, Envelope, PrekeyPart, card_digest
from sealwire_signal._x3dh import VerifiedBundle, initial_message_input, initiate, respond

__all__ = ["Session", "accept_session", "open_envelope", "seal_frame", "start_session"]


@attrs.frozen(kw_only=True)
class Session:
    """A pairwise session as kept in the store.

    ``base_key`` is the initiator's ephemeral key EK_A: it names the agreement,
    so a repeated initial message is matched to the session it created.
    ``pending`` is set on the initiator's side until the first reply.
    ``peer_card`` is the peer's signed agent card (JSON bytes) the session was
    made with: from ``seal``'s argument, or from the initial message.
    ``peer_holds`` is the SHA-256 of our card as the peer holds it (the card of our
    initial message, or what the peer's last message said; None: unknown, never said
    or said before we sent a card): while it is not our card's, our card goes with
    every message.
    """

    local_id: str
    peer_id: str
    peer_identity_key: bytes
    associated_data: bytes
    base_key: bytes
    ratchet: RatchetState
    pending: PrekeyPart | None = None
    peer_card: bytes = attrs.field(default=b"", repr=False)
    peer_holds: bytes | None = None


def start_session(
    *, local_id: str, peer_id: str, identity: DHKeyPair, peer: VerifiedBundle, rng: Rng,
    header_encryption: bool = False, local_card: bytes = b"", peer_card: bytes = b"",
    mldsa_key: MLDSA65PrivateKey | None = None,
) -> Session:  # fmt: skip
    """Alice: X3DH/PQXDH with the peer's verified bundle, then RatchetInitAlice.

    ``local_card`` (our signed card) travels in the initial message so the peer
    can verify who we are; ``peer_card`` is kept with the session. With
    ``mldsa_key`` (our card lists it) the initial message is signed with it.
    """
    init = initiate(identity, peer, rng)
    ratchet = _ratchet.init_alice(
        init.shared.secret, init.remote_ratchet_key, rng, header_encryption=header_encryption
    )
    pending = PrekeyPart(
        identity_key=init.identity_key, ephemeral_key=init.ephemeral_key,
        signed_prekey_id=init.signed_prekey_id, one_time_prekey_id=init.one_time_prekey_id,
        kem_prekey_id=init.kem_prekey_id, kem_ciphertext=init.kem_ciphertext, card=local_card,
    )  # fmt: skip
    if mldsa_key is not None:
        signed = initial_message_input(pending.unsigned_bytes(), local_id, peer_id)
        pending = attrs.evolve(pending, mldsa_signature=mldsa_key.sign(signed))
    return Session(
        local_id=local_id, peer_id=peer_id, peer_identity_key=peer.bundle.identity_key,
        associated_data=init.shared.associated_data, base_key=init.ephemeral_key,
        ratchet=ratchet, pending=pending, peer_card=peer_card,
        peer_holds=card_digest(local_card) if local_card else None,
    )  # fmt: skip


def seal_frame(
    session: Session,
    frame: bytes,
    *,
    negotiation: bytes,
    rng: Rng,
    known_card: bytes | None = None,
    card: bytes = b"",
) -> tuple[Session, Envelope]:
    """Encrypt one frame; commit the returned session before sending the envelope.
    ``known_card`` and ``card`` go in the envelope as its fields say (``card`` only once
    the initial part, which carries the card, is no longer sent). Once a card is sent,
    which card the peer holds is unknown until its next message says."""
    if card and session.pending is not None:
        raise ValueError("the initial part carries the card")
    message_id = rng(MESSAGE_ID_LEN)
    he = session.ratchet.header_encryption
    draft = Envelope(
        sender_id=session.local_id, recipient_id=session.peer_id, message_id=message_id,
        negotiation=negotiation, prekey=session.pending, header_encryption=he, header=b"",
        ciphertext=b"", known_card=known_card, card=card,
    )  # fmt: skip
    ad = session.associated_data + draft.associated_prefix()
    ratchet, header, ciphertext = _ratchet.encrypt(session.ratchet, frame, ad, rng)
    envelope = Envelope(
        sender_id=session.local_id, recipient_id=session.peer_id, message_id=message_id,
        negotiation=negotiation, prekey=session.pending, header_encryption=he, header=header,
        ciphertext=ciphertext, known_card=known_card, card=card,
    )  # fmt: skip
    holds = None if card else session.peer_holds
    return _stepped(session, ratchet, session.pending, holds), envelope


def _stepped(
    session: Session, ratchet: RatchetState, pending: PrekeyPart | None, peer_holds: bytes | None
) -> Session:
    """``session`` with its ratchet stepped (one construction, not an evolve per message)."""
    return Session(
        local_id=session.local_id, peer_id=session.peer_id,
        peer_identity_key=session.peer_identity_key, associated_data=session.associated_data,
        base_key=session.base_key, ratchet=ratchet, pending=pending, peer_card=session.peer_card,
        peer_holds=peer_holds,
    )  # fmt: skip


def open_envelope(
    session: Session, envelope: Envelope, *, now: float, rng: Rng
) -> tuple[Session, bytes]:
    """Decrypt an envelope on an existing session; the given session is never modified."""
    if envelope.sender_id != session.peer_id or envelope.recipient_id != session.local_id:
        raise RemoteProtocolError("envelope addressed to another session")
    if envelope.prekey is not None and envelope.prekey.ephemeral_key != session.base_key:
        raise RemoteProtocolError("initial message of another session")
    ad = session.associated_data + envelope.associated_prefix()
    ratchet, frame = _ratchet.decrypt(
        session.ratchet, envelope.header, envelope.ciphertext, ad, now=now, rng=rng
    )
    # The first reply proves the peer holds the session: stop sending the initial part.
    holds = session.peer_holds if envelope.known_card is None else envelope.known_card
    return _stepped(session, ratchet, None, holds), frame


def accept_session(
    *, local_id: str, envelope: Envelope, identity: DHKeyPair, signed_prekey: DHKeyPair,
    one_time_prekey: DHKeyPair | None, kem_prekey: MLKEM768PrivateKey | None,
    now: float, rng: Rng,
) -> tuple[Session, bytes]:  # fmt: skip
    """Bob: X3DH/PQXDH respond, RatchetInitBob, then decrypt the initial message.

    The caller has looked up the prekeys the envelope names and checked that
    ``envelope.prekey.identity_key`` is the sender's X25519 key from its signed
    card; on success it deletes the one-time prekeys (X3DH §3.4).
    """
    part = envelope.prekey
    if part is None:
        raise RemoteProtocolError("not an initial message")
    shared = respond(
        identity=identity, signed_prekey=signed_prekey, one_time_prekey=one_time_prekey,
        kem_prekey=kem_prekey, initiator_identity=part.identity_key,
        ephemeral_key=part.ephemeral_key, kem_ciphertext=part.kem_ciphertext,
    )  # fmt: skip
    ratchet = _ratchet.init_bob(
        shared.secret, signed_prekey, header_encryption=envelope.header_encryption
    )
    session = Session(
        local_id=local_id, peer_id=envelope.sender_id, peer_identity_key=part.identity_key,
        associated_data=shared.associated_data, base_key=part.ephemeral_key, ratchet=ratchet,
        peer_card=part.card,
    )  # fmt: skip
    opened, frame = open_envelope(session, envelope, now=now, rng=rng)
    return opened, frame
