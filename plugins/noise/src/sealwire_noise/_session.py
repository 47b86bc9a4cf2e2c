"""One side of a Noise handshake with Sealwire's framing: the protocol name in the
first frame, the prologue binding the negotiation, and the card exchange.

Used by the stream binding (:mod:`sealwire_noise._binding`) and the datagram
one (:mod:`sealwire_noise._datagram`) alike; it depends on neither.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature

from sealwire.binding import BindingContext, BindingInfo, Negotiation, PeerIdentity, Property
from sealwire.identity import VerifiedCard, verify_card
from sealwire_noise._errors import (
    NoiseDecodeError,
    NoiseDowngradeError,
    NoiseRemoteProtocolError,
    NoiseSignatureError,
    NoiseTrustError,
)
from sealwire_noise._handshake import HandshakeState, HandshakeStatus, NoiseProtocol

__all__ = [
    "CARD_MESSAGE",
    "MLDSA_SIGNATURE_LEN",
    "PAYLOAD_SIGNED",
    "RATCHET_MARK",
    "Session",
    "decode_first_frame",
    "encode_first_frame",
    "prologue",
]

CARD_MESSAGE = {"XX": (2, 1), "IK": (0, 1), "XK": (2, 1)}
"""(initiator's, responder's) handshake message index that carries each side's card."""
MAX_NAME_LEN = 64
"""Longest protocol name in a first frame (the longest we build is ~45 bytes)."""
PROLOGUE_LABEL = b"sealwire-noise/"
RATCHET_MARK = "/ratchet"
"""Appended to the protocol name in the first frame, and to the prologue head,
when the initiator runs the in-session Double Ratchet (docs/noise-ratchet.md):
the prologue binds the choice, so stripping or adding it breaks the handshake."""


PAYLOAD_SIGNED = 0x01
"""First byte of a card payload that carries an ML-DSA-65 signature; a bare card
payload is JSON, whose first byte is ``{``, so the two cannot be confused."""
MLDSA_SIGNATURE_LEN = 3309
"""FIPS 204 Table 2: an ML-DSA-65 signature."""
SIGNATURE_LABEL = b"sealwire-noise/mldsa65-handshake/1\x00"
"""Domain separation of the payload signature from every other use of the key."""

# Card payload (the handshake message that carries each side's card, CARD_MESSAGE):
#   classical identity:   card JSON
#   ML-DSA-65 identity:   0x01 || ML-DSA-65(sk, SIGNATURE_LABEL || h) [3309] || card JSON
# where h is the handshake hash just before the payload is encrypted
# (HandshateState.payload_hash): it binds the prologue (the negotiation), both
# sides' ephemerals, the ML-KEM ciphertext and this side's static key, so the
# signature authenticates this handshake with a post-quantum key. A card listing
# an ML-DSA-65 key must come with a valid signature (NoiseSignatureError).


def prologue(info: BindingInfo, negotiation: Negotiation, *, ratchet: bool = False) -> bytes:
    """§6 prologue: label, binding name and major version (and the ratchet mark when
    the session runs the in-session ratchet), the negotiation transcript."""
    head = PROLOGUE_LABEL + f"{info.name}:{info.major}".encode()
    if ratchet:
        head += RATCHET_MARK.encode()
    return len(head).to_bytes(2, "big") + head + negotiation.transcript()


def encode_first_frame(name: str, message: bytes) -> bytes:
    """``name_len (1) || protocol name (ASCII) || first Noise handshake message``."""
    raw = name.encode("ascii")
    return bytes([len(raw)]) + raw + message


def decode_first_frame(frame: bytes) -> tuple[str, bytes]:
    if not frame or frame[0] == 0 or frame[0] > MAX_NAME_LEN or len(frame) < 1 + frame[0]:
        raise NoiseDecodeError("bad first handshake frame", field="noise.protocol_name")
    try:
        name = frame[1 : 1 + frame[0]].decode("ascii")
    except UnicodeDecodeError:
        raise NoiseDecodeError("protocol name is not ASCII", field="noise.protocol_name") from None
    return name, frame[1 + frame[0] :]


