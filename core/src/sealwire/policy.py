"""Choosing a binding per peer, with the reason (ARCHITECTURE layer 5).

decision = f(peer's signed card, situation, configuration):

1. candidates are the peer card's offers (its preference order) that a loaded
   binding speaks;
2. configuration removes denied bindings and those lacking a required
   property (globally or for this peer); a denied peer gets no binding at all.
   A binding's properties with this peer are what it states from both cards
   and our configuration (:meth:`~sealwire.binding.Binding.session_terms`:
   Noise is ``post_quantum`` only when both cards offer its ML-KEM hybrid),
   and its handshake makes them hold or fails;
   ``per_message_forward_secrecy`` (globally or for this peer) keeps only
   bindings whose every message has its own key: a ratcheting binding
   (``post_compromise_security``), or one whose offers on both cards say the
   in-session ratchet runs (card parameter ``ratchet``, Noise's setting);
3. a per-peer override names the binding outright;
4. plugin rules (``sealwire_policy_rules``) may pick among what is left;
5. the default rules implement the architecture's table: group -> a group
   binding (mls), external HTTP -> an HTTP binding (tls), datagrams -> a
   datagram binding over UDP (noise when the peer offers it, as our
   ``prefer`` order says; dtls when the peer offers only that), peer offline ->
   an async binding (signal), peer online -> a live session binding (noise).

The decision carries a :class:`~sealwire.binding.Negotiation` that the binding
binds into its handshake, so a downgrade is detected.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from sealwire.binding import (
    Binding,
    BindingInfo,
    Negotiation,
    Party,
    Property,
    SessionTerms,
    Shape,
)
from sealwire.errors import ConfigurationError, PolicyError

if TYPE_CHECKING:
    from sealwire.identity import OfferedBinding, PublicIdentity, VerifiedCard

__all__ = [
    "PER_MESSAGE_FORWARD_SECRECY",
    "RATCHET_PARAM",
    "Candidate",
    "Decision",
    "PeerOverride",
    "Policy",
    "PolicyConfig",
    "PolicyRule",
    "Situation",
]


PER_MESSAGE_FORWARD_SECRECY = "per_message_forward_secrecy"
"""The policy property asking for a fresh key per message (a Double Ratchet)."""
RATCHET_PARAM = "ratchet"
"""A binding's card parameter saying it runs a ratchet inside its session."""


def gives_per_message_forward_secrecy(
    info: BindingInfo, offer: OfferedBinding, local: OfferedBinding | None
) -> bool:
    """Whether this binding, as the cards offer it, gives every message its own key.

    ``local`` is our own card's offer of the binding; an agent that does not
    listen on it has none, and then its binding setting alone decides our side
    (set it to ``"required"`` so that a session never runs without the ratchet).
    """
    if Property.POST_COMPROMISE_SECURITY in info.properties:
        return True
    ours = local is None or local.params.get(RATCHET_PARAM) is True
    return ours and offer.params.get(RATCHET_PARAM) is True


@attrs.frozen(kw_only=True)
class Situation:
    """What the caller knows about this exchange.

    ``online`` is ``None`` when unknown (treated as online: a live session is
    tried first).
    """

    online: bool | None = None
    group: bool = False
    external_http: bool = False
    datagram: bool = False

    def describe(self) -> str:
        parts = []
        if self.group:
            parts.append("group")
        if self.external_http:
            parts.append("external HTTP")
        if self.datagram:
            parts.append("datagrams")
        parts.append(
            {True: "peer online", False: "peer offline", None: "peer presence unknown"}[self.online]
        )
        return ", ".join(parts)


@attrs.frozen(kw_only=True)
class Candidate:
    """A binding both sides speak: the peer's offer, our binding's declaration, and
    what a session of it with this peer will have (``terms``; the static
    declaration when not given)."""

    offer: OfferedBinding
    info: BindingInfo
    terms: SessionTerms | None = None

    @property
    def properties(self) -> frozenset[Property]:
        """The properties a session with this peer will have."""
        return self.info.properties if self.terms is None else self.terms.properties


@attrs.frozen(kw_only=True)
class PolicyRule:
    """A plugin's rule: ``decide`` returns (candidate, reason) or ``None`` to pass."""

    name: str
    decide: Callable[[VerifiedCard, Situation, Sequence[Candidate]], tuple[Candidate, str] | None]


