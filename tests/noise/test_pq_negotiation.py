"""Post-quantum properties from the negotiation (issue 20 items 1 and 2, Noise).

* The binding states what a session with *this* peer will have (``session_terms``):
  ``post_quantum`` when both cards offer the ML-KEM-768 hybrid, ``post_quantum_auth``
  when both identities have ML-DSA-65 keys; the policy uses it, so
  ``require = ["post_quantum"]`` accepts Noise between two hybrid agents.
* The handshake makes it hold: a classical handshake between two cards that both
  offer the hybrid is a downgrade (NoiseDowngradeError on both sides, no channel).
* Each side whose card lists an ML-DSA-65 key signs the handshake hash with it in its
  card payload; a missing, wrong-key or foreign signature fails the handshake.
* Truncated and oversized ML-KEM keys and ciphertexts: typed errors, state unchanged.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from sealwire.agent import Agent, TaskContext
from sealwire.agent._card import build_card
from sealwire.binding import BindingContext, Negotiation, Party, Property
from sealwire.errors import DecodeError, PolicyError, SealwireError
from sealwire.identity import Identity, TrustMode, TrustStore, VerifiedCard, verify_card
from sealwire.model import TaskState
from sealwire.plugins import load_registry
from sealwire.policy import Policy, PolicyConfig, Situation
from sealwire.store import MemoryStore
from sealwire.transport import memory_datagram_pair, memory_pair
from sealwire_noise import (
    KEM_CIPHERTEXT_LEN,
    KEM_PUBLIC_LEN,
    HandshakeState,
    NoiseAuthenticationError,
    NoiseDecodeError,
    NoiseRemoteProtocolError,
)
from sealwire_noise import _binding as noise_binding
from sealwire_noise import plugin as noise_plugin
from sealwire_noise._binding import NoiseBinding
from sealwire_noise._errors import NoiseDowngradeError, NoiseSignatureError
from sealwire_noise._session import encode_first_frame

URI = NoiseBinding.info.uri
PQ_IDS = [Identity.generate(post_quantum=True) for _ in range(2)]  # ML-DSA keygen is not free
HYBRID = {"post_quantum": True}


def card_for(identity: Identity, options: dict[str, Any]) -> VerifiedCard:
    return verify_card(
        build_card(
            identity, name="agent", description="noise pq test agent", version="0",
            bindings=[NoiseBinding], listen_urls=("tcp://127.0.0.1:1", "udp://127.0.0.1:1"),
            relay_address=None, options={"noise": options},
        )
    )  # fmt: skip


def make_binding(
    options: dict[str, Any] | None = None,
    *,
    identity: Identity | None = None,
    card_options: dict[str, Any] | None = None,
    context_identity: Identity | None = None,
) -> NoiseBinding:
    """A binding; ``card_options`` makes the card say other than the options (a peer that
    offers one thing and does another), ``context_identity`` signs with other keys."""
    identity = identity or Identity.generate()
    opts = options or {}
    store = MemoryStore()
    ctx = BindingContext(
        identity=context_identity or identity,
        card=card_for(identity, opts if card_options is None else card_options),
        store=store,
        trust=TrustStore(store, TrustMode.TOFU),
        options=opts,
    )
    return NoiseBinding(ctx)


def negotiation(a: NoiseBinding, b: NoiseBinding) -> Negotiation:
    return Negotiation(
        chosen=URI,
        initiator_offers=tuple(o.uri for o in a.context.card.offers),
        responder_offers=tuple(o.uri for o in b.context.card.offers),
    )


async def handshake(a: NoiseBinding, b: NoiseBinding) -> list[Any]:
    s1, s2 = memory_pair()
    neg = negotiation(a, b)
    results = await asyncio.gather(
        a.initiate(s1, b.context.card, neg), b.respond(s2, neg), return_exceptions=True
    )
    for r in results:
        if not isinstance(r, BaseException):
            await r.close()
    return results


def party(b: NoiseBinding, *, local: bool) -> Party:
    card = b.context.card
    offer = card.offer("noise")
    assert offer is not None
    return Party(
        identity=card.identity, params=offer.params, options=b.context.options if local else {}
    )


# -- what the binding states ---------------------------------------------------------


@pytest.mark.parametrize(
    ("mine", "theirs", "pq"),
    [(HYBRID, HYBRID, True), (HYBRID, {}, False), ({}, HYBRID, False), ({}, {}, False)],
)
def test_post_quantum_when_both_offer_the_hybrid(
    mine: dict[str, Any], theirs: dict[str, Any], pq: bool
) -> None:
    a, b = make_binding(mine), make_binding(theirs)
    terms = NoiseBinding.session_terms(party(a, local=True), party(b, local=False))
    assert (Property.POST_QUANTUM in terms.properties) is pq
    assert ("hfs_25519+MLKEM768" in terms.protocol) is pq
    assert terms.suite.endswith("ChaChaPoly_SHA256")
    assert Property.POST_QUANTUM_AUTH not in terms.properties  # classical identities


def test_post_quantum_auth_when_both_identities_have_ml_dsa() -> None:
    a, b = make_binding(identity=PQ_IDS[0]), make_binding(identity=PQ_IDS[1])
    c = make_binding()
    both = NoiseBinding.session_terms(party(a, local=True), party(b, local=False))
    assert Property.POST_QUANTUM_AUTH in both.properties
    one = NoiseBinding.session_terms(party(a, local=True), party(c, local=False))
    assert Property.POST_QUANTUM_AUTH not in one.properties


def test_without_a_peer_the_best_the_configuration_gives() -> None:
    assert (
        Property.POST_QUANTUM in NoiseBinding.session_terms(Party(options=HYBRID), None).properties
    )
    assert Property.POST_QUANTUM not in NoiseBinding.session_terms(Party(), None).properties


def policy(require: list[str], options: dict[str, Any]) -> Policy:
    config = PolicyConfig.from_mapping({"require": require})
    return Policy(config, {"noise": NoiseBinding}, binding_options={"noise": options})


def test_policy_requiring_post_quantum_accepts_noise_between_hybrid_agents() -> None:
    a, b = make_binding(HYBRID), make_binding(HYBRID)
    decision = policy(["post_quantum"], HYBRID).decide(b.context.card, Situation(), a.context.card)
    assert decision.binding == "noise"
    assert Property.POST_QUANTUM in decision.candidate.properties
    text = decision.explain()
    assert "protocol: Noise_IKhfs_25519+MLKEM768_ChaChaPoly_SHA256" in text
    assert "key exchange: post-quantum" in text and "authentication: classical" in text
    assert policy(["post_quantum"], HYBRID).local_offers() == (NoiseBinding,)


def test_policy_requiring_post_quantum_refuses_a_classical_peer() -> None:
    a, b = make_binding(HYBRID), make_binding()
    with pytest.raises(PolicyError, match="lacks required properties: post_quantum"):
        policy(["post_quantum"], HYBRID).decide(b.context.card, Situation(), a.context.card)
    assert policy(["post_quantum"], {}).local_offers() == ()  # we cannot offer it at all


def test_policy_requiring_post_quantum_auth() -> None:
    a = make_binding(identity=PQ_IDS[0])
    b, c = make_binding(identity=PQ_IDS[1]), make_binding()
    decision = policy(["post_quantum_auth"], {}).decide(b.context.card, Situation(), a.context.card)
    assert "authentication: post-quantum" in decision.explain()
    with pytest.raises(PolicyError, match="post_quantum_auth"):
        policy(["post_quantum_auth"], {}).decide(c.context.card, Situation(), a.context.card)


def test_check_session_refuses_a_session_without_the_required_properties() -> None:
    p = policy(["post_quantum"], HYBRID)
    agent_id = PQ_IDS[0].agent_id
    with pytest.raises(PolicyError, match="lacks required properties: post_quantum"):
        p.check_session(agent_id, NoiseBinding.info.properties)
    p.check_session(agent_id, NoiseBinding.info.properties | {Property.POST_QUANTUM})


# -- the handshake makes it hold -----------------------------------------------------


async def test_hybrid_handshake_between_hybrid_agents_with_pq_auth() -> None:
    a = make_binding(HYBRID, identity=PQ_IDS[0])
    b = make_binding(HYBRID, identity=PQ_IDS[1])
    s1, s2 = memory_pair()
    neg = negotiation(a, b)
    ca, cb = await asyncio.gather(a.initiate(s1, b.context.card, neg), b.respond(s2, neg))
    for ch in (ca, cb):
        assert {Property.POST_QUANTUM, Property.POST_QUANTUM_AUTH} <= ch.properties
    await ca.send(b"pq both ways")
    assert await cb.receive() == b"pq both ways"
    await ca.close()
    await cb.close()


async def test_pq_auth_over_datagrams() -> None:
    a = make_binding(HYBRID, identity=PQ_IDS[0])
    b = make_binding(HYBRID, identity=PQ_IDS[1])
    e1, e2 = memory_datagram_pair()
    neg = negotiation(a, b)
    ca, cb = await asyncio.gather(
        a.initiate_datagram(e1, b.context.card, neg), b.respond_datagram(e2, neg)
    )
    assert {Property.POST_QUANTUM, Property.POST_QUANTUM_AUTH} <= cb.properties
    await ca.close()
    await cb.close()


async def test_mixed_identities_authenticate_classically() -> None:
    a, b = make_binding(identity=PQ_IDS[0]), make_binding()
    ca, cb = await handshake(a, b)
    assert Property.POST_QUANTUM_AUTH not in ca.properties | cb.properties


async def test_peer_offering_pq_then_negotiating_classical_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Alice's card offers the hybrid, as Bob's does; her handshake runs the classical
    # protocol anyway. Bob (responder) refuses once her card arrives; nothing is handed on.
    alice = make_binding({}, card_options=HYBRID)
    bob = make_binding(HYBRID)
    results = await handshake(alice, bob)
    assert isinstance(results[1], NoiseDowngradeError)
    assert all(isinstance(r, BaseException) for r in results)


async def test_initiator_refuses_its_own_classical_choice_when_both_offer_pq(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        noise_binding, "choose_protocol", lambda *_: "Noise_XX_25519_ChaChaPoly_SHA256"
    )
    alice, bob = make_binding(HYBRID), make_binding(HYBRID)
    results = await handshake(alice, bob)
    assert isinstance(results[0], NoiseDowngradeError)  # at bob's card, before any channel
    assert all(isinstance(r, BaseException) for r in results)


async def test_missing_ml_dsa_handshake_signature_is_refused() -> None:
    # Alice's card lists her ML-DSA-65 key, but her handshake is not signed with it.
    pq = PQ_IDS[0]
    unsigned = Identity(signing_key=pq.signing_key, agreement_key=pq.agreement_key)
    alice = make_binding(identity=pq, context_identity=unsigned)
    results = await handshake(alice, make_binding())
    assert isinstance(results[1], NoiseSignatureError)
    assert all(isinstance(r, BaseException) for r in results)


async def test_handshake_signed_by_another_ml_dsa_key_is_refused() -> None:
    pq, other = PQ_IDS
    forged = Identity(
        signing_key=pq.signing_key, agreement_key=pq.agreement_key, mldsa_key=other.mldsa_key
    )
    bob = make_binding(identity=pq, context_identity=forged)  # responder this time
    results = await handshake(make_binding(), bob)
    # Bob wrote the last handshake message (IK), so he holds a channel; Alice, whom he
    # tried to fool, refuses it and hands nothing on (her side closes the stream).
    assert isinstance(results[0], NoiseSignatureError)


def test_payload_signature_over_another_handshake_is_refused() -> None:
    """A signed card payload replayed into another handshake: its h differs, so it fails."""
    a = make_binding(HYBRID, identity=PQ_IDS[0])
    b = make_binding(HYBRID, identity=PQ_IDS[1])
    neg = negotiation(a, b)
    payloads = []
    for _ in range(2):  # IK: Alice's first message carries her signed card
        first = a.start_initiator(b.context.card, neg)
        session, message = b.start_responder_retryable(_first(first), neg)
        payloads.append((session, message))
    (_, signed_for_first), (second, _) = payloads
    with pytest.raises(NoiseSignatureError, match="invalid"):
        second.accept(signed_for_first)


def _first(session: Any) -> bytes:
    return encode_first_frame(session.first_frame_name, session.write())


# -- ML-KEM bad input ---------------------------------------------------------------


def hybrid_pair() -> tuple[HandshakeState, HandshakeState]:
    name = "Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256"

    def side(initiator: bool) -> HandshakeState:
        static = x25519.X25519PrivateKey.generate()
        return HandshakeState(name, initiator=initiator, random=os.urandom, static=static)

    return side(True), side(False)


def test_truncated_or_oversized_ml_kem_key_is_a_typed_error_and_changes_nothing() -> None:
    init, resp = hybrid_pair()
    message = init.write_message(b"")
    assert len(message) == 32 + KEM_PUBLIC_LEN  # e, then e1 (no key yet: no tag)
    for bad in (message[: 32 + KEM_PUBLIC_LEN - 1], message[:40]):
        with pytest.raises(NoiseDecodeError, match="truncated"):
            resp.read_message(bad)
    resp.read_message(message)  # the state was unchanged: the real message still reads
    assert resp.status.value == "write"


@pytest.mark.parametrize("pattern", ["XX", "IK"])
def test_oversized_ml_kem_key_in_the_binding_is_a_typed_error(pattern: str) -> None:
    """Bytes past the fixed-size e1 are payload: XX's first message must have none, and
    IK's is encrypted under es, so either way the responder fails with a typed error."""
    opts = {**HYBRID, "patterns": [pattern]}
    a, b = make_binding(opts), make_binding(opts)
    neg = negotiation(a, b)
    frame = _first(a.start_initiator(b.context.card, neg))
    with pytest.raises((NoiseRemoteProtocolError, NoiseAuthenticationError, DecodeError)):
        b.start_responder(frame + b"\x00" * 7, neg)
    assert b.start_responder(frame, neg).status.value == "write"


