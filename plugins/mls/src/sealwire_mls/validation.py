"""The validity of a commit's proposal list (RFC 9420 §12.2) and of leaves joining the tree.

Each check raises :class:`MLSProtocolError` naming the rule it enforces:

* VAL-12.2-a: at most one GroupContextExtensions proposal;
* VAL-12.2-b: no leaf removed twice, and no leaf both updated and removed;
* VAL-12.2-c: at most one Update per leaf;
* VAL-12.2-d: no pre-shared key named twice;
* VAL-12.2-e: a GroupContextExtensions' required_capabilities must be
  supported by every member that stays;
* VAL-7.3 (through :func:`~sealwire_mls.keypackage.check_leaf_against_group`):
  an added or updated leaf supports the required capabilities and the
  members' credential types, and repeats no member's key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sealwire_mls.codec import decode_exact
from sealwire_mls.errors import MLSProtocolError
from sealwire_mls.extensions import (
    Extension,
    ExtensionType,
    RequiredCapabilities,
    find_extension,
)
from sealwire_mls.framing import Sender
from sealwire_mls.keypackage import LeafNode
from sealwire_mls.proposals import GroupContextExtensions, PreSharedKey, Proposal, Remove, Update

__all__ = ["check_proposal_list", "required_capabilities"]


def required_capabilities(extensions: Sequence[Extension]) -> RequiredCapabilities | None:
    """The ``required_capabilities`` GroupContext extension, if present (§11.1)."""
    ext = find_extension(extensions, ExtensionType.REQUIRED_CAPABILITIES)
    if ext is None:
        return None
    return decode_exact(ext.extension_data, RequiredCapabilities.decode)


def check_proposal_list(
    proposals: Sequence[tuple[Sender, Proposal]], members: Iterable[tuple[int, LeafNode]]
) -> None:
    """The §12.2 rules on the proposals one commit carries (see the module list)."""
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
            key = proposal.psk.to_bytes()
            if key in psks:
                raise MLSProtocolError("VAL-12.2-d: a pre-shared key is named twice")
            psks.add(key)
        elif isinstance(proposal, GroupContextExtensions):
            extension_changes += 1
            required = required_capabilities(proposal.extensions)
            if required is not None and not all(
                required.satisfied_by(leaf.capabilities)
                for index, leaf in members
                if index not in removed
            ):
                raise MLSProtocolError("VAL-12.2-e: a member lacks a new required capability")
    if extension_changes > 1:
        raise MLSProtocolError("VAL-12.2-a: more than one GroupContextExtensions")
    if removed & updated:
        raise MLSProtocolError("VAL-12.2-b: a leaf is both updated and removed")
