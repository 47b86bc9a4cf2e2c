"""Joining a group by external commit (RFC 9420 §12.4.3.2), and checking one.

Rules of this module:

* An external commit is a PublicMessage from a ``new_member_commit`` sender
  (no membership tag: the sender is not a member yet), signed by the key in its
  UpdatePath's leaf node.
* It carries an UpdatePath, exactly one ExternalInit, at most one Remove (the
  joiner's own old leaf, to resync) and PreSharedKey proposals, all by value:
  an outsider cannot know, let alone check, proposals sent inside the group.
* The joiner's leaf goes where an Add would put it (the leftmost blank leaf,
  after the Remove); the new epoch's ``init_secret`` is the HPKE export of the
  ExternalInit's ``kem_output`` against the group's ``external_pub`` (§8.3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

from attrs import evolve

from sealwire_mls.crypto import CipherSuite, cipher_suite
from sealwire_mls.errors import MLSProtocolError
from sealwire_mls.extensions import ExtensionType, ExternalPub, find_extension
from sealwire_mls.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    Sender,
    SenderType,
    WireFormat,
    protect_public,
)
from sealwire_mls.group_state import Applied, CommitApplied, EpochState, drop_blank
from sealwire_mls.keypackage import LeafNode
from sealwire_mls.proposals import (
    Commit,
    ExternalInit,
    PreSharedKey,
    Proposal,
    ProposalRef,
    Remove,
)
from sealwire_mls.schedule import (
    external_init_receive,
    external_init_send,
    joiner_secret,
    key_schedule,
)
from sealwire_mls.secret_tree import SecretTree
from sealwire_mls.transcript import (
    confirmation_tag,
    confirmed_transcript_hash,
    interim_transcript_hash,
)
from sealwire_mls.tree import RatchetTree
from sealwire_mls.treekem import TreeKEMPrivate, create_update_path, process_update_path
from sealwire_mls.welcome import GroupInfo, MLSMessage, verified_tree

__all__ = ["ExternalJoins", "build_external_commit", "check_external_commit", "check_resync"]

Random = Callable[[int], bytes]


def check_external_commit(commit: Commit) -> tuple[ExternalInit, list[Proposal]]:
    """The commit's ExternalInit and its other proposals, if it is a valid external
    commit's proposal list (§12.4.3.2); MLSProtocolError otherwise."""
    if commit.path is None:
        raise MLSProtocolError("an external commit needs an UpdatePath")
    inits: list[ExternalInit] = []
    rest: list[Proposal] = []
    for item in commit.proposals:
        if isinstance(item, ProposalRef):
            raise MLSProtocolError("an external commit cannot reference proposals")
        if isinstance(item, ExternalInit):
            inits.append(item)
        elif isinstance(item, Remove | PreSharedKey):
            rest.append(item)
        else:
            raise MLSProtocolError(f"{type(item).__name__} is not allowed in an external commit")
    if len(inits) != 1:
        raise MLSProtocolError("an external commit needs exactly one ExternalInit")
    if sum(isinstance(p, Remove) for p in rest) > 1:
        raise MLSProtocolError("an external commit may remove at most one leaf")
    return inits[0], rest


def check_resync(tree: RatchetTree, removed: Sequence[int], joiner: LeafNode) -> None:
    """A Remove in an external commit may only take out the joiner's own old leaf."""
    for index in removed:
        old = tree.leaf(index)
        if old is None or old.credential != joiner.credential:
            raise MLSProtocolError("an external commit may only remove the joiner's old leaf")


def _verified_info(group_info: bytes) -> tuple[GroupInfo, RatchetTree, bytes]:
    info = MLSMessage.from_bytes(group_info).body
    if not isinstance(info, GroupInfo):
        raise MLSProtocolError("not a GroupInfo")
    tree = verified_tree(cipher_suite(info.group_context.cipher_suite), info)
    ext = find_extension(info.extensions, ExtensionType.EXTERNAL_PUB)
    if ext is None:
        raise MLSProtocolError("the GroupInfo has no external_pub: external joins are off")
    return info, tree, ExternalPub.from_extension(ext).external_pub


