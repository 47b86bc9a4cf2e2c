"""Who is in a group, as the binding sees it: MLS leaves tied to signed agent cards.

Each member's leaf carries a basic credential naming its agent id and one of the
agent's identity keys (Ed25519, or ML-DSA-65 in an ML-DSA suite; see
:mod:`sealwire_mls.agents`). The binding keeps the members' signed cards beside
the group state and trusts a leaf only once :func:`~sealwire_mls.agents.check_member`
tied it to a card that verifies and passes the trust store. Cards come from two places:

* a commit that adds agents carries their cards in its ``authenticated_data``
  (signed by the committer with the commit; :func:`encode_cards`), so the
  members see them with the change;
* a joiner fetches the cards of the members it finds in the tree from the
  relay's card directory (where every agent publishes its own), so an
  invitation (:class:`Invite`) stays the size of the Welcome.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import field, frozen

from sealwire.binding import PeerIdentity
from sealwire.errors import SealwireError, TrustError
from sealwire.identity import TrustStore, VerifiedCard, verify_card
from sealwire_mls.agents import check_member
from sealwire_mls.errors import MLSDecodeError
from sealwire_mls.group import Group
from sealwire_mls.keypackage import MAX_LIFETIME_SECONDS, LeafNode

__all__ = ["INVITE_VERSION", "MAX_INVITE_BYTES", "Invite", "Roster", "decode_cards", "encode_cards"]

log = logging.getLogger(__name__)

INVITE_VERSION = 2
MAX_INVITE_BYTES = 16 * 1024 * 1024
# A relay's base URL, as an invitation names it: far above any real one.
MAX_RELAY_URL_CHARS = 2048
MAX_LIFETIME_CAP_DAYS = 36_500
"""A group's finite KeyPackage lifetime cap is at most a century: a longer one admits
what an unbounded one does (ts-mls's default runs to 2**63 - 1 s), and saying so is
clearer."""


def read_lifetime_cap(value: object) -> int | None:
    """A group policy's KeyPackage lifetime cap in seconds (None: unbounded); ValueError."""
    if value is None:
        return None
    if type(value) is not int or not 1 <= value <= MAX_LIFETIME_CAP_DAYS * 86400:
        raise ValueError("expected a KeyPackage lifetime cap in seconds, or null")
    return value


"""An invitation carries the Welcome and its ratchet tree (~180 bytes per member):
this admits the largest groups a relay accepts and bounds what a hostile mailbox
message makes us parse."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise MLSDecodeError("expected base64 text", field=name)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MLSDecodeError("malformed base64", field=name) from None


def encode_cards(cards: Sequence[Mapping[str, Any]]) -> bytes:
    """The ``authenticated_data`` of a commit adding the agents of ``cards``."""
    return json.dumps({"cards": list(cards)}, separators=(",", ":")).encode()


def decode_cards(data: bytes) -> list[Mapping[str, Any]]:
    """The cards a commit's ``authenticated_data`` carries (none if it is empty)."""
    if not data:
        return []
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):  # nesting: hostile input
        raise MLSDecodeError("authenticated data is not JSON", field="authenticated_data") from None
    cards = value.get("cards") if isinstance(value, dict) else None
    if not isinstance(cards, list) or not all(isinstance(c, dict) for c in cards):
        raise MLSDecodeError("expected a list of cards", field="authenticated_data.cards")
    return cards


