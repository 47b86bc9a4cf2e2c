"""SignalBinding end to end between two agents through an in-memory fake relay directory."""

from __future__ import annotations

import json
from contextlib import contextmanager

import attrs
import pytest
from signal_v1 import encode_v1

import sealwire_signal._binding as signal_binding
import sealwire_signal.plugin as signal_plugin
from sealwire.agent._card import build_card
from sealwire.binding import BindingContext, Negotiation
from sealwire.errors import RemoteProtocolError, SealwireError, TrustError
from sealwire.identity import Identity, TrustMode, TrustStore, verify_card
from sealwire.relay import FetchedPrekeys, mailbox_address
from sealwire.store import MemoryStore, SqliteStore, StoreKey
from sealwire_signal import (
    DuplicateMessageError,
    Envelope,
    EnvelopeDecodeError,
    UnknownPrekeyError,
    card_digest,
    decode_session,
    encode_session,
)
from sealwire_signal._binding import SESSION_NAMESPACE, SignalBinding
from sealwire_signal._prekeys import (
    KEM_ONE_TIME_BATCH,
    NAMESPACE,
    ONE_TIME_BATCH,
    SIGNED_PREKEY_GRACE,
    SIGNED_PREKEY_ROTATION,
)

RELAY = "https://relay.test"
OTHER_RELAY = "https://other-relay.test"
DAY = 24 * 3600.0


class Directory:
    """The relay's prekey directory, in memory: one-time keys are handed out once."""

    def __init__(self) -> None:
        self.bundles: dict[tuple[str, str], bytes] = {}
        self.pools: dict[tuple[str, str], dict[str, dict[str, bytes]]] = {}


class FakeRelayClient:
    """The three prekey calls of ``sealwire.relay.RelayClient``, for one agent, and ``at``:
    the directory of another relay among ``relays`` (by URL)."""

    def __init__(
        self,
        directory: Directory,
        agent_id: str,
        *,
        url: str = RELAY,
        relays: dict[str, Directory] | None = None,
    ) -> None:
        self.directory, self.agent_id = directory, agent_id
        self.url, self.relays = url, relays or {}

    def at(self, url: str) -> FakeRelayClient:
        if url == self.url:
            return self
        return FakeRelayClient(self.relays[url], "lookup", url=url, relays=self.relays)

    async def publish_prekeys(self, binding, bundle, one_time) -> None:
        key = (self.agent_id, binding)
        self.directory.bundles[key] = bundle
        pools = self.directory.pools.setdefault(key, {})
        for pool, keys in one_time.items():
            pools.setdefault(pool, {}).update(keys)

    async def fetch_prekeys(self, agent_id, binding) -> FetchedPrekeys:
        key = (agent_id, binding)
        taken = {}
        for pool, keys in self.directory.pools.get(key, {}).items():
            first = next(iter(keys), None)
            taken[pool] = None if first is None else (first, keys.pop(first))
        return FetchedPrekeys(self.directory.bundles[key], taken)

    async def count_prekeys(self, binding):
        pools = self.directory.pools.get((self.agent_id, binding), {})
        return {pool: len(keys) for pool, keys in pools.items()}


@attrs.define
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@attrs.define
class Agent:
    identity: Identity
    card: object
    store: object
    binding: SignalBinding
    context: BindingContext

    def restart(self) -> Agent:
        return attrs.evolve(self, binding=SignalBinding(self.context))


def make_agent(
    directory, clock, *, store=None, options=None, home=RELAY, relays=None, identity=None,
    description="test agent",
) -> Agent:  # fmt: skip
    identity = identity or Identity.generate()
    opts = dict(options or {})
    card = verify_card(build_card(
        identity, name="agent", description=description, version="0",
        bindings=[SignalBinding], listen_urls=(), options={"signal": opts},
        relay_address=mailbox_address(home, identity.agent_id),
    ))  # fmt: skip
    store = store if store is not None else MemoryStore()
    relay = FakeRelayClient(directory, identity.agent_id, url=home, relays=relays)
    context = BindingContext(
        identity=identity, card=card, store=store, trust=TrustStore(store, TrustMode.TOFU),
        relay=relay, clock=clock, options=opts,
    )  # fmt: skip
    return Agent(identity, card, store, SignalBinding(context), context)


