"""Processing a group's log entries: application messages opened, commits and
proposals applied (the binding's own pending commit merged), invalid entries of
the epoch remembered, and each new state stored with what the caller keeps."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from sealwire.binding import (
    GroupEvent,
    GroupMembershipChanged,
    GroupMessage,
    OpenedMessage,
    PeerIdentity,
)
from sealwire.errors import SealwireError, TrustError
from sealwire.identity import verify_card
from sealwire.store import StoreTransaction
from sealwire_mls._external_join import ADMIT_AAD, note_admission
from sealwire_mls._group_registry import GroupRegistry
from sealwire_mls._members import Roster, decode_cards
from sealwire_mls._storage import Keep
from sealwire_mls.errors import MLSAuthenticationError, MLSDecodeError, MLSProtocolError
from sealwire_mls.framing import ContentType, PrivateMessage, PublicMessage, SenderType
from sealwire_mls.group import ApplicationMessage, CommitApplied
from sealwire_mls.keypackage import LeafNode
from sealwire_mls.proposals import Add, Commit
from sealwire_mls.welcome import MLSMessage

__all__ = ["GroupLogProcessor", "ProcessKeep"]

ProcessKeep = Callable[[StoreTransaction, GroupEvent | None], None]

log = logging.getLogger(__name__)

CARD_RETRY_SECONDS = 60.0
"""A member whose card was not found (or did not verify) is looked up again after
this long: its messages meanwhile are refused without a relay request each."""
MAX_CARD_MISSES = 4096
"""Members remembered as lacking a card (forgetting one only costs a lookup)."""


class GroupLogProcessor:
    """Log entries of the groups of ``registry``, processed for the agent of ``context``.

    ``card_misses`` maps the agent id of a member whose card was not found to the
    loop time at which to ask again.
    """

    def __init__(self, registry: GroupRegistry, context: Any) -> None:
        self._groups = registry
        self._context = context
        self.card_misses: dict[str, float] = {}  # agent id -> loop time to ask again

    @property
    def _me(self) -> str:
        return str(self._context.identity.agent_id)

    def _now(self) -> int:
        return int(self._context.clock())

    async def process(
        self, group_id: bytes, message: bytes, *, keep: ProcessKeep | None = None
    ) -> GroupEvent | None:
        """Process one log entry; None for proposals and for messages of past epochs
        (already applied, or from before we joined). ``keep`` commits with the new state."""
        async with self._groups.lock(group_id):
            try:
                return await self._process(group_id, message, keep)
            except (MLSDecodeError, MLSProtocolError, MLSAuthenticationError):
                raise  # refused before the group changed (the engine stages, then applies)
            except BaseException:
                # The group may have changed in memory and not in the store (``keep`` or
                # the store failed): the next call starts again from what the store holds.
                self._groups.drop(group_id)
                raise

    async def _process(
        self, group_id: bytes, message: bytes, keep: ProcessKeep | None
    ) -> GroupEvent | None:
        roster = self._groups.roster(group_id)
        storage = self._groups.storage
        group = roster.group
        try:
            decoded = MLSMessage.from_bytes(message)
        except SealwireError:
            self._groups.reject(group_id, message)
            raise
        parsed = decoded.body
        if isinstance(parsed, PublicMessage):
            epoch = parsed.content.epoch
        elif isinstance(parsed, PrivateMessage):
            epoch = parsed.epoch
        else:
            raise MLSProtocolError("not a group message")
        if epoch < group.epoch or not group.active:
            if isinstance(parsed, PublicMessage) and group.active:
                self._groups.reject(group_id, message)  # a replayed or superseded commit
            return None
        if message == self._groups.pending.get(group_id):
            return self._merge_own(group_id, roster, keep)
        if isinstance(parsed, PublicMessage):
            try:
                return self._process_handshake(group_id, roster, parsed, message, keep)
            except SealwireError:
                if epoch == group.epoch:  # invalid for this epoch: skipped, remembered
                    self._groups.reject(group_id, message)
                raise
        result = group.process(
            message, now=self._now(), max_lifetime=roster.max_lifetime, parsed=decoded
        )
        if not isinstance(result, ApplicationMessage):
            storage.save_ratchets(group_id, group, keep=_bind(keep, None))
            return None
        if result.authenticated_data == ADMIT_AAD:
            note_admission(roster, result)
            storage.save(group_id, roster, keep=_bind(keep, None))
            return None
        sender = await self._sender(roster, result.sender)
        if sender is None:
            storage.save_ratchets(group_id, group, keep=_bind(keep, None))
            raise TrustError("a message from a member whose card is not verified")
        opened = OpenedMessage(
            sender=sender, frame=result.data,
            message_id=hashlib.sha256(message).hexdigest()[:32],
        )  # fmt: skip
        event = GroupMessage(group_id=group_id, epoch=epoch, message=opened)
        storage.save_ratchets(group_id, group, keep=_bind(keep, event))
        return event

    async def _sender(self, roster: Roster, leaf_index: int) -> PeerIdentity | None:
        """The verified member at ``leaf_index``, its card fetched if not yet known."""
        peer = roster.peer(leaf_index)
        agent_id = roster.leaves().get(leaf_index)
        if peer is not None or agent_id is None or agent_id in roster.cards:
            return peer
        now = asyncio.get_running_loop().time()
        if self.card_misses.get(agent_id, 0.0) > now:
            return None  # asked lately and not found: an unverified member's messages
        # A relay that cannot answer now (RelayUnavailable, LimitExceeded) raises through
        # process(): the group is read again from the store and the entry retried later.
        await self._groups.fetch_card(roster, agent_id)
        peer = roster.peer(leaf_index)
        if peer is None:
            if len(self.card_misses) >= MAX_CARD_MISSES:
                self.card_misses.clear()
            self.card_misses[agent_id] = now + CARD_RETRY_SECONDS
        return peer

    def _merge_own(
        self, group_id: bytes, roster: Roster, keep: ProcessKeep | None
    ) -> GroupMembershipChanged:
        """Our commit reached the log though we never heard it accepted (a crash, a
        lost answer): merge it now."""
        before = roster.leaves()
        applied = roster.group.merge_pending_commit()
        return self._advanced_to(group_id, roster, before, applied, keep)

    def _process_handshake(
        self,
        group_id: bytes,
        roster: Roster,
        parsed: PublicMessage,
        message: bytes,
        keep: ProcessKeep | None,
    ) -> GroupMembershipChanged | None:
        content = parsed.content
        joining: list[LeafNode] = []
        commit = content.content
        if content.content_type is ContentType.COMMIT and isinstance(commit, Commit):
            joining = [p.key_package.leaf_node for p in commit.proposals if isinstance(p, Add)]
            if content.sender.sender_type is SenderType.NEW_MEMBER_COMMIT:
                if not roster.external_joins:
                    raise TrustError("an external commit in a group whose policy forbids them")
                if commit.path is not None:
                    joining.append(commit.path.leaf_node)
        cards = list(roster.expected.values())
        if joining and content.authenticated_data:
            try:
                cards += decode_cards(content.authenticated_data)
            except MLSDecodeError:  # not our format: the new members stay unverified
                log.warning("a commit's authenticated data carries no cards")
        before = roster.leaves()
        result = roster.group.process(message, now=self._now(), max_lifetime=roster.max_lifetime)
        if not isinstance(result, CommitApplied):
            self._groups.storage.save(
                group_id, roster, keep=_bind(keep, None)
            )  # a proposal, cached
            return None
        self._admit_added(roster, joining, cards)
        return self._advanced_to(group_id, roster, before, result, keep)

    def _advanced_to(
        self,
        group_id: bytes,
        roster: Roster,
        before: Mapping[int, str],
        applied: CommitApplied,
        keep: ProcessKeep | None,
    ) -> GroupMembershipChanged:
        """A commit was applied: store the new epoch (with ``keep``), wake a waiting
        committer, and say who came and went."""
        self._groups.pending.pop(group_id, None)
        self._groups.new_epoch(group_id)
        roster.forget_departed()
        event = self._membership(group_id, roster, before, applied)
        self._groups.storage.save(group_id, roster, keep=_bind(keep, event))
        self._groups.signal_advance(group_id)
        return event

    def _admit_added(
        self, roster: Roster, leaves: list[LeafNode], cards: list[Mapping[str, Any]]
    ) -> None:
        """Tie each added leaf to the card the committer sent; a leaf that fails stays
        in the group (the commit is valid MLS) but unverified: its messages are refused."""
        by_id: dict[str, Mapping[str, Any]] = {}
        for card in cards:
            try:
                by_id[verify_card(card).identity.agent_id] = card
            except SealwireError:  # a bad card only leaves its member unverified
                continue
        for leaf in leaves:
            agent_id = leaf.credential.agent_id()
            found = by_id.get(agent_id) or roster.cards.get(agent_id) if agent_id else None
            try:
                if found is None:
                    raise TrustError("no card")
                roster.admit(leaf, found, self._context.trust)
            except SealwireError as exc:  # logged; the member stays unverified
                log.warning("added member %s is not verified: %s", agent_id, type(exc).__name__)

    def _membership(
        self, group_id: bytes, roster: Roster, before: Mapping[int, str], applied: CommitApplied
    ) -> GroupMembershipChanged:
        after = roster.leaves()
        removed = tuple(before[i] for i in applied.removed if i in before)
        if applied.removed_me and self._me not in removed:
            removed += (self._me,)
        return GroupMembershipChanged(
            group_id=group_id, epoch=applied.epoch, members=tuple(sorted(set(after.values()))),
            added=tuple(after[i] for i in applied.added if i in after), removed=removed,
        )  # fmt: skip


def _bind(keep: ProcessKeep | None, event: GroupEvent | None) -> Keep | None:
    """``keep`` with the event the new state comes with, for :class:`GroupStorage`."""
    if keep is None:
        return None
    return lambda tx: keep(tx, event)
