"""The Signal binding's sessions per peer: decoded in memory for the peers seen last,
and in the agent's store.

Per peer the store holds ``{peer}/current``, at most one ``{peer}/archived``
session, the base keys of accepted initial messages (``{peer}/bases``) and the
peer cards its session records name by SHA-256 (``{peer}/card/{sha256 hex}``),
each card once, written and deleted in the transaction that adds or drops the
last session naming it. Every change is one transaction.
"""

from __future__ import annotations

import hmac
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping

import attrs

from sealwire.binding import OpenedMessage
from sealwire.identity import VerifiedCard, verify_card
from sealwire.store import StateStore, StoreTransaction
from sealwire_signal._crypto import KEY_LEN
from sealwire_signal._prekeys import PrekeyStore
from sealwire_signal._session import Session
from sealwire_signal._state_codec import (
    card_digest,
    decode_session,
    encode_session,
    is_current_record,
)

__all__ = ["MAX_CACHED_PEERS", "SESSION_NAMESPACE", "Keep", "PeerSessions", "SessionStore"]

SESSION_NAMESPACE = "signal.sessions"
MAX_CACHED_PEERS = 1024
"""Peers whose decoded sessions stay in memory (decoding reloads keys: a scalar mult each)."""
MAX_REMEMBERED_BASE_KEYS = 256
"""Base keys of accepted initial messages kept per peer; older ones are also covered by
signed-prekey rotation (a replay naming a deleted prekey fails)."""

Keep = Callable[[StoreTransaction, OpenedMessage], None]
"""What the agent writes with an opened message's state (see MailboxBinding.open)."""


@attrs.frozen(kw_only=True)
class PeerSessions:
    """A peer's sessions and card; ``stored_cards`` are the card digests whose card keys
    the store holds for this peer (those its v2 session records name),
    ``stored_archived`` the archived session the store holds as a v2 record (None:
    unknown or none), ``archived_absent`` whether the store is known to hold no
    archived record (so a commit without one has nothing to delete)."""

    current: Session
    archived: Session | None
    card: VerifiedCard
    stored_cards: frozenset[bytes] = frozenset()
    stored_archived: Session | None = None
    archived_absent: bool = False

    def replaced(
        self, current: Session, archived: Session | None, *, card: VerifiedCard | None = None
    ) -> PeerSessions:
        """These sessions replaced, and the card if given (one construction, not an
        evolve per message)."""
        return PeerSessions(
            current=current, archived=archived, card=self.card if card is None else card,
            stored_cards=self.stored_cards, stored_archived=self.stored_archived,
            archived_absent=self.archived_absent,
        )  # fmt: skip

    def has_base(self, base_key: bytes) -> bool:
        """Whether one of these sessions was started by the initial message of ``base_key``."""
        return any(s is not None and s.base_key == base_key for s in (self.current, self.archived))


