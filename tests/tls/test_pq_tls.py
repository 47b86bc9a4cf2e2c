"""Post-quantum TLS (issue 20 item 4): X25519MLKEM768 on pyOpenSSL, end to end on loopback.

The ``post_quantum`` option serves and calls A2A over TLS 1.3 on the OpenSSL
inside cryptography's wheel; Python's ``ssl`` (the system's OpenSSL 3.0) has no
ML-KEM group. The second client on the same OpenSSL is a bare pyOpenSSL
socket client in a thread (no Sealwire code, no httpx), writing HTTP/1.1 itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from waiting import until

from sealwire.agent import Agent
from sealwire.binding import Party, Property, SessionTerms
from sealwire.errors import ConfigurationError, PolicyError
from sealwire.identity import Identity, VerifiedCard
from sealwire.model import Task, TaskState
from sealwire.policy import Situation
from sealwire_tls import (
    HYBRID_GROUP,
    TlsBinding,
    TlsDowngradeError,
    hybrid_available,
    self_signed_certificate,
    session_info,
)
from sealwire_tls._pq import set_groups
from sealwire_tls.testing import export_client_files

HTTP = Situation(external_http=True)
RPC = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {
    "messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "pq"}]}}}  # fmt: skip
PQ_LOGGERS = ("sealwire_tls._pq_session", "sealwire_tls._pq_server")

pytestmark = pytest.mark.skipif(
    not hybrid_available(), reason="cryptography's OpenSSL has no X25519MLKEM768"
)


def _terms(agent: Agent, peer: VerifiedCard) -> SessionTerms:
    """What the TLS binding states a session of ``agent`` with ``peer`` will have."""
    offer = peer.offer("tls")
    return TlsBinding.session_terms(
        Party(options=agent.binding_options.get("tls", {})),
        Party(identity=peer.identity, params={} if offer is None else offer.params),
    )


def _binding(agent: Agent) -> TlsBinding:
    binding = agent._bindings["tls"]
    assert isinstance(binding, TlsBinding)
    return binding


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
async def test_agents_call_each_other_over_the_hybrid_group(
    agents: Callable[..., Agent], http2: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sealwire_tls")
    server = agents("server", options={"post_quantum": "require"})
    client = agents("client", serve=False, options={"post_quantum": "prefer", "http2": http2})
    async with server, client:
        offer = server.card.offer("tls")
        assert offer is not None and offer.params["keyExchange"] == [HYBRID_GROUP]
        peer = client.peer(server.card)
        task = await client.send_message(peer, "hello", situation=HTTP)
        assert isinstance(task, Task) and task.status.state is TaskState.COMPLETED
        events = [e async for e in client.stream_message(peer, "stream", situation=HTTP)]
        final = events[-1].status_update
        assert final is not None and final.status.state is TaskState.COMPLETED
        conn = await client.connect(peer, HTTP)
        info = session_info(conn.channel)
        assert info is not None and info.group == HYBRID_GROUP and info.post_quantum
        assert info.version == "TLSv1.3" and info.alpn == ("h2" if http2 else "http/1.1")
        assert Property.POST_QUANTUM in conn.channel.properties
        assert Property.POST_QUANTUM in _terms(client, peer).properties
    # Both sides logged the group at debug: the client's check and the server's connection.
    logged = [r.getMessage() for r in caplog.records if r.name in PQ_LOGGERS]
    assert any(m.startswith("TLS session:") and HYBRID_GROUP in m for m in logged)
    assert any(m.startswith("TLS from") and HYBRID_GROUP in m for m in logged)


async def test_a_classical_server_is_refused_when_pq_is_required(
    agents: Callable[..., Agent],
) -> None:
    server = agents("server")  # Python's ssl: OpenSSL 3.0 here, X25519 at best
    client = agents("client", serve=False, options={"post_quantum": "require"})
    async with server, client:
        with pytest.raises(TlsDowngradeError, match="required"):
            await client.send_message(client.peer(server.card), "x", situation=HTTP)


async def test_a_server_offering_the_hybrid_that_negotiates_x25519_is_a_downgrade(
    agents: Callable[..., Agent],
) -> None:
    server = agents("server", options={"post_quantum": "prefer"})
    client = agents("client", serve=False, options={"post_quantum": "prefer"})
    async with server, client:
        assert HYBRID_GROUP in server.card.offer("tls").params["keyExchange"]  # type: ignore[union-attr]
        # The server's card offers the hybrid; its TLS now accepts X25519 only.
        context = _binding(server).servers[0].pq_context
        assert context is not None
        set_groups(context, ["X25519"])
        with pytest.raises(TlsDowngradeError, match="both ends offer"):
            await client.send_message(client.peer(server.card), "x", situation=HTTP)


async def test_prefer_still_calls_and_serves_classical_peers(agents: Callable[..., Agent]) -> None:
    classical_server = agents("classical-server")
    pq_server = agents("pq-server", options={"post_quantum": "prefer"})
    pq_client = agents("pq-client", serve=False, options={"post_quantum": "prefer"})
    classical_client = agents("classical-client", serve=False)
    async with classical_server, pq_server, pq_client, classical_client:
        # A PQ caller, a classical server: X25519, reported as such, not post-quantum.
        peer = pq_client.peer(classical_server.card)
        await pq_client.send_message(peer, "hello", situation=HTTP)
        conn = await pq_client.connect(peer, HTTP)
        info = session_info(conn.channel)
        assert info is not None and info.group == "x25519" and info.post_quantum is False
        assert Property.POST_QUANTUM not in conn.channel.properties
        assert Property.POST_QUANTUM not in _terms(pq_client, peer).properties
        # A classical caller (Python's ssl) and a PQ server that prefers but does not
        # require: served; Python 3.11's ssl cannot name the group.
        peer = classical_client.peer(pq_server.card)
        await classical_client.send_message(peer, "hello", situation=HTTP)
        conn = await classical_client.connect(peer, HTTP)
        info = session_info(conn.channel)
        assert info is not None and info.group is None and info.post_quantum is None
        assert info.version == "TLSv1.3"


async def test_a_classical_caller_is_told_the_peer_requires_the_hybrid(
    agents: Callable[..., Agent],
) -> None:
    server = agents("server", options={"post_quantum": "require"})
    client = agents("client", serve=False)
    async with server, client:
        with pytest.raises(TlsDowngradeError, match="set post_quantum"):
            await client.send_message(client.peer(server.card), "x", situation=HTTP)


def _pyopenssl_call(url: str, identity: Identity, server_der: bytes) -> tuple[str, int, Any]:
    """A second client on the same OpenSSL: bare pyOpenSSL on a blocking socket, its own
    defaults for groups (OpenSSL 4: X25519MLKEM768 first), HTTP/1.1 written by hand.
    Returns (negotiated group, HTTP status, JSON body)."""
    parts = urlsplit(url)
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(SSL.TLS1_3_VERSION)
    context.use_certificate(self_signed_certificate(identity))
    context.use_privatekey(identity.signing_key)
    store = context.get_cert_store()
    assert store is not None
    store.add_cert(SSL.X509.from_cryptography(self_signed_certificate_from(server_der)))
    context.set_verify(SSL.VERIFY_PEER)
    context.set_alpn_protos([b"http/1.1"])
    body = json.dumps(RPC).encode()
    request = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.hostname}\r\n"
        f"Content-Type: application/json\r\nA2A-Version: 1.0\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.settimeout(None)
        connection = SSL.Connection(context, sock)
        connection.set_connect_state()
        connection.do_handshake()
        group = connection.get_group_name() or ""
        connection.sendall(request)
        answer = b""
        while True:
            try:
                chunk = connection.recv(65536)
            except (SSL.ZeroReturnError, SSL.SysCallError):
                break
            if not chunk:
                break
            answer += chunk
        connection.shutdown()
    head, _, rest = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"chunked" in head.lower():
        rest = _unchunk(rest)
    return group, status, json.loads(rest) if rest else None


def self_signed_certificate_from(der: bytes) -> Any:
    from cryptography import x509

    return x509.load_der_x509_certificate(der)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


async def test_a_second_client_on_the_same_openssl_calls_a2a_over_the_hybrid(
    agents: Callable[..., Agent], tmp_path: Path
) -> None:
    external = Identity.generate()
    allowed = tmp_path / "allowed.pem"
    allowed.write_bytes(self_signed_certificate(external).public_bytes(serialization.Encoding.PEM))
    server = agents(
        "server", options={"post_quantum": "require", "client_certificates": [str(allowed)]}
    )
    async with server:
        server.trust.pin(external.public)
        url = server.card.offers[0].url
        server_der = _binding(server).certificate.public_bytes(serialization.Encoding.DER)
        group, status, answer = await asyncio.to_thread(_pyopenssl_call, url, external, server_der)
        assert group == HYBRID_GROUP and status == 200
        assert answer["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
        # Python's ssl (OpenSSL 3.0, no ML-KEM) cannot reach a server that requires it.
        cert, key, server_pem = export_client_files(
            external, tmp_path, _binding(server).certificate
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(server_pem)
        ctx.load_cert_chain(cert, key)
        async with httpx.AsyncClient(verify=ctx, trust_env=False) as http:
            with pytest.raises(httpx.ConnectError):
                await http.post(url, json=RPC)


async def test_option_values_and_exclusions(agents: Callable[..., Agent]) -> None:
    for options in ({"post_quantum": "maybe"},
                    {"post_quantum": "prefer", "http3": True},
                    {"post_quantum": "require", "resumption": True}):  # fmt: skip
        with pytest.raises(ConfigurationError):
            async with agents("bad", serve=False, options=options):
                pass


def test_the_groups_list_reaches_openssl_through_pyopenssl() -> None:
    """set_groups uses pyOpenSSL's Context._context (README): fail here if it goes."""
    context = SSL.Context(SSL.TLS_METHOD)
    set_groups(context, [HYBRID_GROUP, "X25519"])
    with pytest.raises(ConfigurationError):
        set_groups(context, ["NoSuchGroup"])
    # ... leaving nothing on OpenSSL's error queue for pyOpenSSL's next call to trip on
    from cryptography.hazmat.bindings.openssl.binding import Binding

    assert Binding.lib.ERR_peek_error() == 0


