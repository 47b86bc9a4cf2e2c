"""The plaintext hello that precedes a session handshake.

The initiator names the binding it chose and both offer lists (a
:class:`~sealwire.binding.Negotiation`); the responder checks it against its
own card and policy and answers ``accept`` or a one-line refusal. The binding
then binds the same negotiation into its handshake, so a hello altered in
transit makes the handshake fail: the hello only routes, it is never trusted.

Over datagrams the hello is repeated until acknowledged (it may be lost), and
the first hello from an address is answered with a cookie instead
(:class:`HelloCookies`): the initiator sends its hello again with the cookie,
and only a hello carrying a valid cookie for its source address opens a
session. A hello replayed from forged addresses (whose answers the forger
never sees) holds no session slot; its endpoint is closed at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable
from typing import Any

from sealwire.binding import Negotiation
from sealwire.errors import DecodeError, PolicyError, RemoteProtocolError
from sealwire.transport import DatagramEndpoint, FrameStream

__all__ = [
    "HELLO_TIMEOUT",
    "HelloCookies",
    "parse_hello",
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
COOKIE_PERIOD_SECONDS = 60.0
"""A hello cookie is good in the period it was made in and the next: a slow
initiator has at least this long to come back with it."""
COOKIE_BYTES = 16
"""A truncated HMAC-SHA256: 128 bits, unguessable for an address the forger cannot
receive at."""


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


class HelloCookies:
    """Stateless cookies for datagram hellos: ``HMAC(secret, period || address)``.

    The secret is random per responder and never leaves it; nothing is kept per
    address, so any number of forged hellos costs one HMAC each.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._secret = os.urandom(32)
        self._clock = clock

    def __repr__(self) -> str:
        return "HelloCookies(<secret>)"

    def _cookie(self, address: str, period: int) -> bytes:
        message = period.to_bytes(8, "big") + address.encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:COOKIE_BYTES]

    def _period(self) -> int:
        return int(self._clock() // COOKIE_PERIOD_SECONDS)

    def issue(self, address: str) -> bytes:
        """The answer to a hello without a (valid) cookie from ``address``."""
        cookie = self._cookie(address, self._period())
        return _encode({"cookie": base64.urlsafe_b64encode(cookie).decode()})

    def valid(self, hello: bytes, address: str) -> bool:
        """Whether ``hello`` carries a cookie made for ``address`` in this period or the
        last (compared in constant time). A malformed hello is simply not valid."""
        try:
            raw = _decode(hello).get("cookie")
            cookie = base64.urlsafe_b64decode(raw) if isinstance(raw, str) else b""
        except (DecodeError, binascii.Error, ValueError):
            return False
        period = self._period()
        return any(
            hmac.compare_digest(cookie, self._cookie(address, p)) for p in (period, period - 1)
        )


def accept_message() -> bytes:
    return _encode({"accept": True})


def refuse_message(reason: str) -> bytes:
    return _encode({"error": reason})


async def send_hello_datagram(endpoint: DatagramEndpoint, negotiation: Negotiation) -> None:
    """Initiator over datagrams: resend the hello until an answer arrives; a cookie
    answer is taken into the hello, sent again at once."""
    body: dict[str, Any] = {"negotiation": negotiation.to_json()}
    hello = _encode(body)
    for _ in range(HELLO_RETRIES):
        await endpoint.send(hello)
        try:
            data = await asyncio.wait_for(endpoint.receive(), HELLO_RETRY_INTERVAL)
        except TimeoutError:
            continue
        with contextlib.suppress(DecodeError):
            cookie = _decode(data).get("cookie")
            if isinstance(cookie, str) and len(cookie) <= MAX_COOKIE_TEXT:
                hello = _encode({**body, "cookie": cookie})
                continue
            _answer(data)
            return
    raise RemoteProtocolError("the peer did not answer the hello")


MAX_COOKIE_TEXT = 64
"""A cookie's base64 text is 24 characters; a longer one is no cookie of ours."""
