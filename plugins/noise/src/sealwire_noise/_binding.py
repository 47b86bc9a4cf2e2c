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

from collections.abc import Mapping
from importlib.metadata import version
from typing import Any

from sealwire.binding import (
    BindingInfo,
    DatagramBinding,
    Negotiation,
    Party,
    Property,
    SessionBinding,
    SessionTerms,
    Shape,
)
from sealwire.errors import SealwireError
from sealwire.identity import PublicIdentity, VerifiedCard
from sealwire.transport import DatagramEndpoint, FrameStream
from sealwire_noise import _datagram, _ratchet
from sealwire_noise._channel import NoiseChannel, RekeyPolicy
from sealwire_noise._datagram import NoiseDatagramChannel
from sealwire_noise._errors import (
    NoiseConfigurationError,
    NoiseRemoteProtocolError,
)
from sealwire_noise._handshake import HandshakeStatus, NoiseProtocol
from sealwire_noise._hybrid import KEM_NAME
from sealwire_noise._ratchet_channel import RatchetChannel, ratchet_stream
from sealwire_noise._session import (
    CARD_MESSAGE,
    RATCHET_MARK,
    Session,
    decode_first_frame,
    encode_first_frame,
    prologue,
)
from sealwire_noise._symmetric import _CIPHERS, _HASHES

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
DEFAULT_SUITES = (
    "ChaChaPoly_SHA256",
    "AESGCM_SHA256",
    "ChaChaPoly_BLAKE2s",
    "AESGCM_SHA512",
    "ChaChaPoly_BLAKE2b",
)


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


def _card_params(options: Mapping[str, Any]) -> dict[str, Any]:
    patterns, suites, pq_mode = _options(options)
    params: dict[str, Any] = {
        "patterns": list(patterns), "suites": list(suites), "postQuantum": pq_mode != "off",
    }  # fmt: skip
    if ratchet_mode(options) != "off":
        params[RATCHET_CARD_PARAM] = True
    return params


def _options_from_card(params: Mapping[str, Any]) -> dict[str, Any]:
    """Our options as our own card states them (when the caller has only the card)."""
    options: dict[str, Any] = {"post_quantum": params.get("postQuantum") is True}
    for name in ("patterns", "suites"):
        if name in params:
            options[name] = params[name]
    return options


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


RATCHET_OPTION = "per_message_forward_secrecy"
"""The binding setting that runs the Double Ratchet inside the session:
``false`` (default), ``true`` (when the peer's card offers it) or ``"required"``."""
RATCHET_CARD_PARAM = "ratchet"
"""The card parameter saying an agent runs the in-session ratchet."""


def ratchet_mode(options: Mapping[str, Any]) -> str:
    """``off``, ``on`` or ``required`` from the binding setting, checked."""
    value = options.get(RATCHET_OPTION, False)
    if value == "required":
        return "required"
    if isinstance(value, bool):
        return "on" if value else "off"
    raise NoiseConfigurationError(f'{RATCHET_OPTION} must be true, false or "required"')


def use_ratchet(options: Mapping[str, Any], peer_params: Mapping[str, Any]) -> bool:
    """The initiator's choice: run the ratchet when we enable it and the responder's
    signed card offers it. The choice travels in the first frame and is bound into
    the prologue (:data:`RATCHET_MARK`)."""
    mode = ratchet_mode(options)
    peer_offers = peer_params.get(RATCHET_CARD_PARAM) is True
    if mode == "required" and not peer_offers:
        raise NoiseConfigurationError("the in-session ratchet is required but the peer lacks it")
    return mode != "off" and peer_offers


def accept_ratchet(options: Mapping[str, Any], requested: bool) -> bool:
    """The responder's check of the initiator's ratchet choice against its setting."""
    mode = ratchet_mode(options)
    if requested and mode == "off":
        raise NoiseRemoteProtocolError("the initiator asked for the ratchet, which we do not run")
    if not requested and mode == "required":
        raise NoiseRemoteProtocolError("we require the in-session ratchet; the initiator did not")
    return requested


