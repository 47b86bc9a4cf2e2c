"""Committing to a group: a commit is staged, stored as pending, offered to the
relay and merged only once accepted; on a conflict it is dropped and the changes
are offered again (on the new epoch, or superseding an invalid commit), and the
members it adds are invited."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Mapping
from typing import Any

from sealwire.errors import SealwireError, StateError
from sealwire.identity import VerifiedCard
from sealwire.relay import EpochConflictError
from sealwire_mls._group_registry import GroupRegistry
from sealwire_mls._invitations import send_invite
from sealwire_mls._members import Invite, Roster, encode_cards
from sealwire_mls.framing import ContentType, PublicMessage
from sealwire_mls.keypackage import KeyPackage
from sealwire_mls.welcome import MLSMessage

__all__ = ["GroupCommitter"]

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 8
"""Commits offered before giving up when other members keep winning the epoch."""
EPOCH_WAIT_SECONDS = 15.0
"""How long a losing committer waits for the winning commit to be processed."""


class GroupCommitter:
    """Commits of the agent of ``context`` to the groups of ``registry``; invitations
    are sent as the binding ``binding`` (its name)."""

    def __init__(self, registry: GroupRegistry, context: Any, *, binding: str) -> None:
        self._groups = registry
        self._context = context
        self._binding = binding

    async def commit(
        self,
        group_id: bytes,
        *,
        adds: Mapping[str, tuple[VerifiedCard, KeyPackage]] | None = None,
        removes: frozenset[str] = frozenset(),
        update: bool = False,
    ) -> None:
        """Offer the changes until a commit of ours is accepted (see the binding's rules)."""
        adds = dict(adds or {})
        supersedes: int | None = None
        for _ in range(COMMIT_ATTEMPTS):
            async with self._groups.lock(group_id):
                roster = self._groups.roster(group_id)
                epoch = roster.group.epoch
                todo = {a: v for a, v in adds.items() if roster.leaf_of(a) is None}
                leaves = [roster.leaf_of(a) for a in sorted(removes)]
                gone = [i for i in leaves if i is not None]
                if not todo and not gone and not update:
                    return  # another member's commit did it all
                conflict = await self._offer(group_id, roster, todo, gone, supersedes)
                if conflict is None:
                    return
            supersedes = None
            if conflict.expected_epoch == epoch + 1 and conflict.commit_seq is not None:
                supersedes = await self._judge(group_id, epoch, conflict.commit_seq)
            else:
                await self._until_past(group_id, epoch)
        raise StateError(f"no commit of ours was accepted in {COMMIT_ATTEMPTS} attempts")

    async def _until_past(self, group_id: bytes, epoch: int) -> None:
        """Wait until the group router has processed the log past ``epoch``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EPOCH_WAIT_SECONDS
        while True:
            waiter = self._groups.waiter(group_id)
            if self._groups.epoch(group_id) != epoch:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise StateError("another commit won the epoch and never reached us")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), remaining)

    async def _judge(self, group_id: bytes, epoch: int, commit_seq: int) -> int | None:
        """The log's latest commit (at ``commit_seq``) is for our ``epoch``: wait until the
        router has processed it. None if it was valid (we moved on), ``commit_seq`` if
        it was found invalid (our next offer supersedes it)."""
        relay = self._groups.log_relay(group_id)
        entries = await relay.fetch_group_log(group_id, commit_seq - 1, 1)
        if not entries or entries[0].seq != commit_seq:
            return None  # not readable as named: offer again on whatever epoch we reach
        if not _commit_for(entries[0].message, epoch):
            return commit_seq  # not even a commit of our epoch: no member can take it
        digest = hashlib.sha256(entries[0].message).digest()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EPOCH_WAIT_SECONDS
        while True:
            waiter = self._groups.waiter(group_id)
            if self._groups.epoch(group_id) != epoch:
                return None
            if self._groups.rejected(group_id, digest):
                return commit_seq
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise StateError("the epoch's commit was never processed here")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), remaining)

    async def _offer(
        self,
        group_id: bytes,
        roster: Roster,
        adds: Mapping[str, tuple[VerifiedCard, KeyPackage]],
        removes: list[int],
        supersedes: int | None,
    ) -> EpochConflictError | None:
        """Stage, store and offer one commit; None once the relay accepted it, else the
        relay's conflict (the staged commit dropped)."""
        group, epoch = roster.group, roster.group.epoch
        storage = self._groups.storage
        cards = [card.card for card, _ in adds.values()]
        message, welcome = group.commit(
            os.urandom, add=[kp for _, kp in adds.values()], remove=removes,
            authenticated_data=encode_cards(cards) if cards else b"",
            now=int(self._context.clock()), max_lifetime=roster.max_lifetime,
        )  # fmt: skip
        leaves = roster.leaves()
        departing = {leaves[i] for i in removes if i in leaves}
        members = sorted((set(roster.agent_ids()) - departing) | set(adds))
        storage.save_pending(group_id, group, message)
        self._groups.pending[group_id] = message
        try:
            seq = await self._groups.log_relay(group_id).append_commit(
                group_id, epoch, message, members=members, supersedes=supersedes
            )
        except EpochConflictError as conflict:
            group.discard_pending_commit()
            self._groups.pending.pop(group_id, None)
            storage.drop_pending(group_id)
            return conflict
        group.merge_pending_commit()
        self._groups.pending.pop(group_id, None)
        for card, kp in adds.values():
            roster.admit(kp.leaf_node, card.card, self._context.trust)
        roster.forget_departed()
        storage.save(group_id, roster)
        self._groups.new_epoch(group_id)
        self._groups.signal_advance(group_id)
        if welcome is not None:
            await self._invite(group_id, roster, seq, welcome, [c for c, _ in adds.values()])
        return None

    async def _invite(
        self, group_id: bytes, roster: Roster, seq: int, welcome: bytes, cards: list[VerifiedCard]
    ) -> None:
        home = self._groups.home()
        invite = Invite(
            group_id=group_id, seq=seq, relay=roster.relay or home.url,
            welcome=welcome, external_joins=roster.external_joins,
            max_lifetime=roster.max_lifetime,
        )  # fmt: skip
        lost = []
        for card in cards:  # the commit is in: every joiner is invited, whatever fails
            try:
                await send_invite(home, self._binding, card, invite)
            except SealwireError as exc:
                log.warning("invitation to %s undelivered: %s", card.identity.agent_id, exc)
                lost.append(card.identity.agent_id)
        if lost:
            raise StateError(
                f"added, but {len(lost)} of {len(cards)} invitations undelivered: "
                "remove and add those agents again"
            )


def _commit_for(message: bytes, epoch: int) -> bool:
    """Whether ``message`` is framed as a commit made in ``epoch`` (valid or not)."""
    try:
        parsed = MLSMessage.from_bytes(message).body
    except SealwireError:
        return False
    if not isinstance(parsed, PublicMessage):
        return False
    content = parsed.content
    return content.content_type is ContentType.COMMIT and content.epoch == epoch
