"""SignalBinding end to end between two agents through an in-memory fake relay directory:
sessions, prekeys, negotiation and per-message work. Post-quantum parts are in
test_binding_pq.py, stored session records in test_binding_records.py."""

from __future__ import annotations

import asyncio
import json
import os

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from signal_binding_world import (
    OTHER_RELAY,
    RELAY,
    Clock,
    Directory,
    make_agent,
    negotiation,
    pair,
    seal,
)

import sealwire_signal._binding as signal_binding
import sealwire_signal.plugin as signal_plugin
from sealwire.binding import Negotiation
from sealwire.errors import RemoteProtocolError, SealwireError, TrustError
from sealwire.identity import Identity, TrustMode, TrustStore
from sealwire.store import SqliteStore, StoreKey
from sealwire_signal import DuplicateMessageError, Envelope, UnknownPrekeyError, card_digest
from sealwire_signal._binding import SignalBinding
from sealwire_signal._peer_sessions import SESSION_NAMESPACE
from sealwire_signal._prekeys import (
    KEM_ONE_TIME_BATCH,
    NAMESPACE,
    ONE_TIME_BATCH,
    SIGNED_PREKEY_GRACE,
    SIGNED_PREKEY_ROTATION,
)
from sealwire_signal._session import seal_frame


async def test_prekeys_of_a_peer_homed_on_another_relay_are_fetched_there():
    """Federation (issue 14.5): Bob's card names another relay; his bundle is there."""
    here, there, clock = Directory(), Directory(), Clock()
    relays = {RELAY: here, OTHER_RELAY: there}
    alice = make_agent(here, clock, relays=relays)
    bob = make_agent(there, clock, home=OTHER_RELAY, relays=relays)
    await alice.binding.publish_prekeys()
    await bob.binding.publish_prekeys()
    assert (bob.identity.agent_id, "signal") not in here.bundles
    pools = there.pools[(bob.identity.agent_id, "signal")]
    left = {pool: len(keys) for pool, keys in pools.items()}
    opened = await bob.binding.open(await seal(alice, bob, b"across relays"))
    assert opened.frame == b"across relays"
    assert {pool: len(keys) for pool, keys in pools.items()} == {
        pool: n - 1 for pool, n in left.items()
    }  # one one-time key of each pool taken at Bob's relay
    opened = await alice.binding.open(await seal(bob, alice, b"and back"))
    assert opened.frame == b"and back"


@pytest.mark.parametrize("he", [False, True])
async def test_conversation_both_ways(world, he):
    alice, bob = await pair(world, options={"header_encryption": he})
    for i in range(3):
        opened = await bob.binding.open(await seal(alice, bob, b"task %d" % i))
        assert opened.frame == b"task %d" % i
        assert opened.sender.agent_id == alice.identity.agent_id
        assert opened.sender.card.agent_id == alice.identity.agent_id
        assert opened.message_id.startswith(alice.identity.agent_id + "/")
    for i in range(2):
        opened = await alice.binding.open(await seal(bob, alice, b"result %d" % i))
        assert opened.frame == b"result %d" % i
    raw = await seal(alice, bob, b"after reply")
    assert Envelope.from_bytes(raw).prekey is None  # the initial part stops after a reply
    assert (await bob.binding.open(raw)).frame == b"after reply"


async def test_one_time_prekeys_are_handed_out_once_and_deleted(world):
    directory, _ = world
    alice, bob = await pair(world)
    key = (bob.identity.agent_id, "signal")
    assert len(directory.pools[key]["x25519"]) == ONE_TIME_BATCH
    assert len(directory.pools[key]["mlkem768"]) == KEM_ONE_TIME_BATCH
    raw = await seal(alice, bob, b"hi")
    part = Envelope.from_bytes(raw).prekey
    assert str(part.one_time_prekey_id) not in directory.pools[key]["x25519"]
    assert bob.store.get(NAMESPACE, f"opk/{part.one_time_prekey_id}") is not None
    await bob.binding.open(raw)
    assert bob.store.get(NAMESPACE, f"opk/{part.one_time_prekey_id}") is None
    assert bob.store.get(NAMESPACE, f"kem/{part.kem_prekey_id}") is None


async def test_replays_are_rejected(world):
    alice, bob = await pair(world)
    first = await seal(alice, bob, b"one")
    second = await seal(alice, bob, b"two")
    await bob.binding.open(first)
    await bob.binding.open(second)
    for raw in (first, second):
        with pytest.raises(DuplicateMessageError):
            await bob.binding.open(raw)
    await alice.binding.open(await seal(bob, alice, b"reply"))
    bob = bob.restart()
    with pytest.raises(DuplicateMessageError):
        await bob.binding.open(first)


