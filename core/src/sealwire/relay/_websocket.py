"""The relay's WebSockets as a client opens them: a connection authenticated with
the session's bearer token, and a push stream followed across reconnections
(backoff, re-authentication, close codes turned into typed errors)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncGenerator, Callable
from typing import Any

import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from sealwire.errors import DecodeError, SealwireError
from sealwire.relay._session import RelaySession
from sealwire.relay._transport import DEFAULT_TIMEOUT_SECONDS
from sealwire.relay.errors import (
    LimitExceeded,
    RelayAuthError,
    RelayError,
    RelayUnavailable,
    error_from_wire,
)
from sealwire.relay.wire import decode_body

__all__ = ["follow", "open_websocket"]

# Reconnect delays of a followed stream: doubling from the first up to the last.
RECONNECT_FIRST_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 2.0
# A relay's retry_after is honoured up to this: a larger one (a relay's mistake, or a
# hostile relay) must not park a subscription for hours.
MAX_RETRY_AFTER_SECONDS = 60.0
# WebSocket close codes (4000 + HTTP status) that say "later", not "never": the
# relay's connection limit (429) and an unavailable relay (503).
_RETRY_CLOSE_CODES = frozenset({4000 + LimitExceeded.status, 4000 + RelayUnavailable.status})
# A pushed WebSocket message larger than this is not the relay protocol.
MAX_WS_MESSAGE_BYTES = 16 * 1024 * 1024


def open_websocket(session: RelaySession, path: str, token: str, tls: ssl.SSLContext) -> connect:
    """The WebSocket ``path`` of the session's relay, authenticated with ``token``: await
    it, or use it as an async context manager."""
    url = "ws" + session.url.removeprefix("http") + path
    return websockets.connect(
        url,
        additional_headers={"authorization": f"Bearer {token}"},
        max_size=MAX_WS_MESSAGE_BYTES,
        open_timeout=DEFAULT_TIMEOUT_SECONDS,
        compression=None,  # ciphertext does not compress
        ssl=tls if url.startswith("wss://") else None,
    )


async def follow(
    session: RelaySession,
    tls: ssl.SSLContext,
    path: str | Callable[[], str],
    parse: Callable[[dict[str, Any]], Any],
    seen: Callable[[Any], None],
) -> AsyncGenerator[Any, None]:
    """Items pushed on a WebSocket; reconnects (and authenticates again) until closed.

    ``path`` is called again at each connection when it is a function; each item
    is ``parse``\\ d and handed to ``seen`` before it is yielded.

    An unreachable relay, and any failure to (re-)authenticate (a rate limit
    429, whose ``retry_after`` is honoured, an unavailable relay, a refused
    challenge: nothing there is proven by an authenticated session) are
    retried with backoff, as are the close codes saying "later" (4429, 45xx).
    Only a refusal on the authenticated WebSocket (any other 4xxx close code
    than "unauthenticated") or a malformed push ends the stream with its error.
    """
    delay = RECONNECT_FIRST_SECONDS
    stale: str | None = None
    # Set when the consumer closes the generator at a yield: a connection failing as it
    # closes then ends it quietly, instead of being a reason to connect again (the
    # consumer's close would wait for ever) or an error replacing the close.
    closed = False
    while True:
        wait = delay
        try:
            try:
                token = (
                    await session.authenticate(stale)
                    if stale or not session.token
                    else session.token
                )
            except (RelayError, DecodeError) as error:
                raise _AuthFailed(error) from None
            stale = None
            async with open_websocket(
                session, path() if callable(path) else path, token, tls
            ) as ws:
                delay = RECONNECT_FIRST_SECONDS
                async for raw in ws:
                    item = parse(decode_body(raw if isinstance(raw, bytes) else raw.encode()))
                    seen(item)
                    try:
                        yield item
                    except GeneratorExit:
                        closed = True
                        raise
        except _AuthFailed as failed:
            refused = failed.error
            if isinstance(refused, LimitExceeded) and refused.retry_after is not None:
                wait = min(max(delay, refused.retry_after), MAX_RETRY_AFTER_SECONDS)
        except ConnectionClosed as exc:
            if closed:
                return
            code = exc.rcvd.code if exc.rcvd is not None else None
            if code == 4000 + RelayAuthError.status:
                stale = token
                continue
            if (
                code is not None
                and 4000 <= code < 4500
                and code not in _RETRY_CLOSE_CODES
                and exc.rcvd is not None
            ):
                raise _close_error(code, exc.rcvd.reason) from None
        except (RelayUnavailable, OSError, InvalidStatus, WebSocketException, TimeoutError):
            if closed:
                return
        await asyncio.sleep(wait)
        delay = min(delay * 2, RECONNECT_MAX_SECONDS)


class _AuthFailed(Exception):
    """(Re-)authenticating for a stream failed with ``error``: retried, never raised."""

    def __init__(self, error: SealwireError) -> None:
        super().__init__(type(error).__name__)
        self.error = error


def _close_error(code: int, reason: str) -> SealwireError:
    status = code - 4000
    return error_from_wire(status, {"error": {"code": reason, "message": f"WebSocket {reason}"}})