class Session:
    """One side's handshake: the HandshakeState plus the card exchange around it."""

    def __init__(
        self,
        context: BindingContext,
        info: BindingInfo,
        protocol: NoiseProtocol,
        negotiation: Negotiation,
        expected: VerifiedCard | None,
        *,
        ratchet: bool = False,
    ) -> None:
        self.context = context
        self.info = info
        self.protocol = protocol
        self.expected = expected
        self.ratchet = ratchet
        initiator = expected is not None
        needs_rs = protocol.pattern.needs_remote_static(initiator)
        self.hs = HandshakeState(
            protocol,
            initiator=initiator,
            random=os.urandom,
            prologue=prologue(info, negotiation, ratchet=ratchet),
            static=context.identity.agreement_key,
            remote_static=(
                expected.identity.agreement_key.public_bytes_raw()
                if expected is not None and needs_rs
                else None
            ),
        )
        base = protocol.pattern.name.removesuffix("hfs")
        mine, theirs = CARD_MESSAGE[base]
        self._my_card_at, self._their_card_at = (mine, theirs) if initiator else (theirs, mine)
        self._index = 0
        self.peer_card: VerifiedCard | None = None

    @property
    def first_frame_name(self) -> str:
        """The name the first frame carries: the protocol's, plus the ratchet mark."""
        return self.protocol.name + (RATCHET_MARK if self.ratchet else "")

    def write(self) -> bytes:
        payload: bytes | Callable[[bytes], bytes] = b""
        if self._index == self._my_card_at:
            card = self.context.card.json_bytes
            mldsa = self.context.identity.mldsa_key
            if mldsa is None:
                payload = card
            else:

                def payload(h: bytes) -> bytes:
                    signature = mldsa.sign(SIGNATURE_LABEL + h)
                    return bytes((PAYLOAD_SIGNED,)) + signature + card

        message = self.hs.write_message(payload)
        self._index += 1
        return message

    def read(self, message: bytes) -> None:
        """Read a handshake message, then accept its payload (the card check)."""
        self.accept(self.read_message(message))

    def read_message(self, message: bytes) -> bytes:
        """The Noise read only: a failure leaves everything unchanged (retryable)."""
        return self.hs.read_message(message)

    def accept(self, payload: bytes) -> None:
        """Check the payload of the message just read; a failure is final."""
        index, self._index = self._index, self._index + 1
        if index == self._their_card_at:
            self.peer_card = self._verify_card(payload)
        elif payload:
            raise NoiseRemoteProtocolError("unexpected handshake payload")

    def _verify_card(self, payload: bytes) -> VerifiedCard:
        signature: bytes | None = None
        if payload[:1] == bytes((PAYLOAD_SIGNED,)):
            if len(payload) < 1 + MLDSA_SIGNATURE_LEN:
                raise NoiseDecodeError("truncated payload signature", field="noise.signature")
            signature = payload[1 : 1 + MLDSA_SIGNATURE_LEN]
            payload = payload[1 + MLDSA_SIGNATURE_LEN :]
        try:
            card_json = json.loads(payload)
        except ValueError:
            raise NoiseDecodeError("card payload is not JSON", field="noise.card") from None
        card = verify_card(card_json)
        self._check_signature(card, signature)
        self._check_downgrade(card)
        static = self.hs.remote_static
        expected_key = card.identity.agreement_key.public_bytes_raw()
        if static is None or not hmac.compare_digest(expected_key, static):
            raise NoiseTrustError("the peer's Noise static key is not the key in its signed card")
        if self.expected is not None and card.agent_id != self.expected.agent_id:
            raise NoiseTrustError("the responder is not the agent we called")
        trust = self.context.trust
        trust.check(card)
        trust.check_key(card.agent_id, static)
        return card

    def _check_signature(self, card: VerifiedCard, signature: bytes | None) -> None:
        """A card that lists an ML-DSA-65 key authenticates the handshake with it too."""
        key = card.identity.mldsa_key
        if key is None:
            if signature is not None:
                raise NoiseSignatureError("a payload signature from a card without ML-DSA-65")
            return
        if signature is None:
            raise NoiseSignatureError(
                "the peer's card lists an ML-DSA-65 key but its handshake is not signed with it"
            )
        try:
            key.verify(signature, SIGNATURE_LABEL + self.hs.payload_hash)
        except InvalidSignature:
            raise NoiseSignatureError(
                "the peer's ML-DSA-65 handshake signature is invalid"
            ) from None

    def _check_downgrade(self, card: VerifiedCard) -> None:
        """Both signed cards offer the hybrid: the protocol run must be the hybrid."""
        if self.protocol.hybrid:
            return
        offer = card.offer(self.info.name)
        peer_pq = offer is not None and offer.params.get("postQuantum") is True
        # Our side as the peer saw it: our signed card's offer (what the initiator chose
        # from), or our options when our card does not offer the binding.
        ours = self.context.card.offer(self.info.name)
        our_pq = (
            ours.params.get("postQuantum") is True
            if ours is not None
            else _offers_hybrid(self.context.options)
        )
        if peer_pq and our_pq:
            raise NoiseDowngradeError(
                "both cards offer the ML-KEM-768 hybrid but the handshake is classical"
            )

    @property
    def status(self) -> HandshakeStatus:
        return self.hs.status

    def peer(self) -> PeerIdentity:
        card = self.peer_card
        if card is None or not self.hs.is_finished:
            raise NoiseRemoteProtocolError("the handshake ended without the peer's card")
        return PeerIdentity(agent_id=card.agent_id, identity=card.identity, card=card)

    def properties(self) -> frozenset[Property]:
        """The binding's properties (``datagram`` names what the binding can run
        over, as the core contract expects), plus ``post_quantum`` for the hybrid and
        ``post_quantum_auth`` when both sides signed the handshake with ML-DSA-65."""
        props = set(self.info.properties)
        if self.protocol.hybrid:
            props.add(Property.POST_QUANTUM)
        card = self.peer_card
        if (
            card is not None
            and card.identity.mldsa_key is not None
            and self.context.identity.mldsa_key is not None
        ):
            props.add(Property.POST_QUANTUM_AUTH)
        return frozenset(props)


def _offers_hybrid(options: Mapping[str, Any]) -> bool:
    """Whether our configuration offers the hybrid (``post_quantum`` true or "required")."""
    return bool(options.get("post_quantum", False))  # true or "required" (as _binding reads it)
