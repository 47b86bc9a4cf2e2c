"""The validity of a commit's proposal list (RFC 9420 §12.2) and of leaves joining the tree.

Each check raises :class:`MLSProtocolError` naming the rule it enforces:

* VAL-12.2-a: at most one GroupContextExtensions proposal;
* VAL-12.2-b: no leaf removed twice, and no leaf both updated and removed;
* VAL-12.2-c: at most one Update per leaf;
* VAL-12.2-d: no pre-shared key named twice;
* VAL-12.2-e: a GroupContextExtensions' required_capabilities must be
  supported by every member that stays;
* VAL-12.2-f: every extension of a GroupContextExtensions is supported by
  every member that stays (§12.1.7);
* VAL-12.1.4: a resumption PSK of usage ``branch`` is refused (no branching
  here), one of usage ``reinit`` only in a new group's first commit (§11.2);
* VAL-12.1.5: a ReInit names a version at least the group's (mls10);
* VAL-7.3 (through :class:`~sealwire_mls.keypackage.GroupLeaves`):
  an added or updated leaf supports the required capabilities and the
  members' credential types, and repeats no member's key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sealwire_mls.codec import decode_exact
from sealwire_mls.errors import MLSProtocolError
from sealwire_mls.extensions import (
    PROTOCOL_VERSION_MLS10,
    Extension,
    ExtensionType,
    RequiredCapabilities,
    find_extension,
)
from sealwire_mls.framing import Sender
from sealwire_mls.keypackage import LeafNode
from sealwire_mls.proposals import (
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ReInit,
    Remove,
    Update,
)
from sealwire_mls.psk import PreSharedKeyID, PSKType, ResumptionPSKUsage

__all__ = ["check_proposal_list", "required_capabilities"]


def required_capabilities(extensions: Sequence[Extension]) -> RequiredCapabilities | None:
    """The ``required_capabilities`` GroupContext extension, if present (§11.1)."""
    ext = find_extension(extensions, ExtensionType.REQUIRED_CAPABILITIES)
    if ext is None:
        return None
    return decode_exact(ext.extension_data, RequiredCapabilities.decode)


def check_proposal_list(
    proposals: Sequence[tuple[Sender, Proposal]],
    members: Iterable[tuple[int, LeafNode]],
    *,
    epoch: int = 0,
) -> None:
    """The §12.2 rules on the proposals one commit carries (see the module list);
    ``epoch`` is the epoch the commit is sent in. ``members`` is only read when
    a GroupContextExtensions proposal needs it (it is O(N))."""
    listed: list[tuple[int, LeafNode]] | None = None
    removes = [p.removed for _, p in proposals if isinstance(p, Remove)]
    removed = set(removes)
    if len(removed) != len(removes):
        raise MLSProtocolError("VAL-12.2-b: a leaf is removed twice")
    updated: set[int] = set()
    psks: set[bytes] = set()
    extension_changes = 0
    for sender, proposal in proposals:
        if isinstance(proposal, Update):
            if sender.index in updated:
                raise MLSProtocolError("VAL-12.2-c: two Updates for one leaf")
            updated.add(sender.index)
        elif isinstance(proposal, PreSharedKey):
            _check_psk_usage(proposal.psk, epoch)
            key = proposal.psk.to_bytes()
            if key in psks:
                raise MLSProtocolError("VAL-12.2-d: a pre-shared key is named twice")
            psks.add(key)
        elif isinstance(proposal, ReInit) and proposal.version < PROTOCOL_VERSION_MLS10:
            raise MLSProtocolError("VAL-12.1.5: a ReInit to an older protocol version")
        elif isinstance(proposal, GroupContextExtensions):
            extension_changes += 1
            listed = list(members) if listed is None else listed
            staying = [leaf for index, leaf in listed if index not in removed]
            if not all(
                leaf.capabilities.supports_extension(ext.extension_type)
                for ext in proposal.extensions
                for leaf in staying
            ):
                raise MLSProtocolError("VAL-12.2-f: a member does not support a new extension")
            required = required_capabilities(proposal.extensions)
            if required is not None and not all(
                required.satisfied_by(leaf.capabilities) for leaf in staying
            ):
                raise MLSProtocolError("VAL-12.2-e: a member lacks a new required capability")
    if extension_changes > 1:
        raise MLSProtocolError("VAL-12.2-a: more than one GroupContextExtensions")
    if removed & updated:
        raise MLSProtocolError("VAL-12.2-b: a leaf is both updated and removed")


def _check_psk_usage(psk: PreSharedKeyID, epoch: int) -> None:
    if psk.psktype is not PSKType.RESUMPTION:
        return
    if psk.usage is ResumptionPSKUsage.BRANCH:
        raise MLSProtocolError("VAL-12.1.4: a branch PSK outside a subgroup branching")
    if psk.usage is ResumptionPSKUsage.REINIT and epoch != 0:
        raise MLSProtocolError("VAL-12.1.4: a reinit PSK outside a reinitialized group's start")