@attrs.frozen(kw_only=True)
class Decision:
    """The binding chosen for a peer, why, and what the others were rejected for."""

    candidate: Candidate
    reason: str
    negotiation: Negotiation
    rejected: tuple[tuple[str, str], ...] = ()

    @property
    def binding(self) -> str:
        return self.candidate.info.name

    @property
    def url(self) -> str:
        return self.candidate.offer.url

    def explain(self, situation: Situation | None = None) -> str:
        """A human-readable account of the decision (in ``situation``, when given: the
        reason then never claims a presence that the situation contradicts)."""
        reason = self.reason
        online_claim = "the peer is online: "
        if (
            situation is not None
            and situation.online is not True
            and reason.startswith(online_claim)
        ):
            presence = (
                "the peer is offline, but no asynchronous binding is in common"
                if situation.online is False
                else "the peer's presence is unknown"
            )
            reason = f"{presence}: {reason.removeprefix(online_claim)}"
        lines = [
            *([f"situation: {situation.describe()}"] if situation is not None else []),
            f"binding: {self.binding} ({self.candidate.offer.uri})",
            f"url: {self.url}",
            f"reason: {reason}",
            *self.session_description(),
        ]
        lines += [f"not chosen: {uri}: {why}" for uri, why in self.rejected]
        return "\n".join(lines)

    def session_description(self) -> list[str]:
        """Protocol, suite, whether key exchange and authentication are post-quantum,
        and the properties, as the binding states them for this peer (lines of
        :meth:`explain` and of ``sealwire send --verbose``)."""
        terms = self.candidate.terms or SessionTerms(properties=self.candidate.info.properties)
        kex = "post-quantum (hybrid)" if terms.post_quantum_key_exchange else "classical"
        auth = "post-quantum (hybrid)" if terms.post_quantum_authentication else "classical"
        return [
            f"protocol: {terms.protocol or '(not stated by the binding)'}",
            f"suite: {terms.suite or '(not stated by the binding)'}",
            f"key exchange: {kex}",
            f"authentication: {auth}",
            f"properties: {', '.join(sorted(terms.properties))}",
        ]


@attrs.frozen(kw_only=True)
class PeerOverride:
    """Configuration for one peer (``[policy.peers."<agent id>"]``)."""

    binding: str | None = None
    require: frozenset[Property] = frozenset()
    deny_bindings: frozenset[str] = frozenset()
    per_message_forward_secrecy: bool | None = None


