"""URL dispatch of connect/serve and the contract every built-in transport meets."""

from __future__ import annotations

import pytest

from sealwire.errors import ConfigurationError
from sealwire.transport import (
    DatagramEndpoint,
    FrameStream,
    Listener,
    TransportClosed,
    TransportError,
    connect,
    connect_datagram,
    serve,
    serve_datagram,
)


async def echo(conn: FrameStream | DatagramEndpoint) -> None:
    while True:
        try:
            await conn.send(await conn.receive())
        except TransportClosed:
            return


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1",
        "udp://127.0.0.1:1",
        "tcp://:1",
        "tcp://127.0.0.1",
        "tcp://h:99999",
        "not a url",
        "tcp://[::1:1",
        "tcp://\x00bad:1",
        "ws://\x00bad:1/",
    ],
)
async def test_stream_urls_are_checked(url: str) -> None:
    with pytest.raises(ConfigurationError):
        await connect(url)
    with pytest.raises(ConfigurationError):
        await serve(url, echo)


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:1", "udp://127.0.0.1", "udp://:5"])
async def test_datagram_urls_are_checked(url: str) -> None:
    with pytest.raises(ConfigurationError):
        await connect_datagram(url)
    with pytest.raises(ConfigurationError):
        await serve_datagram(url, echo)


@pytest.mark.parametrize("scheme", ["tcp", "ws", "udp"])
async def test_a_host_name_that_cannot_be_encoded_is_a_transport_error(scheme: str) -> None:
    """A label over 63 characters (a peer's card may name anything): IDNA refuses it."""
    url = f"{scheme}://{'a' * 64}.example:80/"
    with pytest.raises(TransportError, match="not a valid host name"):
        if scheme == "udp":
            await connect_datagram(url)
        else:
            await connect(url, timeout=5)


async def test_wss_needs_an_ssl_context() -> None:
    with pytest.raises(ConfigurationError):
        await serve("wss://127.0.0.1:0", echo)


@pytest.mark.parametrize("scheme", ["tcp", "ws"])
async def test_stream_contract(scheme: str) -> None:
    async with await serve(f"{scheme}://127.0.0.1:0", echo) as listener:
        assert isinstance(listener, Listener)
        stream = await connect(listener.url)
        assert isinstance(stream, FrameStream)
        assert stream.max_frame_size == 16 * 1024 * 1024
        await stream.send(b"contract")
        assert await stream.receive() == b"contract"
        await stream.close()


async def test_datagram_contract() -> None:
    async with await serve_datagram("udp://127.0.0.1:0", echo) as listener:
        assert isinstance(listener, Listener)
        endpoint = await connect_datagram(listener.url)
        assert isinstance(endpoint, DatagramEndpoint)
        await endpoint.send(b"contract")
        assert await endpoint.receive() == b"contract"
        await endpoint.close()