def build_external_commit(
    group_info: bytes,
    leaf: LeafNode,
    *,
    signature_priv: bytes,
    random: Random,
    resync: int | None = None,
) -> tuple[EpochState, bytes]:
    """The joiner's new epoch and its external commit (an MLSMessage) from a GroupInfo.

    ``leaf`` carries the joiner's credential, capabilities and signature key;
    ``resync`` names the joiner's own old leaf to remove, if it has one.
    """
    info, tree, external_pub = _verified_info(group_info)
    context = info.group_context
    suite = cipher_suite(context.cipher_suite)
    kem_output, init_secret = external_init_send(suite, external_pub)
    proposals: list[Proposal] = [ExternalInit(kem_output)]
    if resync is not None:
        check_resync(tree, [resync], leaf)
        proposals.append(Remove(resync))
        tree.remove_leaf(resync)
    me = tree.add_leaf(leaf)

    def provisional(tree_hash: bytes) -> bytes:
        return evolve(context, epoch=context.epoch + 1, tree_hash=tree_hash).to_bytes()

    path, result = create_update_path(
        tree, TreeKEMPrivate(me, {}), leaf, signature_priv=signature_priv,
        group_id=context.group_id, group_context=provisional, rng=random,
    )  # fmt: skip
    content = FramedContent(
        group_id=context.group_id, epoch=context.epoch,
        sender=Sender(SenderType.NEW_MEMBER_COMMIT), authenticated_data=b"",
        content_type=ContentType.COMMIT, content=Commit(proposals=tuple(proposals), path=path),
    )  # fmt: skip
    ac = AuthenticatedContent.sign(
        suite, WireFormat.PUBLIC_MESSAGE, content, signature_priv, context
    )
    interim = interim_transcript_hash(
        suite, context.confirmed_transcript_hash, info.confirmation_tag
    )
    confirmed = confirmed_transcript_hash(suite, interim, ac)
    new_context = evolve(
        context, epoch=context.epoch + 1, tree_hash=tree.tree_hash(),
        confirmed_transcript_hash=confirmed,
    )  # fmt: skip
    encoded = new_context.to_bytes()
    secrets = key_schedule(
        suite, joiner_secret(suite, init_secret, result.commit_secret, encoded), None, encoded
    )
    tag = confirmation_tag(suite, secrets.confirmation_key, confirmed)
    ac = evolve(ac, auth=FramedContentAuthData(ac.auth.signature, tag))
    message = MLSMessage(WireFormat.PUBLIC_MESSAGE, protect_public(suite, ac, context, None))
    epoch = EpochState(
        context=new_context, tree=tree, private=result.private, secrets=secrets,
        interim=interim_transcript_hash(suite, confirmed, tag),
        secret_tree=SecretTree(suite, secrets.encryption_secret, tree.n_leaves),
        confirmation_tag=tag,
    )  # fmt: skip
    return epoch, message.to_bytes()


class ExternalJoins:
    """The external-commit part of :class:`~sealwire_mls.group.Group` (a mixin: it
    uses the group's epoch state and helpers)."""

    __slots__ = ()

    if TYPE_CHECKING:
        _epoch: EpochState
        _suite: CipherSuite
        _sig_priv: bytes

        def __init__(
            self,
            suite: CipherSuite,
            epoch: EpochState,
            signature_priv: bytes,
            psks: Mapping[bytes, bytes],
        ) -> None: ...
        @property
        def leaf_index(self) -> int: ...
        def _check_active(self) -> None: ...
        def _mark_removed(self) -> None: ...
        def _apply(
            self, tree: RatchetTree, proposals: Sequence[tuple[Sender, Proposal]], committer: int
        ) -> Applied: ...
        def _provisional(self, extensions: tuple[Any, ...]) -> Callable[[bytes], bytes]: ...
        def _next_epoch(
            self,
            ac: AuthenticatedContent,
            tree: RatchetTree,
            private: TreeKEMPrivate,
            commit_secret: bytes,
            applied: Applied,
            *,
            init_secret: bytes | None = None,
        ) -> tuple[EpochState, bytes]: ...
        def _switch(self, new: EpochState) -> None: ...

    @classmethod
    def join_external(
        cls,
        group_info: bytes,
        leaf: LeafNode,
        *,
        signature_priv: bytes,
        random: Random,
        resync: int | None = None,
    ) -> tuple[Self, bytes]:
        """Join by external commit from a GroupInfo (§12.4.3.2): ``(group, commit)``.

        The returned group is in the new epoch; it is ours only once the delivery
        service accepts ``commit`` (otherwise drop it and try again).
        """
        epoch, commit = build_external_commit(
            group_info, leaf, signature_priv=signature_priv, random=random, resync=resync
        )
        return cls(cipher_suite(epoch.context.cipher_suite), epoch, signature_priv, {}), commit

    def group_info(self) -> bytes:
        """A signed GroupInfo (an MLSMessage) with the ratchet tree and ``external_pub``,
        from which an outsider can join by external commit (§12.4.3.2)."""
        self._check_active()
        e, suite = self._epoch, self._suite
        extensions = (
            e.tree.to_extension(),
            ExternalPub(e.secrets.external_pub(suite)).to_extension(),
        )
        info = GroupInfo(
            group_context=e.context, extensions=extensions,
            confirmation_tag=e.confirmation_tag, signer=self.leaf_index,
        ).sign(suite, self._sig_priv)  # fmt: skip
        return MLSMessage(WireFormat.GROUP_INFO, info).to_bytes()

    def _process_external_commit(self, ac: AuthenticatedContent) -> CommitApplied:
        """An outsider joins by external commit (§12.4.3.2); see :mod:`sealwire_mls.external`."""
        suite, e, commit = self._suite, self._epoch, ac.content.content
        external_init, rest = check_external_commit(commit)
        assert commit.path is not None  # checked above
        init_secret = external_init_receive(
            suite, e.secrets.external_priv(suite), external_init.kem_output
        )
        tree = e.tree.copy()
        applied = self._apply(tree, [(ac.content.sender, p) for p in rest], committer=-1)
        check_resync(e.tree, applied.removed, commit.path.leaf_node)
        if self.leaf_index in applied.removed:
            self._mark_removed()
            return CommitApplied(committer=-1, epoch=e.context.epoch + 1, added=(),
                                 removed=applied.removed, removed_me=True)  # fmt: skip
        joiner = tree.add_leaf(commit.path.leaf_node)
        result = process_update_path(
            tree, drop_blank(e.private, tree), joiner, commit.path,
            group_id=e.context.group_id, group_context=self._provisional(applied.extensions),
        )  # fmt: skip
        new, _ = self._next_epoch(
            ac, tree, result.private, result.commit_secret, applied, init_secret=init_secret
        )
        self._switch(new)
        return CommitApplied(committer=joiner, epoch=new.context.epoch, added=(joiner,),
                             removed=applied.removed)  # fmt: skip
