"""Applying a commit's proposals to a tree copy (RFC 9420 §12.2, §12.3).

Used by :class:`~sealwire_mls.group.Group` for its own commits, the commits of
members and external commits alike, so every path runs the same checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from attrs import evolve

from sealwire_mls.crypto import CipherSuite
from sealwire_mls.errors import MLSProtocolError
from sealwire_mls.extensions import (
    Extension,
    ExtensionType,
    decode_external_senders,
    find_extension,
)
from sealwire_mls.framing import ContentType, FramedContent, Sender, SenderType
from sealwire_mls.group_state import Applied
from sealwire_mls.keypackage import (
    MAX_LIFETIME_SECONDS,
    GroupLeaves,
    LeafNodeSource,
    validate_key_package,
    validate_leaf_node,
)
from sealwire_mls.proposals import (
    Add,
    Commit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ReInit,
    Remove,
    Update,
)
from sealwire_mls.schedule import GroupContext
from sealwire_mls.tree import RatchetTree
from sealwire_mls.validation import check_proposal_list, required_capabilities

__all__ = ["apply_proposals", "provisional_context", "sender_signature_key"]

_SUPPORTED = (Add, Update, Remove, PreSharedKey, GroupContextExtensions, ReInit)
# Proposals an external sender may send (§12.1.8.1).
_EXTERNAL_PROPOSALS = (Add, Remove, PreSharedKey, ReInit, GroupContextExtensions)
# Proposals that do not require an UpdatePath in the Commit (§12.4).
_PATHLESS = (Add, PreSharedKey, ReInit)


def apply_proposals(
    suite: CipherSuite,
    context: GroupContext,
    tree: RatchetTree,
    proposals: Sequence[tuple[Sender, Proposal]],
    committer: int,
    *,
    now: int | None = None,
    max_lifetime: int | None = MAX_LIFETIME_SECONDS,
) -> Applied:
    """Apply proposals to ``tree`` in §12.3 order after the §12.2 checks
    (:mod:`sealwire_mls.validation`); ``now`` (UNIX seconds) checks lifetimes,
    of at most ``max_lifetime`` seconds (the group's cap; None: no cap).

    ``committer`` is the committer's leaf index (-1 for an external joiner).
    """
    by_type: dict[type, list[tuple[Sender, Proposal]]] = {}
    for sender, proposal in proposals:
        if not isinstance(proposal, _SUPPORTED):
            raise MLSProtocolError(f"unsupported proposal {type(proposal).__name__}")
        by_type.setdefault(type(proposal), []).append((sender, proposal))
    check_proposal_list(proposals, tree.leaves(), epoch=context.epoch)
    reinits = [p for _, p in by_type.get(ReInit, []) if isinstance(p, ReInit)]
    if reinits and len(proposals) != 1:
        raise MLSProtocolError("VAL-12.2: a ReInit must be the only proposal of its commit")
    extensions = context.extensions
    for _, gce in by_type.get(GroupContextExtensions, []):
        extensions = gce.extensions  # type: ignore[attr-defined]
    needed = required_capabilities(extensions)
    leaves = GroupLeaves(tree.leaves()) if Update in by_type or Add in by_type else None
    for sender, update in by_type.get(Update, []):
        if sender.sender_type is not SenderType.MEMBER or sender.index == committer:
            raise MLSProtocolError("VAL-12.2: the committer cannot commit its own Update")
        leaf = update.leaf_node  # type: ignore[attr-defined]
        validate_leaf_node(leaf, suite, source=LeafNodeSource.UPDATE,
                           group_id=context.group_id, leaf_index=sender.index)  # fmt: skip
        assert leaves is not None
        leaves.check(leaf, replacing=sender.index, required=needed)
        tree.update_leaf(sender.index, leaf)
        leaves.put(sender.index, leaf)
    removed = tuple(p.removed for _, p in by_type.get(Remove, []))  # type: ignore[attr-defined]
    if committer in removed:
        raise MLSProtocolError("VAL-12.2: the committer cannot remove itself")
    for index in removed:
        tree.remove_leaf(index)
        if leaves is not None:
            leaves.remove(index)
    kps = tuple(p.key_package for _, p in by_type.get(Add, []))  # type: ignore[attr-defined]
    added = []
    for kp in kps:
        validate_key_package(kp, suite, now=now, max_lifetime=max_lifetime)
        assert leaves is not None
        leaves.check(kp.leaf_node, required=needed)
        added.append(tree.add_leaf(kp.leaf_node))
        leaves.put(added[-1], kp.leaf_node)
    psks = tuple(p.psk for _, p in by_type.get(PreSharedKey, []))  # type: ignore[attr-defined]
    required = not proposals or any(not isinstance(p, _PATHLESS) for _, p in proposals)
    return Applied(
        added=tuple(added), key_packages=kps, removed=removed, extensions=tuple(extensions),
        psks=psks, path_required=required, reinit=reinits[0] if reinits else None,
    )  # fmt: skip


def provisional_context(old: GroupContext, extensions: tuple[Any, ...]) -> Callable[[bytes], bytes]:
    """The provisional GroupContext for a given new tree hash (§12.4.2), encoded."""

    def encode(tree_hash: bytes) -> bytes:
        return evolve(
            old, epoch=old.epoch + 1, tree_hash=tree_hash, extensions=extensions
        ).to_bytes()

    return encode


def sender_signature_key(
    tree: RatchetTree,
    sender: Sender,
    content: FramedContent | None = None,
    extensions: Sequence[Extension] = (),
) -> bytes:
    """The key that signed a message from ``sender`` (§6.1); MLSProtocolError if none.

    Members sign with their leaf key; a new member's commit with its UpdatePath
    leaf's (§12.4.3.2); a new member's Add proposal with its KeyPackage's
    (§12.1.8.2); an external sender with its ``external_senders`` entry, and
    only Add, Remove, PreSharedKey, ReInit or GroupContextExtensions (§12.1.8.1).
    """
    kind = sender.sender_type
    if kind is SenderType.MEMBER:
        leaf = tree.leaf(sender.index)
        if leaf is None:
            raise MLSProtocolError("message from a blank or unknown leaf")
        return leaf.signature_key
    if content is None:
        raise MLSProtocolError("only members send PrivateMessages")
    body = content.content
    if kind is SenderType.NEW_MEMBER_COMMIT:
        # An external joiner signs with the key of the leaf its UpdatePath brings.
        if not isinstance(body, Commit) or body.path is None:
            raise MLSProtocolError("a new member's commit needs an UpdatePath")
        return body.path.leaf_node.signature_key
    if content.content_type is not ContentType.PROPOSAL:
        raise MLSProtocolError("a non-member may only send proposals (§12.1.8)")
    if kind is SenderType.NEW_MEMBER_PROPOSAL:
        if not isinstance(body, Add):
            raise MLSProtocolError("a new member may only propose to add itself (§12.1.8.2)")
        return body.key_package.leaf_node.signature_key
    if not isinstance(body, _EXTERNAL_PROPOSALS):
        raise MLSProtocolError(f"an external sender cannot send {type(body).__name__}")
    ext = find_extension(extensions, ExtensionType.EXTERNAL_SENDERS)
    senders = decode_external_senders(ext) if ext is not None else ()
    if sender.index >= len(senders):
        raise MLSProtocolError("unknown external sender (§12.1.8.1)")
    return senders[sender.index].signature_key
