"""One side of a Noise handshake with Sealwire's framing: the protocol name in the
first frame, the prologue binding the negotiation, and the card exchange.

Used by the stream binding (:mod:`sealwire_noise._binding`) and the datagram
one (:mod:`sealwire_noise._datagram`) alike; it depends on neither.
"""

from __future__ import annotations

import hmac
import json
import os

from sealwire.binding import BindingContext, BindingInfo, Negotiation, PeerIdentity, Property
from sealwire.identity import VerifiedCard, verify_card
from sealwire_noise._errors import NoiseDecodeError, NoiseRemoteProtocolError, NoiseTrustError
from sealwire_noise._handshake import HandshakeState, HandshakeStatus, NoiseProtocol

__all__ = [
    "CARD_MESSAGE",
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
        payload = b""
        if self._index == self._my_card_at:
            card = self.context.card.card
            payload = json.dumps(dict(card), separators=(",", ":")).encode()
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
        try:
            card_json = json.loads(payload)
        except ValueError:
            raise NoiseDecodeError("card payload is not JSON", field="noise.card") from None
        card = verify_card(card_json)
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
        over, as the core contract expects), plus ``post_quantum`` for the hybrid."""
        props = set(self.info.properties)
        if self.protocol.hybrid:
            props.add(Property.POST_QUANTUM)
        return frozenset(props)