def negotiation(sender: Agent, recipient: Agent) -> Negotiation:
    return Negotiation(
        chosen=SignalBinding.info.uri,
        initiator_offers=tuple(o.uri for o in sender.card.offers),
        responder_offers=tuple(o.uri for o in recipient.card.offers),
    )


async def seal(sender: Agent, recipient: Agent, frame: bytes) -> bytes:
    return await sender.binding.seal(recipient.card, frame, negotiation(sender, recipient))


@pytest.fixture
def world():
    directory, clock = Directory(), Clock()
    return directory, clock


async def _pair(world, make_store=None, **options):
    """Alice and Bob with published prekeys; ``make_store()`` gives each its own store."""
    directory, clock = world
    alice, bob = (
        make_agent(directory, clock, store=make_store and make_store(), **options) for _ in range(2)
    )
    await alice.binding.publish_prekeys()
    await bob.binding.publish_prekeys()
    return alice, bob


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
    alice, bob = await _pair(world, options={"header_encryption": he})
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
    alice, bob = await _pair(world)
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
    alice, bob = await _pair(world)
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
    alice, bob = await _pair(world)
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
    alice, bob = await _pair(world)
    honest = negotiation(alice, bob)
    for bad in (attrs.evolve(honest, initiator_offers=()),
                attrs.evolve(honest, chosen="urn:sealwire:binding:other:1")):  # fmt: skip
        with pytest.raises(RemoteProtocolError, match="negotiation"):
            await bob.binding.open(await alice.binding.seal(bob.card, b"x", bad))
    assert (await bob.binding.open(await seal(alice, bob, b"ok"))).frame == b"ok"


async def test_an_impostor_card_is_refused(world):
    directory, clock = world
    alice, bob = await _pair(world)
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
    alice, bob = await _pair(world)
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
    alice, bob = await _pair(world)
    to_bob, to_alice = await seal(alice, bob, b"a1"), await seal(bob, alice, b"b1")
    assert (await bob.binding.open(to_bob)).frame == b"a1"
    assert (await alice.binding.open(to_alice)).frame == b"b1"
    for i in range(3):
        assert (await bob.binding.open(await seal(alice, bob, b"a%d" % i))).frame == b"a%d" % i
        assert (await alice.binding.open(await seal(bob, alice, b"b%d" % i))).frame == b"b%d" % i


async def test_pq_is_required_by_default(world):
    alice, bob = await _pair(world)
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
    alice, bob = await _pair(world)
    pools = directory.pools[(bob.identity.agent_id, "signal")]
    for _ in range(ONE_TIME_BATCH - 5):
        await alice.binding.context.relay.fetch_prekeys(bob.identity.agent_id, "signal")
    await bob.binding.open(await seal(alice, bob, b"soon"))
    assert len(pools["x25519"]) == 4  # not due yet: nothing published
    clock.now += REPUBLISH_INTERVAL + 1
    await bob.binding.open(await seal(alice, bob, b"later"))
    assert len(pools["x25519"]) == ONE_TIME_BATCH


async def test_what_keep_writes_commits_with_the_state_or_not_at_all(world):
    alice, bob = await _pair(world)
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


# -- post-quantum: properties from the cards, downgrades, hybrid signatures (issue 20) ----

PQ_IDS = [Identity.generate(post_quantum=True) for _ in range(2)]  # ML-DSA keygen: once


async def _pq_pair(world, **options):
    directory, clock = world
    alice = make_agent(directory, clock, identity=PQ_IDS[0], **options)
    bob = make_agent(directory, clock, identity=PQ_IDS[1], **options)
    await alice.binding.publish_prekeys()
    await bob.binding.publish_prekeys()
    return alice, bob


def _party(agent: Agent, *, local: bool):
    from sealwire.binding import Party

    offer = agent.card.offer("signal")
    options = agent.context.options if local else {}
    return Party(identity=agent.card.identity, params=offer.params, options=options)