class SessionStore:
    """The sessions of every peer, in ``store``; ``prekeys`` gives up the one-time
    prekeys an accepted initial message used, in the same transaction."""

    def __init__(self, store: StateStore, prekeys: PrekeyStore) -> None:
        self._store = store
        self._prekeys = prekeys
        self._peers: OrderedDict[str, PeerSessions] = OrderedDict()

    def load(self, peer_id: str) -> PeerSessions | None:
        """The peer's sessions (from memory, else decoded from the store), or None."""
        cached = self._peers.get(peer_id)
        if cached is not None:
            self._peers.move_to_end(peer_id)
            return cached
        store = self._store
        raw = store.get(SESSION_NAMESPACE, f"{peer_id}/current")
        if raw is None:
            return None
        named: set[bytes] = set()  # the digests v2 records name (a v1 record embeds its card)

        def stored_card(digest: bytes) -> bytes | None:
            named.add(digest)
            return store.get(SESSION_NAMESPACE, _card_key(peer_id, digest))

        current = decode_session(raw, stored_card)
        old = store.get(SESSION_NAMESPACE, f"{peer_id}/archived")
        archived = None if old is None else decode_session(old, stored_card)
        card = verify_card(json.loads(current.peer_card))
        entry = PeerSessions(
            current=current, archived=archived, card=card, stored_cards=frozenset(named),
            stored_archived=archived if is_current_record(old) else None,
            archived_absent=old is None,
        )  # fmt: skip
        self._cache(peer_id, entry)
        return entry

    def forget_decoded(self) -> None:
        """Drop the decoded sessions: the next load of each peer reads the store."""
        self._peers.clear()

    def commit(
        self,
        entry: PeerSessions,
        used: tuple[int | None, int | None] | None = None,
        *,
        keep: Keep | None = None,
        opened: OpenedMessage | None = None,
    ) -> None:
        """Write the peer's sessions (and, for an accepted initial message, delete the used
        one-time prekeys and remember its base key) in one transaction, with what the
        caller's ``keep`` writes for the opened message. The peer cards the sessions
        name are written only when that set changes, and cards no session names any
        more are deleted, in the same transaction."""
        peer_id = entry.current.peer_id
        cards = {
            card_digest(s.peer_card): s.peer_card
            for s in (entry.current, entry.archived)
            if s is not None
        }
        with self._store.transaction() as tx:
            if keep is not None and opened is not None:
                keep(tx, opened)
            tx.put(SESSION_NAMESPACE, f"{peer_id}/current", encode_session(entry.current))
            if entry.archived is None:
                if not entry.archived_absent:  # else none stored: nothing to delete
                    tx.delete(SESSION_NAMESPACE, f"{peer_id}/archived")
            elif entry.archived is not entry.stored_archived:  # else unchanged: not rewritten
                tx.put(SESSION_NAMESPACE, f"{peer_id}/archived", encode_session(entry.archived))
            if used is not None:
                self._prekeys.delete_used(tx, *used)
                bases = tx.get(SESSION_NAMESPACE, f"{peer_id}/bases") or b""
                bases = (bases + entry.current.base_key)[-MAX_REMEMBERED_BASE_KEYS * KEY_LEN :]
                tx.put(SESSION_NAMESPACE, f"{peer_id}/bases", bases)
            if cards.keys() != entry.stored_cards:
                _store_cards(tx, peer_id, cards)
        stored = PeerSessions(
            current=entry.current, archived=entry.archived, card=entry.card,
            stored_cards=frozenset(cards), stored_archived=entry.archived,
            archived_absent=entry.archived is None,
        )  # fmt: skip
        self._cache(peer_id, stored)

    def base_seen(self, peer_id: str, base_key: bytes) -> bool:
        """Whether an initial message of ``base_key`` from the peer was accepted already
        (compared in constant time)."""
        bases = self._store.get(SESSION_NAMESPACE, f"{peer_id}/bases") or b""
        return any(
            hmac.compare_digest(bases[i : i + KEY_LEN], base_key)
            for i in range(0, len(bases), KEY_LEN)
        )

    def _cache(self, peer_id: str, entry: PeerSessions) -> None:
        self._peers[peer_id] = entry
        self._peers.move_to_end(peer_id)
        while len(self._peers) > MAX_CACHED_PEERS:
            self._peers.popitem(last=False)


def _card_key(peer_id: str, digest: bytes) -> str:
    return f"{peer_id}/card/{digest.hex()}"


def _store_cards(tx: StoreTransaction, peer_id: str, cards: Mapping[bytes, bytes]) -> None:
    """Make the peer's stored cards exactly ``cards`` (digest -> card): at most two, the
    current and the archived session's, whatever an earlier state left."""
    wanted = {_card_key(peer_id, digest): card for digest, card in cards.items()}
    present = set(tx.keys(SESSION_NAMESPACE, f"{peer_id}/card/"))
    for key in present - wanted.keys():
        tx.delete(SESSION_NAMESPACE, key)
    for key in wanted.keys() - present:
        tx.put(SESSION_NAMESPACE, key, wanted[key])
