"""The DTLS binding: contract suite, handshakes over datagrams, card and certificate checks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from lossy_udp import LossyProxy
from waiting import until

from sealwire.binding import ChannelClosed, Negotiation, Property
from sealwire.errors import SealwireError
from sealwire.identity import Identity
from sealwire.testing.contract import (
    DatagramBindingContract,
    Party,
    SessionBindingContract,
    make_party,
    negotiation_for,
)
from sealwire.transport import DatagramEndpoint, memory_datagram_pair
from sealwire_tls import session_info
from sealwire_tls._dtls import DtlsEngine, DtlsHandshakeError
from sealwire_tls._dtls_binding import DtlsBinding, DtlsChannel

UDP = ("udp://127.0.0.1:1",)


def party(**options: Any) -> Party:
    return make_party(DtlsBinding, listen=UDP, options=options)


class TestDtlsContract(SessionBindingContract):
    binding_class = DtlsBinding

    def party(self) -> Party:
        return party()


class TestDtlsDatagramContract(DatagramBindingContract):
    binding_class = DtlsBinding


async def pair(
    alice: Party,
    bob: Party,
    *,
    loss: Callable[[bytes], bool] | None = None,
    alice_negotiation: Negotiation | None = None,
    bob_negotiation: Negotiation | None = None,
    expected: Any = None,
    endpoints: tuple[DatagramEndpoint, DatagramEndpoint] | None = None,
) -> tuple[DtlsChannel, DtlsChannel]:
    e1, e2 = endpoints or memory_datagram_pair(loss_for_testing=loss)
    neg = negotiation_for(alice, bob)
    sides = [
        asyncio.ensure_future(
            alice.binding.initiate_datagram(e1, expected or bob.card, alice_negotiation or neg)
        ),
        asyncio.ensure_future(bob.binding.respond_datagram(e2, bob_negotiation or neg)),
    ]
    done, pending = await asyncio.wait(sides, timeout=30, return_when=asyncio.FIRST_EXCEPTION)
    if any(t.exception() is not None for t in done) or pending:
        # The side that refuses closes the session, so the other fails too (soon, or
        # at its handshake timeout once the endpoints are closed): raise the refusal.
        await asyncio.wait(sides, timeout=5)
        await e1.close()
        await e2.close()
        results = await asyncio.gather(*sides, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            decisive = [e for e in errors if not isinstance(e, ChannelClosed | DtlsHandshakeError)]
            raise (decisive or errors)[0]
        raise TimeoutError("handshake did not finish")
    a, b = sides[0].result(), sides[1].result()
    assert isinstance(a, DtlsChannel) and isinstance(b, DtlsChannel)
    return a, b


async def test_datagram_handshake_negotiates_dtls12_aead() -> None:
    alice, bob = party(), party()
    a, b = await pair(alice, bob)
    assert a.version == b.version == "DTLSv1.2"
    assert "GCM" in a.cipher or "CHACHA20" in a.cipher
    assert a.cipher.startswith("ECDHE-ECDSA")
    assert a.peer.agent_id == bob.identity.agent_id
    assert b.peer.agent_id == alice.identity.agent_id
    assert Property.DATAGRAM in a.properties
    await a.send(b"ping")
    assert await asyncio.wait_for(b.receive(), 5) == b"ping"
    await b.send(b"pong")
    assert await asyncio.wait_for(a.receive(), 5) == b"pong"
    await a.close()
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(b.receive(), 5)
    await b.close()


# -- over real loopback UDP ----------------------------------------------------------------


async def udp_server(bob: Party) -> tuple[Any, asyncio.Queue[Any]]:
    """A UDP listener whose handler runs Bob's DTLS responder and echoes frames."""
    from sealwire.transport import serve_datagram

    accepted: asyncio.Queue[Any] = asyncio.Queue()

    async def serve_one(endpoint: DatagramEndpoint) -> None:
        neg = attrs.evolve(negotiation_for(bob, bob), initiator_offers=bob_initiator_offers(bob))
        try:
            channel = await bob.binding.respond_datagram(endpoint, neg)
        except SealwireError as exc:
            accepted.put_nowait(exc)
            raise
        accepted.put_nowait(channel)
        with contextlib.suppress(ChannelClosed):
            while True:
                await channel.send(b"echo:" + await channel.receive())

    listener = await serve_datagram("udp://127.0.0.1:0", serve_one)
    return listener, accepted


def bob_initiator_offers(bob: Party) -> tuple[str, ...]:
    return tuple(o.uri for o in bob.card.offers)  # every party here offers the same: dtls


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("udp://").rsplit(":", 1)
    return host, int(port)


async def test_both_ends_report_the_negotiated_group(caplog: pytest.LogCaptureFixture) -> None:
    """DTLS 1.2 is ECDHE only (no ML-KEM group exists for it): the group is named, classical."""
    caplog.set_level(logging.DEBUG, logger="sealwire_tls.dtls")
    a, b = await pair(party(), party())
    try:
        info_a, info_b = session_info(a), session_info(b)
        assert info_a is not None and info_b is not None
        assert info_a.group == info_b.group and info_a.group in ("x25519", "prime256v1")
        assert info_a.post_quantum is False and info_a.version == "DTLSv1.2"
        logged = [r.getMessage() for r in caplog.records if r.name == "sealwire_tls.dtls"]
        assert sum(f"key exchange {info_a.group}" in m for m in logged) == 2  # both ends
    finally:
        await a.close()
        await b.close()