def test_session_terms_from_both_cards(world):
    from sealwire.binding import Party, Property

    directory, clock = world
    a, b = make_agent(directory, clock), make_agent(directory, clock)
    terms = SignalBinding.session_terms(_party(a, local=True), _party(b, local=False))
    assert Property.POST_QUANTUM in terms.properties and "PQXDH" in terms.protocol
    assert Property.POST_QUANTUM_AUTH not in terms.properties
    legacy = Party(identity=b.card.identity, params={"keyAgreement": "X3DH-X25519-SHA256"})
    classical = SignalBinding.session_terms(_party(a, local=True), legacy)
    assert Property.POST_QUANTUM not in classical.properties and "X3DH" in classical.protocol
    pa = make_agent(directory, clock, identity=PQ_IDS[0])
    pb = make_agent(directory, clock, identity=PQ_IDS[1])
    both = SignalBinding.session_terms(_party(pa, local=True), _party(pb, local=False))
    assert Property.POST_QUANTUM_AUTH in both.properties
    assert Property.POST_QUANTUM not in SignalBinding.info.properties  # not static any more


async def test_hybrid_signed_agents_sign_prekeys_and_initial_messages(world):
    from sealwire_signal._wire import decode_bundle

    directory, _ = world
    alice, bob = await _pq_pair(world)
    bundle = decode_bundle(directory.bundles[(bob.identity.agent_id, "signal")])
    assert bundle.signed_prekey.mldsa_signature is not None
    assert bundle.kem_prekey is not None and bundle.kem_prekey.mldsa_signature is not None
    raw = await seal(alice, bob, b"hybrid")
    assert Envelope.from_bytes(raw).prekey.mldsa_signature is not None
    assert (await bob.binding.open(raw)).frame == b"hybrid"
    assert (await alice.binding.open(await seal(bob, alice, b"back"))).frame == b"back"


def _rewrite_bundle(directory, agent, edit):
    from sealwire_signal._wire import decode_bundle, encode_bundle

    key = (agent.identity.agent_id, "signal")
    directory.bundles[key] = encode_bundle(edit(decode_bundle(directory.bundles[key])))


async def test_bundle_without_ml_dsa_signatures_is_refused(world):
    from sealwire_signal import BadSignatureError

    directory, _ = world
    alice, bob = await _pq_pair(world)
    _rewrite_bundle(directory, bob, lambda b: attrs.evolve(
        b, signed_prekey=attrs.evolve(b.signed_prekey, mldsa_signature=None),
        kem_prekey=attrs.evolve(b.kem_prekey, mldsa_signature=None),
    ))  # fmt: skip
    with pytest.raises(BadSignatureError):
        await seal(alice, bob, b"x")


async def test_ml_dsa_signature_over_another_prekey_is_refused(world):
    from sealwire_signal import BadSignatureError

    directory, _ = world
    alice, bob = await _pq_pair(world)
    # The KEM prekey's ML-DSA signature put on the signed prekey: valid, other bytes.
    _rewrite_bundle(directory, bob, lambda b: attrs.evolve(
        b, signed_prekey=attrs.evolve(
            b.signed_prekey, mldsa_signature=b.kem_prekey.mldsa_signature
        ),
    ))  # fmt: skip
    with pytest.raises(BadSignatureError):
        await seal(alice, bob, b"x")


async def test_initial_message_without_or_with_a_foreign_ml_dsa_signature_is_refused(world):
    from sealwire_signal import BadSignatureError

    alice, bob = await _pq_pair(world)
    raw = await seal(alice, bob, b"first")
    env = Envelope.from_bytes(raw)
    stripped = attrs.evolve(env, prekey=attrs.evolve(env.prekey, mldsa_signature=None))
    with pytest.raises(BadSignatureError):
        await bob.binding.open(stripped.to_bytes())
    directory, clock = world
    carol = make_agent(directory, clock, identity=PQ_IDS[0])  # Alice's keys, a new session
    other = Envelope.from_bytes(await seal(carol, bob, b"other"))
    foreign = attrs.evolve(
        env, prekey=attrs.evolve(env.prekey, mldsa_signature=other.prekey.mldsa_signature)
    )
    with pytest.raises(BadSignatureError):
        await bob.binding.open(foreign.to_bytes())
    assert (await bob.binding.open(raw)).frame == b"first"  # nothing was changed


async def test_bundle_without_pq_prekey_is_a_downgrade_when_both_cards_offer_pqxdh(world):
    from sealwire_signal._errors import DowngradeError

    directory, _ = world
    alice, bob = await _pair(world, options={"require_pq": False})
    _rewrite_bundle(directory, bob, lambda b: attrs.evolve(b, kem_prekey=None))
    directory.pools[(bob.identity.agent_id, "signal")].pop("mlkem768")
    with pytest.raises(DowngradeError):
        await seal(alice, bob, b"x")