async def test_the_server_refuses_a_caller_whose_card_offers_the_hybrid_over_x25519(
    agents: Callable[..., Agent],
) -> None:
    from sealwire.binding import PeerIdentity
    from sealwire_tls._pq_session import TlsSessionInfo
    from sealwire_tls._server import SESSION_KEY

    server = agents("server", options={"post_quantum": "prefer"})
    caller = agents("caller", options={"post_quantum": "prefer"})
    async with server, caller:
        tls_server = _binding(server).servers[0]
        card = server.peer(caller.card)
        peer = PeerIdentity(agent_id=caller.agent_id, identity=caller.identity.public, card=card)
        classical = TlsSessionInfo(stack="test", version="TLSv1.3", cipher=None, group="x25519")
        scope = {"extensions": {"tls": {SESSION_KEY: classical}}}
        with pytest.raises(TlsDowngradeError):
            tls_server._check_key_exchange(scope, peer)
        hybrid = TlsSessionInfo(stack="test", version="TLSv1.3", cipher=None, group=HYBRID_GROUP)
        tls_server._check_key_exchange({"extensions": {"tls": {SESSION_KEY: hybrid}}}, peer)
        assert isinstance(TlsDowngradeError("x"), PolicyError)


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
async def test_large_messages_flow_both_ways(agents: Callable[..., Agent], http2: bool) -> None:
    """4 MiB each way: more than the read and write high-water marks of the carrier."""
    server = agents("server", options={"post_quantum": "require"})
    client = agents("client", serve=False, options={"post_quantum": "require", "http2": http2})
    async with server, client:
        text = "pq" * (2 * 1024 * 1024)
        task = await client.send_message(client.peer(server.card), text, situation=HTTP)
        assert isinstance(task, Task) and task.status.state is TaskState.COMPLETED
        upper = {a.name: a.parts[0].text for a in task.artifacts}["upper"]
        assert upper == text.upper()


