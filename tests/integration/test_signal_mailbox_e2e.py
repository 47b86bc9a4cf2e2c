"""Item 5: A2A tasks to an offline peer through a real relay, answered the same way.

Bob publishes his prekeys and goes offline; Alice sends him a task (sealed with
the signal binding into his relay mailbox); Bob comes back with the same store,
fetches, opens, acknowledges and answers into Alice's mailbox.
"""

from __future__ import annotations

import asyncio

import pytest
from ports import free_port

from sealwire.agent import Agent, TaskContext
from sealwire.identity import Identity
from sealwire.model import TaskState
from sealwire.relay import RelayClient
from sealwire.store import MemoryStore
from sealwire_relay import RelayConfig, running_relay

TIMEOUT = 20


async def _handler(task: TaskContext) -> None:
    text = task.message.parts[0].text or ""
    await task.complete(f"done: {text.upper()}")


def _agent(identity: Identity, store: MemoryStore, relay: RelayClient, name: str) -> Agent:
    agent = Agent(identity, store, name=name, relay=relay)
    agent.on_message(_handler)
    return agent


@pytest.mark.slow
async def test_task_to_an_offline_peer_and_back(tmp_path):
    config = RelayConfig(
        port=free_port(), identity_path=tmp_path / "relay.key", backend="sqlite",
        backend_options={"path": str(tmp_path / "relay.sqlite3")},
    )  # fmt: skip
    async with running_relay(config) as relay:
        bob_id, bob_store = Identity.generate(), MemoryStore()
        alice_id = Identity.generate()
        bob_relay = RelayClient(relay.url, bob_id)
        alice_relay = RelayClient(relay.url, alice_id)
        try:
            async with _agent(bob_id, bob_store, bob_relay, "bob") as bob:
                bob_card = bob.card  # prekeys published; then Bob goes offline
            async with _agent(alice_id, MemoryStore(), alice_relay, "alice") as alice:
                assert alice.explain(alice.peer(bob_card)).binding == "signal"
                call = asyncio.create_task(alice.send_message(alice.peer(bob_card), "hello"))
                await asyncio.sleep(0.3)
                assert not call.done()  # Bob is offline: the task waits in his mailbox
                async with _agent(bob_id, bob_store, bob_relay, "bob"):
                    task = await asyncio.wait_for(call, TIMEOUT)
                    assert task.status.state is TaskState.COMPLETED
                    assert task.status.message.parts[0].text == "done: HELLO"
                    second = await asyncio.wait_for(
                        alice.send_message(alice.peer(bob_card), "again"), TIMEOUT
                    )
                    assert second.status.message.parts[0].text == "done: AGAIN"
        finally:
            await bob_relay.close()
            await alice_relay.close()


class _GatedRelayClient(RelayClient):
    """A relay client whose next ``gate`` sends wait until that many are under way at
    once (or ``GATE_SECONDS`` passed): ``together`` says whether they were."""

    GATE_SECONDS = 5.0

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.gate = 0
        self.together: bool | None = None
        self._inside = 0
        self._full = asyncio.Event()

    async def send(self, recipient: str, message_id: str, envelope: bytes) -> None:
        if self.gate:
            self._inside += 1
            if self._inside == self.gate:
                self._full.set()
            try:
                await asyncio.wait_for(self._full.wait(), self.GATE_SECONDS)
                self.together = True
            except TimeoutError:
                self.together = False
            finally:
                self._inside -= 1
                if not self._inside:
                    self.gate = 0
        await super().send(recipient, message_id, envelope)


@pytest.mark.slow
async def test_calls_in_flight_to_one_peer_reach_the_relay_together(tmp_path):
    """Two calls at once over one mailbox connection, the first to the peer, are both
    handed to the relay before either is committed (they share its frames and
    commits), rather than the second waiting for the first's commit."""
    config = RelayConfig(
        port=free_port(), identity_path=tmp_path / "relay.key", backend="sqlite",
        backend_options={"path": str(tmp_path / "relay.sqlite3")},
    )  # fmt: skip
    async with running_relay(config) as relay:
        bob_id, alice_id = Identity.generate(), Identity.generate()
        bob_relay = RelayClient(relay.url, bob_id)
        alice_relay = _GatedRelayClient(relay.url, alice_id)
        try:
            async with (
                _agent(bob_id, MemoryStore(), bob_relay, "bob") as bob,
                _agent(alice_id, MemoryStore(), alice_relay, "alice") as alice,
            ):
                peer = alice.peer(bob.card)
                alice_relay.gate = 2  # the first two calls: both start the session
                tasks = await asyncio.wait_for(
                    asyncio.gather(alice.send_message(peer, "a"), alice.send_message(peer, "b")),
                    TIMEOUT,
                )
                assert [t.status.message.parts[0].text for t in tasks] == ["done: A", "done: B"]
                assert alice_relay.together is True
        finally:
            await bob_relay.close()
            await alice_relay.close()
