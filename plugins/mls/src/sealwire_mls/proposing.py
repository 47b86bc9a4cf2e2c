"""Sending proposals, choosing the stored ones a commit includes, and the ReInit link
(RFC 9420 §11.2, §12.1, §12.4).

Rules of this module:

* A proposal is sent as a PublicMessage with a membership tag and stored under
  its ProposalRef like any received one, so that whoever commits it can refer
  to it and we can follow.
* Our own Update keeps its new leaf private key here until a commit includes
  it (then it becomes our leaf key) or the epoch ends (then it is dropped).
* A commit includes, by reference, every stored proposal that is valid beside
  the ones it carries by value (§12.4: "MUST include all valid proposals"), in
  the order received, minus those §12.2 forbids together: our own Update, a
  Remove of the committer, a second Remove of the same leaf, and an Update of a
  leaf being removed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from attrs import evolve

from sealwire_mls.errors import MLSStateError
from sealwire_mls.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    Sender,
    WireFormat,
    protect_public,
)
from sealwire_mls.group_state import EpochState
from sealwire_mls.keypackage import KeyPackage, LeafNodeSource
from sealwire_mls.proposals import Add, Proposal, ProposalRef, ReInit, Remove, Update
from sealwire_mls.psk import PreSharedKeyID, ResumptionPSKUsage
from sealwire_mls.welcome import MLSMessage

if TYPE_CHECKING:
    from sealwire_mls.crypto import CipherSuite

__all__ = ["Proposing"]

Random = Callable[[int], bytes]


class Proposing:
    """The proposal part of :class:`~sealwire_mls.group.Group` (a mixin)."""

    __slots__ = ()

    if TYPE_CHECKING:
        _epoch: EpochState
        _suite: CipherSuite
        _sig_priv: bytes
        _proposals: OrderedDict[bytes, tuple[Sender, Proposal]]
        _own_updates: dict[bytes, bytes]
        _reinit: ReInit | None

        @property
        def group_id(self) -> bytes: ...
        @property
        def epoch(self) -> int: ...

        @property
        def leaf_index(self) -> int: ...
        def _check_active(self) -> None: ...
        def _store_proposal(self, ac: AuthenticatedContent) -> object: ...
        def _remember_sent(self, message: MLSMessage, kind: str) -> bytes: ...

    def propose_add(self, key_package: KeyPackage) -> bytes:
        """An Add proposal (§12.1.1) for anyone to commit; returns the MLSMessage."""
        return self._propose(Add(key_package))

    def propose_remove(self, leaf_index: int) -> bytes:
        """A Remove proposal (§12.1.3) for anyone to commit; returns the MLSMessage."""
        return self._propose(Remove(leaf_index))

    def propose_update(self, random: Random) -> bytes:
        """An Update of our own leaf with a fresh encryption key (§12.1.2).

        Another member commits it; our new leaf key takes effect with that commit.
        """
        e, suite, me = self._epoch, self._suite, self.leaf_index
        leaf = e.tree.leaf(me)
        assert leaf is not None  # we are a member: our leaf is not blank
        priv, pub = suite.derive_key_pair(random(suite.Nh))
        fresh = evolve(
            leaf, encryption_key=pub, leaf_node_source=LeafNodeSource.UPDATE, lifetime=None,
            parent_hash=b"",
        ).sign(suite, self._sig_priv, e.context.group_id, me)  # fmt: skip
        message = self._propose(Update(fresh))
        ref = next(reversed(self._proposals))  # the one just stored
        self._own_updates[ref] = priv
        return message

    def reinit_psk(self, psk_nonce: bytes) -> tuple[PreSharedKeyID, bytes]:
        """After a ReInit commit: the resumption PSK (usage ``reinit``) that the new
        group's first commit names, and its value, for :meth:`create`/:meth:`join`."""
        if self._reinit is None:
            raise MLSStateError("the group was not reinitialized")
        psk_id = PreSharedKeyID.resumption(
            ResumptionPSKUsage.REINIT, self.group_id, self.epoch, psk_nonce
        )
        return psk_id, self._epoch.secrets.resumption_psk

    def _propose(self, proposal: Proposal) -> bytes:
        self._check_active()
        e, me = self._epoch, self.leaf_index
        content = FramedContent(
            group_id=e.context.group_id, epoch=e.context.epoch, sender=Sender.member(me),
            authenticated_data=b"", content_type=ContentType.PROPOSAL, content=proposal,
        )  # fmt: skip
        ac = AuthenticatedContent.sign(
            self._suite, WireFormat.PUBLIC_MESSAGE, content, self._sig_priv, e.context
        )
        self._store_proposal(ac)
        message = protect_public(self._suite, ac, e.context, e.secrets.membership_key)
        return self._remember_sent(MLSMessage(WireFormat.PUBLIC_MESSAGE, message), "proposal")

    def _committable(self, removing: Sequence[int]) -> list[tuple[bytes, Sender, Proposal]]:
        """The stored proposals our commit includes by reference (see the module rules)."""
        me = self.leaf_index
        removed = set(removing) | {me}
        for _ref, (_sender, proposal) in self._proposals.items():
            if isinstance(proposal, Remove):
                removed.add(proposal.removed)
        chosen: list[tuple[bytes, Sender, Proposal]] = []
        taken: set[int] = set(removing)
        for ref, (sender, proposal) in self._proposals.items():
            if isinstance(proposal, Update) and (sender.index == me or sender.index in removed):
                continue
            if isinstance(proposal, Remove):
                if proposal.removed == me or proposal.removed in taken:
                    continue
                taken.add(proposal.removed)
            chosen.append((ref, sender, proposal))
        return chosen


def references(chosen: Sequence[tuple[bytes, Sender, Proposal]]) -> list[ProposalRef]:
    """The ProposalRefs of proposals chosen by :meth:`Proposing._committable`."""
    return [ProposalRef(ref) for ref, _, _ in chosen]
