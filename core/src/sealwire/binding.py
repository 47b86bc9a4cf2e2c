"""The contract every protocol plugin implements (ARCHITECTURE layer 3).

A binding protects and carries one plaintext unit, the A2A frame
(:func:`sealwire.codec.encode_frame`). It serves one of three conversation
shapes (:class:`Shape`), each with its types:

* two online peers (``Shape.SESSION``), a handshake yielding a
  :class:`SecureChannel`: :class:`SessionBinding` over a byte stream that core
  carries, :class:`DatagramBinding` over datagrams (a binding may be both),
  :class:`CarrierBinding` over a carrier of its own (TLS over HTTPS);
* a peer that may be offline (``Shape.MAILBOX``): :class:`MailboxBinding` seals
  and opens one frame at a time; prekeys go through the relay's directory;
* a group (``Shape.GROUP``): :class:`GroupBinding` encrypts one frame for all.

Every method a type declares is abstract: a binding implements all of them.

Core decides, bindings bind: the policy picks a binding and hands it a
:class:`Negotiation` that the binding must bind into its handshake (Noise
prologue, TLS exporter, signed envelope header) so that a man in the middle
cannot force a weaker choice.

A plugin contributes binding *classes* through the ``sealwire_bindings`` hook;
core instantiates each with a :class:`BindingContext` (the agent's keys, store,
trust store and relay), so hooks never see secrets.
"""

from __future__ import annotations

import abc
import enum
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import attrs

from sealwire.errors import ConfigurationError, DecodeError, StateError

if TYPE_CHECKING:
    from sealwire.codec import Request
    from sealwire.identity import Identity, PublicIdentity, TrustStore, VerifiedCard
    from sealwire.relay.port import RelayPort
    from sealwire.store import StateStore, StoreTransaction
    from sealwire.transport import DatagramEndpoint, FrameStream, Listener

Dispatcher = Callable[["Request", "PeerIdentity"], AsyncIterator[Any]]
"""Serves one verified A2A request: yields one result, or a stream of them."""

__all__ = [
    "BINDING_URI_PREFIX",
    "Binding",
    "BindingContext",
    "BindingInfo",
    "CarrierBinding",
    "ChannelClosed",
    "DatagramBinding",
    "Dispatcher",
    "GroupBinding",
    "GroupEvent",
    "GroupMessage",
    "GroupMembershipChanged",
    "MailboxBinding",
    "Negotiation",
    "OpenedMessage",
    "Party",
    "PeerIdentity",
    "Property",
    "SecureChannel",
    "SessionBinding",
    "SessionTerms",
    "Shape",
    "shape_types",
    "binding_uri",
    "parse_binding_uri",
]

BINDING_URI_PREFIX = "urn:sealwire:binding:"


class Property(enum.StrEnum):
    """Security and delivery properties a binding offers (what policy can require)."""

    MUTUAL_AUTH = "mutual_auth"
    FORWARD_SECRECY = "forward_secrecy"
    POST_COMPROMISE_SECURITY = "post_compromise_security"
    ASYNC = "async"
    GROUP = "group"
    DATAGRAM = "datagram"
    HTTP_INTEROP = "http_interop"
    POST_QUANTUM = "post_quantum"
    """The key exchange resists a quantum attacker (an ML-KEM hybrid: X25519 + ML-KEM-768)."""
    POST_QUANTUM_AUTH = "post_quantum_auth"
    """Both peers authenticate with ML-DSA-65 as well as Ed25519/X25519 (hybrid-signed
    cards, and the binding's own authentication signed with ML-DSA where it allows)."""


class Shape(enum.StrEnum):
    """The three conversation shapes of the contract."""

    SESSION = "session"
    MAILBOX = "mailbox"
    GROUP = "group"


def shape_types(shape: Shape) -> tuple[type[Binding], ...]:
    """The binding types that serve ``shape`` (a binding class is one of them)."""
    if shape is Shape.SESSION:
        return (SessionBinding, DatagramBinding, CarrierBinding)
    return (MailboxBinding,) if shape is Shape.MAILBOX else (GroupBinding,)


def binding_uri(name: str, major: int) -> str:
    """The card's ``protocolBinding`` URI for a binding: ``urn:sealwire:binding:<name>:<major>``."""
    return f"{BINDING_URI_PREFIX}{name}:{major}"