@attrs.frozen(kw_only=True)
class PolicyConfig:
    """The ``[policy]`` table of an agent's TOML configuration.

    Keys: ``require`` (properties every binding must have), ``deny_bindings``,
    ``deny_peers`` (agent ids), ``prefer`` (binding names tried first, in this
    order, for our own card's offers), ``per_message_forward_secrecy`` (a bool)
    and ``peers`` (per agent id: ``binding``, ``require``, ``deny_bindings``,
    ``per_message_forward_secrecy``).
    """

    per_message_forward_secrecy: bool = False
    require: frozenset[Property] = frozenset()
    deny_bindings: frozenset[str] = frozenset()
    deny_peers: frozenset[str] = frozenset()
    prefer: tuple[str, ...] = ("noise", "signal", "mls", "tls")
    peers: Mapping[str, PeerOverride] = attrs.field(factory=dict)

    @classmethod
    def from_toml(cls, text: str) -> PolicyConfig:
        """Parse a TOML document and read its ``[policy]`` table."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"policy configuration is not valid TOML: {exc}") from None
        return cls.from_mapping(data.get("policy", {}))

    @classmethod
    def from_file(cls, path: Path) -> PolicyConfig:
        try:
            return cls.from_toml(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from None

    @classmethod
    def from_mapping(cls, data: Any) -> PolicyConfig:
        """Validate a ``[policy]`` mapping; ConfigurationError names the bad key."""
        _expect_keys(
            data,
            {
                "require",
                "deny_bindings",
                "deny_peers",
                "prefer",
                "peers",
                PER_MESSAGE_FORWARD_SECRECY,
            },
            "policy",
        )
        peers_data = data.get("peers", {})
        if not isinstance(peers_data, Mapping):
            raise ConfigurationError("policy.peers: expected a table")
        peers = {str(k): _peer_override(v, f"policy.peers.{k}") for k, v in peers_data.items()}
        kwargs: dict[str, Any] = {
            "require": _properties(data.get("require", []), "policy.require"),
            "deny_bindings": frozenset(
                _strings(data.get("deny_bindings", []), "policy.deny_bindings")
            ),
            "deny_peers": frozenset(_strings(data.get("deny_peers", []), "policy.deny_peers")),
            "peers": peers,
            PER_MESSAGE_FORWARD_SECRECY: _flag(
                data.get(PER_MESSAGE_FORWARD_SECRECY, False), "policy.per_message_forward_secrecy"
            ),
        }
        if "prefer" in data:
            kwargs["prefer"] = tuple(_strings(data["prefer"], "policy.prefer"))
        return cls(**kwargs)


def _expect_keys(data: Any, allowed: set[str], where: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{where}: expected a table")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigurationError(
            f"unknown key {where}.{unknown[0]} (allowed: {', '.join(sorted(allowed))})"
        )


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{where}: expected true or false")
    return value


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"{where}: expected a list of strings")
    return list(value)


def _properties(value: Any, where: str) -> frozenset[Property]:
    out = set()
    for name in _strings(value, where):
        try:
            out.add(Property(name))
        except ValueError:
            known = ", ".join(p.value for p in Property)
            raise ConfigurationError(
                f"{where}: unknown property {name!r} (known: {known})"
            ) from None
    return frozenset(out)


def _peer_override(value: Any, where: str) -> PeerOverride:
    _expect_keys(value, {"binding", "require", "deny_bindings", PER_MESSAGE_FORWARD_SECRECY}, where)
    binding = value.get("binding")
    if binding is not None and not isinstance(binding, str):
        raise ConfigurationError(f"{where}.binding: expected a binding name")
    pmfs = value.get(PER_MESSAGE_FORWARD_SECRECY)
    return PeerOverride(
        binding=binding,
        require=_properties(value.get("require", []), f"{where}.require"),
        deny_bindings=frozenset(_strings(value.get("deny_bindings", []), f"{where}.deny_bindings")),
        per_message_forward_secrecy=(
            None if pmfs is None else _flag(pmfs, f"{where}.{PER_MESSAGE_FORWARD_SECRECY}")
        ),
    )


def _first(candidates: Sequence[Candidate], test: Callable[[Candidate], bool]) -> Candidate | None:
    return next((c for c in candidates if test(c)), None)


def _datagram_choice(
    found: Sequence[Candidate], prefer: Sequence[str], why: str
) -> tuple[Candidate, str] | None:
    """Among the peer's datagram offers, ours come first in ``policy.prefer`` order (noise
    before dtls: no certificates between Sealwire agents), then the peer's order."""
    if not found:
        return None
    names = ", ".join(c.info.name for c in found)
    if len(found) == 1:
        return found[0], f"{why}; the peer offers only {names} over UDP"
    rank = {name: i for i, name in enumerate(prefer)}
    best = min(found, key=lambda c: rank.get(c.info.name, len(rank)))
    return best, f"{why}; of the peer's ({names}), {best.info.name} comes first in policy.prefer"