def test_truncated_oversized_or_altered_ml_kem_ciphertext_is_a_typed_error() -> None:
    init, resp = hybrid_pair()
    resp.read_message(init.write_message(b""))
    reply = resp.write_message(b"")
    at = 32  # e, then ekem1 (1088 + 16 tag), then s...
    altered = reply[:at] + bytes([reply[at] ^ 1]) + reply[at + 1 :]
    short = reply[: at + KEM_CIPHERTEXT_LEN]
    for bad in (short, reply[:at], reply + b"\x00", altered):
        with pytest.raises((NoiseDecodeError, NoiseAuthenticationError, DecodeError)):
            init.read_message(bad)
    init.read_message(reply)  # unchanged by the failures
    assert init.status.value == "write"


# -- agents over real loopback TCP: require is checked against what was negotiated -------

REGISTRY = load_registry(extra_plugins=[noise_plugin], load_entry_points=False)


SERVED: list[str] = []


async def _answer(task: TaskContext) -> None:
    SERVED.append(task.message.parts[0].text or "")
    await task.complete("done")


def pq_agent(name: str, listen: list[str], *, noise: dict[str, Any], require: list[str]) -> Agent:
    agent = Agent(
        PQ_IDS[0] if name == "server" else PQ_IDS[1], MemoryStore(), name=name, listen=listen,
        registry=REGISTRY, binding_options={"noise": noise},
        policy=PolicyConfig.from_mapping({"require": require}),
    )  # fmt: skip
    agent.on_message(_answer)
    return agent