def parse_binding_uri(uri: str) -> tuple[str, int]:
    """Split a Sealwire binding URI into (name, major); DecodeError when it is not one."""
    if not uri.startswith(BINDING_URI_PREFIX):
        raise DecodeError("not a Sealwire binding URI", field="protocolBinding")
    name, sep, major = uri[len(BINDING_URI_PREFIX) :].rpartition(":")
    if not sep or not name or not major.isdigit() or len(major) > 6:
        raise DecodeError("malformed Sealwire binding URI", field="protocolBinding")
    return name, int(major)


@attrs.frozen(kw_only=True)
class BindingInfo:
    """What a binding declares about itself.

    ``name`` is unique among loaded plugins; ``major`` is the wire version named
    in the card URI; ``version`` is the distribution's version (read with
    ``importlib.metadata.version``); ``properties`` are what every session of the
    binding has, whatever the peers (a binding adds the ones that depend on both
    cards and configurations in :meth:`Binding.session_terms`); ``schemes`` are the
    transport URL schemes a session binding can run over.
    """

    name: str
    version: str
    major: int
    shape: Shape
    properties: frozenset[Property]
    schemes: frozenset[str] = frozenset()
    description: str = ""

    @property
    def uri(self) -> str:
        return binding_uri(self.name, self.major)


@attrs.frozen(kw_only=True)
class Party:
    """One side of a prospective session, as the policy sees it before any handshake.

    ``identity`` is the agent's public keys from its verified card (None when not
    known: our own offers before the card is signed; a binding then assumes the
    best the keys could give); ``params`` are its card parameters for the
    binding (:meth:`Binding.card_parameters`: what its configuration offers,
    empty when its card does not offer the binding); ``options`` is the
    binding's configuration, known for the local agent only (a peer's
    configuration shows only through its card parameters).
    """

    identity: PublicIdentity | None = attrs.field(default=None, repr=False)
    params: Mapping[str, Any] = attrs.field(factory=dict)
    options: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class SessionTerms:
    """What a session of a binding with one peer will have, before it runs.

    ``properties`` are the session's properties (what policy checks against
    ``require``); ``protocol`` names the protocol that will run (for example a
    Noise protocol name) and ``suite`` its cipher suite, empty when the binding
    has nothing more precise to say than its name. The binding's handshake must
    make these hold, or fail with a typed error before any channel exists.
    """

    properties: frozenset[Property]
    protocol: str = ""
    suite: str = ""

    @property
    def post_quantum_key_exchange(self) -> bool:
        return Property.POST_QUANTUM in self.properties

    @property
    def post_quantum_authentication(self) -> bool:
        return Property.POST_QUANTUM_AUTH in self.properties


@attrs.frozen(kw_only=True)
class Negotiation:
    """The policy's decision, to be bound into the binding's handshake.

    ``chosen`` is the binding URI picked; ``initiator_offers`` and
    ``responder_offers`` are the binding URIs each side offers, in preference
    order (the responder's from its signed card). Any change to any of them
    changes :meth:`transcript`, so a handshake that binds it fails under a
    downgrade.
    """

    chosen: str
    initiator_offers: tuple[str, ...]
    responder_offers: tuple[str, ...]

    def transcript(self) -> bytes:
        """Canonical, unambiguous bytes of the decision (length-prefixed UTF-8)."""
        out = bytearray(b"sealwire-negotiation/1")
        for part in (
            self.chosen,
            *self._offers("i", self.initiator_offers),
            *self._offers("r", self.responder_offers),
        ):
            raw = part.encode("utf-8")
            out += len(raw).to_bytes(2, "big") + raw
        return bytes(out)

    @staticmethod
    def _offers(side: str, offers: tuple[str, ...]) -> list[str]:
        return [f"{side}{len(offers)}", *offers]

    def to_json(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "initiatorOffers": list(self.initiator_offers),
            "responderOffers": list(self.responder_offers),
        }

    @classmethod
    def from_json(cls, data: Any) -> Negotiation:
        """Decode a negotiation received from a peer (hostile input)."""
        if not isinstance(data, Mapping):
            raise DecodeError("expected an object", field="negotiation")
        chosen = data.get("chosen")
        if not isinstance(chosen, str) or len(chosen) > 256:
            raise DecodeError("expected a binding URI", field="negotiation.chosen")
        return cls(
            chosen=chosen,
            initiator_offers=_uri_list(data.get("initiatorOffers"), "initiatorOffers"),
            responder_offers=_uri_list(data.get("responderOffers"), "responderOffers"),
        )


