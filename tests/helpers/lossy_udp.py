"""A loopback UDP relay that loses and reorders datagrams, for datagram binding tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["LossyProxy"]


class _Forward(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Any], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_datagram(data, addr)


class LossyProxy:
    """A loopback UDP relay between one client and a server that loses and reorders.

    ``fault(direction, n, datagram)`` is asked for the n-th datagram (from 0) of each
    direction (``"c2s"`` or ``"s2c"``) and returns ``"pass"``, ``"drop"`` or ``"hold"``
    (held until the next datagram of that direction has passed: a reordering).
    """

    def __init__(self, server: tuple[str, int], fault: Callable[[str, int, bytes], str]) -> None:
        self.server, self.fault = server, fault
        self.counts = {"c2s": 0, "s2c": 0}
        self.held: dict[str, bytes | None] = {"c2s": None, "s2c": None}
        self.log: list[tuple[str, int, str]] = []
        self.client: Any = None

    async def start(self) -> str:
        loop = asyncio.get_running_loop()
        _, self.front = await loop.create_datagram_endpoint(
            lambda: _Forward(self._from_client), local_addr=("127.0.0.1", 0)
        )
        _, self.back = await loop.create_datagram_endpoint(
            lambda: _Forward(self._from_server), remote_addr=self.server
        )
        host, port = self.front.transport.get_extra_info("sockname")[:2]
        return f"udp://{host}:{port}"

    def _route(self, direction: str, data: bytes, send: Callable[[bytes], None]) -> None:
        n = self.counts[direction]
        self.counts[direction] += 1
        action = self.fault(direction, n, data)
        self.log.append((direction, n, action))
        if action == "drop":
            return
        if action == "hold" and self.held[direction] is None:
            self.held[direction] = data
            return
        send(data)
        held, self.held[direction] = self.held[direction], None
        if held is not None:
            send(held)

    def _from_client(self, data: bytes, addr: Any) -> None:
        self.client = addr
        assert self.back.transport is not None
        self._route("c2s", data, self.back.transport.sendto)

    def _from_server(self, data: bytes, addr: Any) -> None:
        assert self.front.transport is not None
        if self.client is not None:
            self._route("s2c", data, lambda d: self.front.transport.sendto(d, self.client))  # type: ignore[union-attr]

    def close(self) -> None:
        for side in (self.front, self.back):
            if side.transport is not None:
                side.transport.close()