async def test_initial_message_without_pq_part_is_a_downgrade_when_both_offer_pqxdh(world):
    from sealwire_signal._errors import DowngradeError

    alice, bob = await _pair(world, options={"require_pq": False})
    raw = await seal(alice, bob, b"x")
    env = Envelope.from_bytes(raw)
    stripped = attrs.evolve(
        env, prekey=attrs.evolve(env.prekey, kem_prekey_id=None, kem_ciphertext=None)
    )
    with pytest.raises(DowngradeError):
        await bob.binding.open(stripped.to_bytes())
    assert (await bob.binding.open(raw)).frame == b"x"


@pytest.mark.parametrize("change", ["truncated", "oversized", "flipped"])
async def test_bad_ml_kem_ciphertext_in_the_initial_message(world, change):
    alice, bob = await _pair(world)
    raw = await seal(alice, bob, b"x")
    env = Envelope.from_bytes(raw)
    ct = env.prekey.kem_ciphertext
    bad_ct = {
        "truncated": ct[:-1], "oversized": ct + b"\x00", "flipped": bytes([ct[0] ^ 1]) + ct[1:]
    }[change]  # fmt: skip
    bad = attrs.evolve(env, prekey=attrs.evolve(env.prekey, kem_ciphertext=bad_ct)).to_bytes()
    with pytest.raises(SealwireError):
        await bob.binding.open(bad)
    assert (await bob.binding.open(raw)).frame == b"x"  # state unchanged by the failure


@pytest.mark.parametrize("change", ["truncated", "oversized"])
async def test_bad_ml_kem_keys_in_the_directory(world, change):
    from sealwire_signal._wire import decode_bundle

    directory, _ = world
    alice, bob = await _pair(world)
    key = (bob.identity.agent_id, "signal")
    pool = directory.pools[key]["mlkem768"]
    first = next(iter(pool))
    pool[first] = pool[first][:-1] if change == "truncated" else pool[first] + b"\x00"
    with pytest.raises(SealwireError):
        await seal(alice, bob, b"x")
    raw_bundle = directory.bundles[key]
    at = raw_bundle.index(decode_bundle(raw_bundle).kem_prekey.public)
    cut = raw_bundle[: at + 100] if change == "truncated" else raw_bundle + b"\x00"
    with pytest.raises(SealwireError):
        decode_bundle(cut)


# -- stored session records: v2, the peer card stored once, v1 upgrade (issue 14) ---------


class _RecordingTransaction:
    def __init__(self, tx, puts) -> None:
        self._tx, self._puts = tx, puts

    def get(self, namespace, key):
        return self._tx.get(namespace, key)

    def put(self, namespace, key, value):
        self._puts.append((namespace, key, len(value)))
        self._tx.put(namespace, key, value)

    def delete(self, namespace, key):
        return self._tx.delete(namespace, key)

    def keys(self, namespace, prefix=""):
        return self._tx.keys(namespace, prefix)


class RecordingStore(MemoryStore):
    """A MemoryStore that notes every transactional put: (namespace, key, value length)."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[tuple[str, str, int]] = []

    @contextmanager
    def transaction(self):
        with super().transaction() as tx:
            yield _RecordingTransaction(tx, self.puts)


def _card_keys(agent: Agent, peer: Agent) -> list[str]:
    return agent.store.keys(SESSION_NAMESPACE, f"{peer.identity.agent_id}/card/")


def _named_card_keys(agent: Agent, peer: Agent) -> set[str]:
    """The card keys the peer's stored session records name."""
    peer_id = peer.identity.agent_id
    named = set()

    def lookup(digest):
        named.add(f"{peer_id}/card/{digest.hex()}")
        return agent.store.get(SESSION_NAMESPACE, f"{peer_id}/card/{digest.hex()}")

    for slot in ("current", "archived"):
        raw = agent.store.get(SESSION_NAMESPACE, f"{peer_id}/{slot}")
        if raw is not None:
            decode_session(raw, lookup)
    return named


