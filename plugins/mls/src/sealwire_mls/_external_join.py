"""Joining an agent group by external commit (RFC 9420 §12.4.3.2), when its policy allows.

A group's policy (``external_joins``, chosen by its creator from the binding
option of the same name, and carried to every joiner in its invitation) says
whether members may let agents in by external commit. Admitting one is a
member's act, in three steps:

1. the member sends the group an *admission note*: an application message
   whose authenticated data is :data:`ADMIT_AAD` and whose content is the
   joiner's signed card, so every member will know whom to expect;
2. the same append admits the joiner on the relay (it may read the log and
   append one commit until the next commit);
3. it puts an invitation with a fresh GroupInfo in the joiner's mailbox (the
   joiner fetches the members' cards from the relay's card directory).

The joiner builds its external commit from the GroupInfo (removing its own
old leaf if it had one: a resync after losing its state) and offers it to the
relay for the GroupInfo's epoch. Members refuse an external commit in a group
whose policy forbids them, and tie the joiner's leaf to the expected card.
"""

from __future__ import annotations

import json
import os

from sealwire.errors import PolicyError, SealwireError
from sealwire.identity import Identity, VerifiedCard, verify_card
from sealwire_mls._members import Invite, Roster
from sealwire_mls.agents import agent_key_package
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSDecodeError
from sealwire_mls.group import ApplicationMessage, Group
from sealwire_mls.welcome import GroupInfo, MLSMessage, tree_from_group_info

__all__ = ["ADMIT_AAD", "admission_note", "external_commit", "note_admission"]

ADMIT_AAD = b"sealwire-mls/admit/1"
"""Authenticated data marking an application message as an admission note."""


def admission_note(roster: Roster, card: VerifiedCard) -> bytes:
    """The admission note letting the agent of ``card`` in (step 1 of the module), sealed
    for the group; the roster now expects that agent. PolicyError if the group's policy
    forbids external joins."""
    if not roster.external_joins:
        raise PolicyError("this group's policy does not allow external joins")
    note = roster.group.encrypt(
        json.dumps(dict(card.card)).encode(), os.urandom, authenticated_data=ADMIT_AAD
    )
    roster.expected[card.identity.agent_id] = card.card
    return note


def note_admission(roster: Roster, message: ApplicationMessage) -> None:
    """Remember the card an admission note announces (ignored if joins are off)."""
    if not roster.external_joins:
        return
    try:
        card = verify_card(json.loads(message.data))
    except (ValueError, RecursionError, SealwireError):
        raise MLSDecodeError("malformed admission note", field="admission") from None
    roster.expected[card.identity.agent_id] = card.card


def external_commit(
    invite: Invite, identity: Identity, signature_priv: bytes, now: int
) -> tuple[Group, bytes]:
    """The group joined from the invitation's GroupInfo, and the external commit to offer
    the log for the GroupInfo's epoch (it removes our own old leaf, if the group still
    has one: a resync after losing our state)."""
    info = MLSMessage.from_bytes(invite.group_info).body
    if not isinstance(info, GroupInfo):
        raise MLSDecodeError("the invitation holds no GroupInfo", field="invite.groupInfo")
    suite = cipher_suite(info.group_context.cipher_suite)
    old = next(
        (i for i, leaf in tree_from_group_info(suite, info).leaves()
         if leaf.credential.agent_id() == identity.agent_id),
        None,
    )  # fmt: skip
    template = agent_key_package(identity, now=now, suite_id=suite.id)
    return Group.join_external(
        invite.group_info, template.key_package.leaf_node, signature_priv=signature_priv,
        random=os.urandom, resync=old,
    )  # fmt: skip