MAX_OFFERS = 32
"""More bindings than any agent offers; bounds what a peer can make us parse."""


def _uri_list(value: Any, name: str) -> tuple[str, ...]:
    field = f"negotiation.{name}"
    if not isinstance(value, list) or len(value) > MAX_OFFERS:
        raise DecodeError(f"expected a list of at most {MAX_OFFERS} URIs", field=field)
    if not all(isinstance(v, str) and len(v) <= 256 for v in value):
        raise DecodeError("expected binding URIs", field=field)
    return tuple(value)


@attrs.frozen(kw_only=True)
class PeerIdentity:
    """A peer whose identity the binding has verified (card signature and trust store)."""

    agent_id: str
    identity: PublicIdentity
    card: VerifiedCard | None = None


@attrs.frozen(kw_only=True)
class BindingContext:
    """What core gives a binding instance: the local agent's keys and services.

    ``relay`` is the agent's home relay (a :class:`sealwire.relay.RelayPort`)
    when one is configured; ``clock`` returns UNIX seconds.
    """

    identity: Identity = attrs.field(repr=False)
    card: VerifiedCard
    store: StateStore = attrs.field(repr=False)
    trust: TrustStore = attrs.field(repr=False)
    relay: RelayPort | None = None
    clock: Callable[[], float] = attrs.field(repr=False, default=time.time)
    options: Mapping[str, Any] = attrs.field(factory=dict)


class ChannelClosed(StateError):
    """The secure channel is closed (by either side)."""


class SecureChannel(Protocol):
    """A live, mutually authenticated channel of frames (result of a session handshake)."""

    @property
    def peer(self) -> PeerIdentity: ...

    @property
    def properties(self) -> frozenset[Property]: ...

    async def send(self, frame: bytes) -> None: ...

    async def receive(self) -> bytes:
        """The next frame; raises :class:`ChannelClosed` when the peer closed."""
        ...

    async def close(self) -> None: ...