async def test_the_peer_card_is_stored_once_not_with_every_message(world):
    alice, bob = await _pair(world, make_store=RecordingStore)
    for i in range(3):
        assert (await bob.binding.open(await seal(alice, bob, b"a%d" % i))).frame == b"a%d" % i
        assert (await alice.binding.open(await seal(bob, alice, b"b%d" % i))).frame == b"b%d" % i
    for agent, peer in ((alice, bob), (bob, alice)):
        peer_id = peer.identity.agent_id
        card_puts = [key for ns, key, _ in agent.store.puts if key.startswith(f"{peer_id}/card/")]
        assert len(card_puts) == 1  # with the first commit, never again
        assert _card_keys(agent, peer) == card_puts
        sessions = [n for ns, key, n in agent.store.puts if key == f"{peer_id}/current"]
        assert len(sessions) == 6 and max(sessions[2:]) < 1024  # no card inside
        raw = agent.store.get(SESSION_NAMESPACE, f"{peer_id}/current")
        assert raw.startswith(b"SWSS\x02")
        card = agent.store.get(SESSION_NAMESPACE, card_puts[0])
        assert card == json.dumps(dict(peer.card.card), separators=(",", ":")).encode()
    bob = bob.restart()  # the card is found again by its digest
    assert (await bob.binding.open(await seal(alice, bob, b"after"))).frame == b"after"


async def test_cards_of_a_rekeyed_peer_are_deleted_with_their_last_session(world):
    directory, clock = world
    alice, bob = await _pair(world)
    seen = set()
    for generation in range(5):
        assert (await alice.binding.open(await seal(bob, alice, b"hi %d" % generation))).frame
        reply = await seal(alice, bob, b"re %d" % generation)
        assert (await bob.binding.open(reply)).frame == b"re %d" % generation
        keys = _card_keys(alice, bob)
        assert set(keys) == _named_card_keys(alice, bob)
        assert len(keys) == min(generation + 1, 2)  # the current and the archived session's
        seen.update(keys)
        assert alice.store.keys(SESSION_NAMESPACE, bob.identity.agent_id) == sorted(
            [f"{bob.identity.agent_id}/{slot}" for slot in ("bases", "current")]
            + ([f"{bob.identity.agent_id}/archived"] if generation else [])
            + keys
        )
        # Bob loses his state and comes back with a newly signed card (same identity):
        # his next message starts a new session, and Alice archives the previous one.
        bob = make_agent(directory, clock, identity=bob.identity,
                         description=f"test agent, generation {generation + 1}")  # fmt: skip
        await bob.binding.publish_prekeys()
    assert len(seen) == 5  # each generation's card was stored, and all but two are gone


async def test_a_tampered_or_missing_stored_card_is_a_decode_error(world):
    alice, bob = await _pair(world)
    await bob.binding.open(await seal(alice, bob, b"hi"))
    (key,) = _card_keys(bob, alice)
    card = bob.store.get(SESSION_NAMESPACE, key)
    bob.store.put(SESSION_NAMESPACE, key, card.replace(b"test agent", b"test agenT"))
    with pytest.raises(EnvelopeDecodeError) as caught:
        await bob.restart().binding.open(await seal(alice, bob, b"tampered"))
    assert caught.value.field == "session.peer_card"
    bob.store.delete(SESSION_NAMESPACE, key)
    with pytest.raises(EnvelopeDecodeError) as caught:
        await bob.restart().binding.open(await seal(alice, bob, b"missing"))
    assert caught.value.field == "session.peer_card"


def _downgrade_to_v1(agent: Agent, peer: Agent) -> None:
    """Rewrite the agent's sessions with ``peer`` as the released version wrote them:
    v1 records, no card keys."""
    peer_id = peer.identity.agent_id
    with agent.store.transaction() as tx:
        for key in tx.keys(SESSION_NAMESPACE, f"{peer_id}/card/"):
            tx.delete(SESSION_NAMESPACE, key)
    for slot in ("current", "archived"):
        raw = agent.store.get(SESSION_NAMESPACE, f"{peer_id}/{slot}")
        if raw is not None:
            session = agent.binding._load(peer_id)
            stored = session.current if slot == "current" else session.archived
            agent.store.put(SESSION_NAMESPACE, f"{peer_id}/{slot}", encode_v1(stored))