async def test_bad_input_ends_its_connection_and_the_server_goes_on(
    agents: Callable[..., Agent],
) -> None:
    server = agents("server", options={"post_quantum": "require"})
    client = agents("client", serve=False, options={"post_quantum": "require"})
    async with server, client:
        parts = urlsplit(server.card.offers[0].url)
        host, port = parts.hostname or "", parts.port or 0
        # Not TLS; a ClientHello cut short then closed; a classical ClientHello (Python's
        # ssl: no common group with a server that requires the hybrid).
        for payload in (b"GET / HTTP/1.1\r\n\r\n" * 4, _client_hello()[:100]):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(payload)
            await writer.drain()
            if payload.startswith(b"GET"):  # refused: at most an alert, then the close
                assert len(await asyncio.wait_for(reader.read(), 20)) < 100
            writer.close()
            await writer.wait_closed()
        classical = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        classical.check_hostname = False
        classical.verify_mode = ssl.CERT_NONE
        with pytest.raises(ssl.SSLError):
            await asyncio.wait_for(asyncio.open_connection(host, port, ssl=classical), 20)
        task = await client.send_message(client.peer(server.card), "still", situation=HTTP)
        assert isinstance(task, Task) and task.status.state is TaskState.COMPLETED


def _client_hello() -> bytes:
    """A real TLS 1.3 ClientHello (pyOpenSSL's first flight)."""
    connection = SSL.Connection(SSL.Context(SSL.TLS_CLIENT_METHOD), None)
    connection.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        connection.do_handshake()
    return bytes(connection.bio_read(65536))


