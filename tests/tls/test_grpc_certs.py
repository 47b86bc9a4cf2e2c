"""The TLS binding's second certificate (the ``grpc`` option): an ECDSA P-256 leaf issued by
the agent's identity, chosen by OpenSSL for clients that offer no Ed25519 signature; a
Sealwire peer still gets the Ed25519 certificate and the channel binding; a Sealwire
client accepts the ECDSA chain only as the pinned agent issues it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import select
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from OpenSSL import SSL

from sealwire.agent import Agent
from sealwire.errors import ConfigurationError, TrustError
from sealwire.identity import Identity
from sealwire.model import Task, TaskState
from sealwire.policy import Situation
from sealwire.store import MemoryStore
from sealwire.transport.http import grpc_available
from sealwire_tls import TlsBinding, check_agent_issued, grpc_root_pem, issuer_certificate
from sealwire_tls._certs import ecdsa_certificate, pem
from sealwire_tls._client import check_server_certificate, probe
from sealwire_tls._grpc import GRPC_KEY, grpc_key, grpc_option
from sealwire_tls._pq import hybrid_available, set_signature_algorithms

pytestmark = pytest.mark.skipif(not grpc_available(), reason="a2a-sdk's protos are needed")

HTTP = Situation(external_http=True)
GRPC = {"grpc": True}
PAST = (
    datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC),
    datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC),
)


def _binding(agent: Agent) -> TlsBinding:
    binding = agent._bindings["tls"]
    assert isinstance(binding, TlsBinding)
    return binding


def _address(agent: Agent) -> tuple[str, int]:
    parts = urlsplit(agent.card.offers[0].url or "")
    return parts.hostname or "", parts.port or 443


def _ecdsa_only_handshake(host: str, port: int) -> list[x509.Certificate]:
    """What a client offering no Ed25519 signature (as grpcio's BoringSSL) is sent: a
    pyOpenSSL client offering ECDSA P-256 alone, no certificate of its own."""
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_3_VERSION)
    set_signature_algorithms(context, ["ecdsa_secp256r1_sha256"])
    with socket.create_connection((host, port), timeout=10) as sock:
        connection = SSL.Connection(context, sock)
        connection.set_connect_state()
        while True:
            try:
                connection.do_handshake()
                break
            except SSL.WantReadError:  # a socket with a timeout is non-blocking
                assert select.select([sock], [], [], 10)[0], "no answer from the server"
        chain = connection.get_peer_cert_chain(as_cryptography=True) or []
        with contextlib.suppress(SSL.Error):
            connection.shutdown()
    return list(chain)


def test_the_leaf_is_issued_by_the_agent_identity() -> None:
    identity = Identity.generate()
    key = ec.generate_private_key(ec.SECP256R1())
    leaf, root = ecdsa_certificate(identity, key), issuer_certificate(identity)
    leaf.verify_directly_issued_by(root)
    check_agent_issued(leaf, identity.signing_key.public_key())
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert root.subject == root.issuer == leaf.issuer
    assert leaf.subject != leaf.issuer
    assert ecdsa_certificate(identity, key) == leaf  # deterministic, as the agent's own
    assert grpc_root_pem(identity) == pem([root])


def test_the_key_is_kept_in_the_store() -> None:
    store = MemoryStore()
    first = grpc_key(store)
    assert store.get("tls", GRPC_KEY) is not None
    again = grpc_key(store)
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert first.public_key().public_bytes(*raw) == again.public_key().public_bytes(*raw)
    store.put("tls", GRPC_KEY, b"\x30\x03garbage")
    with pytest.raises(ConfigurationError):
        grpc_key(store)


def _impostor(identity: Identity, key: ec.EllipticCurvePrivateKey, case: str) -> x509.Certificate:
    """An ECDSA leaf on ``key`` that a Sealwire client must refuse for ``identity``'s agent."""
    if case == "expired":
        return ecdsa_certificate(identity, key, validity=PAST)
    if case == "for another agent":  # genuine, but another agent's
        return ecdsa_certificate(Identity.generate(), key)
    genuine = ecdsa_certificate(identity, key)  # the same names, signed by another key
    builder = x509.CertificateBuilder(
        issuer_name=genuine.issuer, subject_name=genuine.subject, public_key=key.public_key(),
        serial_number=genuine.serial_number, not_valid_before=genuine.not_valid_before_utc,
        not_valid_after=genuine.not_valid_after_utc, extensions=list(genuine.extensions),
    )  # fmt: skip
    return builder.sign(ed25519.Ed25519PrivateKey.generate(), None)


CASES = ["signed by another key", "expired", "for another agent"]


@pytest.mark.parametrize("case", CASES)
def test_an_impostor_leaf_is_refused(case: str) -> None:
    identity = Identity.generate()
    leaf = _impostor(identity, ec.generate_private_key(ec.SECP256R1()), case)
    with pytest.raises(TrustError):
        check_agent_issued(leaf, identity.signing_key.public_key())
    with pytest.raises(TrustError):
        check_server_certificate(leaf.public_bytes(serialization.Encoding.DER), identity.public)


@pytest.mark.parametrize("post_quantum", [False, "prefer"])
async def test_a_sealwire_peer_gets_the_ed25519_certificate(
    agents: Callable[..., Agent], post_quantum: bool | str
) -> None:
    """Both choices on one endpoint: Ed25519 to a client offering it (the agent's own
    certificate, the channel binding verified on a real call), the ECDSA chain [leaf,
    issuing certificate] to one without it; with post_quantum too (both ends)."""
    if post_quantum and not hybrid_available():
        pytest.skip("cryptography's OpenSSL has no X25519MLKEM768")
    pq = {"post_quantum": post_quantum}
    server = agents("server", options={**GRPC, **pq})
    client = agents("client", serve=False, options=pq)
    async with server, client:
        host, port = _address(server)
        der = await probe(host, port, None, 10)
        assert der == _binding(server).certificate.public_bytes(serialization.Encoding.DER)
        task = await client.send_message(client.peer(server.card), "hello", situation=HTTP)
        assert isinstance(task, Task) and task.status.state is TaskState.COMPLETED

        chain = await asyncio.to_thread(_ecdsa_only_handshake, host, port)
        assert len(chain) == 2
        assert isinstance(chain[0].public_key(), ec.EllipticCurvePublicKey)
        assert chain[1] == issuer_certificate(server.identity)
        check_agent_issued(chain[0], server.identity.signing_key.public_key())


async def test_a_sealwire_peer_given_the_ecdsa_chain_accepts_it(
    agents: Callable[..., Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server preferring ECDSA (OpenSSL's own order) gives every client the ECDSA chain:
    the Sealwire client pins the agent-issued leaf and the channel binding names it."""
    from sealwire_tls import _pq

    monkeypatch.setattr(_pq, "SERVER_SIGNATURE_ALGORITHMS", ("ecdsa_secp256r1_sha256", "ed25519"))
    server = agents("server", options=GRPC)
    client = agents("client", serve=False)
    async with server, client:
        der = await probe(*_address(server), None, 10)
        leaf = x509.load_der_x509_certificate(der)
        assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
        task = await client.send_message(client.peer(server.card), "hello", situation=HTTP)
        assert isinstance(task, Task) and task.status.state is TaskState.COMPLETED
        events = [e async for e in client.stream_message(client.peer(server.card), "again",
                                                           situation=HTTP)]  # fmt: skip
        assert events[-1].status_update is not None


@contextlib.asynccontextmanager
async def _server_presenting(
    chain: list[x509.Certificate], key: ec.EllipticCurvePrivateKey, folder: Path
) -> AsyncIterator[str]:
    """A bare TLS 1.3 server presenting ``chain`` (an impostor): its ``https://`` URL."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    (folder / "chain.pem").write_bytes(pem(chain))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )  # fmt: skip
    context.load_cert_chain(folder / "chain.pem", folder / "key.pem")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    try:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("case", CASES)
async def test_an_impostor_ecdsa_server_is_refused(
    agents: Callable[..., Agent], case: str, tmp_path: Path
) -> None:
    """The client means to reach ``meant``; a server presenting an ECDSA chain it did not
    issue answers at that URL: the channel is refused before any request."""
    meant = agents("meant", options=GRPC)
    client = agents("client", serve=False)
    async with meant, client:
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _impostor(meant.identity, key, case)
        peer = client.peer(meant.card)
        negotiation = client.explain(peer, HTTP).negotiation
        async with _server_presenting([leaf], key, tmp_path) as url:
            with pytest.raises(TrustError):
                await _binding(client).connect(url, peer, negotiation)


def test_grpc_refuses_resumption() -> None:
    with pytest.raises(ConfigurationError, match="resumption"):
        grpc_option({"grpc": True, "resumption": True})


def test_grpc_needs_the_a2a_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from sealwire_tls import _grpc

    monkeypatch.setattr(_grpc, "grpc_available", lambda: False)
    with pytest.raises(ConfigurationError, match=r"sealwire-tls\[grpc\]"):
        grpc_option({"grpc": True})
    assert grpc_option({}) is False
    with pytest.raises(ConfigurationError, match="true or false"):
        grpc_option({"grpc": "yes"})


async def test_grpc_beside_http3(agents: Callable[..., Agent]) -> None:
    """``http3`` keeps serving QUIC (the Ed25519 certificate); TCP runs on the pyOpenSSL
    stack with both certificates, and advertises HTTP/3."""
    pytest.importorskip("aioquic")
    server = agents("server", options={**GRPC, "http3": True})
    client = agents("client", serve=False, options={"http3": True})
    async with server, client:
        task = await client.send_message(client.peer(server.card), "hello", situation=HTTP)
        assert isinstance(task, Task) and task.status.state is TaskState.COMPLETED
        host, port = _address(server)
        chain = await asyncio.to_thread(_ecdsa_only_handshake, host, port)
        check_agent_issued(chain[0], server.identity.signing_key.public_key())
        assert await probe(host, port, None, 10) == _binding(server).certificate.public_bytes(
            serialization.Encoding.DER
        )


def test_the_configuration_check_knows_grpc() -> None:
    TlsBinding.check_options({"grpc": True})
    with pytest.raises(ConfigurationError, match="true or false"):
        TlsBinding.check_options({"grpc": "yes"})
    with pytest.raises(ConfigurationError, match="resumption"):
        TlsBinding.check_options({"grpc": True, "resumption": True})