@frozen(kw_only=True)
class Invite:
    """What an inviter puts in a joiner's mailbox: where to read the group log from
    (the relay at ``relay``, after ``seq``), the group's policy, and either a
    Welcome (the joiner was added) or a GroupInfo (the joiner may join by
    external commit). An empty ``relay`` (older inviters) is the joiner's own."""

    group_id: bytes
    seq: int
    relay: str = ""
    welcome: bytes = field(repr=False, default=b"")
    group_info: bytes = field(repr=False, default=b"")
    external_joins: bool = False
    #: The group's cap on a KeyPackage's lifetime (seconds; None: unbounded), which
    #: every member applies alike to the Adds it processes (RFC 9420 §7.2).
    max_lifetime: int | None = MAX_LIFETIME_SECONDS

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "v": INVITE_VERSION,
                "groupId": _b64(self.group_id),
                "seq": self.seq,
                "relay": self.relay,
                "welcome": _b64(self.welcome),
                "groupInfo": _b64(self.group_info),
                "policy": {
                    "externalJoins": self.external_joins,
                    "keyPackageMaxLifetime": self.max_lifetime,
                },
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Invite:
        """Decode an invitation (hostile input: MLSDecodeError naming the field)."""
        if len(data) > MAX_INVITE_BYTES:
            raise MLSDecodeError("invitation too large", field="invite")
        try:
            value = json.loads(data)
        except (UnicodeDecodeError, ValueError, RecursionError):  # nesting: hostile input
            raise MLSDecodeError("invitation is not JSON", field="invite") from None
        if not isinstance(value, dict) or value.get("v") != INVITE_VERSION:
            raise MLSDecodeError("unknown invitation version", field="invite.v")
        seq = value.get("seq")
        if type(seq) is not int or seq < 0:
            raise MLSDecodeError("expected a log position", field="invite.seq")
        policy = value.get("policy")
        if not isinstance(policy, dict) or not isinstance(policy.get("externalJoins"), bool):
            raise MLSDecodeError("expected the group's policy", field="invite.policy")
        relay = value.get("relay", "")
        if not isinstance(relay, str) or len(relay) > MAX_RELAY_URL_CHARS:
            raise MLSDecodeError("expected the group relay's URL", field="invite.relay")
        try:  # absent from older inviters' policies: the default cap
            max_lifetime = read_lifetime_cap(
                policy.get("keyPackageMaxLifetime", MAX_LIFETIME_SECONDS)
            )
        except ValueError:
            raise MLSDecodeError(
                "expected the group's KeyPackage lifetime cap", field="invite.policy"
            ) from None
        return cls(
            group_id=_unb64(value.get("groupId"), "invite.groupId"),
            seq=seq,
            relay=relay,
            welcome=_unb64(value.get("welcome"), "invite.welcome"),
            group_info=_unb64(value.get("groupInfo"), "invite.groupInfo"),
            external_joins=policy["externalJoins"],
            max_lifetime=max_lifetime,
        )


