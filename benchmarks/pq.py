"""Post-quantum cost: Noise XX/IK classical vs ML-KEM hybrid, Signal X3DH vs PQXDH.

Run: ``uv run python benchmarks/pq.py [--seconds S]`` (one core is enough; pin it
with ``taskset -c 0`` for steadier figures).

What is measured, in one process, every variant in the same run, in alternating
slices (the best slice of each kept), in CPU time of this thread
(``time.thread_time``, so other processes on a shared machine slow every
variant alike instead of stealing slices from one):

* Noise, through the binding's sans-I/O session (the protocol name in the first
  frame, the prologue binding the negotiation, each side's signed card in its
  handshake payload, card verification and the trust store): complete
  handshakes, both sides, per second, for XX and IK,
  - classical: X25519 only, Ed25519-signed cards;
  - hybrid KEX: the ML-KEM-768 hybrid (``hfs``), classical identities;
  - hybrid KEX + PQ auth: the hybrid, and identities with ML-DSA-65 keys (cards
    signed EdDSA + ML-DSA-65, each side signing the handshake hash with ML-DSA-65).
* Signal, through the sans-I/O core and the wire profile: session setups per
  second (bundle decoded and its signatures verified, X3DH or PQXDH on the
  initiator, the initial envelope encoded, decoded and accepted by the responder,
  the sender's card verified), for X3DH, PQXDH, and PQXDH with ML-DSA-65 signed
  prekeys and initial message.

Bytes on the wire per handshake / setup: the sum of every handshake message (Noise:
first frame included, cards included, as they travel), or of the bundle, the
one-time PQ prekey blob and the initial envelope (Signal). Ratios are against the
classical variant of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

from sealwire.binding import BindingContext, Negotiation
from sealwire.identity import (
    Identity,
    TrustMode,
    TrustStore,
    VerifiedCard,
    binding_uri,
    build_identity_extension,
    sign_card,
    verify_card,
)
from sealwire.plugins import load_registry
from sealwire.store import MemoryStore
from sealwire_noise import encode_first_frame
from sealwire_signal import (
    DHKeyPair,
    Envelope,
    KemPrekey,
    OneTimePrekey,
    PrekeyBundle,
    SignedPrekey,
    accept_session,
    decode_bundle,
    encode_bundle,
    initial_message_input,
    seal_frame,
    sign_kem_prekey,
    sign_signed_prekey,
    start_session,
    verify_mldsa,
)

ROUNDS = 5
"""Alternating slices per figure: enough for one quiet slice on a shared machine."""
PAYLOAD = b"x" * 256
NOISE = load_registry().binding("noise")
NOISE_URI = binding_uri("noise", 1)
SIGNAL_URI = binding_uri("signal", 1)

Step = Callable[[], int]
"""One handshake or setup; returns the bytes it put on the wire."""


def rate(fn: Step, seconds: float) -> float:
    fn()
    calls, start = 0, time.thread_time()
    while True:
        fn()
        calls += 1
        now = time.thread_time()
        if now - start >= seconds:
            return calls / (now - start)


def interleaved(actions: dict[str, Step], seconds: float) -> dict[str, float]:
    best = dict.fromkeys(actions, 0.0)
    for _ in range(ROUNDS):
        for name, fn in actions.items():
            best[name] = max(best[name], rate(fn, seconds / ROUNDS))
    return best


def card(identity: Identity, uri: str, params: dict[str, Any]) -> VerifiedCard:
    return verify_card(sign_card({
        "name": "bench", "description": "benchmark agent", "version": "0",
        "supportedInterfaces": [
            {"url": "tcp://127.0.0.1:1", "protocolBinding": uri, "protocolVersion": "1.0"}
        ],
        "capabilities": {"extensions": [build_identity_extension(identity.public, {uri: params})]},
        "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "a", "name": "a", "description": "a", "tags": ["t"]}],
    }, identity))  # fmt: skip


# -- Noise ---------------------------------------------------------------------------------


def noise_binding(identity: Identity, options: dict[str, Any]) -> Any:
    store = MemoryStore()
    ctx = BindingContext(
        identity=identity,
        card=card(identity, NOISE_URI, dict(NOISE.card_parameters(identity.public, options))),
        store=store,
        trust=TrustStore(store, TrustMode.TOFU),
        options=options,
    )
    return NOISE(ctx)


def noise_step(pattern: str, *, hybrid: bool, pq_ids: bool) -> Step:
    options = {"patterns": [pattern], "post_quantum": hybrid}
    a = noise_binding(Identity.generate(post_quantum=pq_ids), options)
    b = noise_binding(Identity.generate(post_quantum=pq_ids), options)
    offers = (NOISE_URI,)
    neg = Negotiation(chosen=NOISE_URI, initiator_offers=offers, responder_offers=offers)

    def run() -> int:
        init = a.start_initiator(b.context.card, neg)
        first = encode_first_frame(init.first_frame_name, init.write())
        resp = b.start_responder(first, neg)
        wire, sender, receiver = len(first), resp, init
        while not (init.hs.is_finished and resp.hs.is_finished):
            message = sender.write()
            wire += len(message)
            receiver.read(message)
            sender, receiver = receiver, sender
        init.peer()
        resp.peer()
        return wire

    return run


def bench_noise(seconds: float) -> None:
    variants = {
        "classical": {"hybrid": False, "pq_ids": False},
        "hybrid KEX": {"hybrid": True, "pq_ids": False},
        "hybrid KEX + PQ auth": {"hybrid": True, "pq_ids": True},
    }
    for pattern in ("XX", "IK"):
        steps = {name: noise_step(pattern, **kw) for name, kw in variants.items()}
        sizes = {name: step() for name, step in steps.items()}
        rates = interleaved(steps, seconds)
        print(f"Noise {pattern} (binding handshake, both sides, cards verified)")
        _table(rates, sizes, "handshakes/s")


# -- Signal --------------------------------------------------------------------------------


def signal_agent(*, pq_ids: bool, pqxdh: bool) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey

    identity = Identity.generate(post_quantum=pq_ids)
    rng = os.urandom
    ik = DHKeyPair.from_private_key(identity.agreement_key)
    spk, opk = DHKeyPair.generate(rng), DHKeyPair.generate(rng)
    mldsa = identity.mldsa_key

    def sigs(sign: Callable[..., bytes], public: bytes) -> dict[str, Any]:
        return {
            "signature": sign(identity.signing_key, public),
            "mldsa_signature": None if mldsa is None else sign(mldsa, public),
        }

    kem = MLKEM768PrivateKey.generate() if pqxdh else None
    kem_prekey = None
    if kem is not None:
        pub = kem.public_key().public_bytes_raw()
        kem_prekey = KemPrekey(id=2, public=pub, **sigs(sign_kem_prekey, pub))
    bundle = PrekeyBundle(
        identity_key=ik.public,
        signed_prekey=SignedPrekey(id=1, public=spk.public, **sigs(sign_signed_prekey, spk.public)),
        kem_prekey=kem_prekey,
    )
    params = {"keyAgreement": "PQXDH-X25519-SHA256-ML-KEM-768" if pqxdh else "X3DH"}
    verified_card = card(identity, SIGNAL_URI, params)
    return {
        "identity": identity, "ik": ik, "spk": spk, "opk": opk, "kem": kem,
        "bundle": encode_bundle(bundle), "card": verified_card,
        "card_bytes": json.dumps(dict(verified_card.card), separators=(",", ":")).encode(),
    }  # fmt: skip


def signal_step(*, pqxdh: bool, pq_ids: bool) -> Step:
    rng = os.urandom
    alice = signal_agent(pq_ids=pq_ids, pqxdh=pqxdh)
    bob = signal_agent(pq_ids=pq_ids, pqxdh=pqxdh)
    b_id: Identity = bob["identity"]
    a_id: Identity = alice["identity"]
    opk: DHKeyPair = bob["opk"]

    def run() -> int:
        bundle = decode_bundle(bob["bundle"])
        verified = bundle.verify(
            b_id.public.signing_key,
            mldsa_key=b_id.public.mldsa_key,
            one_time=OneTimePrekey(3, opk.public),
        )
        session = start_session(
            local_id="alice", peer_id="bob", identity=alice["ik"], peer=verified, rng=rng,
            local_card=alice["card_bytes"], mldsa_key=a_id.mldsa_key,
        )  # fmt: skip
        _, envelope = seal_frame(session, PAYLOAD, negotiation=b"n" * 80, rng=rng)
        raw = envelope.to_bytes()
        env = Envelope.from_bytes(raw)
        part = env.prekey
        assert part is not None
        sender = verify_card(json.loads(part.card))
        if sender.identity.mldsa_key is not None:
            signed = initial_message_input(part.unsigned_bytes(), env.sender_id, env.recipient_id)
            verify_mldsa(sender.identity.mldsa_key, part.mldsa_signature, signed)
        accept_session(
            local_id="bob", envelope=env, identity=bob["ik"], signed_prekey=bob["spk"],
            one_time_prekey=opk, kem_prekey=bob["kem"], now=0.0, rng=rng,
        )  # fmt: skip
        return len(bob["bundle"]) + len(raw)

    return run


def bench_signal(seconds: float) -> None:
    steps = {
        "X3DH": signal_step(pqxdh=False, pq_ids=False),
        "PQXDH": signal_step(pqxdh=True, pq_ids=False),
        "PQXDH + PQ auth": signal_step(pqxdh=True, pq_ids=True),
    }
    sizes = {name: step() for name, step in steps.items()}
    rates = interleaved(steps, seconds)
    print("Signal session setup (bundle verified, agreement both sides, first message)")
    _table(rates, sizes, "setups/s")


def _table(rates: dict[str, float], sizes: dict[str, int], unit: str) -> None:
    base_rate, base_size = next(iter(rates.values())), next(iter(sizes.values()))
    for name, value in rates.items():
        print(
            f"  {name:<22} {value:9.0f} {unit}  ({value / base_rate:4.2f}x)"
            f"   {sizes[name]:7d} bytes on the wire  ({sizes[name] / base_size:4.2f}x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per figure")
    args = parser.parse_args()
    bench_noise(args.seconds)
    print()
    bench_signal(args.seconds)


if __name__ == "__main__":
    main()