@pytest.mark.parametrize("scheme", ["tcp", "udp"])
async def test_agents_requiring_pq_talk_over_the_hybrid_with_pq_auth(scheme: str) -> None:
    """Over real loopback sockets; over UDP each ~15 KB handshake message (card, ML-DSA
    signature, ML-KEM key) is one datagram."""
    need = ["post_quantum", "post_quantum_auth"]
    server = pq_agent("server", [f"{scheme}://127.0.0.1:0"], noise=HYBRID, require=need)
    client = pq_agent("client", [], noise=HYBRID, require=need)
    async with server, client:
        peer = client.peer(server.card.card)
        decision = client.explain(peer)
        assert decision.binding == "noise" and "hfs" in decision.session_description()[0]
        task = await asyncio.wait_for(client.send_message(peer, "hello pq"), 60)
        assert task.status.state is TaskState.COMPLETED


async def test_responder_requiring_pq_closes_a_classical_session() -> None:
    """The responder cannot know the initiator's card before the handshake: a classical
    initiator's session completes in Noise, then the responder's policy refuses it and
    serves nothing (before this check it served the call)."""
    server = pq_agent("server", ["tcp://127.0.0.1:0"], noise=HYBRID, require=["post_quantum"])
    client = pq_agent("client", [], noise={}, require=[])
    async with server, client:
        peer = client.peer(server.card.card)
        with pytest.raises(SealwireError):
            await asyncio.wait_for(client.send_message(peer, "classical"), 60)
        assert "classical" not in SERVED  # the server's handler never saw the call
