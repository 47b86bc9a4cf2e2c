"""The TLS binding over HTTP/3 (QUIC, aioquic) on loopback: agents, external clients, refusals.

Two Sealwire agents with ``http3 = true`` talk over HTTP/3 (the answers'
HTTP version is checked where the channel binding is verified); an external
client uses :class:`~sealwire_tls._http3_client.Http3Transport` under
``httpx`` with a pinned client certificate; a missing or unknown client
certificate and a wrong server certificate are refused; the aioquic private
members the binding relies on are guarded.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

import sealwire_tls._client as tls_client
from sealwire.agent import Agent
from sealwire.agent._task_run import TaskContext
from sealwire.errors import ConfigurationError, InternalError, TrustError
from sealwire.identity import Identity
from sealwire.model import Task, TaskState
from sealwire.policy import Situation
from sealwire_tls import TlsBinding, pem, self_signed_certificate
from sealwire_tls._quic import request_client_certificate
from sealwire_tls.http3 import Http3Transport, alt_svc, check_private_api, serve_http3
from sealwire_tls.testing import tls_agent

HTTP = Situation(external_http=True)
HEADERS = {"Content-Type": "application/json", "A2A-Version": "1.0"}


def _rpc(method: str = "SendMessage", text: str = "quic") -> dict[str, Any]:
    message = {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": text}]}
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"message": message}}


async def handler(task: TaskContext) -> None:
    text = task.message.parts[0].text or ""
    await task.working("counting")
    await task.artifact(f"{len(text)} chars", name="count")
    await task.artifact(text.upper(), name="upper")
    await task.complete("done")


@pytest.fixture
async def agents() -> AsyncIterator[Callable[..., Agent]]:
    made: list[Agent] = []

    def make(name: str, **kwargs: Any) -> Agent:
        agent = tls_agent(name, **kwargs)
        agent.on_message(handler)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        await agent.stop()


def _der(identity: Identity) -> bytes:
    return self_signed_certificate(identity).public_bytes(Encoding.DER)


def _transport(server: Agent, caller: Identity | None, pin: bytes | None = None) -> Http3Transport:
    url = httpx.URL(server.card.offers[0].url)
    return Http3Transport(
        url.host, url.port or 443,
        certificate_chain=[self_signed_certificate(caller)] if caller else [],
        private_key=caller.signing_key if caller else None,
        server_certificate=pin or _der(server.identity),
        connect_timeout=5.0,
    )  # fmt: skip


def _external_server(
    agents: Callable[..., Agent], tmp: Any, *allowed: Identity, **opts: Any
) -> Agent:
    path = tmp / "allowed.pem"
    path.write_bytes(pem([self_signed_certificate(i) for i in allowed]))
    return agents("server", options={"http3": True, "client_certificates": [str(path)], **opts})


async def test_two_agents_talk_over_http3(
    agents: Callable[..., Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[str] = []
    original = tls_client.channel_check

    def recording_check(*args: Any) -> Callable[[httpx.Response], None]:
        check = original(*args)

        def record(response: httpx.Response) -> None:
            check(response)  # raises unless the channel binding verifies
            verified.append(response.http_version)

        return record

    monkeypatch.setattr(tls_client, "channel_check", recording_check)
    server = agents("server", options={"http3": True})
    client = agents("client", serve=False, options={"http3": True})
    async with server, client:
        peer = client.peer(server.card)
        offer = peer.offer("tls")
        assert offer is not None and offer.params["http3"] is True
        task = await client.send_message(peer, "hello", situation=HTTP)
        assert isinstance(task, Task) and task.status.state is TaskState.COMPLETED
        assert {a.name: a.parts[0].text for a in task.artifacts} == {
            "count": "5 chars", "upper": "HELLO"}  # fmt: skip
        events = [e async for e in client.stream_message(peer, "stream", situation=HTTP)]
        final = events[-1].status_update
        assert final is not None and final.status.state is TaskState.COMPLETED
        names = [e.artifact_update.artifact.name for e in events if e.artifact_update]
        assert names == ["count", "upper"]
    assert verified and set(verified) == {"HTTP/3"}


async def test_calls_fall_back_to_tcp_when_quic_does_not_get_through(
    agents: Callable[..., Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tls_client, "HTTP3_CONNECT_SECONDS", 0.5)
    server = agents("server", options={"http3": True})
    client = agents("client", serve=False, options={"http3": True})
    async with server, client:
        await server._listeners[0].udp.close()  # UDP blocked on the path
        peer = client.peer(server.card)
        task = await client.send_message(peer, "hello", situation=HTTP)
        assert isinstance(task, Task) and task.status.state is TaskState.COMPLETED
        conn = await client.connect(peer, HTTP)
        answer = await conn.channel._client.get(server.card.offers[0].url + "/x")
        assert answer.http_version == "HTTP/2"  # and the channel binding verified over TCP


async def test_tcp_answers_advertise_http3(agents: Callable[..., Agent]) -> None:
    import ssl

    server = agents("server", options={"http3": True})
    async with server:
        url = server.card.offers[0].url
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(cadata=_der(server.identity))
        async with httpx.AsyncClient(verify=ctx, trust_env=False) as http:
            answer = await http.get(url + "/.well-known/agent-card.json")
        assert answer.headers["alt-svc"] == alt_svc(httpx.URL(url).port or 443)
        # Over HTTP/3 itself there is no Alt-Svc, and the card is readable without a
        # certificate while enrolment is on (as over TCP).
        async with httpx.AsyncClient(transport=_transport(server, None)) as http:
            answer = await http.get(url + "/.well-known/agent-card.json")
            assert answer.status_code == 200 and answer.http_version == "HTTP/3"
            assert "alt-svc" not in answer.headers
            assert (await http.post(url, json=_rpc(), headers=HEADERS)).status_code == 403


async def test_external_client_with_a_pinned_certificate(
    agents: Callable[..., Agent], tmp_path: Any
) -> None:
    caller = Identity.generate()
    server = _external_server(agents, tmp_path, caller)
    async with server:
        server.trust.pin(caller.public)
        url = server.card.offers[0].url
        async with httpx.AsyncClient(transport=_transport(server, caller)) as http:
            answer = await http.post(url, json=_rpc(), headers=HEADERS)
            assert answer.status_code == 200 and answer.http_version == "HTTP/3"
            task = answer.json()["result"]["task"]
            assert task["status"]["state"] == "TASK_STATE_COMPLETED"
            assert {a["name"] for a in task["artifacts"]} == {"count", "upper"}
            # Streamed: Server-Sent Events arrive over the same QUIC connection.
            stream = _rpc("SendStreamingMessage", "sse")
            async with http.stream("POST", url, json=stream, headers=HEADERS) as answer:
                assert answer.headers["content-type"].startswith("text/event-stream")
                body = b"".join([chunk async for chunk in answer.aiter_bytes()])
            events = [json.loads(line[5:]) for line in body.decode().splitlines()
                      if line.startswith("data:")]  # fmt: skip
            assert events[-1]["result"]["statusUpdate"]["status"]["state"] == (
                "TASK_STATE_COMPLETED")  # fmt: skip


async def test_a2a_sdk_client_over_http3(agents: Callable[..., Agent], tmp_path: Any) -> None:
    """An unmodified a2a-sdk client, given an httpx client over HTTP/3, gets its task."""
    import copy

    from a2a.client import ClientConfig, ClientFactory
    from a2a.client.card_resolver import A2ACardResolver
    from a2a.helpers.proto_helpers import new_text_message
    from a2a.types import Role, SendMessageRequest
    from a2a.types import TaskState as SdkTaskState

    caller = Identity.generate()
    server = _external_server(agents, tmp_path, caller)
    async with server:
        server.trust.pin(caller.public)
        url = server.card.offers[0].url
        async with httpx.AsyncClient(transport=_transport(server, caller)) as http:
            card = await A2ACardResolver(http, url).get_agent_card()
            for streaming in (False, True):
                config = ClientConfig(streaming=streaming, httpx_client=http)
                client = ClientFactory(config).create(copy.deepcopy(card))
                message = new_text_message("sdk", role=Role.ROLE_USER)
                events = [e async for e in client.send_message(
                    SendMessageRequest(message=message))]  # fmt: skip
                last = events[-1]
                state = (last.status_update.status.state if streaming
                         else last.task.status.state)  # fmt: skip
                assert state == SdkTaskState.TASK_STATE_COMPLETED


async def test_refused_without_an_admitted_client_certificate(
    agents: Callable[..., Agent], tmp_path: Any
) -> None:
    caller = Identity.generate()
    server = _external_server(agents, tmp_path, caller, enroll=False)
    async with server:
        server.trust.pin(caller.public)
        url = server.card.offers[0].url
        for who in (None, Identity.generate()):  # no certificate; one not among the anchors
            async with httpx.AsyncClient(transport=_transport(server, who)) as http:
                with pytest.raises(httpx.TransportError):
                    await http.get(url + "/.well-known/agent-card.json")
        async with httpx.AsyncClient(transport=_transport(server, caller)) as http:
            assert (await http.post(url, json=_rpc(), headers=HEADERS)).status_code == 200


async def test_a_wrong_server_certificate_is_refused(
    agents: Callable[..., Agent], tmp_path: Any
) -> None:
    caller = Identity.generate()
    server = _external_server(agents, tmp_path, caller)
    async with server:
        url = server.card.offers[0].url
        wrong = _der(Identity.generate())
        async with httpx.AsyncClient(transport=_transport(server, caller, wrong)) as http:
            with pytest.raises(TrustError):
                await http.post(url, json=_rpc(), headers=HEADERS)


async def test_request_bodies_are_bounded_and_app_failures_visible() -> None:
    server_id, caller = Identity.generate(), Identity.generate()
    seen: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        if scope["path"] == "/boom":
            raise RuntimeError("before the answer")
        if scope["path"] == "/half":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            raise RuntimeError("in the middle of the answer")
        seen.append(size)
        status = 413 if size > 1000 else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})

    chain = [self_signed_certificate(server_id)]
    listener = await serve_http3(app, "127.0.0.1", 0, chain=chain, key=server_id.signing_key,
                                 admit=lambda der: True, max_body=1000)  # fmt: skip
    port = listener._server._transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
    transport = Http3Transport("127.0.0.1", port, certificate_chain=[self_signed_certificate(
        caller)], private_key=caller.signing_key, server_certificate=chain[0].public_bytes(
        Encoding.DER))  # fmt: skip
    try:
        async with httpx.AsyncClient(transport=transport) as http:
            url = f"https://127.0.0.1:{port}/"
            assert (await http.post(url, content=b"x" * 1000)).status_code == 200
            assert (await http.post(url, content=b"x" * 50_000)).status_code == 413
            assert (await http.get(url + "boom")).status_code == 500  # app failed: 500
            with pytest.raises(httpx.RemoteProtocolError):  # failed mid-answer: stream reset
                await http.get(url + "half")
    finally:
        await listener.close()
    assert seen[0] == 1000 and 1000 < seen[1] < 50_000


def test_aioquic_private_api_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails loudly when aioquic drops the private members HTTP/3 authentication uses:
    an in-memory handshake must carry the client's certificate to the server."""
    from aioquic.buffer import Buffer  # type: ignore[attr-defined]
    from aioquic.quic.connection import QuicConnection
    from aioquic.quic.packet import pull_quic_header

    from sealwire_tls._quic import peer_certificate_der, quic_configuration

    check_private_api()
    server_id, client_id = Identity.generate(), Identity.generate()
    server_chain, client_chain = ([self_signed_certificate(server_id)],
                                  [self_signed_certificate(client_id)])  # fmt: skip
    client = QuicConnection(
        configuration=quic_configuration(client_chain, client_id.signing_key, is_client=True)
    )
    client.connect(("127.0.0.1", 1), now=0.0)
    first = client.datagrams_to_send(now=0.0)
    initial = pull_quic_header(Buffer(data=first[0][0]), host_cid_length=8)
    server = QuicConnection(configuration=quic_configuration(
        server_chain, server_id.signing_key, is_client=False),
        original_destination_connection_id=initial.destination_cid)  # fmt: skip
    request_client_certificate(server)
    for data, _addr in first:
        server.receive_datagram(data, ("127.0.0.1", 2), now=0.0)
    for _ in range(10):  # datagrams both ways until both handshakes are done
        for data, _addr in client.datagrams_to_send(now=0.0):
            server.receive_datagram(data, ("127.0.0.1", 2), now=0.0)
        for data, _addr in server.datagrams_to_send(now=0.0):
            client.receive_datagram(data, ("127.0.0.1", 1), now=0.0)
    assert server.tls._request_client_certificate is True
    assert peer_certificate_der(server) == client_chain[0].public_bytes(Encoding.DER)
    assert peer_certificate_der(client) == server_chain[0].public_bytes(Encoding.DER)
    monkeypatch.delattr(QuicConnection, "_initialize")
    with pytest.raises(InternalError, match="private API"):
        check_private_api()


