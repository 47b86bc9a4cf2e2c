"""The Noise binding over memory, real loopback TCP, WebSocket and UDP.

Checks: mutual authentication through the signed cards, rejection of
tampered / truncated / replayed / reordered records and packets with typed
errors and no state change, a static-key-swapping man in the middle, trust
store refusal before any application data, downgrade of the negotiation,
fragmentation, rekey in step, and the ML-KEM hybrid negotiation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from sealwire.agent import Agent, TaskContext
from sealwire.agent._card import build_card
from sealwire.binding import BindingContext, ChannelClosed, Negotiation, Property
from sealwire.errors import AuthenticationError, DecodeError, TrustError
from sealwire.identity import Identity, PublicIdentity, TrustMode, TrustStore, verify_card
from sealwire.model import Task, TaskState
from sealwire.plugins import load_registry
from sealwire.store import MemoryStore
from sealwire.testing.contract import DatagramBindingContract, SessionBindingContract
from sealwire.transport import (
    FrameStream,
    connect,
    connect_datagram,
    memory_datagram_pair,
    memory_pair,
    serve,
    serve_datagram,
)
from sealwire_noise import (
    NoiseAuthenticationError,
    NoiseRemoteProtocolError,
    NoiseTrustError,
    ReplayedPacketError,
)
from sealwire_noise import plugin as noise_plugin
from sealwire_noise._binding import NoiseBinding
from sealwire_noise._channel import MAX_FRAGMENT, NoiseChannel
from sealwire_noise._datagram import NoiseDatagramChannel
from sealwire_noise.plugin import sealwire_bindings

URI = NoiseBinding.info.uri


@attrs.define
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def make_binding(options: dict[str, Any] | None = None, **context: Any) -> NoiseBinding:
    identity = Identity.generate()
    opts = options or {}
    card = verify_card(
        build_card(
            identity,
            name="agent",
            description="noise test agent",
            version="0",
            bindings=[NoiseBinding],
            listen_urls=("tcp://127.0.0.1:1", "udp://127.0.0.1:1"),
            relay_address=None,
            options={"noise": opts},
        )
    )
    store = MemoryStore()
    ctx = BindingContext(
        identity=identity,
        card=card,
        store=store,
        trust=TrustStore(store, TrustMode.TOFU),
        options=opts,
        **context,
    )
    return NoiseBinding(ctx)


def negotiation(a: NoiseBinding, b: NoiseBinding) -> Negotiation:
    return Negotiation(
        chosen=URI,
        initiator_offers=tuple(o.uri for o in a.context.card.offers),
        responder_offers=tuple(o.uri for o in b.context.card.offers),
    )


async def connect_pair(
    a: NoiseBinding,
    b: NoiseBinding,
    streams: tuple[FrameStream, FrameStream] | None = None,
    *,
    responder_negotiation: Negotiation | None = None,
) -> tuple[Any, Any]:
    s1, s2 = streams or memory_pair()
    neg = negotiation(a, b)
    return await asyncio.gather(
        a.initiate(s1, b.context.card, neg), b.respond(s2, responder_negotiation or neg)
    )


def test_plugin_contributes_the_binding() -> None:
    assert list(sealwire_bindings()) == [NoiseBinding]
    assert URI == "urn:sealwire:binding:noise:1"


@pytest.mark.parametrize("patterns", [["IK", "XX"], ["XX"], ["XK"]])
async def test_memory_session_authenticates_both_sides(patterns: list[str]) -> None:
    alice, bob = make_binding({"patterns": patterns}), make_binding({"patterns": patterns})
    ca, cb = await connect_pair(alice, bob)
    assert ca.protocol_name.startswith(f"Noise_{patterns[0]}_25519_ChaChaPoly_SHA256")
    assert ca.peer.agent_id == bob.context.card.agent_id
    assert cb.peer.agent_id == alice.context.card.agent_id
    assert ca.properties == NoiseBinding.info.properties
    assert Property.POST_QUANTUM not in ca.properties
    await ca.send(b"hello bob")
    assert await cb.receive() == b"hello bob"
    await cb.send(b"hello alice")
    assert await ca.receive() == b"hello alice"
    await ca.close()
    with pytest.raises(ChannelClosed):
        await cb.receive()


async def test_large_frames_are_fragmented_and_reassembled() -> None:
    alice, bob = make_binding(), make_binding()
    ca, cb = await connect_pair(alice, bob)
    frame = bytes(range(256)) * 1000  # 256 000 bytes: four records
    await ca.send(frame)
    assert await cb.receive() == frame
    await ca.send(b"x" * MAX_FRAGMENT)
    assert await cb.receive() == b"x" * MAX_FRAGMENT


async def test_rekey_by_count_and_by_time_stays_in_step() -> None:
    clock = Clock()
    alice = make_binding({"rekey_messages": 3}, clock=clock)
    bob = make_binding({"rekey_seconds": 10}, clock=clock)
    ca, cb = await connect_pair(alice, bob)
    for n in range(10):
        await ca.send(b"a%d" % n)
        assert await cb.receive() == b"a%d" % n
        clock.now += 6  # bob's direction rekeys every other message
        await cb.send(b"b%d" % n)
        assert await ca.receive() == b"b%d" % n


class Tap:
    """A FrameStream end whose outgoing frames can be held for tampering."""

    def __init__(self, inner: FrameStream) -> None:
        self.inner = inner
        self.max_frame_size = inner.max_frame_size
        self.peer_address = inner.peer_address
        self.hold = False
        self.held: list[bytes] = []

    async def send(self, frame: bytes) -> None:
        if self.hold:
            self.held.append(frame)
        else:
            await self.inner.send(frame)

    async def receive(self) -> bytes:
        return await self.inner.receive()

    async def close(self) -> None:
        await self.inner.close()


async def _tapped_pair() -> tuple[Tap, NoiseChannel, NoiseChannel]:
    alice, bob = make_binding(), make_binding()
    s1, s2 = memory_pair()
    tap = Tap(s1)
    ca, cb = await connect_pair(alice, bob, (tap, s2))
    tap.hold = True
    await ca.send(b"first")
    await ca.send(b"second")
    return tap, ca, cb


async def test_tampered_truncated_replayed_reordered_records() -> None:
    tap, _ca, cb = await _tapped_pair()
    r1, r2 = tap.held
    bad = [r1[:-1] + bytes([r1[-1] ^ 1]), r1[:-1], r1[:10], r2]  # tampered, truncated, reordered
    for record in bad:
        await tap.inner.send(record)
        with pytest.raises((AuthenticationError, DecodeError)):
            await cb.receive()
    await tap.inner.send(r1)
    assert await cb.receive() == b"first"  # the state did not move
    await tap.inner.send(r1)  # replayed
    with pytest.raises(NoiseAuthenticationError):
        await cb.receive()
    await tap.inner.send(r2)
    assert await cb.receive() == b"second"


async def test_mitm_swapping_the_static_key_is_caught() -> None:
    alice, bob = make_binding({"patterns": ["XX"]}), make_binding({"patterns": ["XX"]})
    # Mallory presents Bob's genuine signed card but holds her own X25519 key.
    mallory_identity = attrs.evolve(
        bob.context.identity, agreement_key=x25519.X25519PrivateKey.generate()
    )
    mallory = NoiseBinding(attrs.evolve(bob.context, identity=mallory_identity))
    s1, s2 = memory_pair()
    results = await asyncio.gather(
        alice.initiate(s1, bob.context.card, negotiation(alice, bob)),
        mallory.respond(s2, negotiation(alice, bob)),
        return_exceptions=True,
    )
    assert isinstance(results[0], NoiseTrustError)
    assert not isinstance(results[1], NoiseChannel)


async def test_mitm_cannot_answer_ik_without_the_key() -> None:
    alice, bob = make_binding(), make_binding()
    mallory_identity = attrs.evolve(
        bob.context.identity, agreement_key=x25519.X25519PrivateKey.generate()
    )
    mallory = NoiseBinding(attrs.evolve(bob.context, identity=mallory_identity))
    s1, s2 = memory_pair()
    results = await asyncio.gather(
        alice.initiate(s1, bob.context.card, negotiation(alice, bob)),
        mallory.respond(s2, negotiation(alice, bob)),
        return_exceptions=True,
    )
    assert isinstance(results[1], NoiseAuthenticationError)
    assert isinstance(results[0], Exception)


async def test_trust_store_mismatch_aborts_before_application_data() -> None:
    alice, bob = make_binding({"patterns": ["XX"]}), make_binding({"patterns": ["XX"]})
    real = bob.context.card.identity
    impostor_keys = PublicIdentity.from_keys(
        real.signing_key, x25519.X25519PrivateKey.generate().public_key()
    )
    alice.context.trust.pin(impostor_keys)  # Alice pinned other keys for Bob's agent id
    s1, s2 = memory_pair()
    results = await asyncio.gather(
        alice.initiate(s1, bob.context.card, negotiation(alice, bob)),
        bob.respond(s2, negotiation(alice, bob)),
        return_exceptions=True,
    )
    assert isinstance(results[0], TrustError)
    assert not isinstance(results[1], NoiseChannel)  # Bob never got a channel


async def test_denied_initiator_is_refused_by_the_responder() -> None:
    alice, bob = make_binding(), make_binding()
    bob.context.trust.deny(alice.context.card.agent_id)
    results = await asyncio.gather(*_pair_coros(alice, bob), return_exceptions=True)
    assert isinstance(results[1], TrustError)
    assert isinstance(results[0], Exception)  # Alice sees the connection end, no channel


def _pair_coros(a: NoiseBinding, b: NoiseBinding) -> list[Awaitable[Any]]:
    s1, s2 = memory_pair()
    return [a.initiate(s1, b.context.card, negotiation(a, b)), b.respond(s2, negotiation(a, b))]


async def test_downgraded_negotiation_fails_the_handshake() -> None:
    alice, bob = make_binding(), make_binding()
    honest = negotiation(alice, bob)
    downgraded = attrs.evolve(honest, initiator_offers=("urn:sealwire:binding:tls:1",))
    s1, s2 = memory_pair()
    results = await asyncio.gather(
        alice.initiate(s1, bob.context.card, honest),
        bob.respond(s2, downgraded),
        return_exceptions=True,
    )
    assert isinstance(results[1], NoiseAuthenticationError)
    assert isinstance(results[0], Exception)


@pytest.mark.parametrize("pattern", ["IK", "XX"])
async def test_post_quantum_hybrid_when_both_enable_it(pattern: str) -> None:
    opts = {"post_quantum": True, "patterns": [pattern]}
    alice, bob = make_binding(opts), make_binding(opts)
    ca, cb = await connect_pair(alice, bob)
    assert ca.protocol_name == f"Noise_{pattern}hfs_25519+MLKEM768_ChaChaPoly_SHA256"
    assert Property.POST_QUANTUM in ca.properties and Property.POST_QUANTUM in cb.properties
    await cb.send(b"pq")
    assert await ca.receive() == b"pq"


async def test_post_quantum_is_off_by_default_and_required_is_enforced() -> None:
    alice, bob = make_binding(), make_binding({"post_quantum": True})
    ca, _ = await connect_pair(alice, bob)
    assert "hfs" not in ca.protocol_name
    carol = make_binding({"post_quantum": "required"})
    results = await asyncio.gather(*_pair_coros(alice, carol), return_exceptions=True)
    assert isinstance(results[1], NoiseRemoteProtocolError)  # carol refuses classic Noise
    assert not isinstance(results[0], NoiseChannel)
    with pytest.raises(Exception, match="post-quantum"):
        carol.start_initiator(alice.context.card, negotiation(carol, alice))


# -- real loopback sockets -----------------------------------------------------------


async def _echo_server(
    bob: NoiseBinding, url: str, neg: Negotiation
) -> tuple[Any, asyncio.Queue[Any]]:
    channels: asyncio.Queue[Any] = asyncio.Queue()

    async def handler(stream: FrameStream) -> None:
        channel = await bob.respond(stream, neg)
        await channels.put(channel)
        with contextlib.suppress(ChannelClosed):
            while True:
                await channel.send(b"echo:" + await channel.receive())

    return await serve(url, handler), channels


@pytest.mark.parametrize("scheme", ["tcp", "ws"])
async def test_loopback_stream(scheme: str) -> None:
    alice, bob = make_binding(), make_binding()
    neg = negotiation(alice, bob)
    listener, channels = await _echo_server(bob, f"{scheme}://127.0.0.1:0", neg)
    async with listener:
        stream = await connect(listener.url)
        channel = await alice.initiate(stream, bob.context.card, neg)
        for size in (1, 1024, 70_000, 300_000):
            await channel.send(b"z" * size)
            assert await channel.receive() == b"echo:" + b"z" * size
        server_side = await channels.get()
        assert server_side.peer.agent_id == alice.context.card.agent_id
        await channel.close()


async def _udp_pair(
    alice: NoiseBinding, bob: NoiseBinding, handler: Callable[[Any], Awaitable[None]]
) -> tuple[Any, NoiseDatagramChannel]:
    neg = negotiation(alice, bob)

    async def serve_one(endpoint: Any) -> None:
        await handler(await bob.respond_datagram(endpoint, neg))

    listener = await serve_datagram("udp://127.0.0.1:0", serve_one)
    endpoint = await connect_datagram(listener.url)
    channel = await alice.initiate_datagram(endpoint, bob.context.card, neg)
    assert isinstance(channel, NoiseDatagramChannel)
    return listener, channel


async def test_loopback_udp() -> None:
    alice, bob = make_binding(), make_binding()

    async def echo(channel: Any) -> None:
        with contextlib.suppress(ChannelClosed):
            while True:
                await channel.send(b"echo:" + await channel.receive())

    listener, channel = await _udp_pair(alice, bob, echo)
    async with listener:
        assert Property.DATAGRAM in channel.properties
        for n in range(20):
            await channel.send(b"d%d" % n)
            assert await asyncio.wait_for(channel.receive(), 5) == b"echo:d%d" % n
        await channel.close()


async def test_udp_handshake_survives_loss() -> None:
    dropped: list[bytes] = []

    def lose_first_handshake_packets(datagram: bytes) -> bool:
        if datagram[:1] == b"H" and len(dropped) < 2:
            dropped.append(datagram)
            return True
        return False

    for patterns in (["IK"], ["XX"]):
        dropped.clear()
        alice, bob = make_binding({"patterns": patterns}), make_binding({"patterns": patterns})
        e1, e2 = memory_datagram_pair(loss_for_testing=lose_first_handshake_packets)
        neg = negotiation(alice, bob)
        ca, cb = await asyncio.gather(
            alice.initiate_datagram(e1, bob.context.card, neg), bob.respond_datagram(e2, neg)
        )
        assert len(dropped) == 2
        await ca.send(b"after loss")
        assert await asyncio.wait_for(cb.receive(), 5) == b"after loss"


async def test_udp_packets_tampered_truncated_replayed_reordered() -> None:
    alice, bob = make_binding(), make_binding()
    e1, e2 = memory_datagram_pair()
    neg = negotiation(alice, bob)
    ca, cb = await asyncio.gather(
        alice.initiate_datagram(e1, bob.context.card, neg), bob.respond_datagram(e2, neg)
    )
    p1, p2, p3 = (ca.seal(b"p%d" % n) for n in (1, 2, 3))
    with pytest.raises(NoiseAuthenticationError):
        cb.open(p1[:-1] + bytes([p1[-1] ^ 1]))
    with pytest.raises(DecodeError):
        cb.open(p1[:12])
    assert cb.open(p3) == (0, b"p3")  # reordered: accepted once each
    assert cb.open(p1) == (0, b"p1")
    with pytest.raises(ReplayedPacketError):
        cb.open(p1)
    assert cb.open(p2) == (0, b"p2")
    # receive() drops bad packets (a spoofer must not end the session) and counts them
    await e1.send(p1)
    await e1.send(p2[:-1] + b"\x00")
    p4 = ca.seal(b"p4")
    await e1.send(p4)
    assert await asyncio.wait_for(cb.receive(), 5) == b"p4"
    assert cb.rejected == 2


# -- the core contract suite and two agents over the bus ---------------------------


class TestNoiseContract(SessionBindingContract):
    binding_class = NoiseBinding


class TestNoiseXXContract(SessionBindingContract):
    binding_class = NoiseBinding
    options: ClassVar[Mapping[str, Any]] = {"patterns": ["XX"], "suites": ["AESGCM_BLAKE2b"]}


class TestNoiseHybridContract(SessionBindingContract):
    binding_class = NoiseBinding
    options: ClassVar[Mapping[str, Any]] = {"post_quantum": "required"}


class TestNoiseDatagramContract(DatagramBindingContract):
    binding_class = NoiseBinding


REGISTRY = load_registry(extra_plugins=[noise_plugin], load_entry_points=False)


async def _answer(task: TaskContext) -> None:
    await task.working("counting")
    await task.artifact(f"{len(task.message.parts[0].text or '')} chars", name="count")
    await task.complete("done")


@pytest.mark.parametrize("scheme", ["tcp", "ws", "udp"])
async def test_two_agents_exchange_tasks(scheme: str) -> None:
    def agent(name: str, listen: list[str]) -> Agent:
        a = Agent(Identity.generate(), MemoryStore(), name=name, listen=listen, registry=REGISTRY)
        a.on_message(_answer)
        return a

    server, client = agent("server", [f"{scheme}://127.0.0.1:0"]), agent("client", [])
    async with server, client:
        peer = client.peer(server.card.card)
        assert peer.offer("noise") is not None
        task = await asyncio.wait_for(client.send_message(peer, "hello noise"), 20)
        assert isinstance(task, Task) and task.status.state is TaskState.COMPLETED
        assert task.artifacts[0].parts[0].text == "11 chars"


async def test_udp_time_based_rekey_in_step() -> None:
    clock = Clock()
    alice = make_binding({"rekey_seconds": 10}, clock=clock)
    bob = make_binding(clock=clock)
    e1, e2 = memory_datagram_pair()
    neg = negotiation(alice, bob)
    ca, cb = await asyncio.gather(
        alice.initiate_datagram(e1, bob.context.card, neg), bob.respond_datagram(e2, neg)
    )
    for n in range(6):
        clock.now += 7  # alice's direction moves to a new key epoch every other packet
        await ca.send(b"t%d" % n)
        assert await asyncio.wait_for(cb.receive(), 5) == b"t%d" % n
    assert cb.rejected == 0


async def test_udp_lost_final_handshake_message_is_resent() -> None:
    """XX: the initiator's message 3 is lost; the responder repeats message 2 and the
    initiator's channel answers with message 3 again."""
    lost: list[bytes] = []

    def lose_message_3_once(datagram: bytes) -> bool:
        if datagram[:2] == b"H\x02" and not lost:
            lost.append(datagram)
            return True
        return False

    alice, bob = make_binding({"patterns": ["XX"]}), make_binding({"patterns": ["XX"]})
    e1, e2 = memory_datagram_pair(loss_for_testing=lose_message_3_once)
    neg = negotiation(alice, bob)
    responder = asyncio.create_task(bob.respond_datagram(e2, neg))
    ca = await alice.initiate_datagram(e1, bob.context.card, neg)
    reader = asyncio.create_task(ca.receive())  # the channel's reader answers repeats
    cb = await asyncio.wait_for(responder, 10)
    assert lost
    await cb.send(b"made it")
    assert await asyncio.wait_for(reader, 5) == b"made it"