def _default_rule(
    situation: Situation, candidates: Sequence[Candidate], prefer: Sequence[str] = ()
) -> tuple[Candidate, str]:
    def has(prop: Property) -> Callable[[Candidate], bool]:
        return lambda c: prop in c.info.properties

    def live(c: Candidate) -> bool:
        return c.info.shape is Shape.SESSION and Property.HTTP_INTEROP not in c.info.properties

    def mailbox(c: Candidate) -> bool:
        # A pairwise call goes through a mailbox binding, never a group one (which is
        # asynchronous too, as MLS is): a group binding has no pairwise path.
        return c.info.shape is Shape.MAILBOX and Property.ASYNC in c.info.properties

    def datagram(c: Candidate) -> bool:
        return Property.DATAGRAM in c.info.properties and c.offer.url.startswith("udp://")

    table: list[tuple[bool, Callable[[Candidate], bool], str]] = [
        (situation.group, has(Property.GROUP), "a group conversation needs a group binding"),
        (
            situation.external_http,
            has(Property.HTTP_INTEROP),
            "external HTTP infrastructure needs an HTTP-interoperable binding",
        ),
        (situation.datagram, datagram, "datagram traffic needs a datagram binding over UDP"),
        (
            situation.online is False and not situation.group,
            mailbox,
            "the peer is offline: an asynchronous (mailbox) binding reaches it",
        ),
        (not situation.group, live, "the peer is online: a live session binding"),
        (
            not situation.group,
            mailbox,
            "no live session binding in common: an asynchronous binding works online too",
        ),
        (
            not situation.group,
            has(Property.HTTP_INTEROP),
            "no live session or mailbox binding in common: an HTTP-interoperable one reaches "
            "the peer too",
        ),
    ]
    for applies, test, why in table:
        if not applies:
            continue
        if test is datagram:  # noise before dtls between Sealwire agents; dtls if only it
            picked = _datagram_choice([c for c in candidates if datagram(c)], prefer, why)
            if picked is not None:
                return picked
            raise PolicyError(f"{why}, and the peer offers none that is allowed")
        found = _first(candidates, test)
        if found is not None:
            return found, f"{why} (first such in the peer's preference order)"
        if situation.group or situation.external_http or situation.datagram:
            raise PolicyError(f"{why}, and the peer offers none that is allowed")
    raise PolicyError("no allowed binding fits the situation")


