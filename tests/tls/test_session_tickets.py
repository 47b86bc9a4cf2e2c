"""TLS session tickets: none unless resumption is configured (issue 23).

A real loopback server (an agent serving HTTPS); the client is a blocking
``ssl`` socket in a thread, because only ``SSLContext.wrap_socket`` can offer
a saved session for resumption. A TLS 1.3 server sends its tickets after the
handshake, so the client reads one HTTP answer before looking at its session.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

from sealwire.agent import Agent
from sealwire.testing.contract import make_party
from sealwire_tls import TlsBinding, TlsServer, self_signed_certificate
from sealwire_tls._server import OP_ALLOW_NO_DHE_KEX, RESUMPTION_TICKETS

CARD_REQUEST = b"GET /.well-known/agent-card.json HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
IO_SECONDS = 30.0
"""Socket timeout of the blocking client: a bound, never a wait."""


def _client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # only the tickets are looked at here
    return ctx


def _fetch_card(
    host: str, port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None
) -> tuple[ssl.SSLSession | None, bool, bytes]:
    """(the session after one answer, whether it was resumed, the answer's first line)."""
    with (
        socket.create_connection((host, port), timeout=IO_SECONDS) as raw,
        ctx.wrap_socket(raw, server_hostname=host, session=session) as tls,
    ):
        tls.sendall(CARD_REQUEST)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
        return tls.session, tls.session_reused, answer.split(b"\r\n", 1)[0]


async def _two_connections(agent: Agent) -> list[tuple[ssl.SSLSession | None, bool, bytes]]:
    parts = urlsplit(agent.card.offers[0].url)
    host, port = parts.hostname or "", parts.port or 443
    ctx = _client_context()
    first = await asyncio.to_thread(_fetch_card, host, port, ctx, None)
    second = await asyncio.to_thread(_fetch_card, host, port, ctx, first[0])
    return [first, second]


async def test_no_tickets_without_resumption(agents: Callable[..., Agent]) -> None:
    async with agents("quiet") as agent:
        connections = await _two_connections(agent)
    for session, reused, status in connections:
        assert status.startswith(b"HTTP/1.1 200")
        assert session is not None and not session.has_ticket
        assert not reused


async def test_tickets_and_resumption_when_configured(agents: Callable[..., Agent]) -> None:
    async with agents("resuming", options={"resumption": True}) as agent:
        (first, reused_first, status), (_second, reused_second, _status) = await _two_connections(
            agent
        )
    assert status.startswith(b"HTTP/1.1 200")
    assert first is not None and first.has_ticket
    assert (reused_first, reused_second) == (False, True)
    assert RESUMPTION_TICKETS == 1


def test_resumption_keeps_forward_secrecy() -> None:
    """A resumed TLS 1.3 session runs a fresh (EC)DHE: ``psk_ke`` stays refused."""
    for resumption in (False, True):
        party = make_party(TlsBinding, options={"url": "https://127.0.0.1:1"})
        chain = [self_signed_certificate(party.identity)]
        server = TlsServer(
            lambda party=party: party.binding.context,  # type: ignore[misc]
            chain,
            binding_uri=TlsBinding.info.uri,
            resumption=resumption,
        )
        assert server.ssl.num_tickets == (RESUMPTION_TICKETS if resumption else 0)
        assert not server.ssl.options & OP_ALLOW_NO_DHE_KEX
