"""SignalBinding: the MailboxBinding adapter around the sans-I/O Signal core.

It connects the core to the agent's store (sessions, prekeys), trust store
and relay client. Rules of this file:

* A session's new state is committed to the store (one transaction) before
  ``seal`` returns an envelope or ``open`` returns a frame.
* A peer's prekeys are fetched at its home relay (the mailbox address its
  card names, which may be another relay than ours) and checked against its
  card.
* A peer's identity comes from its signed agent card: the card passed to
  ``seal``, or the card carried in an initial message, whose X25519 key must
  be the IK the message uses and whose agent must pass the trust store. A newer
  card given to ``seal`` (the peer moved its mailbox) becomes its session's card,
  so opened messages name it; one naming another agreement key starts a new
  session (once trust, which pins keys, lets it pass).
* The negotiation transcript is in every envelope's authenticated prefix;
  ``open`` rebuilds it from both cards and refuses any other (downgrade).
* Both cards offer PQXDH (``keyAgreement``): the session must be PQXDH, a
  bundle without a PQ prekey or an initial message without a PQ part is a
  downgrade (:class:`DowngradeError`). A card that lists an ML-DSA-65 key: its
  prekeys and its initial messages must carry ML-DSA-65 signatures too.
* Per peer there is a current session and at most one archived one (both
  sides may start a session at once); whichever decrypts becomes current.
  Base keys of accepted initial messages are remembered, so a replayed
  initial message cannot start a second session (X3DH §4.2).
* The sessions and the peer cards they name are kept as ``_peer_sessions`` says.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import os
from collections.abc import Mapping
from importlib.metadata import version
from typing import Any

import attrs

from sealwire.binding import (
    BindingContext,
    BindingInfo,
    MailboxBinding,
    Negotiation,
    OpenedMessage,
    Party,
    PeerIdentity,
    Property,
    SessionTerms,
    Shape,
)
from sealwire.errors import (
    AuthenticationError,
    ConfigurationError,
    DecodeError,
    RemoteProtocolError,
    TrustError,
)
from sealwire.identity import PublicIdentity, VerifiedCard, verify_card
from sealwire.relay import RelayPort
from sealwire_signal._bundles import PeerBundles
from sealwire_signal._crypto import DHKeyPair
from sealwire_signal._errors import (
    DowngradeError,
    DuplicateMessageError,
    EnvelopeDecodeError,
    NoSessionError,
)
from sealwire_signal._peer_sessions import MAX_CACHED_PEERS, Keep, PeerSessions, SessionStore
from sealwire_signal._prekeys import (
    KEM_ONE_TIME_BATCH,
    KEM_ONE_TIME_LOW_WATER,
    ONE_TIME_BATCH,
    ONE_TIME_LOW_WATER,
    POOL_KEM,
    POOL_X25519,
    PrekeyStore,
)
from sealwire_signal._session import (
    accept_session,
    open_envelope,
    seal_frame,
    start_session,
)
from sealwire_signal._state_codec import card_digest
from sealwire_signal._wire import Envelope, encode_bundle
from sealwire_signal._x3dh import (
    initial_message_input,
    verify_mldsa,
)

__all__ = ["KEY_AGREEMENT_PQXDH", "SignalBinding"]

KEY_AGREEMENT_PQXDH = "PQXDH-X25519-SHA256-ML-KEM-768"
"""The card's ``keyAgreement``: this agent publishes ML-KEM-768 prekeys (PQXDH)."""

REPUBLISH_AFTER_ACCEPTS = 10
"""Initial messages accepted (each may use a one-time prekey) before the pools are checked."""
REPUBLISH_INTERVAL = 6 * 3600.0
"""Seconds between prekey checks even without traffic, so rotation happens on schedule."""

log = logging.getLogger(__name__)


