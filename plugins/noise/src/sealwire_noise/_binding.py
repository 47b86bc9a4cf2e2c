"""The Noise session binding: protocol choice, prologue, card exchange, hand-over.

Rules of this file:

* The initiator picks the protocol from both cards' ``noise`` parameters
  (:func:`choose_protocol`); the responder accepts it only if its own options
  allow it. The chosen name travels in clear in the first handshake frame and
  is hashed into ``h`` (§5.2), so altering it breaks the handshake.
* The prologue (§6) binds ``sealwire-noise``, the binding's major version and
  ``Negotiation.transcript()`` (the binding chosen and every offer of both
  sides), so a downgraded negotiation makes the handshake fail.
* Each side sends its signed card as the payload of its first handshake
  message that is encrypted and authenticated by its static key
  (:data:`CARD_MESSAGE`). A card is accepted only if its signature verifies,
  its X25519 agreement key equals the Noise static key just proven, the trust
  store accepts it, and (initiator) it is the agent we called. Any failure
  aborts before a channel, hence before any application data, exists.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Mapping
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from sealwire.binding import (
    BindingInfo,
    Negotiation,
    PeerIdentity,
    Property,
    SessionBinding,
    Shape,
)
from sealwire.errors import SealwireError
from sealwire.identity import PublicIdentity, VerifiedCard, verify_card
from sealwire.transport import DatagramEndpoint, FrameStream
from sealwire_noise._channel import NoiseChannel, RekeyPolicy
from sealwire_noise._errors import (
    NoiseConfigurationError,
    NoiseDecodeError,
    NoiseRemoteProtocolError,
    NoiseTrustError,
)
from sealwire_noise._handshake import HandshakeState, HandshakeStatus, NoiseProtocol
from sealwire_noise._hybrid import KEM_NAME

if TYPE_CHECKING:
    from sealwire_noise._datagram import NoiseDatagramChannel

__all__ = [
    "BINDING_PATTERNS",
    "CARD_MESSAGE",
    "DEFAULT_SUITES",
    "NoiseBinding",
    "Session",
    "choose_protocol",
    "decode_first_frame",
    "encode_first_frame",
    "prologue",
]

BINDING_PATTERNS = ("IK", "XX", "XK")
"""Mutually authenticating patterns the binding runs (NK authenticates one side only)."""
CARD_MESSAGE = {"XX": (2, 1), "IK": (0, 1), "XK": (2, 1)}
"""(initiator's, responder's) handshake message index that carries each side's card."""
DEFAULT_SUITES = (
    "ChaChaPoly_SHA256",
    "AESGCM_SHA256",
    "ChaChaPoly_BLAKE2s",
    "AESGCM_SHA512",
    "ChaChaPoly_BLAKE2b",
)
MAX_NAME_LEN = 64
"""Longest protocol name in a first frame (the longest we build is ~45 bytes)."""
PROLOGUE_LABEL = b"sealwire-noise/"


MAX_LISTED = 16
"""Patterns or suites read from one card: more than we support, bounds the work."""


def _str_list(value: Any, default: tuple[str, ...]) -> tuple[str, ...]:
    """A list of strings from options or a peer's card; anything else is empty."""
    if value is None:
        return default
    if not isinstance(value, list | tuple) or len(value) > MAX_LISTED:
        return ()
    return tuple(v for v in value if isinstance(v, str))


