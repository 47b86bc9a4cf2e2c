"""The stream transport contract suite, public for transport plugin authors.

A transport plugin contributes :class:`~sealwire.components.TransportProvider`
objects (hook ``sealwire_transports``): ``connect(url)`` gives a
:class:`~sealwire.transport.FrameStream`, ``serve(url, handler)`` a
:class:`~sealwire.transport.Listener` that runs ``handler(stream)`` per
connection. Usage in the plugin's tests::

    class TestMyTransportContract(StreamTransportContract):
        provider = MY_PROVIDER

        def listen_url(self) -> str:
            return "mylink://127.0.0.1:0"  # where serve() may listen in a test

What the suite holds a stream transport to: frames arrive whole, in order, both
ways (the empty frame and a 1 MiB one included); connections are independent; a
frame over ``max_frame_size`` is refused by the sender with
:class:`~sealwire.transport.FrameTooLargeError` and the stream goes on; a peer's
close is :class:`~sealwire.transport.TransportClosed` on ``receive`` (and on
``send`` after our own close; ``close`` is idempotent); closing the listener
closes its connections; a URL nobody serves is a
:class:`~sealwire.transport.TransportError`, never a hang. Datagram transports
(``datagram=True``) are not covered here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from sealwire.components import TransportProvider
from sealwire.transport import (
    FrameStream,
    FrameTooLargeError,
    Listener,
    TransportClosed,
    TransportError,
)

__all__ = ["StreamTransportContract"]

STEP_TIMEOUT = 30.0
"""Seconds any one wait of the suite may take on a loaded machine before it fails
(a transport that hangs fails the test instead of stalling it)."""
LARGE_FRAME = 1024 * 1024
"""A frame larger than any socket buffer, so the transport must stream it."""
CONNECTIONS = 5
"""Connections the concurrency test holds open at once."""
FRAMES = 50
"""Frames the ordering test sends one way before reading any."""


class _Echo:
    """A listener whose handler echoes every frame back, and counts its streams."""

    def __init__(self) -> None:
        self.streams: list[FrameStream] = []
        self.ended = 0
        self.changed = asyncio.Event()

    async def __call__(self, stream: FrameStream) -> None:
        self.streams.append(stream)
        self.changed.set()
        try:
            while True:
                await stream.send(await stream.receive())
        except TransportClosed:
            pass
        finally:
            self.ended += 1
            self.changed.set()

    async def wait_for(self, condition: Any) -> None:
        async with asyncio.timeout(STEP_TIMEOUT):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


class StreamTransportContract:
    """Subclass, set :attr:`provider` and define :meth:`listen_url`."""

    pytestmark = pytest.mark.asyncio
    provider: ClassVar[TransportProvider]

    def listen_url(self) -> str:
        """A URL ``serve`` can listen on in a test (a free port, a fresh path)."""
        raise NotImplementedError

    def unserved_url(self, served: str) -> str:
        """A URL of the scheme nobody serves: by default ``served`` once its listener
        is closed."""
        return served

    @pytest_asyncio.fixture
    async def echo(self) -> AsyncIterator[tuple[_Echo, Listener]]:
        handler = _Echo()
        listener = await self.provider.serve(self.listen_url(), handler)
        try:
            yield handler, listener
        finally:
            await listener.close()

    async def _connect(self, url: str) -> FrameStream:
        async with asyncio.timeout(STEP_TIMEOUT):
            stream = await self.provider.connect(url)
        assert isinstance(stream, FrameStream)
        return stream

    async def test_the_provider_is_a_stream_transport(self) -> None:
        assert not self.provider.datagram
        assert self.listen_url().startswith(self.provider.scheme + ":")

    async def test_frames_arrive_whole_in_order_both_ways(
        self, echo: tuple[_Echo, Listener]
    ) -> None:
        _handler, listener = echo
        stream = await self._connect(listener.url)
        try:
            frames = [b"", b"x", bytes(range(256)) * 4, b"\x00" * LARGE_FRAME]
            frames += [b"frame %d" % n for n in range(FRAMES)]
            for frame in frames:
                await stream.send(frame)
            async with asyncio.timeout(STEP_TIMEOUT):
                for frame in frames:
                    assert await stream.receive() == frame
        finally:
            await stream.close()

    async def test_connections_are_independent(self, echo: tuple[_Echo, Listener]) -> None:
        handler, listener = echo
        streams = [await self._connect(listener.url) for _ in range(CONNECTIONS)]
        try:
            await handler.wait_for(lambda: len(handler.streams) == CONNECTIONS)
            for n, stream in enumerate(reversed(streams)):
                await stream.send(b"to %d" % n)
            async with asyncio.timeout(STEP_TIMEOUT):
                for n, stream in enumerate(reversed(streams)):
                    assert await stream.receive() == b"to %d" % n
            await streams[0].close()
            await handler.wait_for(lambda: handler.ended == 1)
            await streams[1].send(b"still here")
            async with asyncio.timeout(STEP_TIMEOUT):
                assert await streams[1].receive() == b"still here"
        finally:
            for stream in streams:
                await stream.close()

    async def test_a_frame_over_the_limit_is_refused_by_the_sender(
        self, echo: tuple[_Echo, Listener]
    ) -> None:
        _handler, listener = echo
        stream = await self._connect(listener.url)
        try:
            assert stream.max_frame_size > 0
            with pytest.raises(FrameTooLargeError):
                await stream.send(b"\x00" * (stream.max_frame_size + 1))
            await stream.send(b"after")  # nothing of the refused frame was sent
            async with asyncio.timeout(STEP_TIMEOUT):
                assert await stream.receive() == b"after"
        finally:
            await stream.close()

    async def test_a_close_ends_the_other_side_and_is_idempotent(
        self, echo: tuple[_Echo, Listener]
    ) -> None:
        handler, listener = echo
        stream = await self._connect(listener.url)
        await stream.send(b"hello")
        async with asyncio.timeout(STEP_TIMEOUT):
            assert await stream.receive() == b"hello"
        await stream.close()
        await stream.close()
        await handler.wait_for(lambda: handler.ended == 1)  # the server saw TransportClosed
        with pytest.raises(TransportClosed):
            await stream.send(b"after close")
        with pytest.raises(TransportClosed):
            async with asyncio.timeout(STEP_TIMEOUT):
                await stream.receive()

    async def test_closing_the_listener_closes_its_connections(self) -> None:
        handler = _Echo()
        listener = await self.provider.serve(self.listen_url(), handler)
        async with listener:
            stream = await self._connect(listener.url)
            await handler.wait_for(lambda: len(handler.streams) == 1)
        try:
            with pytest.raises(TransportClosed):
                async with asyncio.timeout(STEP_TIMEOUT):
                    await stream.receive()
            assert handler.ended == 1
            await listener.close()  # idempotent
        finally:
            await stream.close()

    async def test_a_url_nobody_serves_is_a_transport_error(self) -> None:
        listener = await self.provider.serve(self.listen_url(), _Echo())
        url = listener.url
        await listener.close()
        with pytest.raises(TransportError):
            async with asyncio.timeout(STEP_TIMEOUT):
                stream = await self.provider.connect(self.unserved_url(url))
                await stream.close()
