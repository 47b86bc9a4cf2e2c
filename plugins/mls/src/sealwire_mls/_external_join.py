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
from typing import TYPE_CHECKING

from sealwire.binding import GroupMembershipChanged
from sealwire.errors import PolicyError, SealwireError, StateError
from sealwire.identity import VerifiedCard, verify_card
from sealwire.relay import EpochConflictError
from sealwire_mls._members import Invite, Roster
from sealwire_mls.agents import agent_key_package
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSDecodeError
from sealwire_mls.group import ApplicationMessage, Group
from sealwire_mls.welcome import GroupInfo, MLSMessage, tree_from_group_info

if TYPE_CHECKING:
    from sealwire_mls._binding import MlsBinding

__all__ = ["ADMIT_AAD", "admit_external", "join_external", "note_admission"]

ADMIT_AAD = b"sealwire-mls/admit/1"
"""Authenticated data marking an application message as an admission note."""


async def admit_external(binding: MlsBinding, group_id: bytes, card: VerifiedCard) -> None:
    """Let the agent of ``card`` join ``group_id`` by external commit (see the module)."""
    agent_id = card.identity.agent_id
    async with binding._lock(group_id):
        roster = binding._roster(group_id)
        if not roster.external_joins:
            raise PolicyError("this group's policy does not allow external joins")
        note = roster.group.encrypt(
            json.dumps(dict(card.card)).encode(), os.urandom, authenticated_data=ADMIT_AAD
        )
        roster.expected[agent_id] = card.card
        binding._storage.save(group_id, roster)
        relay = binding._log_relay(group_id)
        seq = await relay.post_group_message(group_id, roster.group.epoch, note, admit=[agent_id])
        invite = Invite(
            group_id=group_id, seq=seq, relay=relay.url, group_info=roster.group.group_info(),
            external_joins=True,
        )  # fmt: skip
        await binding._send_invite(card, invite)


def note_admission(roster: Roster, message: ApplicationMessage) -> None:
    """Remember the card an admission note announces (ignored if joins are off)."""
    if not roster.external_joins:
        return
    try:
        card = verify_card(json.loads(message.data))
    except (ValueError, SealwireError):
        raise MLSDecodeError("malformed admission note", field="admission") from None
    roster.expected[card.identity.agent_id] = card.card


async def join_external(
    binding: MlsBinding, invite: Invite, relay: str | None
) -> tuple[GroupMembershipChanged, int]:
    """Join by external commit from the invitation's GroupInfo; the commit's log position
    (in the log at ``relay``, None for the home relay)."""
    info = MLSMessage.from_bytes(invite.group_info).body
    if not isinstance(info, GroupInfo):
        raise MLSDecodeError("the invitation holds no GroupInfo", field="invite.groupInfo")
    suite = cipher_suite(info.group_context.cipher_suite)
    me = binding._me
    old = next(
        (i for i, leaf in tree_from_group_info(suite, info).leaves()
         if leaf.credential.agent_id() == me),
        None,
    )  # fmt: skip
    template = agent_key_package(binding.context.identity, now=binding._now(), suite_id=suite.id)
    group, commit = Group.join_external(
        invite.group_info, template.key_package.leaf_node, signature_priv=binding._sig_priv,
        random=os.urandom, resync=old,
    )  # fmt: skip
    roster = Roster(group, {}, external_joins=invite.external_joins, relay=relay)
    own = group.member(group.leaf_index)
    assert own is not None  # our own leaf, just committed
    roster.admit(own, binding.context.card.card, binding.context.trust)
    await binding.fetch_cards(roster)
    try:
        port = binding._relay() if relay is None else binding._relay().signed_in_at(relay)
        seq = await port.append_commit(
            group.group_id, group.epoch - 1, commit, members=list(roster.agent_ids())
        )
    except EpochConflictError:
        raise StateError("the group moved on before our external commit: ask again") from None
    binding._storage.save(group.group_id, roster)
    binding._rosters[group.group_id] = roster
    event = GroupMembershipChanged(
        group_id=group.group_id, epoch=group.epoch, members=roster.agent_ids(), added=(me,)
    )
    return event, seq
