"""The Double Ratchet inside a Noise session (issue 22): keying, DH steps, the bound
between steps, bad input (unknown chain, skip bound, replay, a hello that does not bind),
the setting and the policy property that choose it, and two agents running it.
Resumption, lost state and datagrams: test_ratchet_resumption.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import pytest
from noise_ratchet_bindings import ON, close_all, connect_pair, make_binding, negotiation, stored

from sealwire.agent import Agent, TaskContext
from sealwire.binding import Property
from sealwire.identity import Identity
from sealwire.model import Task, TaskState
from sealwire.plugins import load_registry
from sealwire.policy import PolicyConfig, Situation
from sealwire.ratchet import (
    MAX_SKIP,
    DHKeyPair,
    DuplicateMessageError,
    SkippedKeyLimitError,
    UnknownChainError,
)
from sealwire.store import MemoryStore
from sealwire.testing.contract import SessionBindingContract
from sealwire.transport import memory_pair
from sealwire_noise import (
    HandshakeState,
    NoiseConfigurationError,
    NoiseProtocol,
    NoiseRemoteProtocolError,
)
from sealwire_noise import _ratchet as nr
from sealwire_noise import plugin as noise_plugin
from sealwire_noise._binding import NoiseBinding
from sealwire_noise._channel import NoiseChannel
from sealwire_noise._ratchet import RatchetBindingError, Restart
from sealwire_noise._ratchet_channel import STORE_NAMESPACE, RatchetChannel

# -- keying ----------------------------------------------------------------------


def _finished(name: str = "Noise_XX_25519_ChaChaPoly_SHA256") -> tuple[Any, Any]:
    from cryptography.hazmat.primitives.asymmetric import x25519

    protocol = NoiseProtocol.from_name(name)
    keys = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    i = HandshakeState(protocol, initiator=True, random=os.urandom, static=keys[0])
    r = HandshakeState(protocol, initiator=False, random=os.urandom, static=keys[1])
    while not (i.is_finished and r.is_finished):
        sender, receiver = (i, r) if i.status.value == "write" else (r, i)
        receiver.read_message(sender.write_message(b""))
    return i, r


def test_the_ratchet_is_keyed_from_the_handshake_hash_and_split() -> None:
    i, r = _finished()
    ki, kr = nr.keying(*i.split_keys()), nr.keying(*r.split_keys())
    assert ki == kr and ki.handshake_hash == i.handshake_hash
    other = nr.keying(*_finished()[0].split_keys())
    assert other.secret != ki.secret and other.resume_key != ki.resume_key
    # split_keys does not consume the handshake: the transport still comes out
    assert i.into_transport().handshake_hash == i.handshake_hash
    assert "secret" not in repr(ki) or ki.secret.hex() not in repr(ki)


def _sides(rng: Any = os.urandom) -> tuple[nr.NoiseRatchet, nr.NoiseRatchet, bytes]:
    i, _ = _finished()
    keys = nr.keying(*i.split_keys())
    alice = nr.start(keys, initiator=True, rng=rng)
    bob = nr.start(keys, initiator=False, rng=rng)
    return alice, bob, keys.handshake_hash


def test_either_side_may_send_first_and_a_direction_change_is_a_dh_step() -> None:
    alice, bob, h = _sides()
    bob, m0 = nr.seal(bob, b"bob first", h, os.urandom)  # the responder speaks first
    opened = nr.open_message(alice, m0, h, now=0, rng=os.urandom)
    alice = opened.ratchet
    assert opened.frame == b"bob first"
    keys_seen = set()
    for turn in range(6):
        sender, receiver = (alice, bob) if turn % 2 == 0 else (bob, alice)
        sender, msg = nr.seal(sender, b"t%d" % turn, h, os.urandom)
        keys_seen.add(msg[:32])
        got = nr.open_message(receiver, msg, h, now=0, rng=os.urandom)
        assert got.frame == b"t%d" % turn
        alice, bob = (sender, got.ratchet) if turn % 2 == 0 else (got.ratchet, sender)
    assert len(keys_seen) == 6  # a new ratchet key at every change of direction


def test_a_one_way_flow_gets_a_step_within_the_bound() -> None:
    alice, bob, h = _sides()
    first_key = None
    for n in range(nr.STEP_EVERY):
        alice, msg = nr.seal(alice, b"m%d" % n, h, os.urandom)
        first_key = first_key or msg[:32]
        opened = nr.open_message(bob, msg, h, now=0, rng=os.urandom)
        bob = opened.ratchet
    assert opened.step_due  # the receiver owes a STEP after STEP_EVERY in a row
    bob, step = nr.seal(bob, b"", h, os.urandom, flags=nr.FLAG_STEP)
    got = nr.open_message(alice, step, h, now=0, rng=os.urandom)
    assert got.frame is None  # a STEP hands nothing on
    alice, after = nr.seal(got.ratchet, b"next", h, os.urandom)
    assert after[:32] != first_key  # the sender's next message is on a new DH chain


def test_a_sender_refuses_beyond_the_chain_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from sealwire.ratchet import ChainExhaustedError

    monkeypatch.setattr(nr, "MAX_CHAIN_MESSAGES", 3)
    alice, _bob, h = _sides()
    for _ in range(3):
        alice, _msg = nr.seal(alice, b"x", h, os.urandom)
    with pytest.raises(ChainExhaustedError):
        nr.seal(alice, b"x", h, os.urandom)


# -- bad input: typed error, state unchanged, nothing handed on -----------------------


def test_bad_ratchet_messages_are_typed_errors_that_change_nothing() -> None:
    alice, bob, h = _sides()
    alice, m0 = nr.seal(alice, b"zero", h, os.urandom)
    bob = nr.open_message(bob, m0, h, now=0, rng=os.urandom).ratchet
    snapshot = attrs.asdict(bob.state, recurse=False)

    unknown = DHKeyPair.generate(os.urandom).public + m0[32:]
    with pytest.raises(UnknownChainError):
        nr.open_message(bob, unknown, h, now=0, rng=os.urandom)
    with pytest.raises(DuplicateMessageError):  # a replay
        nr.open_message(bob, m0, h, now=0, rng=os.urandom)
    far = alice
    for _ in range(MAX_SKIP + 1):
        far, _ = nr.seal(far, b"", h, os.urandom)
    far, beyond = nr.seal(far, b"too far", h, os.urandom)
    with pytest.raises(SkippedKeyLimitError):
        nr.open_message(bob, beyond, h, now=0, rng=os.urandom)
    _, other_session = _finished()
    alice, m1 = nr.seal(alice, b"one", h, os.urandom)
    with pytest.raises(Exception) as wrong_session:  # bound to its handshake hash
        nr.open_message(bob, m1, other_session.handshake_hash, now=0, rng=os.urandom)
    assert wrong_session.type.__name__ == "MessageDecryptError"
    assert attrs.asdict(bob.state, recurse=False) == snapshot
    assert nr.open_message(bob, m1, h, now=0, rng=os.urandom).frame == b"one"


def test_a_hello_that_does_not_bind_to_the_stored_ratchet_is_refused() -> None:
    alice, bob, h_old = _sides()
    i, _ = _finished()
    new_keys = nr.keying(*i.split_keys())
    good = nr.hello(bob, new_keys.handshake_hash, initiator=False)
    resumed, how = nr.resolve(alice, good, new_keys, initiator=True, rng=os.urandom)
    assert how is Restart.RESUMED and resumed is alice
    replayed = nr.hello(bob, h_old, initiator=False)  # proof made for another session
    with pytest.raises(RatchetBindingError):
        nr.resolve(alice, replayed, new_keys, initiator=True, rng=os.urandom)
    reflected = nr.hello(alice, new_keys.handshake_hash, initiator=True)  # our own, echoed
    with pytest.raises(RatchetBindingError):
        nr.resolve(alice, reflected, new_keys, initiator=True, rng=os.urandom)
    for bad in (b"", b"SWNR", b"SWNR\x02\x00", good[:-1], good + b"x"):
        with pytest.raises(Exception) as raised:
            nr.resolve(alice, bad, new_keys, initiator=True, rng=os.urandom)
        assert raised.type.__name__ == "NoiseDecodeError"


def test_the_stored_form_round_trips_and_rejects_garbage() -> None:
    alice, bob, h = _sides()
    alice, msg = nr.seal(alice, b"x", h, os.urandom)
    back = nr.decode(nr.encode(alice))
    assert back.ratchet_id == alice.ratchet_id and back.state.ns == 1
    assert nr.open_message(bob, msg, h, now=0, rng=os.urandom).frame == b"x"
    for junk in (b"", b"{}", b"[]", b'{"format":"sealwire-noise/ratchet","v":1}', b"\xff"):
        with pytest.raises(Exception) as raised:
            nr.decode(junk)
        assert raised.type.__name__ in ("NoiseDecodeError", "RatchetDecodeError")
    assert "resume_key" not in repr(alice) and alice.resume_key.hex() not in repr(alice)


# -- the binding setting ---------------------------------------------------------------


async def test_the_setting_runs_the_ratchet_when_both_cards_offer_it() -> None:
    alice, bob = make_binding(), make_binding()
    ca, cb = await connect_pair(alice, bob)
    assert isinstance(ca, RatchetChannel) and isinstance(cb, RatchetChannel)
    assert Property.POST_COMPROMISE_SECURITY in ca.properties
    assert ca.restart is Restart.NEW and cb.restart is Restart.NEW
    assert alice.context.card.offer("noise").params["ratchet"] is True
    await cb.send(b"the responder may speak first")
    assert await ca.receive() == b"the responder may speak first"
    for n in range(5):
        await ca.send(b"ping%d" % n)
        assert await cb.receive() == b"ping%d" % n
        await cb.send(b"pong%d" % n)
        assert await ca.receive() == b"pong%d" % n
    # committed before handed on: the store holds exactly the channel's ratchet
    assert stored(bob, alice) == nr.encode(cb.ratchet)
    await close_all(ca, cb)


async def test_without_both_cards_it_is_plain_noise_and_required_refuses() -> None:
    on, off = make_binding(), make_binding({})
    ca, cb = await connect_pair(on, off)
    assert isinstance(ca, NoiseChannel) and isinstance(cb, NoiseChannel)
    await close_all(ca, cb)
    required = make_binding({"per_message_forward_secrecy": "required"})
    with pytest.raises(NoiseConfigurationError):
        await connect_pair(required, off)
    with pytest.raises(NoiseConfigurationError):
        make_binding({"per_message_forward_secrecy": "sometimes"})


async def test_the_choice_is_bound_into_the_handshake() -> None:
    on, off = make_binding(), make_binding({})
    required = make_binding({"per_message_forward_secrecy": "required"})
    ca, cb = await connect_pair(off, on)  # the initiator does not ask: plain Noise
    assert isinstance(ca, NoiseChannel) and isinstance(cb, NoiseChannel)
    await close_all(ca, cb)
    with pytest.raises(NoiseRemoteProtocolError):  # a responder that requires it refuses
        await connect_pair(off, required)

    async def tampered(initiator: NoiseBinding, responder: NoiseBinding, edit: Any) -> None:
        s1, s2 = memory_pair()
        m1, m2 = memory_pair()
        neg = negotiation(initiator, responder)

        async def relay() -> None:  # a man in the middle rewriting the first frame
            try:
                with contextlib.suppress(Exception):
                    await m1.send(edit(await s2.receive()))
                    while True:
                        await s2.send(await m1.receive())
            finally:
                await s2.close()  # the responder hung up: so does the relay

        task = asyncio.create_task(relay())
        try:
            results = await asyncio.gather(
                initiator.initiate(s1, responder.context.card, neg),
                responder.respond(m2, neg),
                return_exceptions=True,
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            for stream in (s1, s2, m1, m2):
                await stream.close()
        assert all(isinstance(r, BaseException) for r in results), results
        for r in results:
            if isinstance(r, RatchetChannel | NoiseChannel):
                await r.close()

    def strip_mark(frame: bytes) -> bytes:
        name = frame[1 : 1 + frame[0]].removesuffix(b"/ratchet")
        return bytes([len(name)]) + name + frame[1 + frame[0] :]

    # stripping the mark: the responder (ratchet on, not required) would take it for
    # plain Noise, but the prologues differ and the handshake fails
    await tampered(on, make_binding(), strip_mark)

    def add_mark(frame: bytes) -> bytes:
        name = frame[1 : 1 + frame[0]] + b"/ratchet"
        return bytes([len(name)]) + name + frame[1 + frame[0] :]

    # adding it: a responder that runs it now expects the mark in the prologue, and one
    # that does not run it refuses the request outright
    await tampered(off, make_binding(), add_mark)
    await tampered(off, make_binding({}), add_mark)


async def test_a_bad_message_on_the_channel_raises_and_hands_nothing_on() -> None:
    alice, bob = make_binding(), make_binding()
    ca, cb = await connect_pair(alice, bob)
    await ca.send(b"first")
    assert await cb.receive() == b"first"
    before = stored(bob, alice)
    _ratchet, replay = nr.seal(ca.ratchet, b"x", b"\x00" * 32, os.urandom)
    await ca._inner.send(replay)  # a message bound to another handshake
    with pytest.raises(Exception) as raised:
        await cb.receive()
    assert raised.type.__name__ == "MessageDecryptError"
    assert stored(bob, alice) == before
    await ca.send(b"second")
    assert await cb.receive() == b"second"
    await close_all(ca, cb)


# -- the policy property ------------------------------------------------------------------


def test_the_policy_property_keeps_noise_only_when_both_cards_run_the_ratchet() -> None:
    from sealwire.errors import ConfigurationError, PolicyError
    from sealwire.policy import Policy, PolicyConfig, Situation

    on, off, peer_on = make_binding(), make_binding({}), make_binding()
    config = PolicyConfig.from_toml("[policy]\nper_message_forward_secrecy = true\n")
    policy = Policy(config, {"noise": NoiseBinding})
    decision = policy.decide(peer_on.context.card, Situation(online=True), on.context.card)
    assert decision.binding == "noise"
    with pytest.raises(PolicyError, match="per_message_forward_secrecy"):
        policy.decide(off.context.card, Situation(online=True), on.context.card)
    with pytest.raises(PolicyError, match="per_message_forward_secrecy"):
        policy.decide(peer_on.context.card, Situation(online=True), off.context.card)
    relaxed = PolicyConfig.from_mapping(
        {
            "per_message_forward_secrecy": True,
            "peers": {off.context.card.agent_id: {"per_message_forward_secrecy": False}},
        }
    )
    chosen = Policy(relaxed, {"noise": NoiseBinding}).decide(
        off.context.card, Situation(online=True), on.context.card
    )
    assert chosen.binding == "noise"
    assert PolicyConfig.from_toml("[policy]\n").per_message_forward_secrecy is False
    with pytest.raises(ConfigurationError):
        PolicyConfig.from_mapping({"per_message_forward_secrecy": "yes"})


# -- the core contract and two agents over the bus, with the ratchet ----------------------


class TestNoiseRatchetContract(SessionBindingContract):
    binding_class = NoiseBinding
    options: ClassVar[Mapping[str, Any]] = ON


async def _answer(task: TaskContext) -> None:
    await task.working("counting")
    await task.artifact(f"{len(task.message.parts[0].text or '')} chars", name="count")
    await task.complete("done")


@pytest.mark.parametrize("scheme", ["tcp", "udp"])
async def test_two_agents_with_the_policy_property_exchange_tasks(scheme: str) -> None:
    registry = load_registry(extra_plugins=[noise_plugin], load_entry_points=False)
    policy = PolicyConfig.from_mapping({"per_message_forward_secrecy": True})

    def agent(name: str, listen: list[str]) -> Agent:
        a = Agent(
            Identity.generate(), MemoryStore(), name=name, listen=listen, registry=registry,
            policy=policy, binding_options={"noise": ON},
        )  # fmt: skip
        a.on_message(_answer)
        return a

    server, client = agent("server", [f"{scheme}://127.0.0.1:0"]), agent("client", [])
    async with server, client:
        peer = client.peer(server.card.card)
        situation = Situation(online=True, datagram=scheme == "udp")
        decision = client.policy.decide(peer, situation, client.card)
        assert decision.binding == "noise"
        for text in ("hello ratchet", "again"):
            task = await asyncio.wait_for(client.send_message(peer, text), 20)
            assert isinstance(task, Task) and task.status.state is TaskState.COMPLETED
            assert task.artifacts[0].parts[0].text == f"{len(text)} chars"
        if scheme == "tcp":
            assert client.store.get(STORE_NAMESPACE, server.card.agent_id) is not None