class Binding(abc.ABC):
    """Base of every binding. Subclasses set ``info`` and take a context."""

    info: ClassVar[BindingInfo]
    option_names: ClassVar[frozenset[str]] = frozenset()
    """The keys of ``[bindings.<name>]`` this binding reads: :meth:`check_options`
    refuses any other (a misspelled option would otherwise be silently ignored)."""

    def __init__(self, context: BindingContext) -> None:
        self.context = context

    @classmethod
    def check_options(cls, options: Mapping[str, object]) -> None:
        """Check this binding's ``[bindings.<name>]`` table when the configuration is read.

        :raises ConfigurationError: naming the key (``bindings.<name>.<key>``) and what
            is allowed. The default refuses keys not in :attr:`option_names`; a binding
            whose options take values to check extends it (calling this first).
        """
        unknown = sorted(set(options) - cls.option_names)
        if unknown:
            allowed = ", ".join(sorted(cls.option_names)) or "none: it takes no options"
            raise ConfigurationError(
                f"unknown key bindings.{cls.info.name}.{unknown[0]} (allowed: {allowed})"
            )

    @classmethod
    def card_parameters(
        cls, identity: PublicIdentity, options: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """Public parameters to publish in the agent card for this binding (no secrets).

        A class method: the card is built and signed before any binding
        instance exists (instances get the signed card in their context).
        ``options`` are this binding's options from the agent configuration.
        """
        return {}

    @classmethod
    def session_terms(cls, local: Party, peer: Party | None) -> SessionTerms:
        """What a session with this peer will have, given both cards and configurations.

        ``local`` is this agent (its card parameters for the binding come from its
        configuration); ``peer`` is the peer from its signed card, or ``None`` for
        the best this agent's configuration can give any peer (the policy uses it
        to decide which bindings our own card offers under ``require``).

        The default is the static declaration, ``info.properties``, so bindings
        written before this method keep working. A binding whose properties
        depend on what both sides offer (Noise's ML-KEM hybrid, say) overrides
        it, and its handshake must then refuse, with a typed error and before
        any channel exists, a peer whose negotiation would give less.
        """
        return SessionTerms(properties=cls.info.properties)


class SessionBinding(Binding):
    """Two online peers over a byte stream that core's transports carry (TCP, WebSocket).

    Core connects the transport and exchanges the hello that carries the
    :class:`Negotiation`; the binding runs its handshake on the stream and
    returns a :class:`SecureChannel` whose ``peer`` it has authenticated.
    """

    @abc.abstractmethod
    async def initiate(
        self, stream: FrameStream, peer: VerifiedCard, negotiation: Negotiation
    ) -> SecureChannel:
        """The initiator's handshake.

        Before: the hello was accepted; ``peer`` is the card policy chose, verified
        and trusted. After: the channel's peer is ``peer`` (anyone else is a
        :class:`~sealwire.errors.TrustError`), ``negotiation`` is bound into the
        handshake. On any error the caller closes ``stream``.
        """

    @abc.abstractmethod
    async def respond(self, stream: FrameStream, negotiation: Negotiation) -> SecureChannel:
        """The responder's handshake.

        Before: policy accepted ``negotiation`` for this binding. After: the
        channel's peer is the initiator, its card verified and checked against the
        trust store by the binding. On any error the caller closes ``stream``.
        """


class DatagramBinding(Binding):
    """Two online peers over datagrams (core's ``udp://`` transport): each
    :meth:`DatagramEndpoint.send` is one datagram, lost, repeated or reordered.

    A binding that also speaks over streams subclasses :class:`SessionBinding` too.
    Its ``info`` has :attr:`Property.DATAGRAM`.
    """

    @abc.abstractmethod
    async def initiate_datagram(
        self, endpoint: DatagramEndpoint, peer: VerifiedCard, negotiation: Negotiation
    ) -> SecureChannel:
        """The initiator's handshake over datagrams (as :meth:`SessionBinding.initiate`;
        the binding retransmits what it must)."""

    @abc.abstractmethod
    async def respond_datagram(
        self, endpoint: DatagramEndpoint, negotiation: Negotiation
    ) -> SecureChannel:
        """The responder's handshake over datagrams (as :meth:`SessionBinding.respond`)."""


class CarrierBinding(Binding):
    """Two online peers over a carrier of the binding's own (TLS: HTTPS), for the URL
    schemes in its ``info.schemes``; core's transports are not used.
    """

    @abc.abstractmethod
    async def connect(
        self, url: str, peer: VerifiedCard, negotiation: Negotiation
    ) -> SecureChannel:
        """A channel to ``peer`` at ``url`` (its scheme is one of ``info.schemes``).

        After: the channel's peer is ``peer`` and ``negotiation`` is bound into the
        carrier's handshake (a TLS exporter, a signed header).
        """

    @abc.abstractmethod
    async def serve(self, url: str, dispatch: Dispatcher) -> Listener:
        """Serve requests at ``url`` (its scheme is one of ``info.schemes``).

        ``dispatch(request, peer)`` serves one request whose peer the binding has
        authenticated (and checked against the trust store); the listener's ``url``
        is where it listens (a port 0 resolved) and ``close()`` stops it.
        """


@attrs.frozen(kw_only=True)
class OpenedMessage:
    """A frame a mailbox or group binding opened and authenticated.

    ``message_id`` is unique per sender and is what replay protection and the
    relay's idempotence key on.
    """

    sender: PeerIdentity
    frame: bytes = attrs.field(repr=False)
    message_id: str


class MailboxBinding(Binding):
    """A peer that may be offline: each frame sealed on its own."""

    @abc.abstractmethod
    async def seal(self, peer: VerifiedCard, frame: bytes, negotiation: Negotiation) -> bytes:
        """Seal ``frame`` for ``peer`` (fetching its prekeys if there is no session yet)."""

    @abc.abstractmethod
    async def open(
        self,
        envelope: bytes,
        *,
        keep: Callable[[StoreTransaction, OpenedMessage], None] | None = None,
    ) -> OpenedMessage:
        """Open an envelope; the new state is committed to the store before returning.

        ``keep(tx, opened)`` runs inside the transaction that commits the new
        state: what it writes (the agent keeps the frame until it is handled)
        commits with that state or not at all, so a crash between opening and
        handling loses nothing. If it raises, nothing is committed.
        """

    @abc.abstractmethod
    async def publish_prekeys(self) -> None:
        """Publish or replenish this agent's prekeys in the relay's directory."""


@attrs.frozen(kw_only=True)
class GroupMessage:
    """An application frame received in a group."""

    group_id: bytes
    epoch: int
    message: OpenedMessage


@attrs.frozen(kw_only=True)
class GroupMembershipChanged:
    """A commit moved the group to a new epoch."""

    group_id: bytes
    epoch: int
    members: tuple[str, ...]
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


GroupEvent = GroupMessage | GroupMembershipChanged


class GroupBinding(Binding):
    """A group of agents sharing one encrypted channel."""

    @abc.abstractmethod
    async def create_group(self, group_id: bytes) -> None:
        """Create a new group with this agent as its only member."""

    @abc.abstractmethod
    async def add_members(self, group_id: bytes, members: Sequence[VerifiedCard]) -> None:
        """Add agents to the group (a commit, and a Welcome for the new members)."""

    @abc.abstractmethod
    async def remove_members(self, group_id: bytes, agent_ids: Sequence[str]) -> None:
        """Remove agents from the group (a commit)."""

    @abc.abstractmethod
    async def update(self, group_id: bytes) -> None:
        """Refresh this agent's own keys in the group (post-compromise security)."""

    @abc.abstractmethod
    async def seal(self, group_id: bytes, frame: bytes) -> bytes:
        """Encrypt ``frame`` once for the whole group."""

    @abc.abstractmethod
    async def post(self, group_id: bytes, frame: bytes) -> tuple[int, int]:
        """Seal ``frame`` for the group and append it to the group's log: its log
        position, and the epoch it was sealed in (still the group's when this returns).

        The binding is the only writer of a group's log (its commits and its
        messages), so what it appends is ordered with its own epoch changes.
        """

    @abc.abstractmethod
    async def process(
        self,
        group_id: bytes,
        message: bytes,
        *,
        keep: Callable[[StoreTransaction, GroupEvent | None], None] | None = None,
    ) -> GroupEvent | None:
        """Process one message from the group log (handshake or application).

        When the message changes the binding's state, ``keep(tx, event)`` runs
        inside the transaction that commits the new state (as in
        :meth:`MailboxBinding.open`): the agent writes its log position and the
        opened frame there, so a crash between processing and handling loses
        nothing. A message that changes nothing (one of a past epoch) does not
        call it. If it raises, nothing is committed: the agent skips the message,
        unless the error is :class:`~sealwire.relay.RelayUnavailable` or
        :class:`~sealwire.relay.LimitExceeded` (a lookup the relay could not answer
        now), when it reads the message again later.
        """

    @abc.abstractmethod
    def export_secret(self, group_id: bytes, label: str, context: bytes, length: int) -> bytes:
        """The epoch's exporter secret for ``label`` and ``context``."""

    async def publish_key_packages(self) -> None:
        """Publish or replenish this agent's join keys (MLS KeyPackages) in the relay's
        directory; called when the agent starts and after each join. The default
        publishes nothing (a binding whose joins need no keys of the joiner's)."""

    @abc.abstractmethod
    async def join(self, invite: bytes) -> tuple[GroupMembershipChanged, int]:
        """Join a group from an invitation delivered to this agent's mailbox (MLS: a
        Welcome). Returns the membership event and the group log position after
        which to read the group's log."""

    def group_relay(self, group_id: bytes) -> RelayPort | None:
        """This agent's port at the relay holding the group's log, if that is not its
        home relay (a group created on another relay); None for its home relay."""
        return None

    @abc.abstractmethod
    def members(self, group_id: bytes) -> tuple[str, ...]:
        """The agent ids of the group's current members (this agent included)."""

    @abc.abstractmethod
    def epoch(self, group_id: bytes) -> int:
        """The group's current epoch (what the relay's log records beside a message)."""