async def test_tampering_and_wrong_recipient_leave_state_unchanged(world):
    _, clock = world
    alice, bob = await pair(world)
    carol = make_agent(world[0], clock)
    await bob.binding.open(await seal(alice, bob, b"one"))
    raw = bytearray(await seal(alice, bob, b"two"))
    raw[-3] ^= 0x40
    with pytest.raises(SealwireError):
        await bob.binding.open(bytes(raw))
    raw[-3] ^= 0x40
    with pytest.raises(RemoteProtocolError):
        await carol.binding.open(bytes(raw))
    assert (await bob.binding.open(bytes(raw))).frame == b"two"


async def test_downgraded_negotiation_is_refused(world):
    alice, bob = await pair(world)
    honest = negotiation(alice, bob)
    for bad in (attrs.evolve(honest, initiator_offers=()),
                attrs.evolve(honest, chosen="urn:sealwire:binding:other:1")):  # fmt: skip
        with pytest.raises(RemoteProtocolError, match="negotiation"):
            await bob.binding.open(await alice.binding.seal(bob.card, b"x", bad))
    assert (await bob.binding.open(await seal(alice, bob, b"ok"))).frame == b"ok"


async def test_an_impostor_card_is_refused(world):
    directory, clock = world
    alice, bob = await pair(world)
    mallory = make_agent(directory, clock)
    raw = await seal(mallory, bob, b"I am alice")
    env = Envelope.from_bytes(raw)
    forged_part = attrs.evolve(env.prekey, card=alice.binding._local_card)
    forged = attrs.evolve(env, sender_id=alice.identity.agent_id, prekey=forged_part)
    with pytest.raises(TrustError):
        await bob.binding.open(forged.to_bytes())
    bob.context.trust.deny(mallory.identity.agent_id)
    with pytest.raises(TrustError):
        await bob.binding.open(raw)


async def test_restart_from_a_sqlite_store(world, tmp_path):
    directory, clock = world
    key = StoreKey.generate()
    alice = make_agent(directory, clock)
    bob = make_agent(directory, clock, store=SqliteStore.open(tmp_path / "bob.db", key))
    await bob.binding.publish_prekeys()
    await bob.binding.open(await seal(alice, bob, b"before"))
    bob.store.close()
    store = SqliteStore.open(tmp_path / "bob.db", key)
    context = attrs.evolve(bob.context, store=store, trust=TrustStore(store, TrustMode.TOFU))
    bob = attrs.evolve(bob, store=store, context=context)
    bob = bob.restart()
    assert (await bob.binding.open(await seal(alice, bob, b"after"))).frame == b"after"
    assert (await alice.binding.open(await seal(bob, alice, b"reply"))).frame == b"reply"
    store.close()


async def test_replenish_rotation_and_grace(world):
    directory, clock = world
    alice, bob = await pair(world)
    pools = directory.pools[(bob.identity.agent_id, "signal")]
    for _ in range(ONE_TIME_BATCH - 10):
        await alice.binding.context.relay.fetch_prekeys(bob.identity.agent_id, "signal")
    assert len(pools["x25519"]) == 10 and len(pools["mlkem768"]) == 0
    await bob.binding.publish_prekeys()
    assert len(pools["x25519"]) == ONE_TIME_BATCH
    assert len(pools["mlkem768"]) == KEM_ONE_TIME_BATCH
    early = await seal(alice, bob, b"sent before rotation")
    old_spk = Envelope.from_bytes(early).prekey.signed_prekey_id
    clock.now += SIGNED_PREKEY_ROTATION + 1
    await bob.binding.publish_prekeys()
    assert bob.binding._prekeys.bundle().signed_prekey.id != old_spk
    assert (await bob.binding.open(early)).frame == b"sent before rotation"  # within grace
    carol = make_agent(directory, clock)
    late = await seal(carol, bob, b"late")
    late_spk = Envelope.from_bytes(late).prekey.signed_prekey_id
    clock.now += SIGNED_PREKEY_ROTATION + 1
    await bob.binding.publish_prekeys()
    clock.now += SIGNED_PREKEY_GRACE + 1
    await bob.binding.publish_prekeys()
    assert bob.store.get(NAMESPACE, f"spk/{late_spk}") is None
    with pytest.raises(UnknownPrekeyError):
        await bob.binding.open(late)


