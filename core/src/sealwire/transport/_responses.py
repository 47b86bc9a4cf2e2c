"""ASGI answers shared by the HTTP endpoint's bindings (JSON-RPC, HTTP+JSON, gRPC)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from sealwire.codec import A2A_VERSION

__all__ = ["aclose_results", "plain_response", "start_response"]


async def aclose_results(results: AsyncIterator[Any]) -> None:
    """Close the handler's generator (a client gone mid-stream ends it)."""
    aclose = getattr(results, "aclose", None)
    if aclose is not None:
        await aclose()


async def start_response(send: Any, status: int, kind: bytes, extra: Mapping[str, str]) -> None:
    headers = [(b"content-type", kind), (b"a2a-version", A2A_VERSION.encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def plain_response(send: Any, status: int, body: bytes) -> None:
    await start_response(send, status, b"text/plain; charset=utf-8", {})
    await send({"type": "http.response.body", "body": body})