async def test_an_idle_connection_closed_by_the_server_is_not_reused(
    agents: Callable[..., Agent],
) -> None:
    """The server closes a kept-alive connection after its keep-alive timeout; the next
    call opens a new one and succeeds (HTTP/1.1: the carrier reports the close as
    readable, and httpcore drops the connection)."""
    from sealwire.transport.http import HttpListener

    server = agents("server", options={"post_quantum": "prefer"})
    client = agents("client", serve=False, options={"post_quantum": "prefer", "http2": False})
    async with server, client:
        peer = client.peer(server.card)
        await client.send_message(peer, "first", situation=HTTP)
        listeners = [x for x in server._listeners if isinstance(x, HttpListener)]
        assert len(listeners) == 1 and listeners[0]._connections
        await until(lambda: not listeners[0]._connections, "the server closing the idle connection")
        task = await client.send_message(peer, "second", situation=HTTP)
        assert isinstance(task, Task) and task.status.state is TaskState.COMPLETED


async def test_the_carrier_reports_a_peer_close_and_ends_reads() -> None:
    """TlsStream on loopback: idle and open is not readable; once the server closed,
    it is (httpcore's test for reusing a connection), a read ends, a write is dropped."""
    from sealwire_tls._pq import PostQuantum, tls_context
    from sealwire_tls._pq_client import connect_tls
    from sealwire_tls._pq_stream import TlsStream

    server_id = Identity.generate()
    certificate = self_signed_certificate(server_id)
    server_context = tls_context(
        server=True, mode=PostQuantum.REQUIRE, chain=[certificate], key=server_id.signing_key,
        require_certificate=False,
    )  # fmt: skip
    client_context = tls_context(
        server=False, mode=PostQuantum.REQUIRE,
        anchors=[certificate.public_bytes(serialization.Encoding.DER)], alpn=("http/1.1",),
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    served: list[TlsStream] = []
    tasks: list[asyncio.Task[Any]] = []

    def accept() -> TlsStream:
        connection = SSL.Connection(server_context, None)
        connection.set_accept_state()
        return TlsStream(
            connection, lambda s: (served.append(s), tasks.append(loop.create_task(s.handshake())))
        )

    server = await loop.create_server(accept, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        stream = await connect_tls("127.0.0.1", port, client_context, 20)
        await asyncio.gather(*tasks)
        assert stream.ssl_object is not None
        assert stream.ssl_object.info.group == HYBRID_GROUP
        served[0].send(b"ping")
        assert await asyncio.wait_for(stream.recv(100), 20) == b"ping"
        assert not stream.readable()
        served[0].close()
        await until(stream.readable, "the client seeing the server's close")
        stream.send(b"dropped")  # as a socket's kernel drops it
        assert await asyncio.wait_for(stream.recv(100), 20) == b""
        stream.close()
        await stream.wait_closed()
        await served[0].wait_closed()
    finally:
        server.close()
        await server.wait_closed()


def _make_ca(tmp_path: Path) -> dict[str, str]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test operator CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ca.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip
    return {"ca_certificate": str(tmp_path / "ca.pem"), "ca_key": str(tmp_path / "ca.key")}


async def test_an_operator_ca_and_its_host_names_on_the_hybrid(
    agents: Callable[..., Agent], tmp_path: Path
) -> None:
    """With an operator CA the probe checks the chain and the host name on pyOpenSSL too."""
    from sealwire.errors import TrustError

    ca = {**_make_ca(tmp_path), "post_quantum": "require"}
    server = agents("server", options={**ca, "enroll": False})
    elsewhere = agents("elsewhere", options={**ca, "hosts": ["agent.example"]})
    client = agents("client", serve=False, options=ca)
    async with server, elsewhere, client:
        # No enrolment: the CA vouches for the client's certificate in the handshake.
        task = await client.send_message(client.peer(server.card), "ca", situation=HTTP)
        assert isinstance(task, Task) and task.status.state is TaskState.COMPLETED
        conn = await client.connect(client.peer(server.card), HTTP)
        info = session_info(conn.channel)
        assert info is not None and info.group == HYBRID_GROUP
        with pytest.raises(TrustError, match=r"does not name 127\.0\.0\.1"):
            await client.send_message(client.peer(elsewhere.card), "x", situation=HTTP)


async def test_a_silent_connection_is_dropped_after_the_handshake_timeout(
    agents: Callable[..., Agent],
) -> None:
    """A client that connects and never says hello holds its slot for HANDSHAKE_TIMEOUT
    (10 s), no longer; the server serves others meanwhile."""
    server = agents("server", options={"post_quantum": "require"})
    client = agents("client", serve=False, options={"post_quantum": "require"})
    async with server, client:
        parts = urlsplit(server.card.offers[0].url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            task = await client.send_message(client.peer(server.card), "meanwhile", situation=HTTP)
            assert isinstance(task, Task) and task.status.state is TaskState.COMPLETED
            assert await asyncio.wait_for(reader.read(), 60) == b""
        finally:
            writer.close()
            await writer.wait_closed()
