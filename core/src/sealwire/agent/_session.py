"""The plaintext hello that precedes a session handshake.

The initiator names the binding it chose and both offer lists (a
:class:`~sealwire.binding.Negotiation`); the responder checks it against its
own card and policy and answers ``accept`` or a one-line refusal. The binding
then binds the same negotiation into its handshake, so a hello altered in
transit makes the handshake fail: the hello only routes, it is never trusted.

Over datagrams the hello is repeated until acknowledged (it may be lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from sealwire.binding import Negotiation
from sealwire.errors import DecodeError, PolicyError, RemoteProtocolError
from sealwire.transport import DatagramEndpoint, FrameStream

__all__ = [
    "HELLO_TIMEOUT",
    "read_hello",
    "send_hello",
    "send_hello_datagram",
]

HELLO_VERSION = 1
MAX_HELLO = 16 * 1024
"""A hello is a few hundred bytes; anything bigger is refused before parsing."""
HELLO_TIMEOUT = 10.0
"""Seconds a responder waits for the hello before dropping the connection."""
HELLO_RETRIES = 10
HELLO_RETRY_INTERVAL = 0.2
"""Datagram hellos are resent this often, this many times, until acknowledged."""


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps({"sealwire": HELLO_VERSION, **body}, separators=(",", ":")).encode()


def _decode(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_HELLO:
        raise DecodeError("hello too large", field="hello")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise DecodeError("hello is not JSON", field="hello") from None
    if not isinstance(body, dict) or body.get("sealwire") != HELLO_VERSION:
        raise DecodeError("not a Sealwire hello of a known version", field="hello.sealwire")
    return body


def _answer(data: bytes) -> None:
    body = _decode(data)
    if body.get("accept") is True:
        return
    reason = body.get("error")
    raise PolicyError(f"the peer refused the session: {str(reason)[:200]}")


async def send_hello(stream: FrameStream, negotiation: Negotiation) -> None:
    """Initiator: send the hello and wait for the peer to accept it."""
    await stream.send(_encode({"negotiation": negotiation.to_json()}))
    _answer(await asyncio.wait_for(stream.receive(), HELLO_TIMEOUT))


def parse_hello(data: bytes) -> Negotiation:
    return Negotiation.from_json(_decode(data).get("negotiation"))


async def read_hello(carrier: FrameStream | DatagramEndpoint) -> Negotiation:
    """Responder: read the initiator's hello, the first frame or datagram (the caller
    checks and answers it)."""
    return parse_hello(await asyncio.wait_for(carrier.receive(), HELLO_TIMEOUT))


def accept_message() -> bytes:
    return _encode({"accept": True})


def refuse_message(reason: str) -> bytes:
    return _encode({"error": reason})


async def send_hello_datagram(endpoint: DatagramEndpoint, negotiation: Negotiation) -> None:
    """Initiator over datagrams: resend the hello until an answer arrives."""
    hello = _encode({"negotiation": negotiation.to_json()})
    for _ in range(HELLO_RETRIES):
        await endpoint.send(hello)
        try:
            data = await asyncio.wait_for(endpoint.receive(), HELLO_RETRY_INTERVAL)
        except TimeoutError:
            continue
        with contextlib.suppress(DecodeError):
            _answer(data)
            return
    raise RemoteProtocolError("the peer did not answer the hello")