class Policy:
    """Decides which binding to use with a peer (never delegated to a hook)."""

    def __init__(
        self,
        config: PolicyConfig,
        bindings: Mapping[str, type[Binding]],
        rules: Iterable[PolicyRule] = (),
        *,
        binding_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.config = config
        self.bindings = bindings
        self.rules = tuple(rules)
        self.binding_options = dict(binding_options or {})

    def _local_party(
        self, cls: type[Binding], identity: PublicIdentity | None, card: VerifiedCard | None
    ) -> Party:
        """This agent as the binding sees it: our card's parameters for it (or, when our
        card does not offer it, what our configuration would publish) and our options."""
        options = self.binding_options.get(cls.info.name, {})
        offer = None if card is None else card.offer(cls.info.name)
        if offer is not None:
            params: Mapping[str, Any] = offer.params
        elif identity is not None:
            params = cls.card_parameters(identity, options)
        else:
            params = {}
        return Party(identity=identity, params=params, options=options)

    def local_offers(self, identity: PublicIdentity | None = None) -> tuple[type[Binding], ...]:
        """Our own bindings in the order our card offers them (preferred first, denied out,
        and those our configuration cannot give ``require`` with any peer left out)."""
        allowed = [
            cls
            for name, cls in self.bindings.items()
            if name not in self.config.deny_bindings
            and self.config.require
            <= cls.session_terms(self._local_party(cls, identity, None), None).properties
        ]
        rank = {name: i for i, name in enumerate(self.config.prefer)}
        return tuple(sorted(allowed, key=lambda c: (rank.get(c.info.name, len(rank)), c.info.name)))

    def _candidates(
        self, peer: VerifiedCard, local_card: VerifiedCard
    ) -> tuple[list[Candidate], list[tuple[str, str]]]:
        override = self.config.peers.get(peer.identity.agent_id, PeerOverride())
        required = self.config.require | override.require
        denied = self.config.deny_bindings | override.deny_bindings
        pmfs = override.per_message_forward_secrecy
        if pmfs is None:
            pmfs = self.config.per_message_forward_secrecy
        candidates: list[Candidate] = []
        rejected: list[tuple[str, str]] = []
        for offer in peer.offers:
            cls = self.bindings.get(offer.name)
            if cls is None or cls.info.major != offer.major:
                rejected.append((offer.uri, "no loaded binding speaks it"))
            elif offer.name in denied:
                rejected.append((offer.uri, "denied by configuration"))
            elif (
                not required
                <= (terms := self._offer_terms(cls, offer, peer, local_card)).properties
            ):
                missing = ", ".join(sorted(required - terms.properties))
                rejected.append((offer.uri, f"lacks required properties: {missing}"))
            elif pmfs and not gives_per_message_forward_secrecy(
                cls.info, offer, local_card.offer(offer.name)
            ):
                rejected.append((offer.uri, f"lacks required {PER_MESSAGE_FORWARD_SECRECY}"))
            else:
                candidates.append(Candidate(offer=offer, info=cls.info, terms=terms))
        return candidates, rejected

    def _offer_terms(
        self,
        cls: type[Binding],
        offer: OfferedBinding,
        peer: VerifiedCard,
        local_card: VerifiedCard,
    ) -> SessionTerms:
        local = self._local_party(cls, local_card.identity, local_card)
        return cls.session_terms(local, Party(identity=peer.identity, params=offer.params))

    def decide(
        self,
        peer: VerifiedCard,
        situation: Situation,
        local_card: VerifiedCard,
        *,
        requested: str | None = None,
    ) -> Decision:
        """Choose a binding for ``peer``; PolicyError says why none fits.

        ``requested`` names a binding the caller asks for (a2a-sdk's factory picks
        one from the card); it is used only if configuration allows it.
        """
        agent_id = peer.identity.agent_id
        if agent_id in self.config.deny_peers:
            raise PolicyError(f"peer {agent_id} is denied by configuration")
        candidates, rejected = self._candidates(peer, local_card)
        if not candidates:
            reasons = "; ".join(f"{uri}: {why}" for uri, why in rejected) or "it offers none"
            raise PolicyError(f"no binding in common with peer {agent_id} ({reasons})")
        if requested is not None:
            found = _first(candidates, lambda c: c.info.name == requested)
            if found is None:
                raise PolicyError(f"binding {requested!r} is not allowed with this peer")
            chosen, reason = found, "requested by the caller"
        else:
            chosen, reason = self._choose(peer, situation, candidates)
        rejected += [
            (c.offer.uri, "another binding was preferred") for c in candidates if c is not chosen
        ]
        negotiation = Negotiation(
            chosen=chosen.offer.uri,
            initiator_offers=tuple(o.uri for o in local_card.offers),
            responder_offers=tuple(o.uri for o in peer.offers),
        )
        return Decision(
            candidate=chosen,
            reason=f"{reason} [{situation.describe()}]",
            negotiation=negotiation,
            rejected=tuple(rejected),
        )

    def _choose(
        self, peer: VerifiedCard, situation: Situation, candidates: list[Candidate]
    ) -> tuple[Candidate, str]:
        override = self.config.peers.get(peer.identity.agent_id)
        if override is not None and override.binding is not None:
            found = _first(candidates, lambda c: c.info.name == override.binding)
            if found is None:
                raise PolicyError(
                    f"configuration requires binding {override.binding!r} for this peer, "
                    "which is not among the allowed bindings it offers"
                )
            return found, "per-peer override in configuration"
        for rule in self.rules:
            picked = rule.decide(peer, situation, tuple(candidates))
            if picked is not None:
                if picked[0] not in candidates:
                    raise PolicyError(f"policy rule {rule.name!r} picked a binding not allowed")
                return picked[0], f"rule {rule.name!r}: {picked[1]}"
        return _default_rule(situation, candidates, self.config.prefer)

    def required_for(self, agent_id: str) -> frozenset[Property]:
        """The properties required of every session with ``agent_id`` (global and per peer)."""
        override = self.config.peers.get(agent_id, PeerOverride())
        return self.config.require | override.require

    def check_session(self, agent_id: str, properties: frozenset[Property]) -> None:
        """After a session handshake, either side: PolicyError unless the session has
        every property required with this peer. A binding's handshake already refuses
        to give less than both cards promise; this catches a peer whose card never
        promised it (the responder cannot know before the initiator's card arrives)."""
        missing = self.required_for(agent_id) - properties
        if missing:
            raise PolicyError(
                f"the session negotiated with {agent_id} lacks required properties: "
                f"{', '.join(sorted(missing))}"
            )

    def check_incoming(self, negotiation: Negotiation, local_card: VerifiedCard) -> type[Binding]:
        """Responder side: accept a negotiation only if it matches what we offer.

        The initiator's view of our offers must equal our signed card's (a
        stale or altered card is a possible downgrade), and the chosen binding
        must be one we offer and allow.
        """
        ours = tuple(o.uri for o in local_card.offers)
        if negotiation.responder_offers != ours:
            raise PolicyError("the peer's view of our offered bindings differs from our card")
        if negotiation.chosen not in ours:
            raise PolicyError(f"binding {negotiation.chosen} is not one we offer")
        for cls in self.local_offers():
            if cls.info.uri == negotiation.chosen:
                return cls
        raise PolicyError(f"binding {negotiation.chosen} is not allowed by our policy")
