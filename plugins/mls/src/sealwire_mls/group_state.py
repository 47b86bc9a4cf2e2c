"""The values a :class:`~sealwire_mls.group.Group` is made of and the events it reports.

Internal to the engine except the three events, which :mod:`sealwire_mls.group`
re-exports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from attrs import field, frozen

from sealwire_mls import tree_math as tm
from sealwire_mls.crypto import CipherSuite
from sealwire_mls.errors import MLSProtocolError
from sealwire_mls.framing import Sender, WireFormat
from sealwire_mls.keypackage import KeyPackage
from sealwire_mls.proposals import Proposal, ReInit
from sealwire_mls.psk import PreSharedKeyID, PSKType, psk_secret
from sealwire_mls.schedule import EpochSecrets, GroupContext
from sealwire_mls.secret_tree import SecretTree
from sealwire_mls.tree import RatchetTree
from sealwire_mls.treekem import TreeKEMPrivate
from sealwire_mls.welcome import GroupInfo, GroupSecrets, MLSMessage, Welcome

__all__ = [
    "ApplicationMessage",
    "Applied",
    "CommitApplied",
    "EpochState",
    "ProposalReceived",
    "build_welcome",
    "drop_blank",
    "psk_secret_for",
]


@frozen(kw_only=True)
class ApplicationMessage:
    """Application data from ``sender`` (a leaf index), with its authenticated data."""

    sender: int
    data: bytes
    authenticated_data: bytes


@frozen(kw_only=True)
class ProposalReceived:
    """A proposal stored for a later commit; ``ref`` is its ProposalRef (§5.2)."""

    sender: Sender
    proposal: Proposal
    ref: bytes


@frozen(kw_only=True)
class CommitApplied:
    """A commit took the group to ``epoch``; ``removed_me`` ends our membership."""

    committer: int
    epoch: int
    added: tuple[int, ...]
    removed: tuple[int, ...]
    removed_me: bool = False
    reinit: ReInit | None = None
    """Set when the commit reinitialized the group (§11.2): the group is closed and
    its members move to a new group with these parameters."""


@frozen(kw_only=True)
class EpochState:
    """Everything one member holds for one epoch (immutable: stage on copies)."""

    context: GroupContext
    tree: RatchetTree  # never mutated once in an _Epoch: stage on .copy()
    private: TreeKEMPrivate
    secrets: EpochSecrets = field(repr=False)
    interim: bytes
    secret_tree: SecretTree
    confirmation_tag: bytes


@frozen(kw_only=True)
class Applied:
    """What a commit's proposals did to the tree (§12.3)."""

    added: tuple[int, ...]
    key_packages: tuple[KeyPackage, ...]
    removed: tuple[int, ...]
    extensions: tuple[Any, ...]
    psks: tuple[PreSharedKeyID, ...]
    path_required: bool
    reinit: ReInit | None = None


def psk_secret_for(
    suite: CipherSuite,
    ids: Sequence[PreSharedKeyID],
    external: Mapping[bytes, bytes],
    resumption: Mapping[tuple[bytes, int], bytes],
) -> bytes | None:
    """§8.4 over the PSKs we hold (None when there are none); MLSProtocolError if one is unknown."""
    pairs = []
    for psk_id in ids:
        psk_id.check_nonce(suite)
        if psk_id.psktype is PSKType.EXTERNAL:
            value = external.get(psk_id.psk_id)
        else:
            value = resumption.get((psk_id.psk_group_id, psk_id.psk_epoch))
        if value is None:
            raise MLSProtocolError("unknown pre-shared key")
        pairs.append((psk_id, value))
    return psk_secret(suite, pairs) if pairs else None


def drop_blank(private: TreeKEMPrivate, tree: RatchetTree) -> TreeKEMPrivate:
    """Forget private keys of nodes the proposals blanked or truncated away."""
    gone = {x for x in private.keys if x >= tree.width or tree.node(x) is None}
    return private.with_keys(gone, {}) if gone else private


def build_welcome(
    suite: CipherSuite,
    me: int,
    signature_priv: bytes,
    new: EpochState,
    tag: bytes,
    applied: Applied,
    first_secret: bytes | None,
) -> bytes:
    """The Welcome (an MLSMessage) for the members a commit added (§12.4.3).

    Each joiner gets the path secret of the lowest node of the committer's
    filtered direct path above its leaf (none for a path-less commit), and the
    commit's PSK ids.
    """
    tree = new.tree
    info = GroupInfo(
        group_context=new.context, extensions=(tree.to_extension(),),
        confirmation_tag=tag, signer=me,
    ).sign(suite, signature_priv)  # fmt: skip
    fdp = [p for p, _ in tree.filtered_direct_path(me)]
    recipients = []
    for index, kp in zip(applied.added, applied.key_packages, strict=True):
        secret = first_secret  # None for a commit without an UpdatePath
        if secret is not None:
            for _ in range(fdp.index(tm.common_ancestor(2 * me, 2 * index))):
                secret = suite.derive_secret(secret, b"path")
        secrets = GroupSecrets(
            joiner_secret=new.secrets.joiner_secret, path_secret=secret, psks=applied.psks
        )
        recipients.append((kp.ref(suite), kp.init_key, secrets))
    welcome = Welcome.create(suite, new.secrets.welcome_secret, info, recipients)
    return MLSMessage(WireFormat.WELCOME, welcome).to_bytes()
