"""The Double Ratchet inside a Noise session (issue 22): resumption across reconnects,
concurrent sessions, lost state, a restart over SQLite and TCP, and datagrams (loss,
reordering, lost hellos)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import attrs
import pytest
from noise_ratchet_bindings import close_all, connect_pair, make_binding, negotiation, stored

from sealwire.binding import ChannelClosed
from sealwire.identity import Identity
from sealwire.store import SqliteStore, StoreKey
from sealwire.transport import connect, memory_datagram_pair, memory_pair, serve
from sealwire_noise import NoiseStateError
from sealwire_noise import _ratchet as nr
from sealwire_noise._binding import NoiseBinding
from sealwire_noise._ratchet import RatchetBindingError, Restart
from sealwire_noise._ratchet_channel import STORE_NAMESPACE, RatchetChannel

# -- resumption ------------------------------------------------------------------------


async def test_a_reconnect_resumes_the_ratchet_bound_to_the_new_handshake() -> None:
    alice, bob = make_binding(), make_binding()
    ca, cb = await connect_pair(alice, bob)
    await ca.send(b"a")
    assert await cb.receive() == b"a"
    await cb.send(b"b")
    assert await ca.receive() == b"b"
    rid, ns = ca.ratchet.ratchet_id, ca.ratchet.state.ns
    ahead = ca.ratchet
    for _ in range(3):  # a message of the old session, at a counter not used yet
        ahead, old_msg = nr.seal(ahead, b"from the old session", ca._h, os.urandom)
    await close_all(ca, cb)

    cb2, ca2 = await connect_pair(bob, alice)  # the other side initiates this time
    assert ca2.restart is Restart.RESUMED and cb2.restart is Restart.RESUMED
    assert ca2.ratchet.ratchet_id == rid and ca2.ratchet.state.ns == ns
    await ca2.send(b"c")
    assert await cb2.receive() == b"c"
    with pytest.raises(Exception) as raised:  # a message of the old session does not open
        cb2.open(old_msg)
    assert raised.type.__name__ == "MessageDecryptError"
    await cb2.send(b"d")
    assert await ca2.receive() == b"d"
    await close_all(ca2, cb2)


async def test_a_resumption_that_does_not_bind_fails_and_changes_nothing() -> None:
    alice, bob = make_binding(), make_binding()
    ca, cb = await connect_pair(alice, bob)
    await ca.send(b"a")
    assert await cb.receive() == b"a"
    await close_all(ca, cb)
    # Bob's stored ratchet keeps its id but not its resume key (a forged or foreign state)
    forged = attrs.evolve(nr.decode(stored(bob, alice) or b""), resume_key=os.urandom(32))
    bob.context.store.put(STORE_NAMESPACE, alice.context.card.agent_id, nr.encode(forged))
    before_alice, before_bob = stored(alice, bob), stored(bob, alice)
    results = await asyncio.gather(*connect_pair_calls(alice, bob), return_exceptions=True)
    assert all(isinstance(r, RatchetBindingError) for r in results), results
    assert stored(alice, bob) == before_alice and stored(bob, alice) == before_bob


def connect_pair_calls(a: NoiseBinding, b: NoiseBinding) -> tuple[Any, Any]:
    s1, s2 = memory_pair()
    neg = negotiation(a, b)
    return a.initiate(s1, b.context.card, neg), b.respond(s2, neg)


async def test_a_second_session_at_once_does_not_fork_the_stored_ratchet() -> None:
    alice, bob = make_binding(), make_binding()
    ca, cb = await connect_pair(alice, bob)
    await ca.send(b"a")
    assert await cb.receive() == b"a"
    ca2, cb2 = await connect_pair(bob, alice)  # both dialled: a second session meanwhile
    assert ca2.restart is Restart.CONCURRENT and cb2.restart is Restart.CONCURRENT
    for first, second in ((ca, cb), (ca2, cb2), (cb, ca), (cb2, ca2)):
        await first.send(b"x")
        assert await second.receive() == b"x"
    assert stored(bob, alice) == nr.encode(cb.ratchet)  # the first session's, unforked
    assert stored(alice, bob) == nr.encode(ca.ratchet)
    await close_all(ca2, cb2, ca, cb)
    ca3, cb3 = await connect_pair(alice, bob)  # the leases went back on close
    assert ca3.restart is Restart.RESUMED and cb3.restart is Restart.RESUMED
    await cb3.send(b"y")
    assert await ca3.receive() == b"y"
    await close_all(ca3, cb3)


async def test_a_peer_that_lost_its_state_is_detected_and_a_fresh_ratchet_starts() -> None:
    alice, bob = make_binding(), make_binding()
    ca, cb = await connect_pair(alice, bob)
    await ca.send(b"a")
    assert await cb.receive() == b"a"
    old_id = ca.ratchet.ratchet_id
    await close_all(ca, cb)
    bob_reborn = make_binding(identity=bob.context.identity)  # same agent, empty store
    bob_reborn.context.trust.check(alice.context.card)
    ca2, cb2 = await connect_pair(alice, bob_reborn)
    assert ca2.restart is Restart.PEER_LOST_STATE
    assert cb2.restart is Restart.LOCAL_STATE_MISSING
    assert ca2.ratchet.ratchet_id != old_id == ca.ratchet.ratchet_id
    await ca2.send(b"fresh")
    assert await cb2.receive() == b"fresh"
    await close_all(ca2, cb2)


async def test_resumption_survives_a_restart_over_sqlite_and_real_tcp(tmp_path: Any) -> None:
    key = StoreKey.generate()
    alice = make_binding(store=SqliteStore.open(tmp_path / "alice.db", key))
    bob_identity = Identity.generate()
    bob = make_binding(identity=bob_identity, store=SqliteStore.open(tmp_path / "bob.db", key))
    received: asyncio.Queue[bytes] = asyncio.Queue()
    neg = negotiation(alice, bob)

    async def serve_bob(binding: NoiseBinding) -> Any:
        async def handle(stream: Any) -> None:
            channel = await binding.respond(stream, neg)
            with contextlib.suppress(ChannelClosed):
                while True:
                    frame = await channel.receive()
                    await received.put(frame)
                    await channel.send(b"ack:" + frame)
            await channel.close()

        return await serve("tcp://127.0.0.1:0", handle)

    listener = await serve_bob(bob)
    async with listener:
        channel = await alice.initiate(await connect(listener.url), bob.context.card, neg)
        for n in range(3):
            await channel.send(b"m%d" % n)
            assert await channel.receive() == b"ack:m%d" % n
        await channel.close()
    bob.context.store.close()
    bob2 = make_binding(identity=bob_identity, store=SqliteStore.open(tmp_path / "bob.db", key))
    listener = await serve_bob(bob2)
    async with listener:
        channel = await alice.initiate(await connect(listener.url), bob2.context.card, neg)
        assert channel.restart is Restart.RESUMED
        await channel.send(b"after restart")
        assert await channel.receive() == b"ack:after restart"
        await channel.close()
    assert [received.get_nowait() for _ in range(4)] == [b"m0", b"m1", b"m2", b"after restart"]
    for binding in (alice, bob2):
        binding.context.store.close()


# -- datagrams ---------------------------------------------------------------------------


async def test_datagrams_tolerate_loss_and_reordering() -> None:
    alice, bob = make_binding(), make_binding()
    lost: list[bytes] = []
    lossy = [False]

    def lose_every_third_data_packet(datagram: bytes) -> bool:
        if datagram[:1] == b"D" and lossy[0]:
            lost.append(datagram)
            return len(lost) % 3 == 0
        return False

    e1, e2 = memory_datagram_pair(loss_for_testing=lose_every_third_data_packet)
    neg = negotiation(alice, bob)
    ca, cb = await asyncio.gather(
        alice.initiate_datagram(e1, bob.context.card, neg), bob.respond_datagram(e2, neg)
    )
    assert isinstance(ca, RatchetChannel) and ca.max_frame_size is not None
    lossy[0] = True
    before = ca.ratchet
    with pytest.raises(NoiseStateError):  # refused before the ratchet moves
        await ca.send(b"x" * (ca.max_frame_size + 1))
    assert ca.ratchet is before
    got = []
    for n in range(9):
        await ca.send(b"d%d" % n)
    for _ in range(6):
        got.append(await asyncio.wait_for(cb.receive(), 5))
    assert got == [b"d0", b"d1", b"d3", b"d4", b"d6", b"d7"]
    # reordering across a DH step: the reply makes a new chain, the late one still opens
    inner = ca._inner
    _r, late = nr.seal(ca.ratchet, b"late", ca._h, os.urandom)
    late = b"\x02" + late  # the datagram frame type of a ratchet message
    ca._commit(_r)
    lossy[0] = False
    await cb.send(b"reply")
    assert await asyncio.wait_for(ca.receive(), 5) == b"reply"
    await ca.send(b"new chain")
    assert await asyncio.wait_for(cb.receive(), 5) == b"new chain"
    await inner.send(late)
    assert await asyncio.wait_for(cb.receive(), 5) == b"late"
    await inner.send(late)  # a duplicate is dropped and counted, never handed on twice
    await ca.send(b"end")
    assert await asyncio.wait_for(cb.receive(), 5) == b"end"
    assert cb.rejected >= 1
    await close_all(ca, cb)


async def test_datagrams_resume_across_sessions_and_survive_lost_hellos() -> None:
    alice, bob = make_binding(), make_binding()
    dropped: list[bytes] = []

    def lose_three_hellos(datagram: bytes) -> bool:
        # the first data packets of a session are the hellos: the initiator's twice,
        # then the responder's answer once
        if datagram[:1] == b"D" and len(dropped) < 3:
            dropped.append(datagram)
            return True
        return False

    async def session(lossy: bool) -> tuple[Any, Any]:
        e1, e2 = memory_datagram_pair(loss_for_testing=lose_three_hellos if lossy else None)
        neg = negotiation(alice, bob)
        initiating = asyncio.create_task(alice.initiate_datagram(e1, bob.context.card, neg))
        cb = await bob.respond_datagram(e2, neg)
        reading = asyncio.create_task(cb.receive())  # bob's read loop answers late hellos
        ca = await initiating
        await ca.send(b"first")
        assert await asyncio.wait_for(reading, 5) == b"first"
        return ca, cb

    ca, cb = await session(lossy=False)
    assert ca.restart is Restart.NEW
    rid = ca.ratchet.ratchet_id
    await close_all(ca, cb)

    ca, cb = await session(lossy=True)
    assert len(dropped) == 3
    assert ca.restart is Restart.RESUMED and cb.restart is Restart.RESUMED
    assert ca.ratchet.ratchet_id == rid
    await cb.send(b"two")
    assert await asyncio.wait_for(ca.receive(), 5) == b"two"
    assert stored(bob, alice) == nr.encode(cb.ratchet)
    await close_all(ca, cb)