async def test_simultaneous_first_messages_converge(world):
    alice, bob = await pair(world)
    to_bob, to_alice = await seal(alice, bob, b"a1"), await seal(bob, alice, b"b1")
    assert (await bob.binding.open(to_bob)).frame == b"a1"
    assert (await alice.binding.open(to_alice)).frame == b"b1"
    for i in range(3):
        assert (await bob.binding.open(await seal(alice, bob, b"a%d" % i))).frame == b"a%d" % i
        assert (await alice.binding.open(await seal(bob, alice, b"b%d" % i))).frame == b"b%d" % i


async def test_first_messages_sealed_at_once_fetch_the_prekeys_once(world):
    """Seals to a peer with no session yet, made at once (calls in flight), share one
    fetch of its prekeys and the session it starts: each fetch would take one of the
    peer's one-time prekeys, and the relay limits fetches of one agent's prekeys."""
    alice, bob = await pair(world)
    relay, fetched = alice.context.relay, []
    fetch = relay.fetch_prekeys

    async def slow_fetch(agent_id, binding):
        fetched.append(agent_id)
        await asyncio.sleep(0.01)  # the others seal meanwhile
        return await fetch(agent_id, binding)

    relay.fetch_prekeys = slow_fetch
    frames = [b"m%d" % i for i in range(4)]
    envelopes = await asyncio.gather(*(seal(alice, bob, f) for f in frames))
    assert fetched == [bob.identity.agent_id]
    assert [(await bob.binding.open(e)).frame for e in envelopes] == frames
    assert (await alice.binding.open(await seal(bob, alice, b"back"))).frame == b"back"


async def test_pq_is_required_by_default(world):
    alice, bob = await pair(world)
    raw = await seal(alice, bob, b"x")
    env = Envelope.from_bytes(raw)
    stripped = attrs.evolve(
        env, prekey=attrs.evolve(env.prekey, kem_prekey_id=None, kem_ciphertext=None)
    )
    with pytest.raises(RemoteProtocolError, match="PQXDH"):
        await bob.binding.open(stripped.to_bytes())
    assert (await bob.binding.open(raw)).frame == b"x"


def test_plugin_hook_and_card_parameters():
    assert signal_plugin.sealwire_bindings() == [SignalBinding]
    info = SignalBinding.info
    assert info.uri == "urn:sealwire:binding:signal:1"
    params = SignalBinding.card_parameters(Identity.generate().public, {})
    assert params["aead"] == "AES-256-GCM" and json.dumps(params)


def test_entry_point_registers_the_binding():
    from sealwire.plugins import load_registry

    registry = load_registry()
    assert registry.binding("signal") is SignalBinding
    assert registry.binding_for_uri("urn:sealwire:binding:signal:1") is SignalBinding


async def test_open_tops_the_pools_up_when_due(world):
    from sealwire_signal._binding import REPUBLISH_INTERVAL

    directory, clock = world
    alice, bob = await pair(world)
    pools = directory.pools[(bob.identity.agent_id, "signal")]
    for _ in range(ONE_TIME_BATCH - 5):
        await alice.binding.context.relay.fetch_prekeys(bob.identity.agent_id, "signal")
    await bob.binding.open(await seal(alice, bob, b"soon"))
    assert len(pools["x25519"]) == 4  # not due yet: nothing published
    clock.now += REPUBLISH_INTERVAL + 1
    await bob.binding.open(await seal(alice, bob, b"later"))
    assert len(pools["x25519"]) == ONE_TIME_BATCH


async def test_what_keep_writes_commits_with_the_state_or_not_at_all(world):
    alice, bob = await pair(world)
    for raw in (await seal(alice, bob, b"initial"), await seal(alice, bob, b"second")):

        def failing_keep(tx, opened):
            tx.put("inbox", opened.message_id, opened.frame)
            raise RuntimeError("crash while keeping the frame")

        before = bob.store.keys("inbox")
        with pytest.raises(RuntimeError):
            await bob.binding.open(raw, keep=failing_keep)
        bob = bob.restart()  # state reloaded from the store: nothing was committed
        assert bob.store.keys("inbox") == before

        def keep(tx, opened):
            tx.put("inbox", opened.message_id, opened.frame)

        opened = await bob.binding.open(raw, keep=keep)
        assert bob.store.get("inbox", opened.message_id) == opened.frame


# -- per-message work (issue 14) ------------------------------------------------------------