def _options(options: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(patterns, suites, post_quantum) from binding options, checked."""
    patterns = _str_list(options.get("patterns"), ("IK", "XX"))
    suites = _str_list(options.get("suites"), DEFAULT_SUITES)
    pq = options.get("post_quantum", False)
    pq_mode = "required" if pq == "required" else ("on" if pq else "off")
    if not patterns or not set(patterns) <= set(BINDING_PATTERNS):
        raise NoiseConfigurationError(f"noise patterns must be among {BINDING_PATTERNS}")
    if not suites:
        raise NoiseConfigurationError("noise suites must be a non-empty list")
    for suite in suites:
        NoiseProtocol.from_name(f"Noise_XX_25519_{suite}")  # raises when unsupported
    return patterns, suites, pq_mode


def choose_protocol(local: Mapping[str, Any], peer_params: Mapping[str, Any]) -> str:
    """The initiator's choice: IK when both allow it (the peer's static key is in its
    verified card), else XX, else XK; the first local suite the peer lists; the ML-KEM
    hybrid when both sides enable it."""
    patterns, suites, pq_mode = _options(local)
    peer_patterns = _str_list(peer_params.get("patterns"), ("XX",))
    peer_suites = _str_list(peer_params.get("suites"), DEFAULT_SUITES[:1])
    pattern = next((p for p in patterns if p in peer_patterns), None)
    suite = next((s for s in suites if s in peer_suites), None)
    if pattern is None or suite is None:
        raise NoiseConfigurationError("no Noise pattern and suite in common with the peer")
    peer_pq = peer_params.get("postQuantum") is True
    if pq_mode == "required" and not peer_pq:
        raise NoiseConfigurationError("post-quantum Noise is required but the peer lacks it")
    if pq_mode != "off" and peer_pq:
        return f"Noise_{pattern}hfs_25519+{KEM_NAME}_{suite}"
    return f"Noise_{pattern}_25519_{suite}"


def check_acceptable(local: Mapping[str, Any], name: str) -> NoiseProtocol:
    """The responder's check of the initiator's choice against its own options."""
    try:
        protocol = NoiseProtocol.from_name(name)
    except NoiseConfigurationError:  # the peer's fault, not our configuration's
        raise NoiseRemoteProtocolError("the initiator chose an unknown Noise protocol") from None
    patterns, suites, pq_mode = _options(local)
    base = protocol.pattern.name.removesuffix("hfs")
    suite = name.split("_", 3)[3]
    if base not in patterns or suite not in suites:
        raise NoiseRemoteProtocolError("the initiator chose a Noise protocol we do not offer")
    hybrid_refused = protocol.hybrid and pq_mode == "off"
    classic_refused = not protocol.hybrid and pq_mode == "required"
    if hybrid_refused or classic_refused:
        raise NoiseRemoteProtocolError("the initiator's post-quantum choice is not allowed")
    return protocol


def prologue(info: BindingInfo, negotiation: Negotiation) -> bytes:
    """§6 prologue: label, binding name and major version, the negotiation transcript."""
    head = PROLOGUE_LABEL + f"{info.name}:{info.major}".encode()
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
        binding: NoiseBinding,
        protocol: NoiseProtocol,
        negotiation: Negotiation,
        expected: VerifiedCard | None,
    ) -> None:
        self.binding = binding
        self.protocol = protocol
        self.expected = expected
        context = binding.context
        initiator = expected is not None
        needs_rs = protocol.pattern.needs_remote_static(initiator)
        self.hs = HandshakeState(
            protocol,
            initiator=initiator,
            random=os.urandom,
            prologue=prologue(binding.info, negotiation),
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

    def write(self) -> bytes:
        payload = b""
        if self._index == self._my_card_at:
            card = self.binding.context.card.card
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
        trust = self.binding.context.trust
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
        props = set(NoiseBinding.info.properties)
        if self.protocol.hybrid:
            props.add(Property.POST_QUANTUM)
        return frozenset(props)


class NoiseBinding(SessionBinding):
    """``urn:sealwire:binding:noise:1``: Noise XX / IK (optionally ML-KEM hybrid) sessions.

    Options (``[bindings.noise]``): ``patterns`` (default ``["IK", "XX"]``, in
    preference order), ``suites`` (``"ChaChaPoly_SHA256"``...), ``post_quantum``
    (``false``, ``true`` or ``"required"``), ``rekey_messages``, ``rekey_seconds``,
    ``datagram_rekey_after``.
    """

    info = BindingInfo(
        name="noise",
        version=version("sealwire-noise"),
        major=1,
        shape=Shape.SESSION,
        properties=frozenset({Property.MUTUAL_AUTH, Property.FORWARD_SECRECY, Property.DATAGRAM}),
        schemes=frozenset({"tcp", "ws", "wss", "udp"}),
        description="Noise Protocol Framework rev 34 (XX/IK, 25519, ChaChaPoly/AESGCM)",
    )

    @classmethod
    def card_parameters(
        cls, identity: PublicIdentity, options: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        patterns, suites, pq_mode = _options(options)
        return {"patterns": list(patterns), "suites": list(suites), "postQuantum": pq_mode != "off"}

    def _peer_params(self, peer: VerifiedCard) -> Mapping[str, Any]:
        offer = peer.offer(self.info.name)
        return offer.params if offer is not None else {}

    def rekey_policy(self) -> RekeyPolicy:
        """The stream rekey policy from the options (the datagram channel uses its seconds)."""
        options = self.context.options
        default = RekeyPolicy()
        return RekeyPolicy(
            messages=int(options.get("rekey_messages", default.messages)),
            seconds=float(options.get("rekey_seconds", default.seconds)),
        )

    def start_initiator(self, peer: VerifiedCard, negotiation: Negotiation) -> Session:
        name = choose_protocol(self.context.options, self._peer_params(peer))
        return Session(self, NoiseProtocol.from_name(name), negotiation, peer)

    def start_responder(self, first_frame: bytes, negotiation: Negotiation) -> Session:
        """Check the first frame's protocol and read its handshake message."""
        name, message = decode_first_frame(first_frame)
        protocol = check_acceptable(self.context.options, name)
        session = Session(self, protocol, negotiation, None)
        session.read(message)
        return session

    def start_responder_retryable(
        self, first_frame: bytes, negotiation: Negotiation
    ) -> tuple[Session, bytes]:
        """Like :meth:`start_responder` but returns the unchecked payload, so a datagram
        driver can drop a forged first packet and still fail hard on a bad card."""
        name, message = decode_first_frame(first_frame)
        protocol = check_acceptable(self.context.options, name)
        session = Session(self, protocol, negotiation, None)
        return session, session.read_message(message)

    async def initiate(
        self, stream: FrameStream, peer: VerifiedCard, negotiation: Negotiation
    ) -> NoiseChannel:
        session = self.start_initiator(peer, negotiation)
        try:
            await stream.send(encode_first_frame(session.protocol.name, session.write()))
            return await self._finish(stream, session)
        except SealwireError:
            await stream.close()
            raise

    async def respond(self, stream: FrameStream, negotiation: Negotiation) -> NoiseChannel:
        try:
            session = self.start_responder(await stream.receive(), negotiation)
            return await self._finish(stream, session)
        except SealwireError:
            await stream.close()
            raise

    async def _finish(self, stream: FrameStream, session: Session) -> NoiseChannel:
        while not session.hs.is_finished:
            if session.status is HandshakeStatus.WRITE:
                await stream.send(session.write())
            else:
                session.read(await stream.receive())
        peer = session.peer()
        return NoiseChannel(
            stream,
            session.hs.into_transport(),
            peer=peer,
            properties=session.properties(),
            protocol_name=session.protocol.name,
            clock=self.context.clock,
            rekey=self.rekey_policy(),
        )

    async def initiate_datagram(
        self, endpoint: DatagramEndpoint, peer: VerifiedCard, negotiation: Negotiation
    ) -> NoiseDatagramChannel:
        from sealwire_noise._datagram import initiate_datagram

        return await initiate_datagram(self, endpoint, peer, negotiation)

    async def respond_datagram(
        self, endpoint: DatagramEndpoint, negotiation: Negotiation
    ) -> NoiseDatagramChannel:
        from sealwire_noise._datagram import respond_datagram

        return await respond_datagram(self, endpoint, negotiation)
