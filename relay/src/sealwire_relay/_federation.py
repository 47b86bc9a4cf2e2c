"""Relay-to-relay forwarding: a message for an agent homed elsewhere.

The relay that accepts such a message stores it first in a per-peer outbox (a
mailbox named :func:`outbox_name`), answers the sender, and a
:class:`Forwarder` then delivers the outbox to the home relay over an
authenticated link: each relay authenticates to the other with its own
identity key (the forwarder also checks that the answering relay holds the
configured relay id's key). An outbox entry is removed only after the home
relay has stored it (or already had it: it deduplicates by sender and message
id, as for any send), so forwarding is at-least-once and never duplicates.
A message the home relay refuses for good is kept in a dead-letter mailbox
(:func:`dead_letter_name`) and logged, never dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sealwire.errors import DecodeError, SealwireError
from sealwire.identity import Identity
from sealwire.relay import RelayClient
from sealwire.relay.wire import Delivery, decode_body, get_str
from sealwire_relay._service import (
    MAX_FORWARD_BATCH,
    RelayService,
    dead_letter_name,
    outbox_name,
    wait_any,
)

__all__ = ["Forwarder"]

log = logging.getLogger("sealwire.relay.federation")

# Retry delays after a failed delivery: doubling from the first up to the last.
RETRY_FIRST_SECONDS = 0.05
RETRY_MAX_SECONDS = 2.0
# An idle forwarder looks at its outbox at least this often, so that entries
# stored by another process sharing the backend are forwarded too.
IDLE_POLL_SECONDS = 1.0
# Entries refused for good are kept up to this many per peer (then they stay in
# the outbox, retried, and logged: a full dead-letter box is an operator's problem).
MAX_DEAD_LETTERS = 100_000


class Forwarder:
    """Delivers the outbox of one peer relay, until cancelled."""

    def __init__(
        self,
        service: RelayService,
        identity: Identity,
        peer_id: str,
        peer_url: str,
        *,
        report: Callable[[str | None], None] = lambda error: None,
    ) -> None:
        """``report(error)`` is told when the outbox cannot be read (and None once it can)."""
        self.service = service
        self._report = report
        self.peer_id = peer_id
        self.outbox = outbox_name(peer_id)
        self.client = RelayClient(peer_url, identity, relay_id=peer_id)

    async def run(self) -> None:
        try:
            with self.service.notifier.watching(self.outbox) as changed:
                await self._forward_until_cancelled(changed)
        finally:
            await self.client.close()

    async def _forward_until_cancelled(self, changed: asyncio.Event) -> None:
        delay = RETRY_FIRST_SECONDS
        while True:
            changed.clear()
            try:
                batch = await self.service.backend.fetch(self.outbox, MAX_FORWARD_BATCH)
            except SealwireError as exc:  # storage unreachable for now (a NATS outage)
                log.warning("outbox of %s unreadable (%s); retrying", self.peer_id, exc)
                self._report(f"outbox unreadable: {type(exc).__name__}")
                batch, complete = [], False
            else:
                self._report(None)
                if not batch:
                    await wait_any([changed], IDLE_POLL_SECONDS)
                    continue
                try:
                    complete = await self._forward(batch)
                except SealwireError as exc:
                    log.info("forwarding to %s failed (%s); retrying", self.peer_id, exc)
                    complete = False
            if complete:
                delay = RETRY_FIRST_SECONDS
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _forward(self, batch: list[Delivery]) -> bool:
        """Deliver one batch; True when every entry left the outbox."""
        items = [_item(d) for d in batch]
        results = await self.client.federation_deliver(items)
        if len(results) != len(batch):
            raise DecodeError("expected one result per item", field="results")
        done: list[tuple[str, str]] = []
        for delivery, result in zip(batch, results, strict=True):
            delivered = result in ("accepted", "duplicate")
            if delivered or (result == "refused" and await self._keep_refused(delivery)):
                done.append((delivery.sender, delivery.message_id))
        await self.service.backend.ack(self.outbox, done)
        return len(done) == len(batch)

    async def _keep_refused(self, delivery: Delivery) -> bool:
        log.warning(
            "relay %s refused message %s from %s; kept in %s",
            self.peer_id,
            delivery.message_id,
            delivery.sender,
            dead_letter_name(self.peer_id),
        )
        try:
            await self.service.backend.enqueue(
                dead_letter_name(self.peer_id), delivery, max_depth=MAX_DEAD_LETTERS
            )
        except SealwireError:
            return False
        return True


def _item(delivery: Delivery) -> dict[str, Any]:
    """The federation form of an outbox entry (see ``RelayService.send``)."""
    inner = decode_body(delivery.envelope)
    return {
        "recipient": get_str(inner, "recipient"),
        "message_id": get_str(inner, "message_id"),
        "sender": delivery.sender,
        "envelope": inner["envelope"] if isinstance(inner.get("envelope"), str) else "",
        "received_at_ms": int(delivery.received_at * 1000),
    }
