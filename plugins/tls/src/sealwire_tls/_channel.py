"""Binding the policy's decision to the TLS session (ARCHITECTURE layer 5).

Python's ``ssl`` has no TLS exporter (RFC 8446 §7.5), so the binding is made
from what both ends see of the session, signed by the server's identity key::

    data = "sealwire-tls-channel-binding/1"
           || opaque16(Negotiation.transcript())      # chosen binding, both offer lists
           || opaque16(SHA-256(server certificate DER))
           || opaque16(SHA-256(client certificate DER))
           || opaque16(HTTP version, "HTTP/1.1" | "HTTP/2" | "HTTP/3")  # what ALPN chose
    Sealwire-Channel-Binding: base64url(Ed25519-Sign(server signing key, data))

``opaque16`` is a 2-byte big-endian length and the bytes. The client sends its
negotiation in ``Sealwire-Negotiation`` (base64url JSON); the server checks it
as ``Policy.check_incoming`` does (our offers as our card states them, the
chosen binding ours) and signs ``data``; the client verifies the signature
with the key of the card it chose from. A changed offer list, binding choice,
certificate on either side (a TLS-terminating middlebox) or HTTP version (an
ALPN downgrade from h2, or from HTTP/3 to TCP) changes ``data``, so the
signature fails.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from sealwire.binding import Negotiation
from sealwire.errors import DecodeError

__all__ = [
    "CARD_HEADER",
    "CHANNEL_BINDING_HEADER",
    "CHANNEL_BINDING_LABEL",
    "MAX_HEADER_VALUE",
    "NEGOTIATION_HEADER",
    "b64url",
    "channel_binding_data",
    "decode_json_header",
    "from_b64url",
    "negotiation_header",
    "parse_negotiation_header",
]

CHANNEL_BINDING_LABEL = b"sealwire-tls-channel-binding/1"
NEGOTIATION_HEADER = "Sealwire-Negotiation"
CHANNEL_BINDING_HEADER = "Sealwire-Channel-Binding"
CARD_HEADER = "Sealwire-Agent-Card"
MAX_HEADER_VALUE = 64 * 1024
"""A card header is a few kilobytes; longer Sealwire header values are refused unread."""


def _opaque16(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def channel_binding_data(
    negotiation: Negotiation, server_fingerprint: bytes, client_fingerprint: bytes, http: str
) -> bytes:
    """The bytes the server signs (layout in the module docstring)."""
    return CHANNEL_BINDING_LABEL + b"".join(
        _opaque16(part)
        for part in (
            negotiation.transcript(),
            server_fingerprint,
            client_fingerprint,
            http.encode("ascii", "replace"),
        )
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64url(value: str, *, field: str) -> bytes:
    """Decode unpadded base64url (hostile input): DecodeError naming ``field``."""
    if len(value) > MAX_HEADER_VALUE:
        raise DecodeError("value too long", field=field)
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise DecodeError("not base64url", field=field) from None


def decode_json_header(value: str, *, field: str) -> Any:
    raw = from_b64url(value, field=field)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise DecodeError("not JSON", field=field) from None


def negotiation_header(negotiation: Negotiation) -> str:
    body = json.dumps(negotiation.to_json(), separators=(",", ":"), sort_keys=True)
    return b64url(body.encode())


def parse_negotiation_header(value: str) -> Negotiation:
    """The negotiation a client sent (hostile input): DecodeError when malformed."""
    return Negotiation.from_json(decode_json_header(value, field=NEGOTIATION_HEADER))


def http_version(version: str) -> str:
    """``HTTP/1.1``, ``HTTP/2`` or ``HTTP/3`` from an ASGI (``1.1``, ``2``, ``3``) or httpx
    version string."""
    return version if version.startswith("HTTP/") else f"HTTP/{version}"
