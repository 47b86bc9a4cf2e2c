"""The TLS binding end to end on loopback HTTPS: agents, refusals, downgrades, CA mode."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sealwire.agent import Agent, TaskContext
from sealwire.agent._rpc import RpcConnection
from sealwire.binding import Negotiation, PeerIdentity, Property, SecureChannel
from sealwire.codec import A2AError, Method
from sealwire.errors import SealwireError, TrustError
from sealwire.identity import Identity, verify_card
from sealwire.model import Message, Part, Role, SendMessageRequest, Task, TaskState
from sealwire.policy import PolicyConfig, Situation
from sealwire.store import MemoryStore
from sealwire.testing.ports import free_port
from sealwire.transport import TransportError
from sealwire_tls import (
    CHANNEL_BINDING_HEADER,
    TlsBinding,
    certificate_key,
    client_context,
    self_signed_certificate,
)
from sealwire_tls.testing import export_client_files, tls_registry

HTTP = Situation(external_http=True)
RPC = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {
    "messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "curl"}]}}}  # fmt: skip


def _texts(task: Task) -> dict[str, str]:
    return {a.name or "": a.parts[0].text or "" for a in task.artifacts}


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
async def test_send_and_stream_between_agents(agents: Callable[..., Agent], http2: bool) -> None:
    server = agents("server")
    client = agents("client", serve=False, options={"http2": http2})
    async with server, client:
        peer = client.peer(server.card)
        task = await client.send_message(peer, "hello", situation=HTTP)
        assert isinstance(task, Task) and task.status.state is TaskState.COMPLETED
        assert _texts(task) == {"count": "5 chars", "upper": "HELLO"}
        events = [e async for e in client.stream_message(peer, "stream", situation=HTTP)]
        final = events[-1].status_update
        assert final is not None and final.status.state is TaskState.COMPLETED
        names = [e.artifact_update.artifact.name for e in events if e.artifact_update]
        assert names == ["count", "upper"]
        conn = await client.connect(peer, HTTP)
        assert conn.peer.agent_id == server.agent_id
        assert {Property.MUTUAL_AUTH, Property.HTTP_INTEROP} <= conn.channel.properties
        # The server learnt the caller from its certificate and card.
        owner = PeerIdentity(agent_id=client.agent_id, identity=client.identity.public)
        assert server.tasks.get(task.id, owner, None).id == task.id


def _pinned(server: Agent, cert: bytes | None = None) -> ssl.SSLContext:
    der = self_signed_certificate(server.identity).public_bytes(serialization.Encoding.DER)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=der)
    return ctx


async def test_card_lists_the_jsonrpc_interface_and_verifies(agents: Callable[..., Agent]) -> None:
    server = agents("server")
    async with server:
        url = server.card.offers[0].url
        async with httpx.AsyncClient(verify=_pinned(server), trust_env=False) as http:
            card = (await http.get(url + "/.well-known/agent-card.json")).json()
    verified = verify_card(card)
    assert verified.agent_id == server.agent_id
    bindings = [(i["protocolBinding"], i["url"]) for i in card["supportedInterfaces"]]
    assert bindings == [(TlsBinding.info.uri, url), ("JSONRPC", url), ("HTTP+JSON", url)]
    params = verified.offer("tls")
    assert params is not None and params.params["certificateKey"] == "signingKey"


def _external(
    tmp_path: Path, server: Agent, identity: Identity, *, tls12: bool = False
) -> ssl.SSLContext:
    cert, key, server_pem = export_client_files(identity, tmp_path, self_signed_certificate(
        server.identity))  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=server_pem)
    ctx.load_cert_chain(cert, key)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def test_external_clients_need_a_pinned_certificate(
    agents: Callable[..., Agent], tmp_path: Path
) -> None:
    outsider, pinned = Identity.generate(), Identity.generate()
    cert_file = tmp_path / "allowed.pem"
    cert_file.write_bytes(self_signed_certificate(pinned).public_bytes(serialization.Encoding.PEM)
                          + self_signed_certificate(outsider).public_bytes(
                              serialization.Encoding.PEM))  # fmt: skip
    server = agents("server", options={"client_certificates": [str(cert_file)]})
    async with server:
        url = server.card.offers[0].url
        server.trust.pin(pinned.public)
        async with httpx.AsyncClient(verify=_pinned(server), trust_env=False) as http:
            assert (await http.post(url, json=RPC)).status_code == 403  # no certificate
        ok = _external(tmp_path, server, pinned)
        async with httpx.AsyncClient(verify=ok, trust_env=False, http2=True) as http:
            answer = await http.post(url, json=RPC)
            assert answer.status_code == 200 and answer.http_version == "HTTP/2"
            assert answer.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
        known_not_pinned = _external(tmp_path, server, outsider)
        async with httpx.AsyncClient(verify=known_not_pinned, trust_env=False) as http:
            assert (await http.post(url, json=RPC)).status_code == 403
        for ctx in (_external(tmp_path, server, Identity.generate()),  # unknown certificate
                    _external(tmp_path, server, pinned, tls12=True)):  # TLS 1.2 only  # fmt: skip
            async with httpx.AsyncClient(verify=ctx, trust_env=False) as http:
                with pytest.raises(httpx.TransportError):
                    await http.post(url, json=RPC)


async def test_without_enrolment_the_handshake_requires_a_certificate(
    agents: Callable[..., Agent], tmp_path: Path
) -> None:
    server = agents("server", options={"enroll": False})
    client = agents("client", serve=False)
    async with server, client:
        url = server.card.offers[0].url
        async with httpx.AsyncClient(verify=_pinned(server), trust_env=False) as http:
            with pytest.raises(httpx.TransportError):
                await http.get(url + "/.well-known/agent-card.json")
        with pytest.raises(SealwireError):  # not enrolled, not configured: refused
            await client.send_message(client.peer(server.card), "x", situation=HTTP)


def _binding(agent: Agent) -> TlsBinding:
    binding = agent._bindings["tls"]
    assert isinstance(binding, TlsBinding)
    return binding


async def _call(channel: SecureChannel) -> Any:
    conn = RpcConnection(channel, None)
    conn.start()
    try:
        message = Message(message_id="m", role=Role.USER, parts=(Part.from_text("m"),))
        return await conn.call(Method.SEND_MESSAGE, SendMessageRequest(message=message))
    finally:
        await conn.close()


async def test_a_downgraded_negotiation_is_refused(agents: Callable[..., Agent]) -> None:
    server = agents("server")
    client = agents("client", serve=False)
    async with server, client:
        peer = client.peer(server.card)
        honest = client.explain(peer, HTTP).negotiation
        for tampered in (attrs.evolve(honest, responder_offers=()),
                         attrs.evolve(honest, chosen="urn:sealwire:binding:noise:1")):  # fmt: skip
            channel = await _binding(client).connect(peer.offers[0].url, peer, tampered)
            assert channel is not None
            with pytest.raises(A2AError, match="403"):
                await _call(channel)


async def test_an_impostor_server_is_refused(agents: Callable[..., Agent]) -> None:
    server, other = agents("server"), agents("other")
    client = agents("client", serve=False)
    async with server, other, client:
        meant = client.peer(other.card)
        negotiation = client.explain(meant, HTTP).negotiation
        with pytest.raises(TrustError):  # Alice means to reach Other; Server answers
            await _binding(client).connect(server.card.offers[0].url, meant, negotiation)


async def test_a_denied_caller_is_refused(agents: Callable[..., Agent]) -> None:
    server = agents("server")
    client = agents("client", serve=False)
    async with server, client:
        peer = client.peer(server.card)
        await client.send_message(peer, "first", situation=HTTP)
        server.trust.deny(client.agent_id)
        with pytest.raises(A2AError, match="403"):
            await client.send_message(peer, "second", situation=HTTP)


async def test_a_caller_denied_by_configuration_is_refused(agents: Callable[..., Agent]) -> None:
    client = agents("client", serve=False)
    server = agents("server", policy=PolicyConfig(deny_peers=frozenset({client.agent_id})))
    async with server, client:
        peer = client.peer(server.card)
        for stream in (False, True):  # refused before a JSON-RPC answer or a stream starts
            with pytest.raises(A2AError, match="403"):
                if stream:
                    [_ async for _ in client.stream_message(peer, "x", situation=HTTP)]
                else:
                    await client.send_message(peer, "x", situation=HTTP)


def _channel_response(value: str | None, version: str = "HTTP/2") -> httpx.Response:
    headers = {} if value is None else {CHANNEL_BINDING_HEADER: value}
    return httpx.Response(200, headers=headers, extensions={"http_version": version.encode()})


def test_the_channel_binding_check() -> None:
    from sealwire_tls._channel import b64url, channel_binding_data
    from sealwire_tls._client import channel_check

    server = Identity.generate()
    honest = Negotiation(chosen="urn:sealwire:binding:tls:1", initiator_offers=("a",),
                         responder_offers=("urn:sealwire:binding:tls:1",))  # fmt: skip
    server_fp, client_fp = b"s" * 32, b"c" * 32
    good = b64url(server.sign(channel_binding_data(honest, server_fp, client_fp, "HTTP/2")))
    channel_check(server.public, honest, server_fp, client_fp)(_channel_response(good))
    bad_cases = [
        (honest, server_fp, client_fp, _channel_response(None)),
        (honest, server_fp, client_fp, _channel_response(good, "HTTP/1.1")),
        (attrs.evolve(honest, initiator_offers=()), server_fp, client_fp, _channel_response(good)),
        (honest, b"x" * 32, client_fp, _channel_response(good)),
        (honest, server_fp, b"x" * 32, _channel_response(good)),
    ]
    for negotiation, sfp, cfp, response in bad_cases:
        with pytest.raises(SealwireError):
            channel_check(server.public, negotiation, sfp, cfp)(response)
    with pytest.raises(SealwireError):
        channel_check(Identity.generate().public, honest, server_fp, client_fp)(
            _channel_response(good)
        )


def _make_ca(tmp_path: Path) -> dict[str, str]:
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


async def test_certificates_issued_by_an_operator_ca(
    agents: Callable[..., Agent], tmp_path: Path
) -> None:
    ca = _make_ca(tmp_path)
    server = agents("server", options={**ca, "enroll": False})
    client = agents("client", serve=False, options=ca)
    async with server, client:
        issued = _binding(server).certificate
        assert issued.issuer.rfc4514_string() == "CN=test operator CA"
        assert certificate_key(issued).public_bytes_raw() == server.identity.public.raw()[0]
        # No enrolment: the CA vouches for the client's certificate in the handshake.
        task = await client.send_message(client.peer(server.card), "ca", situation=HTTP)
        assert isinstance(task, Task) and _texts(task)["upper"] == "CA"


def test_client_context_is_tls13_only() -> None:
    identity = Identity.generate()
    der = self_signed_certificate(identity).public_bytes(serialization.Encoding.DER)
    ctx = client_context(None, der)
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode is ssl.CERT_REQUIRED


async def test_an_https_listen_url_is_offered_at_its_bound_port(
    agents: Callable[..., Agent],
) -> None:
    server = Agent(
        Identity.generate(), MemoryStore(), name="server", listen=["https://127.0.0.1:0"],
        registry=tls_registry(),
    )  # fmt: skip

    async def reply(task: TaskContext) -> None:
        await task.reply("hi")

    server.on_message(reply)
    client = agents("client", serve=False)
    async with server, client:
        offer = server.card.offer("tls")
        assert offer is not None and offer.url.startswith("https://127.0.0.1:")
        assert not offer.url.endswith(":0")
        assert await client.send_message(client.peer(server.card), "hi", situation=HTTP)


async def test_reconnecting_reuses_the_tls_context(
    agents: Callable[..., Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second channel to the same server reuses our SSLContext (no key reload)."""
    from sealwire_tls import _client

    made: list[ssl.SSLContext] = []  # contexts holding our certificate (not enrolment's)
    original = _client.client_context

    def counted(*args: Any) -> ssl.SSLContext:
        ctx = original(*args)
        if args[0] is not None:
            made.append(ctx)
        return ctx

    monkeypatch.setattr(_client, "client_context", counted)
    server = agents("server")
    client = agents("client", serve=False)
    async with server, client:
        peer = client.peer(server.card)
        negotiation = client.explain(peer, HTTP).negotiation
        for _ in range(2):
            channel = await _binding(client).connect(peer.offers[0].url, peer, negotiation)
            assert channel is not None
            try:
                await _call(channel)
            finally:
                await channel.close()
    assert len(made) == 1


async def test_a_server_named_by_host_name_is_probed_through_the_lookup(
    agents: Callable[..., Agent],
) -> None:
    """The probe (the certificate a client pins) looks a name up with
    ``sealwire.transport.resolve`` and dials the addresses it gives in turn."""
    from sealwire_tls import _client

    server = agents("server")
    async with server:
        offer = server.card.offer("tls")
        assert offer is not None
        port = urlsplit(offer.url).port
        assert port is not None
        der = await _client.probe("localhost", port, None, 5.0)
        expected = self_signed_certificate(server.identity).public_bytes(serialization.Encoding.DER)
        assert der == expected
        with pytest.raises(TransportError, match="cannot reach"):
            await _client.probe("localhost", free_port(), None, 5.0)