class SignalBinding(MailboxBinding):
    """X3DH / PQXDH + Double Ratchet over the relay mailbox (see the plugin README).

    Options: ``header_encryption`` (bool, default False: Double Ratchet §4 for
    sessions this agent starts), ``require_pq`` (bool, default True: refuse
    plain X3DH both ways).
    """

    info = BindingInfo(
        name="signal",
        version=version("sealwire-signal"),
        major=1,
        shape=Shape.MAILBOX,
        properties=frozenset(
            {
                Property.MUTUAL_AUTH,
                Property.FORWARD_SECRECY,
                Property.POST_COMPROMISE_SECURITY,
                Property.ASYNC,
            }
        ),
        description="Signal X3DH/PQXDH + Double Ratchet over a relay mailbox",
    )
    option_names = frozenset({"header_encryption", "require_pq"})

    @classmethod
    def check_options(cls, options: Mapping[str, object]) -> None:
        """Known keys, each a flag (true or false)."""
        super().check_options(options)
        for name in sorted(cls.option_names & set(options)):
            if not isinstance(options[name], bool):
                raise ConfigurationError(
                    f"bindings.{cls.info.name}.{name} must be true or false, not {options[name]!r}"
                )

    @classmethod
    def card_parameters(
        cls, identity: PublicIdentity, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        return {
            "wire": "sealwire-signal/1",
            "keyAgreement": KEY_AGREEMENT_PQXDH,
            "aead": "AES-256-GCM",
            "headerEncryption": bool(options.get("header_encryption", False)),
            "prekeyDirectory": "relay",
        }

    @classmethod
    def session_terms(cls, local: Party, peer: Party | None) -> SessionTerms:
        """``post_quantum`` when both cards offer PQXDH (the binding then refuses plain
        X3DH with that peer: :class:`DowngradeError`); ``post_quantum_auth`` when both
        identities have ML-DSA-65 keys (prekeys and initial messages are then signed
        with them too, and must be)."""
        props = set(cls.info.properties)
        ours = local.params.get("keyAgreement", KEY_AGREEMENT_PQXDH)  # every card of ours says it
        pqxdh = ours == KEY_AGREEMENT_PQXDH and (
            peer is None or peer.params.get("keyAgreement") == KEY_AGREEMENT_PQXDH
        )
        if pqxdh:
            props.add(Property.POST_QUANTUM)
        mine = local.identity is None or local.identity.mldsa_key is not None
        theirs = peer is None or (peer.identity is not None and peer.identity.mldsa_key is not None)
        if mine and theirs:
            props.add(Property.POST_QUANTUM_AUTH)
        agreement = "PQXDH" if pqxdh else "X3DH"
        return SessionTerms(
            properties=frozenset(props),
            protocol=f"Signal {agreement} + Double Ratchet (sealwire-signal/1)",
            suite=(
                "X25519+ML-KEM-768, SHA-256, AES-256-GCM"
                if pqxdh
                else "X25519, SHA-256, AES-256-GCM"
            ),
        )

    def __init__(self, context: BindingContext) -> None:
        super().__init__(context)
        options = context.options
        self._header_encryption = bool(options.get("header_encryption", False))
        self._require_pq = bool(options.get("require_pq", True))
        self._rng = os.urandom
        self._identity = DHKeyPair.from_private_key(context.identity.agreement_key)
        self._agent_id = context.identity.agent_id
        self._prekeys = PrekeyStore(
            context.store, context.identity.signing_key, self._identity, self._rng,
            mldsa_key=context.identity.mldsa_key,
        )  # fmt: skip
        self._sessions = SessionStore(context.store, self._prekeys)
        self._bundles = PeerBundles(self.info.name)
        self._accepts_since_publish = 0
        self._published_at: float | None = None

    @property
    def _local_card(self) -> bytes:
        """Our signed card as sent in initial messages (core may re-sign it after start)."""
        return self.context.card.json_bytes

    # -- MailboxBinding -----------------------------------------------------------------

    async def publish_prekeys(self) -> None:
        """Rotate if due, purge old keys, top the one-time pools up, publish the bundle."""
        relay = self._relay()
        now = self.context.clock()
        self._prekeys.rotate_if_due(now)
        self._prekeys.purge(now)
        counts = await relay.count_prekeys(self.info.name)
        one_time: dict[str, dict[str, bytes]] = {}
        have = int(counts.get(POOL_X25519, 0))
        if have < ONE_TIME_LOW_WATER:
            one_time[POOL_X25519] = self._prekeys.new_one_time(ONE_TIME_BATCH - have, now)
        have = int(counts.get(POOL_KEM, 0))
        if have < KEM_ONE_TIME_LOW_WATER:
            one_time[POOL_KEM] = self._prekeys.new_kem_one_time(KEM_ONE_TIME_BATCH - have, now)
        bundle = encode_bundle(self._prekeys.bundle())
        await relay.publish_prekeys(self.info.name, bundle, one_time)
        self._accepts_since_publish, self._published_at = 0, now

    async def _maybe_republish(self) -> None:
        """Replenish and rotate as traffic and time go by; never fails the caller's message."""
        due = self._published_at is None or (
            self.context.clock() - self._published_at > REPUBLISH_INTERVAL
        )
        if not due and self._accepts_since_publish < REPUBLISH_AFTER_ACCEPTS:
            return
        try:
            await self.publish_prekeys()
        except Exception as exc:  # the relay may be down; the next call tries again
            log.warning("signal: publishing prekeys failed: %s", type(exc).__name__)

    async def seal(self, peer: VerifiedCard, frame: bytes, negotiation: Negotiation) -> bytes:
        """Seal ``frame`` for ``peer``; a first message runs X3DH/PQXDH on fetched prekeys.
        A newer card of the peer (another home relay) is kept with its session from now
        on; one that names another agreement key starts a new session."""
        entry = self._sessions.load(peer.agent_id)
        if entry is not None and entry.card is not peer and entry.card.card != peer.card:
            entry = self._under_card(entry, peer)
        if entry is None:
            entry = await self._start(peer)
        own, current = self._local_card, entry.current
        tell = current.pending is None and current.peer_holds != card_digest(own)
        session, envelope = seal_frame(
            current, frame, negotiation=_transcript(negotiation), rng=self._rng,
            known_card=card_digest(current.peer_card), card=own if tell else b"",
        )  # fmt: skip
        self._sessions.commit(entry.replaced(session, entry.archived))
        return envelope.to_bytes()

    def _under_card(self, entry: PeerSessions, peer: VerifiedCard) -> PeerSessions | None:
        """``entry`` with ``peer`` as the card of its current session, so what the peer
        sends back names it too; None if the card names another agreement key than the
        session's (trust must pass it first)."""
        self.context.trust.check(peer)
        if not _names_key(peer, entry.current.peer_identity_key):
            return None
        current = attrs.evolve(entry.current, peer_card=peer.json_bytes)
        return entry.replaced(current, entry.archived, card=peer)

    async def _start(self, peer: VerifiedCard) -> PeerSessions:
        """A new session on prekeys fetched at the peer's home relay; a session with an
        older agreement key of the peer becomes the archived one."""
        self.context.trust.check(peer)
        verified = await self._bundles.fetch(self._relay(), peer)
        if verified.kem_prekey is None:
            self._refuse_without_pq(
                peer, required="the peer offers no PQ prekey (PQXDH required)",
                downgrade="both cards offer PQXDH; the peer's bundle has no PQ prekey",
            )  # fmt: skip
        entry = self._sessions.load(peer.agent_id)  # another task may have started one meanwhile
        if entry is not None:
            started = entry if entry.card is peer else self._under_card(entry, peer)
            if started is not None:
                return started
        session = start_session(
            local_id=self._agent_id, peer_id=peer.agent_id, identity=self._identity,
            peer=verified, rng=self._rng, header_encryption=self._header_encryption,
            local_card=self._local_card, peer_card=peer.json_bytes,
            mldsa_key=self.context.identity.mldsa_key,
        )  # fmt: skip
        if entry is None:
            return PeerSessions(current=session, archived=None, card=peer)
        return PeerSessions(
            current=session, archived=entry.current, card=peer, stored_cards=entry.stored_cards,
            archived_absent=entry.archived_absent,
        )  # fmt: skip

    async def open(
        self,
        envelope: bytes,
        *,
        keep: Keep | None = None,
    ) -> OpenedMessage:
        """Open an envelope; the session's new state is committed (with what ``keep``
        writes, in one transaction) before the frame returns."""
        env = Envelope.from_bytes(envelope)
        if env.recipient_id != self._agent_id:
            raise RemoteProtocolError("envelope is addressed to another agent")
        if self.context.trust.is_denied(env.sender_id):
            raise TrustError(f"agent {env.sender_id} is denied")
        entry = self._sessions.load(env.sender_id)
        now = self.context.clock()
        part = env.prekey
        if part is not None and not (entry and entry.has_base(part.ephemeral_key)):
            opened = self._accept(env, entry, now, keep)
        elif entry is None:
            raise NoSessionError(f"no session with {env.sender_id}")
        else:
            opened = self._open_existing(entry, env, now, keep)
        await self._maybe_republish()  # after the commit: the frame is safe either way
        return opened

    # -- receiving ---------------------------------------------------------------------------

    @staticmethod
    def _opened(env: Envelope, entry: PeerSessions, frame: bytes) -> OpenedMessage:
        card = entry.card
        return OpenedMessage(
            sender=PeerIdentity(agent_id=card.agent_id, identity=card.identity, card=card),
            frame=frame,
            message_id=f"{env.sender_id}/{env.message_id.hex()}",
        )

    def _accept(
        self, env: Envelope, entry: PeerSessions | None, now: float, keep: Keep | None
    ) -> OpenedMessage:
        part = env.prekey
        assert part is not None
        if self._sessions.base_seen(env.sender_id, part.ephemeral_key):
            raise DuplicateMessageError("replayed initial message")
        card = self._sender_card(part.card, env.sender_id)
        if not _names_key(card, part.identity_key):
            raise TrustError("the initial message's identity key is not the card's")
        self._check_negotiation(env, card)
        if part.kem_prekey_id is None:
            self._refuse_without_pq(
                card, required="PQXDH required: the initial message has no PQ part",
                downgrade="both cards offer PQXDH; the initial message is plain X3DH",
            )  # fmt: skip
        if card.identity.mldsa_key is not None:  # the card lists it: the message is signed
            signed = initial_message_input(part.unsigned_bytes(), env.sender_id, env.recipient_id)
            verify_mldsa(card.identity.mldsa_key, part.mldsa_signature, signed)
        get = self._prekeys
        session, frame = accept_session(
            local_id=self._agent_id, envelope=env, identity=self._identity,
            signed_prekey=get.signed_prekey(part.signed_prekey_id),
            one_time_prekey=None if part.one_time_prekey_id is None
            else get.one_time(part.one_time_prekey_id),
            kem_prekey=None if part.kem_prekey_id is None else get.kem(part.kem_prekey_id),
            now=now, rng=self._rng,
        )  # fmt: skip
        archived = entry.current if entry is not None else None
        stored = entry.stored_cards if entry is not None else frozenset()
        accepted = PeerSessions(current=session, archived=archived, card=card, stored_cards=stored)
        opened = self._opened(env, accepted, frame)
        self._sessions.commit(accepted, used=(part.one_time_prekey_id, part.kem_prekey_id),
                     keep=keep, opened=opened)  # fmt: skip
        self._accepts_since_publish += 1
        return opened

    def _open_existing(
        self, entry: PeerSessions, env: Envelope, now: float, keep: Keep | None
    ) -> OpenedMessage:
        """Open a message of a session we hold. A card it carries (the peer moved its
        mailbox) becomes the session's card once the message decrypts under it."""
        card = entry.card
        if env.card not in (b"", entry.card.json_bytes):
            card = self._sender_card(env.card, env.sender_id)
        self._check_negotiation(env, card)
        first_error: Exception | None = None
        for index, session in enumerate((entry.current, entry.archived)):
            if session is None:
                continue
            try:
                opened, frame = open_envelope(session, env, now=now, rng=self._rng)
            except (AuthenticationError, RemoteProtocolError, DecodeError) as exc:
                first_error = first_error or exc
                continue
            if card is not entry.card:
                if not _names_key(card, session.peer_identity_key):
                    raise TrustError("the card a message carries names another identity key")
                opened = attrs.evolve(opened, peer_card=card.json_bytes)
            archived = entry.current if index else entry.archived  # one that decrypts is current
            updated = entry.replaced(opened, archived, card=card)
            message = self._opened(env, updated, frame)
            self._sessions.commit(updated, keep=keep, opened=message)
            return message
        assert first_error is not None
        raise first_error

    def _sender_card(self, raw: bytes, sender_id: str) -> VerifiedCard:
        """The card a message carries (in its initial part, or after a move): JSON,
        signed, the sender's, and trusted."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise EnvelopeDecodeError("sender card is not JSON", field="envelope.card") from None
        card = verify_card(data)
        if card.agent_id != sender_id:
            raise TrustError("the card a message carries is not the sender's")
        self.context.trust.check(card)
        return card

    def _check_negotiation(self, env: Envelope, sender: VerifiedCard) -> None:
        expected = _transcript(
            Negotiation(
                chosen=self.info.uri,
                initiator_offers=tuple(o.uri for o in sender.offers),
                responder_offers=tuple(o.uri for o in self.context.card.offers),
            )
        )
        if not hmac.compare_digest(expected, env.negotiation):
            raise RemoteProtocolError("negotiation transcript does not match the cards")

    # -- sending -------------------------------------------------------------------------

    def _refuse_without_pq(self, peer: VerifiedCard, *, required: str, downgrade: str) -> None:
        """A first exchange with ``peer`` without PQXDH is refused when PQXDH is required
        (RemoteProtocolError ``required``), or offered by both cards (DowngradeError
        ``downgrade``)."""
        if self._require_pq:
            raise RemoteProtocolError(required)
        if _offers_pqxdh(peer) and _offers_pqxdh(self.context.card):
            raise DowngradeError(downgrade)

    def _relay(self) -> RelayPort:
        if self.context.relay is None:
            raise ConfigurationError("the signal binding needs a relay (prekeys and mailboxes)")
        return self.context.relay


@functools.lru_cache(maxsize=MAX_CACHED_PEERS)
def _transcript(negotiation: Negotiation) -> bytes:
    """The transcript every envelope of a channel carries, and its recipient checks:
    built once per negotiation (a frozen value), not once a message."""
    return negotiation.transcript()


def _names_key(card: VerifiedCard, key: bytes) -> bool:
    """Whether ``card``'s X25519 agreement key is ``key`` (compared in constant time)."""
    return hmac.compare_digest(card.identity.agreement_key.public_bytes_raw(), key)


def _offers_pqxdh(card: VerifiedCard) -> bool:
    offer = card.offer(SignalBinding.info.name)
    return offer is not None and offer.params.get("keyAgreement") == KEY_AGREEMENT_PQXDH