def _count_transcripts(monkeypatch):
    built = []
    real = Negotiation.transcript

    def counting(self):
        built.append(self)
        return real(self)

    monkeypatch.setattr(Negotiation, "transcript", counting)
    signal_binding._transcript.cache_clear()
    return built


async def test_a_channel_builds_its_transcript_once_not_per_message(
    world, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = await pair(world)
    built = _count_transcripts(monkeypatch)
    chosen = negotiation(alice, bob)
    sealed = [await alice.binding.seal(bob.card, b"m%d" % i, chosen) for i in range(5)]
    assert len(built) == 1
    built.clear()
    for i, raw in enumerate(sealed):  # the recipient checks each against both cards
        opened = await bob.binding.open(raw)
        assert opened.frame == b"m%d" % i
    assert len(built) <= 1  # once, or none: in one process it is the sender's negotiation
    # an equal negotiation (another object, same value) is the same transcript
    built.clear()
    await alice.binding.seal(bob.card, b"again", negotiation(alice, bob))
    assert built == []


async def test_a_remembered_transcript_still_refuses_a_downgraded_one(world) -> None:
    alice, bob = await pair(world)
    fine = await alice.binding.seal(bob.card, b"ok", negotiation(alice, bob))
    await bob.binding.open(fine)
    downgraded = attrs.evolve(negotiation(alice, bob), initiator_offers=())
    raw = await alice.binding.seal(bob.card, b"x", downgraded)
    with pytest.raises(RemoteProtocolError):
        await bob.binding.open(raw)


async def test_a_commit_deletes_no_archived_record_the_store_is_known_not_to_hold(
    world, monkeypatch
):
    from sealwire.store import _base

    alice, bob = await pair(world)
    deleted = []
    real = _base._MemoryTransaction.delete

    def spying(self, namespace, key):
        deleted.append((namespace, key))
        return real(self, namespace, key)

    monkeypatch.setattr(_base._MemoryTransaction, "delete", spying)
    for i in range(3):  # the first commit of each side may delete: nothing known yet
        await bob.binding.open(await seal(alice, bob, b"m%d" % i))
        await alice.binding.open(await seal(bob, alice, b"r%d" % i))
    archived = [key for ns, key in deleted if ns == SESSION_NAMESPACE and key.endswith("/archived")]
    assert len(archived) <= 2
    deleted.clear()
    for agent in (alice, bob):  # after a restart too: the load saw none stored
        agent.binding._sessions.forget_decoded()
    await bob.binding.open(await seal(alice, bob, b"after"))
    await alice.binding.open(await seal(bob, alice, b"again"))
    assert [key for _, key in deleted if key.endswith("/archived")] == []
    # and an archived session, once there, is written and read as before
    bob = bob.restart()
    assert (await bob.binding.open(await seal(alice, bob, b"still"))).frame == b"still"


async def test_a_newer_card_of_the_peer_is_kept_with_its_session(world):
    """Bob moves his mailbox to another relay (same keys, a new card): the card Alice
    seals to from then on is kept with the session, so Bob's answers name it too (the
    agent answers at the address the sender's card names), also after a restart."""
    directory, clock = world
    alice, bob = await pair(world)
    await bob.binding.open(await seal(alice, bob, b"at the first relay"))
    await alice.binding.open(await seal(bob, alice, b"answered there"))
    moved = make_agent(directory, clock, identity=bob.identity, store=bob.store, home=OTHER_RELAY)
    assert moved.card.card != bob.card.card
    raw = await seal(alice, moved, b"at the new relay")
    assert Envelope.from_bytes(raw).prekey is None  # the same session, no new agreement
    assert (await moved.binding.open(raw)).frame == b"at the new relay"
    for receiver in (alice, alice.restart()):
        opened = await receiver.binding.open(await seal(moved, alice, b"answer"))
        assert opened.sender.card.card == moved.card.card


async def test_a_card_with_another_agreement_key_starts_a_new_session(world):
    """Bob's new card names a new X25519 key (same signing key, same agent id). Trust
    refuses it while his old keys are pinned, and nothing changes; once the pin is
    forgotten, Alice starts a new session on the prekeys he published with the new key."""
    directory, clock = world
    alice, bob = await pair(world)
    await bob.binding.open(await seal(alice, bob, b"old key"))
    await alice.binding.open(await seal(bob, alice, b"answer"))
    rotated = Identity(
        signing_key=bob.identity.signing_key, agreement_key=X25519PrivateKey.generate()
    )
    renewed = make_agent(directory, clock, identity=rotated, store=bob.store)
    await renewed.binding.publish_prekeys()
    before = _records(alice.store)
    with pytest.raises(TrustError, match="pinned"):
        await seal(alice, renewed, b"new key")
    assert _records(alice.store) == before
    alice.context.trust.forget(bob.identity.agent_id)
    raw = await seal(alice, renewed, b"new key")
    assert Envelope.from_bytes(raw).prekey is not None  # a new X3DH on the new key
    assert (await renewed.binding.open(raw)).frame == b"new key"
    opened = await alice.binding.open(await seal(renewed, alice, b"answer"))
    assert opened.sender.card.card == renewed.card.card


def _records(store) -> dict[str, bytes | None]:
    return {key: store.get(SESSION_NAMESPACE, key) for key in store.keys(SESSION_NAMESPACE)}


async def test_a_peer_that_moved_tells_the_peers_it_holds_sessions_with(world):
    """Bob moves his mailbox (a new card, same keys and store) and writes to Alice, who
    was never given his new card: his messages carry it until one of hers says she
    holds it, and the messages she opens name it from the first (the agent answers
    where the card says); she keeps it across a restart."""
    directory, clock = world
    alice, bob = await pair(world)
    await bob.binding.open(await seal(alice, bob, b"hello"))
    raw = await seal(bob, alice, b"answer")
    assert not Envelope.from_bytes(raw).card  # she holds his card: none sent
    await alice.binding.open(raw)
    moved = make_agent(directory, clock, identity=bob.identity, store=bob.store, home=OTHER_RELAY)
    for text in (b"moved", b"again"):
        raw = await seal(moved, alice, text)
        assert Envelope.from_bytes(raw).card == moved.card.json_bytes
        assert (await alice.binding.open(raw)).sender.card.card == moved.card.card
    alice = alice.restart()
    assert alice.binding._sessions.load(bob.identity.agent_id).card.card == moved.card.card
    raw = await seal(alice, moved, b"held")
    assert Envelope.from_bytes(raw).known_card == card_digest(moved.card.json_bytes)
    await moved.binding.open(raw)
    for sender in (moved, moved.restart()):
        raw = await seal(sender, alice, b"told")
        assert not Envelope.from_bytes(raw).card
        assert (await alice.binding.open(raw)).sender.card.card == moved.card.card


async def test_a_peer_that_moves_back_before_an_answer_tells_that_too(world):
    """Bob moves, writes, and moves back to his first card before Alice answers: what
    she last said she holds is his first card, but she will have read the other one
    first, so his card goes with the next message too."""
    directory, clock = world
    alice, bob = await pair(world)
    await bob.binding.open(await seal(alice, bob, b"hello"))
    await alice.binding.open(await seal(bob, alice, b"answer"))
    moved = make_agent(directory, clock, identity=bob.identity, store=bob.store, home=OTHER_RELAY)
    away = await seal(moved, alice, b"moved")
    back = make_agent(directory, clock, identity=bob.identity, store=bob.store)
    assert back.card.card == bob.card.card
    home = await seal(back, alice, b"back")
    assert Envelope.from_bytes(home).card == back.card.json_bytes
    for raw in (away, home):
        opened = await alice.binding.open(raw)
    assert opened.sender.card.card == bob.card.card


async def test_a_carried_card_must_be_the_senders_own_with_the_sessions_key(world):
    """A message carrying another agent's card, or a card of the sender naming another
    X25519 key than the session's, is refused and changes nothing."""
    directory, clock = world
    alice, bob = await pair(world)
    await bob.binding.open(await seal(alice, bob, b"hello"))
    await alice.binding.open(await seal(bob, alice, b"answer"))
    mallory = make_agent(directory, clock)
    rotated = Identity(
        signing_key=bob.identity.signing_key, agreement_key=X25519PrivateKey.generate()
    )
    renewed = make_agent(directory, clock, identity=rotated)
    session = bob.binding._sessions.load(alice.identity.agent_id).current
    transcript = negotiation(bob, alice).transcript()
    before = _records(alice.store)
    for card, refusal in (
        (mallory.card, "not the sender's"),
        (renewed.card, "another identity key"),
    ):
        if card is renewed.card:
            alice.context.trust.forget(bob.identity.agent_id)  # trust lets the new key pass
        _, env = seal_frame(
            session, b"x", negotiation=transcript, rng=os.urandom, card=card.json_bytes
        )
        with pytest.raises(TrustError, match=refusal):
            await alice.binding.open(env.to_bytes())
        assert _records(alice.store) == before
