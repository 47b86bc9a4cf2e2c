"""Agents over the relay stream: a delivery whose ack is lost with its connection comes
again, and the application still sees every message exactly once.

The agents' relay clients carry sends, acks and deliveries over ``WS /v1/stream``
(the mailbox router subscribes). Bob's client loses the connection just before
its first acknowledgements reach the relay, as a dropped WebSocket would: the relay
pushes the unacknowledged messages again on the new connection, the Signal binding
recognises each copy by its ratchet state (a duplicate), the router acknowledges
and drops it, and Bob's handler runs once per message.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

from ports import free_port
from waiting import until

from sealwire.agent import Agent, TaskContext
from sealwire.identity import Identity
from sealwire.model import TaskState
from sealwire.relay import Delivery, RelayClient
from sealwire.store import MemoryStore
from sealwire_relay import RelayConfig, running_relay

TIMEOUT = 30
LOST_ACKS = 2


class LosesItsFirstAcks(RelayClient):
    """A relay client whose stream drops just before each of its first acks."""

    lost = 0
    delivered: Counter[str]

    def subscribe(self) -> AsyncGenerator[Delivery, None]:
        self.delivered = Counter()
        return self._counted(super().subscribe())

    async def _counted(
        self, inner: AsyncGenerator[Delivery, None]
    ) -> AsyncGenerator[Delivery, None]:
        async for delivery in inner:
            self.delivered[delivery.message_id] += 1
            yield delivery

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        stream = self._mailbox_stream
        if self.lost < LOST_ACKS and stream is not None and stream._ws is not None:
            self.lost += 1
            await stream._ws.close()  # the connection goes, this ack with it
            return
        await super().ack(deliveries)


async def test_a_redelivered_message_reaches_the_application_once(tmp_path: Path) -> None:
    config = RelayConfig(
        port=free_port(), identity_path=tmp_path / "relay.key", backend="sqlite",
        backend_options={"path": str(tmp_path / "relay.sqlite3")},
    )  # fmt: skip
    handled: Counter[str] = Counter()

    async def handler(task: TaskContext) -> None:
        text = task.message.parts[0].text or ""
        handled[text] += 1
        await task.complete(f"done: {text}")

    async with running_relay(config) as relay:
        alice_id, bob_id = Identity.generate(), Identity.generate()
        alice_relay = RelayClient(relay.url, alice_id)
        bob_relay = LosesItsFirstAcks(relay.url, bob_id)
        alice = Agent(alice_id, MemoryStore(), name="alice", relay=alice_relay)  # fmt: skip
        bob = Agent(bob_id, MemoryStore(), name="bob", relay=bob_relay)  # fmt: skip
        bob.on_message(handler)
        try:
            async with alice, bob:
                await until(lambda: bob_relay.streaming, "Bob's stream")
                peer = alice.peer(bob.card)
                assert alice.explain(peer).binding == "signal"
                texts = [f"message {i}" for i in range(4)]
                for text in texts:
                    task = await asyncio.wait_for(alice.send_message(peer, text), TIMEOUT)
                    assert task.status.state is TaskState.COMPLETED
                    assert task.status.message.parts[0].text == f"done: {text}"
                assert bob_relay.lost == LOST_ACKS
                # The relay did deliver copies again, and the application saw none of them.
                assert sum(bob_relay.delivered.values()) >= len(texts) + LOST_ACKS
                assert handled == Counter(texts)
                assert alice_relay.streaming  # Alice's sends went over her stream
        finally:
            await alice_relay.close()
            await bob_relay.close()