async def test_loss_and_reordering_between_the_two_sides() -> None:
    """Handshake flights lost and reordered both ways, then records reordered and lost:
    the handshake completes by retransmission (RFC 6347 §4.2.4) and the session carries
    every frame that was not lost, in any order, including a fragmented one."""
    from sealwire.transport import connect_datagram

    alice, bob = party(), party()
    listener, accepted = await udp_server(bob)
    async with listener:

        def fault(direction: str, n: int, datagram: bytes) -> str:
            if direction == "s2c" and n == 0:
                return "drop"  # the first HelloVerifyRequest
            if direction == "s2c" and n == 1:
                return "hold"  # the server's flight: reordered with the next datagram
            if direction == "c2s" and n == 3:
                return "drop"  # part of the client's certificate flight
            if direction == "c2s" and n in (12, 20):
                return "hold"  # application records reordered
            if direction == "c2s" and n == 16:
                return "drop"  # an application record lost
            return "pass"

        proxy = LossyProxy(_host_port(listener.url), fault)
        url = await proxy.start()
        endpoint = await connect_datagram(url)
        try:
            neg = negotiation_for(alice, bob)
            channel = await asyncio.wait_for(
                alice.binding.initiate_datagram(endpoint, bob.card, neg), 60
            )
            assert isinstance(await asyncio.wait_for(accepted.get(), 10), DtlsChannel)
            assert ("s2c", 0, "drop") in proxy.log and ("c2s", 3, "drop") in proxy.log
            sent = [b"m%02d" % n for n in range(12)] + [b"B" * 5000]
            for frame in sent:
                await channel.send(frame)
            received: set[bytes] = set()

            async def collect() -> None:
                while True:
                    received.add(await channel.receive())

            collector = asyncio.ensure_future(collect())
            try:
                expected_lost = {"c2s": 16}
                await until(
                    lambda: len(received) >= len(sent) - 1, "echoes of all but the lost frame"
                )
            finally:
                collector.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await collector
            assert received <= {b"echo:" + f for f in sent}
            assert ("c2s", expected_lost["c2s"], "drop") in proxy.log
            assert any(a == "hold" for d, n, a in proxy.log if d == "c2s" and n >= 12)
            await channel.close()
        finally:
            await endpoint.close()
            proxy.close()


async def test_large_frames_are_fragmented_over_udp() -> None:
    from sealwire.transport import connect_datagram

    alice, bob = party(), party()
    listener, _ = await udp_server(bob)
    async with listener:
        endpoint = await connect_datagram(listener.url)
        channel = await alice.binding.initiate_datagram(
            endpoint, bob.card, negotiation_for(alice, bob)
        )
        for size in (1, 1100, 1200, 20_000, 60_000):
            frame = bytes([size % 251]) * size
            await channel.send(frame)
            assert await asyncio.wait_for(channel.receive(), 10) == b"echo:" + frame
        with pytest.raises(SealwireError):
            await channel.send(b"x" * (alice.binding.max_message + 1))  # type: ignore[attr-defined]
        await channel.close()


async def test_server_keeps_serving_while_bad_input_is_refused() -> None:
    """Spoofed ClientHellos, garbage, an impostor certificate: each refused with a typed
    error, and a good client is served meanwhile by the same listener."""
    from sealwire.transport import connect_datagram
    from sealwire_tls._dtls_certs import DtlsCertificateError

    alice, bob, carol = party(), party(), party()
    listener, accepted = await udp_server(bob)
    async with listener:
        junk = await connect_datagram(listener.url)
        for datagram in (b"\x16\xfe\xff" + b"\x00" * 40, b"hello", b"\x17\xfe\xfd" + b"\x01" * 60):
            await junk.send(datagram)
        # A ClientHello that never returns its cookie (a spoofed source would not see
        # the answer): a HelloVerifyRequest, smaller than the hello, and no state.
        spoofed = DtlsEngine.client(mallory_context()).datagrams()[0]
        await junk.send(spoofed)
        answer = await asyncio.wait_for(junk.receive(), 10)
        assert answer[13] == 3 and len(answer) < len(spoofed)  # hello_verify_request
        # An impostor: Mallory presents Alice's card with her own certificate.
        mallory = party()
        mallory.binding.context = attrs.evolve(mallory.binding.context, card=alice.card)
        bad = await connect_datagram(listener.url)
        impostor = asyncio.ensure_future(
            mallory.binding.initiate_datagram(bad, bob.card, negotiation_for(alice, bob))
        )
        good = await connect_datagram(listener.url)
        channel = await carol.binding.initiate_datagram(good, bob.card, negotiation_for(carol, bob))
        await channel.send(b"still serving")
        assert await asyncio.wait_for(channel.receive(), 10) == b"echo:still serving"
        with pytest.raises(SealwireError):
            await asyncio.wait_for(impostor, 30)
        outcomes = [await asyncio.wait_for(accepted.get(), 30) for _ in range(2)]
        assert any(isinstance(o, DtlsCertificateError) for o in outcomes)
        await channel.close()
        await junk.close()