@pytest.mark.parametrize("he", [False, True])
async def test_v1_sessions_load_and_are_rewritten_as_v2(world, tmp_path, he):
    directory, clock = world
    key = StoreKey.generate()
    alice = make_agent(directory, clock, options={"header_encryption": he},
                       store=SqliteStore.open(tmp_path / "alice.db", key))  # fmt: skip
    bob = make_agent(directory, clock, store=SqliteStore.open(tmp_path / "bob.db", key))
    await alice.binding.publish_prekeys()
    await bob.binding.publish_prekeys()
    # Both start at once: each side has a current and an archived session.
    to_bob, to_alice = await seal(alice, bob, b"a1"), await seal(bob, alice, b"b1")
    assert (await bob.binding.open(to_bob)).frame == b"a1"
    assert (await alice.binding.open(to_alice)).frame == b"b1"
    in_flight = await seal(alice, bob, b"sent before the upgrade")
    for agent, peer in ((alice, bob), (bob, alice)):
        _downgrade_to_v1(agent, peer)
        assert agent.store.get(SESSION_NAMESPACE, f"{peer.identity.agent_id}/current")[:1] == b"{"
        assert _card_keys(agent, peer) == []
    alice, bob = alice.restart(), bob.restart()  # the upgraded release reads the v1 records
    assert (await bob.binding.open(in_flight)).frame == b"sent before the upgrade"
    for i in range(2):
        assert (await bob.binding.open(await seal(alice, bob, b"a%d" % i))).frame == b"a%d" % i
        assert (await alice.binding.open(await seal(bob, alice, b"b%d" % i))).frame == b"b%d" % i
    for agent, peer in ((alice, bob), (bob, alice)):
        peer_id = peer.identity.agent_id
        for slot in ("current", "archived"):
            raw = agent.store.get(SESSION_NAMESPACE, f"{peer_id}/{slot}")
            assert raw is None or raw.startswith(b"SWSS\x02")
        keys = _card_keys(agent, peer)
        assert set(keys) == _named_card_keys(agent, peer) and len(keys) == 1
        card = json.dumps(dict(peer.card.card), separators=(",", ":")).encode()
        assert keys == [f"{peer_id}/card/{card_digest(card).hex()}"]
    alice, bob = alice.restart(), bob.restart()
    assert (await bob.binding.open(await seal(alice, bob, b"after"))).frame == b"after"
    alice.store.close()
    bob.store.close()


async def test_an_unchanged_archived_session_is_not_rewritten(world):
    alice, bob = await _pair(world, make_store=RecordingStore)
    to_bob, to_alice = await seal(alice, bob, b"a1"), await seal(bob, alice, b"b1")
    assert (await bob.binding.open(to_bob)).frame == b"a1"
    assert (await alice.binding.open(to_alice)).frame == b"b1"  # each side archives one
    # Both now send on the session Bob accepted: Bob's current and archived swap, once.
    assert (await bob.binding.open(await seal(alice, bob, b"a"))).frame == b"a"
    assert (await alice.binding.open(await seal(bob, alice, b"b"))).frame == b"b"
    for agent, peer in ((alice, bob), (bob, alice)):
        assert agent.store.get(SESSION_NAMESPACE, f"{peer.identity.agent_id}/archived")
        agent.store.puts.clear()
    for i in range(3):
        assert (await bob.binding.open(await seal(alice, bob, b"a%d" % i))).frame == b"a%d" % i
        assert (await alice.binding.open(await seal(bob, alice, b"b%d" % i))).frame == b"b%d" % i
    for agent, peer in ((alice, bob), (bob, alice)):
        peer_id = peer.identity.agent_id
        archived = agent.store.get(SESSION_NAMESPACE, f"{peer_id}/archived")
        keys = [key for _, key, _ in agent.store.puts]
        assert keys == [f"{peer_id}/current"] * 6  # the archived one stays as it was
        agent = agent.restart()  # and reads back as it was
        entry = agent.binding._load(peer_id)
        assert encode_session(entry.archived) == archived


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
    alice, bob = await _pair(world)
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
    alice, bob = await _pair(world)
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

    alice, bob = await _pair(world)
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
        agent.binding._peers.clear()
    await bob.binding.open(await seal(alice, bob, b"after"))
    await alice.binding.open(await seal(bob, alice, b"again"))
    assert [key for _, key in deleted if key.endswith("/archived")] == []
    # and an archived session, once there, is written and read as before
    bob = bob.restart()
    assert (await bob.binding.open(await seal(alice, bob, b"still"))).frame == b"still"
