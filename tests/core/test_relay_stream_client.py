"""The client's end of the relay stream, against a scripted socket: when a subscription
is closed and another opened while the writer is busy, the relay still hears "unsub"
then "sub", and so pushes again what the closed subscription dropped."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from waiting import until

from sealwire.identity import Identity
from sealwire.relay._stream import MailboxStream
from sealwire.relay.wire import stream_frame

SENDER = Identity.generate().agent_id


class ScriptedSocket:
    """What the stream uses of a WebSocket; ``gate`` holds every send while cleared."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.sending = False
        self.gate = asyncio.Event()
        self.gate.set()
        self.incoming: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.incoming.put_nowait('{"t":"ready","max_batch":256}')

    async def __aenter__(self) -> ScriptedSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def recv(self) -> str | bytes:
        return await self.incoming.get()

    def __aiter__(self) -> ScriptedSocket:
        return self

    async def __anext__(self) -> str | bytes:
        return await self.incoming.get()

    async def send(self, frame: str | bytes) -> None:
        self.sending = True
        await self.gate.wait()
        self.sending = False
        self.sent.append(frame if isinstance(frame, str) else "<binary>")

    def deliver(self, *message_ids: str) -> None:
        items = [{"message_id": m, "sender": SENDER, "received_at": 1.0} for m in message_ids]
        header = '{"t":"deliver","items":' + json.dumps(items)
        self.incoming.put_nowait(stream_frame(header, [m.encode() for m in message_ids]))


async def test_a_subscription_reopened_while_the_writer_is_busy_is_told_to_the_relay() -> None:
    socket = ScriptedSocket()

    async def opener(stale: str | None) -> tuple[Any, str]:
        return socket, "token"

    stream = MailboxStream(opener)
    stream.start()
    try:
        assert await stream.wait_connected(5)
        first = stream.deliveries()
        taken = asyncio.ensure_future(anext(first))
        await until(lambda: socket.sent == ['{"t":"sub"}'], "the first sub")
        socket.deliver("m0", "m1")
        delivery = await asyncio.wait_for(taken, 5)
        assert delivery.message_id == "m0"

        socket.gate.clear()  # the writer is held in the middle of sending the ack
        stream.ack([(delivery.sender, delivery.message_id)])
        await until(lambda: socket.sending, "the writer sending the ack")
        await first.aclose()  # m1, pushed to it, is dropped with it
        second = stream.deliveries()
        taken = asyncio.ensure_future(anext(second))
        await until(lambda: stream._subscribed, "the second subscription")
        socket.gate.set()

        await until(lambda: socket.sent[-2:] == ['{"t":"unsub"}', '{"t":"sub"}'], "unsub, sub")
        socket.deliver("m1")  # what the relay pushes again on the new sub
        assert (await asyncio.wait_for(taken, 5)).message_id == "m1"
        await second.aclose()
    finally:
        await stream.close()