def mallory_context() -> Any:
    return party().binding.ssl_context(server=False)  # type: ignore[attr-defined]


async def test_replayed_and_stray_records_are_dropped_and_the_session_goes_on() -> None:
    sent: list[bytes] = []

    def capture(datagram: bytes) -> bool:
        sent.append(datagram)
        return False

    e1, e2 = memory_datagram_pair(loss_for_testing=capture)
    a, b = await pair(party(), party(), endpoints=(e1, e2))
    await a.send(b"first")
    assert await asyncio.wait_for(b.receive(), 5) == b"first"
    record = sent[-1]
    epoch2 = record[:3] + b"\x00\x02" + record[5:]
    for bad in (record, epoch2, record[:-1] + bytes([record[-1] ^ 1]), b"\x17junk"):
        await e1.send(bad)  # replayed, unknown epoch, tampered, malformed
    await a.send(b"second")
    assert await asyncio.wait_for(b.receive(), 5) == b"second"
    assert b.rejected == 4
    await a.close()
    await b.close()


async def test_impostor_server_is_refused_by_certificate() -> None:
    from sealwire_tls._dtls_certs import DtlsCertificateError

    alice, bob, carol = party(), party(), party()
    with pytest.raises(DtlsCertificateError):
        await pair(alice, bob, expected=carol.card)


async def test_downgraded_negotiation_is_refused_by_the_exporter() -> None:
    from sealwire_tls._dtls import DtlsAuthenticationError

    alice, bob = party(), party()
    honest = negotiation_for(alice, bob)
    with pytest.raises(DtlsAuthenticationError):
        await pair(alice, bob, bob_negotiation=attrs.evolve(honest, initiator_offers=()))


async def test_idle_session_times_out() -> None:
    alice, bob = party(idle_timeout=0.5), party(idle_timeout=0.5)
    a, b = await pair(alice, bob)
    with pytest.raises(ChannelClosed, match="idle"):
        await asyncio.wait_for(b.receive(), 20)
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(a.receive(), 20)
    await a.close()


async def test_handshake_survives_lost_flights_in_memory() -> None:
    dropped: list[int] = []
    counter = [0]

    def lose(datagram: bytes) -> bool:
        counter[0] += 1
        if counter[0] in (2, 4):  # the HelloVerifyRequest, then the client's second hello
            dropped.append(counter[0])
            return True
        return False

    alice, bob = party(), party()
    a, b = await pair(alice, bob, loss=lose)
    assert dropped == [2, 4]
    await a.send(b"after loss")
    assert await asyncio.wait_for(b.receive(), 5) == b"after loss"
    await a.close()
    await b.close()


def test_dtls_13_option_is_refused_with_the_reason() -> None:
    from sealwire_tls._dtls import DtlsConfigurationError

    with pytest.raises(DtlsConfigurationError, match="RFC 9147"):
        party(versions=["1.3"])


async def test_two_agents_talk_a2a_over_dtls() -> None:
    """The whole path: core's UDP carrier and hello, the policy's datagram rule, the DTLS
    handshake and card exchange, A2A over the channel (a task with artifacts)."""
    from sealwire.agent import Agent
    from sealwire.identity import TrustMode
    from sealwire.model import Task
    from sealwire.policy import Situation
    from sealwire.store import MemoryStore
    from sealwire_tls.testing import tls_registry

    async def handler(task: Any) -> None:
        text = task.message.parts[0].text or ""
        if text == "hi":
            await task.reply("hello")
            return
        await task.artifact(f"{len(text)} chars", name="count")
        await task.artifact(text.upper(), name="upper")
        await task.complete("done")

    made = []
    for name in ("alice", "bob"):
        agent = Agent(
            Identity.generate(),
            MemoryStore(),
            name=name,
            listen=["udp://127.0.0.1:0"],
            registry=tls_registry(),
            trust_mode=TrustMode.TOFU,
        )
        agent.on_message(handler)
        made.append(agent)
    alice, bob = made
    try:
        await alice.start()
        bob_card = await bob.start()
        assert [o.name for o in bob_card.offers] == ["dtls"]
        situation = Situation(datagram=True, online=True)
        decision = alice.policy.decide(bob_card, situation, alice.card)
        assert decision.binding == "dtls" and "only dtls" in decision.reason
        reply = await asyncio.wait_for(alice.send_message(bob_card, "hi", situation=situation), 30)
        assert not isinstance(reply, Task) and reply.parts[0].text == "hello"
        task = await asyncio.wait_for(
            alice.send_message(bob_card, "x" * 3000, situation=situation), 30
        )
        assert isinstance(task, Task)
        assert [a.parts[0].text for a in task.artifacts] == ["3000 chars", "X" * 3000]
    finally:
        for agent in made:
            await agent.stop()
