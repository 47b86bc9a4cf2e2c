"""MLS group state: create, commit, process, join (RFC 9420 §11, §12).

Rules of this module:

* A :class:`Group` holds one epoch. Every incoming message is processed on
  staged copies (tree copy, staged secret-tree keys) and swapped in only when
  all checks passed, so a failure leaves the group unchanged.
* Our own commit is staged by :meth:`Group.commit` and applied only by
  :meth:`Group.merge_pending_commit` once the delivery service accepted it
  (§14: one commit per epoch), or dropped by :meth:`discard_pending_commit`.
* Randomness and time are passed in; there is no clock.
* A delivery service's echo of our own message gives :class:`OwnMessage`.
* Senders: members, new members (external commit, :mod:`sealwire_mls.external`;
  Add proposal) and external senders (§12.1.8). All proposal types of §12.1
  (:mod:`sealwire_mls.proposing`); ReInit closes the group (§11.2).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from attrs import evolve

from sealwire_mls.applying import apply_proposals, provisional_context, sender_signature_key
from sealwire_mls.crypto import CipherSuite, cipher_suite
from sealwire_mls.errors import MLSLocalError, MLSProtocolError, MLSStateError
from sealwire_mls.external import ExternalJoins
from sealwire_mls.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    PrivateMessage,
    PublicMessage,
    Sender,
    SenderType,
    WireFormat,
    protect_private,
    protect_public,
    unprotect_private,
    unprotect_public,
)
from sealwire_mls.group_state import (
    ApplicationMessage,
    Applied,
    CommitApplied,
    EpochState,
    OwnMessage,
    ProposalReceived,
    build_welcome,
    drop_blank,
    epoch_from_welcome,
    next_epoch,
    psk_secret_for,
)
from sealwire_mls.keypackage import (
    MAX_LIFETIME_SECONDS,
    KeyPackage,
    LeafNode,
)
from sealwire_mls.proposals import (
    PROPOSAL_REF_LABEL,
    Add,
    Commit,
    PreSharedKey,
    Proposal,
    ProposalRef,
    ReInit,
    Remove,
)
from sealwire_mls.proposing import Proposing, references
from sealwire_mls.psk import PreSharedKeyID
from sealwire_mls.schedule import (
    GroupContext,
    initial_epoch_secrets,
    mls_exporter,
)
from sealwire_mls.secret_tree import SecretTree
from sealwire_mls.transcript import (
    confirmation_tag,
    interim_transcript_hash,
)
from sealwire_mls.tree import RatchetTree
from sealwire_mls.treekem import TreeKEMPrivate, create_update_path, process_update_path
from sealwire_mls.welcome import (
    MLSMessage,
    Welcome,
)

__all__ = ["ApplicationMessage", "CommitApplied", "Group", "OwnMessage", "ProposalReceived"]

Random = Callable[[int], bytes]
#: Proposals kept per epoch for commits that reference them: bounds memory
#: against a member flooding proposals (the epoch's commit clears them).
MAX_PENDING_PROPOSALS = 256
#: Digests of messages we sent, to recognise their echo (§6.3.2: our own
#: application keys are consumed, so decrypting an echo would fail as a reuse).
#: A few epochs of traffic; older echoes fail like any stale message.
MAX_SENT_REMEMBERED = 1024
#: Resumption PSKs of past epochs kept for PreSharedKey proposals (§8.6).
MAX_RESUMPTION_EPOCHS = 8


class Group(ExternalJoins, Proposing):
    """One member's view of an MLS group (sans-I/O: bytes in, bytes and events out)."""

    __slots__ = ("_active", "_epoch", "_own_updates", "_pending", "_proposals", "_psks",
                 "_reinit", "_resumption", "_sent", "_sig_priv", "_suite")  # fmt: skip

    def __init__(
        self,
        suite: CipherSuite,
        epoch: EpochState,
        signature_priv: bytes,
        psks: Mapping[bytes, bytes],
        resumption: Mapping[tuple[bytes, int], bytes] | None = None,
    ) -> None:
        self._suite, self._epoch, self._sig_priv = suite, epoch, signature_priv
        self._psks = dict(psks)
        self._pending: tuple[EpochState, CommitApplied] | None = None
        self._proposals: OrderedDict[bytes, tuple[Sender, Proposal]] = OrderedDict()
        self._resumption: OrderedDict[tuple[bytes, int], bytes] = OrderedDict(resumption or {})
        self._reinit: ReInit | None = None
        self._own_updates: dict[bytes, bytes] = {}
        self._sent: OrderedDict[bytes, str] = OrderedDict()  # digest -> kind, see _sent_by_us
        self._active = True
        self._remember_resumption()

    def __repr__(self) -> str:
        return f"Group(epoch={self.epoch}, leaf={self.leaf_index}, <secrets redacted>)"

    # -- creation and joining (§11, §12.4.3.1) ---------------------------------

    @classmethod
    def create(
        cls,
        suite_id: int,
        group_id: bytes,
        leaf: LeafNode,
        *,
        encryption_priv: bytes,
        signature_priv: bytes,
        random: Random,
        extensions: Sequence[Any] = (),
        external_psks: Mapping[bytes, bytes] | None = None,
        resumption_psks: Mapping[tuple[bytes, int], bytes] | None = None,
    ) -> Group:
        """A one-member group at epoch 0 with a fresh random ``epoch_secret`` (§11).

        ``resumption_psks`` (``(group_id, epoch) -> secret``) lets the first commit
        name a previous group's resumption PSK, as a reinitialized group does (§11.2).
        """
        suite = cipher_suite(suite_id)
        tree = RatchetTree.create(suite, leaf)
        context = GroupContext(
            cipher_suite=suite_id, group_id=group_id, epoch=0, tree_hash=tree.tree_hash(),
            confirmed_transcript_hash=b"", extensions=tuple(extensions),
        )  # fmt: skip
        secrets = initial_epoch_secrets(suite, random(suite.Nh))
        tag = confirmation_tag(suite, secrets.confirmation_key, b"")
        epoch = EpochState(
            context=context, tree=tree, private=TreeKEMPrivate(0, {0: encryption_priv}),
            secrets=secrets, interim=interim_transcript_hash(suite, b"", tag),
            secret_tree=SecretTree(suite, secrets.encryption_secret, tree.n_leaves),
            confirmation_tag=tag,
        )  # fmt: skip
        return cls(suite, epoch, signature_priv, external_psks or {}, resumption_psks)

    @classmethod
    def join(
        cls,
        welcome: Welcome,
        key_package: KeyPackage,
        *,
        init_priv: bytes,
        encryption_priv: bytes,
        signature_priv: bytes,
        ratchet_tree: RatchetTree | None = None,
        external_psks: Mapping[bytes, bytes] | None = None,
        resumption_psks: Mapping[tuple[bytes, int], bytes] | None = None,
    ) -> Group:
        """Join from a Welcome (§12.4.3.1): decrypt, verify, rebuild the epoch."""
        psks = dict(external_psks or {})
        suite, epoch = epoch_from_welcome(
            welcome, key_package, init_priv=init_priv, encryption_priv=encryption_priv,
            ratchet_tree=ratchet_tree, external_psks=psks, resumption_psks=resumption_psks or {},
        )  # fmt: skip
        return cls(suite, epoch, signature_priv, psks, resumption_psks)

    # -- accessors ---------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The current epoch number."""
        return self._epoch.context.epoch

    @property
    def group_id(self) -> bytes:
        """The group id."""
        return self._epoch.context.group_id

    @property
    def leaf_index(self) -> int:
        """Our leaf index."""
        return self._epoch.private.leaf_index

    @property
    def context(self) -> GroupContext:
        """The current GroupContext."""
        return self._epoch.context

    @property
    def members(self) -> list[tuple[int, LeafNode]]:
        """``(leaf index, LeafNode)`` of every member."""
        return list(self._epoch.tree.leaves())

    def member(self, leaf_index: int) -> LeafNode | None:
        """The member's LeafNode at ``leaf_index`` (None if that leaf is blank)."""
        return self._epoch.tree.leaf(leaf_index)

    @property
    def active(self) -> bool:
        """False once a commit removed us."""
        return self._active

    def epoch_authenticator(self) -> bytes:
        """The epoch authenticator (§8.7), to compare out of band."""
        return self._epoch.secrets.epoch_authenticator

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        """MLS-Exporter(label, context, length) of the current epoch (§8.5)."""
        return mls_exporter(
            self._suite, self._epoch.secrets.exporter_secret, label, context, length
        )

    def ratchet_tree(self) -> RatchetTree:
        """A copy of the current ratchet tree."""
        return self._epoch.tree.copy()

    # -- sending -------------------------------------------------------------------

    def _mark_removed(self) -> None:
        self._active = False

    def _check_active(self) -> None:
        if not self._active:
            raise MLSStateError("we are no longer a member of this group")
        if self._reinit is not None:
            raise MLSStateError("the group was reinitialized: use the new group (§11.2)")

    def encrypt(
        self, data: bytes, random: Random, authenticated_data: bytes = b"", padding: int = 0
    ) -> bytes:
        """An MLSMessage(PrivateMessage) carrying application ``data`` (§6.3)."""
        self._check_active()
        e, me = self._epoch, Sender.member(self.leaf_index)
        content = FramedContent(
            group_id=e.context.group_id, epoch=e.context.epoch, sender=me, content=data,
            authenticated_data=authenticated_data, content_type=ContentType.APPLICATION,
        )  # fmt: skip
        ac = AuthenticatedContent.sign(
            self._suite, WireFormat.PRIVATE_MESSAGE, content, self._sig_priv, e.context
        )
        message = protect_private(
            self._suite, ac, e.secret_tree, e.secrets.sender_data_secret, random, padding
        )
        return self._remember_sent(MLSMessage(WireFormat.PRIVATE_MESSAGE, message), "application")

    def commit(
        self,
        random: Random,
        *,
        add: Iterable[KeyPackage] = (),
        remove: Iterable[int] = (),
        authenticated_data: bytes = b"",
        now: int | None = None,
        max_lifetime: int | None = MAX_LIFETIME_SECONDS,
        psks: Iterable[PreSharedKeyID] = (),
        reinit: ReInit | None = None,
        path: bool = True,
    ) -> tuple[bytes, bytes | None]:
        """Stage a Commit (§12.4.2): ``(MLSMessage, Welcome MLSMessage)``.

        With ``path`` (the default) the commit carries an UpdatePath, refreshing
        our keys; ``path=False`` leaves it out where §12.4 allows (only Add,
        PreSharedKey or ReInit proposals). The Welcome is None when nobody is
        added. Apply with :meth:`merge_pending_commit`.
        """
        self._check_active()
        suite, e, me = self._suite, self._epoch, self.leaf_index
        removing = list(remove)
        by_value: list[Proposal] = [Remove(i) for i in removing] + [Add(kp) for kp in add]
        by_value += [PreSharedKey(psk) for psk in psks]
        if reinit is not None:  # a ReInit travels alone (§12.2)
            by_value.append(reinit)
        by_ref = self._committable(removing) if reinit is None else []
        proposals: list[Proposal | ProposalRef] = [*references(by_ref), *by_value]
        resolved = [(s, p) for _, s, p in by_ref] + [(Sender.member(me), p) for p in by_value]
        tree = e.tree.copy()
        applied = self._apply(tree, resolved, me, now=now, max_lifetime=max_lifetime)
        private, commit_secret, path_secret = drop_blank(e.private, tree), bytes(suite.Nh), None
        update_path = None
        if path or applied.path_required:
            if not path:
                raise MLSLocalError("these proposals need an UpdatePath (§12.4)")
            template = tree.leaf(me)
            assert template is not None
            update_path, result = create_update_path(
                tree, private, template, signature_priv=self._sig_priv,
                group_id=e.context.group_id, group_context=self._provisional(applied.extensions),
                rng=random, exclude=frozenset(applied.added),
            )  # fmt: skip
            private, commit_secret = result.private, result.commit_secret
            path_secret = result.path_secret
        content = FramedContent(
            group_id=e.context.group_id, epoch=e.context.epoch, sender=Sender.member(me),
            authenticated_data=authenticated_data, content_type=ContentType.COMMIT,
            content=Commit(proposals=tuple(proposals), path=update_path),
        )  # fmt: skip
        ac = AuthenticatedContent.sign(
            suite, WireFormat.PUBLIC_MESSAGE, content, self._sig_priv, e.context
        )
        new, tag = self._next_epoch(ac, tree, private, commit_secret, applied)
        ac = evolve(ac, auth=FramedContentAuthData(ac.auth.signature, tag))
        message = protect_public(suite, ac, e.context, e.secrets.membership_key)
        welcome = (
            build_welcome(suite, me, self._sig_priv, new, tag, applied, path_secret)
            if applied.added
            else None
        )
        event = CommitApplied(
            committer=me, epoch=new.context.epoch, added=applied.added, removed=applied.removed,
            reinit=applied.reinit,
        )  # fmt: skip
        self._pending = (new, event)
        return self._remember_sent(
            MLSMessage(WireFormat.PUBLIC_MESSAGE, message), "commit"
        ), welcome

    def merge_pending_commit(self) -> CommitApplied:
        """Apply our staged commit (after the delivery service accepted it)."""
        if self._pending is None:
            raise MLSStateError("no pending commit")
        new, event = self._pending
        self._switch(new)
        self._reinit = event.reinit
        return event

    def discard_pending_commit(self) -> None:
        """Drop our staged commit (another commit won the epoch)."""
        self._pending = None

    # -- receiving -------------------------------------------------------------------

    def process(
        self,
        data: bytes,
        *,
        now: int | None = None,
        max_lifetime: int | None = MAX_LIFETIME_SECONDS,
        parsed: MLSMessage | None = None,
    ) -> ApplicationMessage | ProposalReceived | CommitApplied | OwnMessage:
        """Process one MLSMessage (Public or PrivateMessage) of the current epoch.

        ``now`` (UNIX seconds) enables the lifetime checks of added KeyPackages,
        whose span is at most ``max_lifetime`` (the group's cap; None: no cap);
        ``parsed`` is ``data`` already decoded by the caller (not decoded again).
        A message we sent ourselves (a delivery service's echo) gives
        :class:`OwnMessage` and changes nothing: our own commit still takes
        effect only through :meth:`merge_pending_commit`.
        """
        self._check_active()
        kind = self._sent.get(hashlib.sha256(data).digest())
        if kind is not None:
            return OwnMessage(kind=kind)
        message = MLSMessage.from_bytes(data) if parsed is None else parsed
        suite, e = self._suite, self._epoch
        if isinstance(message.body, PublicMessage):
            body = message.body
            ac = unprotect_public(
                suite, body, e.context, e.secrets.membership_key,
                lambda sender: self._signature_key(sender, body.content),
            )  # fmt: skip
        elif isinstance(message.body, PrivateMessage):
            ac = unprotect_private(
                suite, message.body, e.context, e.secret_tree, e.secrets.sender_data_secret,
                self._signature_key,
            )  # fmt: skip
        else:
            raise MLSProtocolError("not a group message")
        content = ac.content
        if content.content_type is ContentType.APPLICATION:
            return ApplicationMessage(
                sender=content.sender.index, data=content.content,
                authenticated_data=content.authenticated_data,
            )  # fmt: skip
        if content.content_type is ContentType.PROPOSAL:
            return self._store_proposal(ac)
        return self._process_commit(ac, now, max_lifetime)

    def _remember_sent(self, message: MLSMessage, kind: str) -> bytes:
        data = message.to_bytes()
        self._sent[hashlib.sha256(data).digest()] = kind
        if len(self._sent) > MAX_SENT_REMEMBERED:
            self._sent.popitem(last=False)
        return data

    def _signature_key(self, sender: Sender, content: FramedContent | None = None) -> bytes:
        e = self._epoch
        return sender_signature_key(e.tree, sender, content, e.context.extensions)

    def _store_proposal(self, ac: AuthenticatedContent) -> ProposalReceived:
        ref = self._suite.ref_hash(PROPOSAL_REF_LABEL, ac.to_bytes())
        self._proposals[ref] = (ac.content.sender, ac.content.content)
        if len(self._proposals) > MAX_PENDING_PROPOSALS:
            self._proposals.popitem(last=False)
        return ProposalReceived(sender=ac.content.sender, proposal=ac.content.content, ref=ref)

    def _process_commit(
        self, ac: AuthenticatedContent, now: int | None, max_lifetime: int | None
    ) -> CommitApplied:
        """§12.4.2 on the receiving side: proposals, path, key schedule, confirmation tag."""
        e, sender, commit = self._epoch, ac.content.sender, ac.content.content
        if sender.sender_type is SenderType.NEW_MEMBER_COMMIT:
            return self._process_external_commit(ac)
        if sender.index == self.leaf_index:
            raise MLSStateError("our own commit: use merge_pending_commit")
        resolved = []
        own_leaf_key = None  # our Update's new leaf key, if this commit includes it
        for item in commit.proposals:
            if isinstance(item, ProposalRef):
                if item.value not in self._proposals:
                    raise MLSProtocolError("commit references an unknown proposal")
                resolved.append(self._proposals[item.value])
                own_leaf_key = self._own_updates.get(item.value, own_leaf_key)
            else:
                resolved.append((sender, item))
        tree = e.tree.copy()
        applied = self._apply(tree, resolved, sender.index, now=now, max_lifetime=max_lifetime)
        if commit.path is None and applied.path_required:
            raise MLSProtocolError("commit needs an UpdatePath")
        event = CommitApplied(
            committer=sender.index, epoch=e.context.epoch + 1, added=applied.added,
            removed=applied.removed, removed_me=self.leaf_index in applied.removed,
            reinit=applied.reinit,
        )  # fmt: skip
        if event.removed_me:
            self._active = False
            return event
        private, commit_secret = drop_blank(e.private, tree), bytes(self._suite.Nh)
        if own_leaf_key is not None:
            private = private.with_keys(set(), {2 * self.leaf_index: own_leaf_key})
        if commit.path is not None:
            result = process_update_path(
                tree, private, sender.index, commit.path, group_id=e.context.group_id,
                group_context=self._provisional(applied.extensions),
                exclude=frozenset(applied.added),
            )  # fmt: skip
            private, commit_secret = result.private, result.commit_secret
        new, _ = self._next_epoch(ac, tree, private, commit_secret, applied)
        self._switch(new)
        self._reinit = applied.reinit
        return event

    # -- epoch transition (§12.3, §8) ----------------------------------------------------

    def _apply(
        self,
        tree: RatchetTree,
        proposals: Sequence[tuple[Sender, Proposal]],
        committer: int,
        *,
        now: int | None = None,
        max_lifetime: int | None = MAX_LIFETIME_SECONDS,
    ) -> Applied:
        """:func:`~sealwire_mls.applying.apply_proposals` in the current epoch."""
        e = self._epoch
        return apply_proposals(
            self._suite, e.context, tree, proposals, committer, now=now, max_lifetime=max_lifetime
        )

    def _provisional(self, extensions: tuple[Any, ...]) -> Callable[[bytes], bytes]:
        return provisional_context(self._epoch.context, extensions)

    def _next_epoch(
        self,
        ac: AuthenticatedContent,
        tree: RatchetTree,
        private: TreeKEMPrivate,
        commit_secret: bytes,
        applied: Applied,
        *,
        init_secret: bytes | None = None,
    ) -> tuple[EpochState, bytes]:
        """:func:`~sealwire_mls.group_state.next_epoch` with our PSKs."""
        psk = psk_secret_for(self._suite, applied.psks, self._psks, self._resumption)
        return next_epoch(
            self._suite, self._epoch, ac, tree, private, commit_secret, applied.extensions,
            psk=psk, init_secret=init_secret,
        )  # fmt: skip

    def _switch(self, new: EpochState) -> None:
        self._epoch, self._pending = new, None
        self._proposals.clear()
        self._own_updates.clear()
        self._remember_resumption()

    def _remember_resumption(self) -> None:
        key = (self.group_id, self.epoch)
        self._resumption[key] = self._epoch.secrets.resumption_psk
        if len(self._resumption) > MAX_RESUMPTION_EPOCHS:
            self._resumption.popitem(last=False)
