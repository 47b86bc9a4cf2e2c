"""Delivering invitations: an :class:`~sealwire_mls._members.Invite` put in the
joiner's relay mailbox, retried while the relay fails passingly."""

from __future__ import annotations

import asyncio
import uuid

from sealwire.identity import VerifiedCard
from sealwire.relay import LimitExceeded, RelayPort, RelayUnavailable, wrap
from sealwire_mls._members import Invite

__all__ = ["send_invite"]

INVITE_SEND_ATTEMPTS = 5
INVITE_RETRY_FIRST_SECONDS = 0.2
"""Tries (doubling from this delay, about 6 s in all) to put an invitation in a
joiner's mailbox: the commit adding it is already in, so a passing failure must not
leave it out."""


async def send_invite(relay: RelayPort, binding: str, card: VerifiedCard, invite: Invite) -> None:
    """Put ``invite`` in the card's mailbox (the address of its offer of ``binding``)
    through ``relay``, retried (one message id: idempotent) while the relay fails
    passingly."""
    offer = card.offer(binding)
    address = offer.url if offer is not None else card.identity.agent_id
    payload = wrap(binding, invite.to_bytes())
    message_id, delay = str(uuid.uuid4()), INVITE_RETRY_FIRST_SECONDS
    for attempt in range(1, INVITE_SEND_ATTEMPTS + 1):
        try:
            await relay.send(address, message_id, payload)
            return
        except (RelayUnavailable, LimitExceeded) as exc:
            if attempt == INVITE_SEND_ATTEMPTS:
                raise
            wait = delay
            if isinstance(exc, LimitExceeded) and exc.retry_after is not None:
                wait = max(wait, exc.retry_after)
            await asyncio.sleep(wait)
            delay *= 2
