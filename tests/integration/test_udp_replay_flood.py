"""A replayed datagram handshake holds no server slot (issue 18 item 1).

A genuine client's datagrams (its hellos and its first Noise message) are
captured, then replayed from 1,100 source ports, more than the 1,024 remote
addresses a UDP listener serves at once. The hello's cookie is bound to the
genuine client's address, so every replay gets a cookie answer and its
endpoint is closed at once; a genuine client is served all along.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from waiting import until

from sealwire.agent import Agent, TaskContext
from sealwire.identity import Identity
from sealwire.model import Task, TaskState
from sealwire.store import MemoryStore
from sealwire.transport import UDP_MAX_PEERS
from sealwire.transport._udp import UdpEndpoint

FORGED_ADDRESSES = UDP_MAX_PEERS + 76


async def _answer(task: TaskContext) -> None:
    await task.complete("here")


async def _call(client: Agent, server: Agent) -> Task:
    peer = client.peer(server.card.card)
    task = await asyncio.wait_for(client.send_message(peer, "there?"), 30)
    assert isinstance(task, Task) and task.status.state is TaskState.COMPLETED
    return task


def _replay(datagrams: list[bytes], port: int) -> None:
    """Each captured datagram, in order, from FORGED_ADDRESSES fresh source ports."""
    for _ in range(FORGED_ADDRESSES):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forger:
            for datagram in datagrams:
                forger.sendto(datagram, ("127.0.0.1", port))


async def test_replayed_hellos_from_many_addresses_leave_genuine_clients_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = Agent(Identity.generate(), MemoryStore(), name="server", listen=["udp://127.0.0.1:0"])
    server.on_message(_answer)
    async with server, Agent(Identity.generate(), MemoryStore(), name="first") as first:
        (listener,) = server._listeners
        port = int(listener.url.rsplit(":", 1)[1])
        sent: list[bytes] = []
        real_send = UdpEndpoint.send

        async def capture(self: UdpEndpoint, datagram: bytes) -> None:
            if self._remote is None:  # a client's connected endpoint
                sent.append(bytes(datagram))
            await real_send(self, datagram)

        monkeypatch.setattr(UdpEndpoint, "send", capture)
        await _call(first, server)
        monkeypatch.setattr(UdpEndpoint, "send", real_send)
        assert any(b'"cookie"' in d for d in sent)  # the hello came back with its cookie

        await asyncio.to_thread(_replay, sent[:4], port)
        async with Agent(Identity.generate(), MemoryStore(), name="later") as later:
            await _call(later, server)
        # What the replays opened is closed again: only sessions that completed stay.
        await until(lambda: len(listener._peers) <= 2, "the replays' endpoints closed", 30)
