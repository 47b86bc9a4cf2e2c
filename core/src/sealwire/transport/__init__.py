"""Carriers of bytes (ARCHITECTURE layer 6): in-memory, TCP, WebSocket and UDP.

No cryptography happens here: a transport moves the ciphertext a binding
produced. Streams keep frame boundaries (4-byte big-endian length prefix over
TCP, one binary message per frame over WebSocket); datagram endpoints may
lose, reorder or duplicate. Every size is bounded by a named limit.
"""

from __future__ import annotations

from sealwire.transport._base import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_DATAGRAM,
    DEFAULT_MAX_FRAME,
    DatagramEndpoint,
    FrameStream,
    FrameTooLargeError,
    Listener,
    TransportClosed,
    TransportError,
)
from sealwire.transport._dial import connect, connect_datagram, serve, serve_datagram
from sealwire.transport._framing import FrameDecoder, encode_frame
from sealwire.transport._memory import memory_datagram_pair, memory_pair
from sealwire.transport._resolve import MAX_LOOKUPS, RESOLVE_TIMEOUT, connect_first, resolve
from sealwire.transport._tcp import DEFAULT_MAX_CONNECTIONS
from sealwire.transport._udp import UDP_CLIENT_IDLE_SECONDS, UDP_IDLE_SECONDS, UDP_MAX_PEERS

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_DATAGRAM",
    "DEFAULT_MAX_FRAME",
    "MAX_LOOKUPS",
    "RESOLVE_TIMEOUT",
    "UDP_CLIENT_IDLE_SECONDS",
    "UDP_IDLE_SECONDS",
    "UDP_MAX_PEERS",
    "DatagramEndpoint",
    "FrameDecoder",
    "FrameStream",
    "FrameTooLargeError",
    "Listener",
    "TransportClosed",
    "TransportError",
    "connect",
    "connect_datagram",
    "connect_first",
    "encode_frame",
    "memory_datagram_pair",
    "memory_pair",
    "resolve",
    "serve",
    "serve_datagram",
]