async def test_http3_without_aioquic_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in sys.modules if n.split(".")[0] == "aioquic"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if aioquic were not installed
    monkeypatch.delitem(sys.modules, "sealwire_tls._http3", raising=False)
    monkeypatch.delattr(sys.modules["sealwire_tls"], "_http3", raising=False)
    agent = tls_agent("x", options={"http3": True})
    with pytest.raises(ConfigurationError, match=r"sealwire-tls\[http3\]"):
        async with agent:
            pass
    await agent.stop()
    assert TlsBinding.card_parameters(Identity.generate().public, {}).get("http3") is None


async def test_garbage_datagrams_do_not_hurt_the_server(
    agents: Callable[..., Agent], tmp_path: Any
) -> None:
    import asyncio
    import random
    import socket

    caller = Identity.generate()
    server = _external_server(agents, tmp_path, caller)
    async with server:
        server.trust.pin(caller.public)
        url = server.card.offers[0].url
        rng = random.Random(9114)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for size in [0, 1, 20, 1199, 1200, 1500] * 20:
                first = rng.choice([0xC0, 0xC3, 0x40, 0x80, 0x00])  # long/short headers
                data = bytes([first]) + rng.randbytes(max(size - 1, 0)) if size else b""
                sock.sendto(data, ("127.0.0.1", httpx.URL(url).port or 443))
        await asyncio.sleep(0.05)
        async with httpx.AsyncClient(transport=_transport(server, caller)) as http:
            assert (await http.post(url, json=_rpc(), headers=HEADERS)).status_code == 200