class Roster:
    """One group's MLS state and the verified cards of its members (mutable)."""

    __slots__ = (
        "_leaves", "cards", "changed", "expected", "external_joins", "group", "max_lifetime",
        "relay", "verified",
    )  # fmt: skip

    def __init__(
        self,
        group: Group,
        cards: Mapping[str, Mapping[str, Any]],
        *,
        external_joins: bool = False,
        max_lifetime: int | None = MAX_LIFETIME_SECONDS,
        expected: Mapping[str, Mapping[str, Any]] | None = None,
        relay: str | None = None,
    ) -> None:
        self.group = group
        self.relay = relay  # the URL of the relay holding the log, if not our home relay
        self.cards: dict[str, Mapping[str, Any]] = dict(cards)
        self.changed: set[str] = set()  # agent ids whose card was admitted since it was stored
        self.verified: dict[str, VerifiedCard] = {}
        self.external_joins = external_joins
        self.max_lifetime = max_lifetime  # the group's KeyPackage lifetime cap (policy)
        # Cards of agents a member admitted to join by external commit, until they do.
        self.expected: dict[str, Mapping[str, Any]] = dict(expected or {})
        self._leaves: tuple[int, dict[int, str]] | None = None  # (epoch, leaves) cache

    def __repr__(self) -> str:
        return f"Roster({self.group!r}, members={len(self.cards)})"

    def leaves(self) -> dict[int, str]:
        """Leaf index -> agent id of every member (credentials the engine validated)."""
        if self._leaves is not None and self._leaves[0] == self.group.epoch:
            return self._leaves[1]
        out = {}
        for index, leaf in self.group.members:
            agent_id = leaf.credential.agent_id()
            if agent_id is not None:
                out[index] = agent_id
        self._leaves = (self.group.epoch, out)
        return out

    def agent_ids(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.leaves().values())))

    def leaf_of(self, agent_id: str) -> int | None:
        return next((i for i, a in self.leaves().items() if a == agent_id), None)

    def admit(self, leaf: LeafNode, card: Mapping[str, Any], trust: TrustStore) -> VerifiedCard:
        """Tie ``leaf`` to ``card`` (signature, credential, key, trust) and remember it."""
        verified = verify_card(card)
        check_member(leaf, verified)
        trust.check(verified)
        self.cards[verified.identity.agent_id] = verified.card
        self.changed.add(verified.identity.agent_id)
        self.verified[verified.identity.agent_id] = verified
        return verified

    def admit_fetched(self, cards: Mapping[str, Mapping[str, Any]], trust: TrustStore) -> None:
        """Tie members' leaves to the cards fetched for them; a card that fails leaves
        its member unverified (its messages are refused), logged."""
        for index, agent_id in self.leaves().items():
            card = cards.get(agent_id)
            if card is None or agent_id in self.cards:
                continue
            leaf = self.group.member(index)
            try:
                if leaf is None:
                    raise TrustError("no such member")
                self.admit(leaf, card, trust)
            except SealwireError as exc:
                log.warning("member %s is not verified: %s", agent_id, type(exc).__name__)

    def policy_json(self) -> bytes:
        """The roster's persisted part beside the MLS state and the cards (each card is
        stored on its own): the group's policy, the cards of agents expected to join, and
        the group's relay when it is not the home relay."""
        record: dict[str, Any] = {
            "v": 2, "expected": self.expected,
            "policy": {"externalJoins": self.external_joins,
                       "keyPackageMaxLifetime": self.max_lifetime},
        }  # fmt: skip
        if self.relay is not None:
            record["relay"] = self.relay
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def from_stored(
        cls, group: Group, cards: Mapping[str, Mapping[str, Any]], policy: bytes | None
    ) -> Roster:
        """The roster stored as ``cards`` (by agent id) and :meth:`policy_json`."""
        if policy is None:
            return cls(group, cards)
        try:
            value = json.loads(policy)
            if value["v"] != 2 or not isinstance(value["expected"], dict):
                raise ValueError("unknown roster record")
            relay = value.get("relay")
            if relay is not None and not isinstance(relay, str):
                raise ValueError("unknown roster record")
            cap = read_lifetime_cap(
                value["policy"].get("keyPackageMaxLifetime", MAX_LIFETIME_SECONDS)
            )
            return cls(
                group, cards, expected=value["expected"],
                external_joins=bool(value["policy"]["externalJoins"]), max_lifetime=cap,
                relay=relay,
            )  # fmt: skip
        except (ValueError, KeyError, TypeError, RecursionError):
            raise MLSDecodeError("corrupt group roster", field="mls.roster") from None

    def forget_departed(self) -> None:
        present = set(self.leaves().values())
        for agent_id in present:
            self.expected.pop(agent_id, None)
        for agent_id in set(self.cards) - present:
            self.cards.pop(agent_id, None)
            self.verified.pop(agent_id, None)

    def peer(self, leaf_index: int) -> PeerIdentity | None:
        """The verified identity of the member at ``leaf_index`` (None if unverified)."""
        agent_id = self.leaves().get(leaf_index)
        if agent_id is None or agent_id not in self.cards:
            return None
        card = self.verified.get(agent_id)
        if card is None:
            try:
                card = verify_card(self.cards[agent_id])
            except SealwireError:
                log.warning("stored card of %s no longer verifies", agent_id)
                return None
            self.verified[agent_id] = card
        return PeerIdentity(agent_id=agent_id, identity=card.identity, card=card)