def split_ratchet_mark(name: str) -> tuple[str, bool]:
    """A first frame's name: (the protocol name, whether the ratchet mark was on it)."""
    if name.endswith(RATCHET_MARK):
        return name.removesuffix(RATCHET_MARK), True
    return name, False


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


class NoiseBinding(SessionBinding, DatagramBinding):
    """``urn:sealwire:binding:noise:1``: Noise XX / IK (optionally ML-KEM hybrid) sessions.

    Options (``[bindings.noise]``): ``patterns`` (default ``["IK", "XX"]``, in
    preference order), ``suites`` (``"ChaChaPoly_SHA256"``...), ``post_quantum``
    (``false``, ``true`` or ``"required"``), ``rekey_messages``, ``rekey_seconds``,
    ``datagram_rekey_after``, ``per_message_forward_secrecy`` (``false``, ``true``
    or ``"required"``: a Double Ratchet inside the session, see docs/noise-ratchet.md).
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
    option_names = frozenset(
        {
            "patterns",
            "suites",
            "post_quantum",
            "rekey_messages",
            "rekey_seconds",
            "datagram_rekey_after",
            RATCHET_OPTION,
        }
    )

    @classmethod
    def check_options(cls, options: Mapping[str, object]) -> None:
        """Known keys; ``patterns`` among :data:`BINDING_PATTERNS`, ``suites`` among the
        suites this binding runs, flags and positive numbers where they belong."""
        super().check_options(options)
        where = f"bindings.{cls.info.name}"
        suites = tuple(f"{c}_{h}" for c in _CIPHERS for h in _HASHES)
        for name, allowed in (("patterns", BINDING_PATTERNS), ("suites", suites)):
            value = options.get(name)
            if value is None:
                continue
            listed = ", ".join(allowed)
            if not isinstance(value, list | tuple) or not value or len(value) > MAX_LISTED:
                raise NoiseConfigurationError(
                    f"{where}.{name} must be a non-empty list of: {listed}"
                )
            for item in value:
                if item not in allowed:
                    raise NoiseConfigurationError(
                        f"{where}.{name}: {item!r} is not supported (allowed: {listed})"
                    )
        for name in ("post_quantum", RATCHET_OPTION):
            value = options.get(name, False)
            if not isinstance(value, bool) and value != "required":
                raise NoiseConfigurationError(
                    f'{where}.{name} must be true, false or "required", not {value!r}'
                )
        for name, what in (
            ("rekey_messages", "integer"),
            ("rekey_seconds", "number"),
            ("datagram_rekey_after", "integer"),
        ):
            value = options.get(name, 1)
            if what == "integer":
                positive = isinstance(value, int) and not isinstance(value, bool) and value > 0
            else:
                positive = (
                    isinstance(value, int | float) and not isinstance(value, bool) and value > 0
                )
            if not positive:
                raise NoiseConfigurationError(
                    f"{where}.{name} must be a positive {what}, not {value!r}"
                )

    @classmethod
    def card_parameters(
        cls, identity: PublicIdentity, options: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        return _card_params(options)

    @classmethod
    def session_terms(cls, local: Party, peer: Party | None) -> SessionTerms:
        """The protocol :func:`choose_protocol` will pick with this peer, from our options
        and its card: ``post_quantum`` when both offer the ML-KEM hybrid (the handshake
        then refuses a classical one: :class:`NoiseDowngradeError`), ``post_quantum_auth``
        when both identities have ML-DSA-65 keys (each side then signs the handshake
        hash with it: :data:`~sealwire_noise._session.PAYLOAD_SIGNED`). With no peer:
        the best our configuration and keys can give."""
        props = set(cls.info.properties)
        options = local.options or _options_from_card(local.params)
        try:
            if peer is None:
                params = _card_params(options)
                pattern, suite = params["patterns"][0], params["suites"][0]
                hybrid = params["postQuantum"]
                name = (
                    f"Noise_{pattern}hfs_25519+{KEM_NAME}_{suite}"
                    if hybrid
                    else f"Noise_{pattern}_25519_{suite}"
                )
            else:
                name = choose_protocol(options, peer.params)
        except NoiseConfigurationError:
            return SessionTerms(properties=frozenset(props))
        protocol = NoiseProtocol.from_name(name)
        if protocol.hybrid:
            props.add(Property.POST_QUANTUM)
        mine = local.identity is None or local.identity.mldsa_key is not None
        theirs = peer is None or (peer.identity is not None and peer.identity.mldsa_key is not None)
        if mine and theirs:
            props.add(Property.POST_QUANTUM_AUTH)
        return SessionTerms(properties=frozenset(props), protocol=name, suite=name.split("_", 2)[2])

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
        ratchet = use_ratchet(self.context.options, self._peer_params(peer))
        name = choose_protocol(self.context.options, self._peer_params(peer))
        protocol = NoiseProtocol.from_name(name)
        return Session(self.context, self.info, protocol, negotiation, peer, ratchet=ratchet)

    def _responder_session(
        self, first_frame: bytes, negotiation: Negotiation
    ) -> tuple[Session, bytes]:
        marked, message = decode_first_frame(first_frame)
        name, requested = split_ratchet_mark(marked)
        protocol = check_acceptable(self.context.options, name)
        ratchet = accept_ratchet(self.context.options, requested)
        session = Session(self.context, self.info, protocol, negotiation, None, ratchet=ratchet)
        return session, message

    def start_responder(self, first_frame: bytes, negotiation: Negotiation) -> Session:
        """Check the first frame's protocol and read its handshake message."""
        session, message = self._responder_session(first_frame, negotiation)
        session.read(message)
        return session

    def start_responder_retryable(
        self, first_frame: bytes, negotiation: Negotiation
    ) -> tuple[Session, bytes]:
        """Like :meth:`start_responder` but returns the unchecked payload, so a datagram
        driver can drop a forged first packet and still fail hard on a bad card."""
        session, message = self._responder_session(first_frame, negotiation)
        return session, session.read_message(message)

    async def initiate(
        self, stream: FrameStream, peer: VerifiedCard, negotiation: Negotiation
    ) -> NoiseChannel | RatchetChannel:
        session = self.start_initiator(peer, negotiation)
        try:
            await stream.send(encode_first_frame(session.first_frame_name, session.write()))
            return await self._finish(stream, session)
        except SealwireError:
            await stream.close()
            raise

    async def respond(
        self, stream: FrameStream, negotiation: Negotiation
    ) -> NoiseChannel | RatchetChannel:
        try:
            session = self.start_responder(await stream.receive(), negotiation)
            return await self._finish(stream, session)
        except SealwireError:
            await stream.close()
            raise

    async def _finish(self, stream: FrameStream, session: Session) -> NoiseChannel | RatchetChannel:
        while not session.hs.is_finished:
            if session.status is HandshakeStatus.WRITE:
                await stream.send(session.write())
            else:
                session.read(await stream.receive())
        peer = session.peer()
        keys = _ratchet.keying(*session.hs.split_keys()) if session.ratchet else None
        channel = NoiseChannel(
            stream,
            session.hs.into_transport(),
            peer=peer,
            properties=session.properties(),
            protocol_name=session.protocol.name,
            clock=self.context.clock,
            rekey=self.rekey_policy(),
        )
        if keys is None:
            return channel
        return await ratchet_stream(
            channel, keys, initiator=session.hs.initiator, store=self.context.store,
            clock=self.context.clock,
        )  # fmt: skip

    async def initiate_datagram(
        self, endpoint: DatagramEndpoint, peer: VerifiedCard, negotiation: Negotiation
    ) -> NoiseDatagramChannel | RatchetChannel:
        return await _datagram.initiate_datagram(self, endpoint, peer, negotiation)

    async def respond_datagram(
        self, endpoint: DatagramEndpoint, negotiation: Negotiation
    ) -> NoiseDatagramChannel | RatchetChannel:
        return await _datagram.respond_datagram(self, endpoint, negotiation)
