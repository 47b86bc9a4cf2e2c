"""SignalBinding post-quantum: properties from the cards, downgrades, hybrid signatures
(issue 20)."""

from __future__ import annotations

import attrs
import pytest
from signal_binding_world import Agent, make_agent, pair, seal

from sealwire.errors import SealwireError
from sealwire.identity import Identity
from sealwire_signal import Envelope
from sealwire_signal._binding import SignalBinding

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
    alice, bob = await pair(world, options={"require_pq": False})
    _rewrite_bundle(directory, bob, lambda b: attrs.evolve(b, kem_prekey=None))
    directory.pools[(bob.identity.agent_id, "signal")].pop("mlkem768")
    with pytest.raises(DowngradeError):
        await seal(alice, bob, b"x")


async def test_initial_message_without_pq_part_is_a_downgrade_when_both_offer_pqxdh(world):
    from sealwire_signal._errors import DowngradeError

    alice, bob = await pair(world, options={"require_pq": False})
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
    alice, bob = await pair(world)
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
    alice, bob = await pair(world)
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
