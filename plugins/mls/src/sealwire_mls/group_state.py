"""The values a :class:`~sealwire_mls.group.Group` is made of and the events it reports.

Internal to the engine except the three events, which :mod:`sealwire_mls.group`
re-exports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from attrs import evolve, field, frozen

from sealwire_mls import tree_math as tm
from sealwire_mls.crypto import CipherSuite, cipher_suite
from sealwire_mls.errors import MLSProtocolError
from sealwire_mls.framing import AuthenticatedContent, Sender, WireFormat
from sealwire_mls.keypackage import KeyPackage
from sealwire_mls.proposals import Proposal, ReInit
from sealwire_mls.psk import PreSharedKeyID, PSKType, psk_secret
from sealwire_mls.schedule import (
    EpochSecrets,
    GroupContext,
    joiner_secret,
    key_schedule,
    welcome_secret,
)
from sealwire_mls.secret_tree import SecretTree
from sealwire_mls.transcript import (
    confirmation_tag,
    confirmed_transcript_hash,
    interim_transcript_hash,
    verify_confirmation_tag,
)
from sealwire_mls.tree import RatchetTree
from sealwire_mls.treekem import TreeKEMPrivate
from sealwire_mls.validation import required_capabilities
from sealwire_mls.welcome import (
    GroupInfo,
    GroupSecrets,
    MLSMessage,
    Welcome,
    joiner_private_keys,
    verified_tree,
)

__all__ = [
    "ApplicationMessage",
    "Applied",
    "CommitApplied",
    "EpochState",
    "OwnMessage",
    "ProposalReceived",
    "build_welcome",
    "drop_blank",
    "epoch_from_welcome",
    "next_epoch",
    "psk_secret_for",
]


@frozen(kw_only=True)
class ApplicationMessage:
    """Application data from ``sender`` (a leaf index), with its authenticated data."""

    sender: int
    data: bytes
    authenticated_data: bytes


@frozen
class OwnMessage:
    """A message we sent came back (a delivery service echo); nothing changed.

    ``kind`` is ``"application"``, ``"proposal"`` or ``"commit"``.
    """

    kind: str


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


def next_epoch(
    suite: CipherSuite,
    old: EpochState,
    ac: AuthenticatedContent,
    tree: RatchetTree,
    private: TreeKEMPrivate,
    commit_secret: bytes,
    extensions: tuple[Any, ...],
    *,
    psk: bytes | None,
    init_secret: bytes | None = None,
) -> tuple[EpochState, bytes]:
    """The epoch after a signed commit (§8, §12.4.2) and its confirmation tag.

    Verifies the commit's confirmation tag if it has one (a received commit) or
    computes it (our own). ``init_secret`` replaces the previous epoch's for an
    external commit (§8.3).
    """
    confirmed = confirmed_transcript_hash(suite, old.interim, ac)
    context = evolve(
        old.context, epoch=old.context.epoch + 1, tree_hash=tree.tree_hash(),
        confirmed_transcript_hash=confirmed, extensions=extensions,
    )  # fmt: skip
    encoded = context.to_bytes()
    previous = init_secret if init_secret is not None else old.secrets.init_secret
    secrets = key_schedule(
        suite, joiner_secret(suite, previous, commit_secret, encoded), psk, encoded
    )
    tag = ac.auth.confirmation_tag
    if tag is None:
        tag = confirmation_tag(suite, secrets.confirmation_key, confirmed)
    else:
        verify_confirmation_tag(suite, secrets.confirmation_key, confirmed, tag)
    epoch = EpochState(
        context=context, tree=tree, private=private, secrets=secrets,
        interim=interim_transcript_hash(suite, confirmed, tag),
        secret_tree=SecretTree(suite, secrets.encryption_secret, tree.n_leaves),
        confirmation_tag=tag,
    )  # fmt: skip
    return epoch, tag


def epoch_from_welcome(
    welcome: Welcome,
    key_package: KeyPackage,
    *,
    init_priv: bytes,
    encryption_priv: bytes,
    ratchet_tree: RatchetTree | None,
    external_psks: Mapping[bytes, bytes],
    resumption_psks: Mapping[tuple[bytes, int], bytes],
) -> tuple[CipherSuite, EpochState]:
    """The joiner's side of §12.4.3.1: decrypt, verify, rebuild the epoch.

    Also checks that our leaf supports the group's required capabilities (§11.1).
    """
    if not isinstance(welcome, Welcome):
        raise MLSProtocolError("not a Welcome")
    suite = cipher_suite(key_package.cipher_suite)
    secrets = welcome.group_secrets(suite, key_package.ref(suite), init_priv)
    psk = psk_secret_for(suite, secrets.psks, external_psks, resumption_psks)
    info = welcome.group_info(suite, welcome_secret(suite, secrets.joiner_secret, psk))
    context = info.group_context
    if context.cipher_suite != suite.id:
        raise MLSProtocolError("GroupInfo cipher suite differs from the KeyPackage's")
    required = required_capabilities(context.extensions)
    if required is not None and not required.satisfied_by(key_package.leaf_node.capabilities):
        raise MLSProtocolError("VAL-11.1: we lack a capability the group requires")
    tree = verified_tree(suite, info, ratchet_tree)
    me = next((i for i, leaf in tree.leaves() if leaf == key_package.leaf_node), None)
    if me is None:
        raise MLSProtocolError("our leaf is not in the tree")
    private = joiner_private_keys(suite, tree, me, info.signer, secrets, encryption_priv)
    epoch_secrets = key_schedule(suite, secrets.joiner_secret, psk, context.to_bytes())
    cth = context.confirmed_transcript_hash
    verify_confirmation_tag(suite, epoch_secrets.confirmation_key, cth, info.confirmation_tag)
    epoch = EpochState(
        context=context, tree=tree, private=private, secrets=epoch_secrets,
        interim=interim_transcript_hash(suite, cth, info.confirmation_tag),
        secret_tree=SecretTree(suite, epoch_secrets.encryption_secret, tree.n_leaves),
        confirmation_tag=info.confirmation_tag,
    )  # fmt: skip
    return suite, epoch
