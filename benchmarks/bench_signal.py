"""Signal binding benchmark: messages and session setups per second, beside PyPI libraries.

Run: ``uv run --group bench python benchmarks/bench_signal.py [--seconds S]``.

Measured in one process, one core, in the same run:

* sealwire-signal: the Double Ratchet core (plain and header-encrypted), the
  full envelope path (seal + encode + decode + open), and session setups
  (bundle verification, X3DH or PQXDH both sides, a replacement one-time prekey,
  ratchet init and the first message each way of the setup).
* PyPI ``doubleratchet`` 1.3 (recommended AES-256-CBC+HMAC, HKDF root chain,
  separate-HMAC message chains) and ``x3dh`` 1.3 (Curve25519, SHA-256), driven
  through their public async APIs.

"one-way" encrypts then decrypts each message in a single sending chain;
"ping-pong" alternates the direction, so every message is a DH ratchet step.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey

from sealwire_signal import (
    DHKeyPair,
    KemPrekey,
    OneTimePrekey,
    PrekeyBundle,
    SignedPrekey,
    decrypt,
    encrypt,
    init_alice,
    init_bob,
    initiate,
    respond,
    sign_kem_prekey,
    sign_signed_prekey,
)

PAYLOAD = b"x" * 256
AD = b"\x05" + bytes(32) + b"\x05" + bytes(32)


def rate(step: Callable[[], object], seconds: float) -> float:
    """Operations per second of ``step`` over about ``seconds`` (after a short warm-up)."""
    for _ in range(20):
        step()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            step()
        count += 50
    return count / elapsed


async def arate(step: Callable[[], Awaitable[object]], seconds: float) -> float:
    """:func:`rate` for a coroutine step, timed inside one running event loop."""
    for _ in range(20):
        await step()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            await step()
        count += 50
    return count / elapsed


# -- sealwire-signal ------------------------------------------------------------------------


def ours_messages(he: bool, ping_pong: bool, seconds: float) -> float:
    rng = os.urandom
    bob_pair, secret = DHKeyPair.generate(rng), rng(32)
    state = {"a": init_alice(secret, bob_pair.public, rng, header_encryption=he),
             "b": init_bob(secret, bob_pair, header_encryption=he)}  # fmt: skip
    state["a"], h, c = encrypt(state["a"], PAYLOAD, AD, rng)
    state["b"], _ = decrypt(state["b"], h, c, AD, now=0.0, rng=rng)
    turn = ["a", "b"]

    def step() -> None:
        sender, receiver = turn
        state[sender], h, c = encrypt(state[sender], PAYLOAD, AD, rng)
        state[receiver], _ = decrypt(state[receiver], h, c, AD, now=0.0, rng=rng)
        if ping_pong:
            turn.reverse()

    return rate(step, seconds)


def ours_envelopes(seconds: float) -> float:
    from sealwire_signal import Envelope, accept_session, open_envelope, seal_frame, start_session

    rng = os.urandom
    alice, bob = _ours_agent(pq=True), _ours_agent(pq=True)
    verified = bob["bundle"].verify(bob["signing"].public_key())
    sessions = {"a": start_session(local_id="a", peer_id="b", identity=alice["ik"],
                                   peer=verified, rng=rng)}  # fmt: skip
    sessions["a"], env = seal_frame(sessions["a"], PAYLOAD, negotiation=b"n" * 80, rng=rng)
    sessions["b"], _ = accept_session(
        local_id="b", envelope=Envelope.from_bytes(env.to_bytes()), identity=bob["ik"],
        signed_prekey=bob["spk"], one_time_prekey=None, kem_prekey=bob["kem"], now=0.0, rng=rng,
    )  # fmt: skip
    sessions["b"], env = seal_frame(sessions["b"], PAYLOAD, negotiation=b"n" * 80, rng=rng)
    sessions["a"], _ = open_envelope(sessions["a"], env, now=0.0, rng=rng)

    def step() -> None:
        sessions["a"], env = seal_frame(sessions["a"], PAYLOAD, negotiation=b"n" * 80, rng=rng)
        raw = env.to_bytes()
        sessions["b"], _ = open_envelope(sessions["b"], Envelope.from_bytes(raw), now=0.0, rng=rng)

    return rate(step, seconds)


def _ours_agent(pq: bool) -> dict[str, Any]:
    rng = os.urandom
    signing = Ed25519PrivateKey.generate()
    ik, spk, opk = (DHKeyPair.generate(rng) for _ in range(3))
    kem = MLKEM768PrivateKey.generate() if pq else None
    kem_prekey = None
    if kem is not None:
        pub = kem.public_key().public_bytes_raw()
        kem_prekey = KemPrekey(id=2, public=pub, signature=sign_kem_prekey(signing, pub))
    bundle = PrekeyBundle(
        identity_key=ik.public,
        signed_prekey=SignedPrekey(id=1, public=spk.public,
                                   signature=sign_signed_prekey(signing, spk.public)),
        kem_prekey=kem_prekey,
    )  # fmt: skip
    return {"signing": signing, "ik": ik, "spk": spk, "opk": opk, "kem": kem, "bundle": bundle}


def ours_setups(pq: bool, seconds: float) -> float:
    rng = os.urandom
    alice, bob = _ours_agent(pq), _ours_agent(pq)
    opk: DHKeyPair = bob["opk"]

    def step() -> None:
        verified = bob["bundle"].verify(
            bob["signing"].public_key(),
            one_time=OneTimePrekey(3, opk.public),
        )
        init = initiate(alice["ik"], verified, rng)
        shared = respond(
            identity=bob["ik"], signed_prekey=bob["spk"], one_time_prekey=opk,
            kem_prekey=bob["kem"], initiator_identity=init.identity_key,
            ephemeral_key=init.ephemeral_key, kem_ciphertext=init.kem_ciphertext,
        )  # fmt: skip
        DHKeyPair.generate(rng)  # the replacement one-time prekey
        a = init_alice(init.shared.secret, init.remote_ratchet_key, rng)
        b = init_bob(shared.secret, bob["spk"])
        a, h, c = encrypt(a, PAYLOAD, init.shared.associated_data, rng)
        decrypt(b, h, c, shared.associated_data, now=0.0, rng=rng)

    return rate(step, seconds)


# -- PyPI doubleratchet + x3dh -------------------------------------------------------------------


def _pypi_classes() -> dict[str, Any]:
    import doubleratchet
    import x3dh
    from doubleratchet.recommended import HashFunction, aead_aes_hmac, kdf_hkdf, kdf_separate_hmacs
    from doubleratchet.recommended import diffie_hellman_ratchet_curve25519 as dhr

    class Aead(aead_aes_hmac.AEAD):
        @staticmethod
        def _get_hash_function() -> HashFunction:
            return HashFunction.SHA_256

        @staticmethod
        def _get_info() -> bytes:
            return b"bench message keys"

    class RootKdf(kdf_hkdf.KDF):
        @staticmethod
        def _get_hash_function() -> HashFunction:
            return HashFunction.SHA_256

        @staticmethod
        def _get_info() -> bytes:
            return b"bench root chain"

    class MessageKdf(kdf_separate_hmacs.KDF):
        @staticmethod
        def _get_hash_function() -> HashFunction:
            return HashFunction.SHA_256

    class Ratchet(doubleratchet.DoubleRatchet):
        @staticmethod
        def _build_associated_data(associated_data: bytes, header: doubleratchet.Header) -> bytes:
            return (len(associated_data).to_bytes(4, "big") + associated_data
                    + header.ratchet_pub
                    + header.previous_sending_chain_length.to_bytes(4, "big")
                    + header.sending_chain_length.to_bytes(4, "big"))  # fmt: skip

    class XState(x3dh.State):
        def _publish_bundle(self, bundle: x3dh.Bundle) -> None:
            pass

        @staticmethod
        def _encode_public_key(key_format: x3dh.IdentityKeyFormat, pub: bytes) -> bytes:
            return b"\x05" + pub

    return {"aead": Aead, "root": RootKdf, "msg": MessageKdf, "ratchet": Ratchet,
            "dh": dhr.DiffieHellmanRatchet, "state": XState}  # fmt: skip


def _pypi_params(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "diffie_hellman_ratchet_class": c["dh"], "root_chain_kdf": c["root"],
        "message_chain_kdf": c["msg"], "message_chain_constant": b"\x01\x02",
        "dos_protection_threshold": 1000, "max_num_skipped_message_keys": 1000,
        "aead": c["aead"],
    }  # fmt: skip


def _new_x3dh(c: dict[str, Any]) -> Any:
    import x3dh

    return c["state"].create(
        x3dh.IdentityKeyFormat.CURVE_25519, x3dh.HashFunction.SHA_256, b"bench"
    )


async def _pypi_setup(c: dict[str, Any], alice: Any, bob: Any) -> tuple[Any, Any]:
    params = _pypi_params(c)
    secret, ad, header = await alice.get_shared_secret_active(bob.bundle)
    secret_b, ad_b, spk = await bob.get_shared_secret_passive(header)
    a, message = await c["ratchet"].encrypt_initial_message(
        **params, shared_secret=secret, recipient_ratchet_pub=header.signed_pre_key,
        message=PAYLOAD, associated_data=ad,
    )  # fmt: skip
    b, _ = await c["ratchet"].decrypt_initial_message(
        **params, shared_secret=secret_b, own_ratchet_priv=spk.priv, message=message,
        associated_data=ad_b,
    )  # fmt: skip
    return a, b


def pypi_setups(seconds: float) -> float:
    c = _pypi_classes()
    alice, bob = _new_x3dh(c), _new_x3dh(c)
    return asyncio.run(arate(lambda: _pypi_setup(c, alice, bob), seconds))


def pypi_messages(ping_pong: bool, seconds: float) -> float:
    return asyncio.run(_pypi_messages(ping_pong, seconds))


async def _pypi_messages(ping_pong: bool, seconds: float) -> float:
    c = _pypi_classes()
    a, b = await _pypi_setup(c, _new_x3dh(c), _new_x3dh(c))
    turn = [a, b]

    async def step() -> None:
        sender, receiver = turn
        message = await sender.encrypt_message(PAYLOAD, AD)
        await receiver.decrypt_message(message, AD)
        if ping_pong:
            turn.reverse()

    return await arate(step, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    seconds = parser.parse_args().seconds
    ours, pypi = "sealwire-signal", "PyPI doubleratchet 1.3"
    rows: list[tuple[str, str, Callable[[], float]]] = [
        ("messages/s, one-way", f"{ours} ratchet", partial(ours_messages, False, False, seconds)),
        (
            "messages/s, one-way",
            f"{ours} ratchet (HE)",
            partial(ours_messages, True, False, seconds),
        ),
        ("messages/s, one-way", f"{ours} envelope seal+open", partial(ours_envelopes, seconds)),
        ("messages/s, one-way", pypi, partial(pypi_messages, False, seconds)),
        ("messages/s, ping-pong", f"{ours} ratchet", partial(ours_messages, False, True, seconds)),
        ("messages/s, ping-pong", pypi, partial(pypi_messages, True, seconds)),
        ("session setups/s", f"{ours} X3DH + ratchet", partial(ours_setups, False, seconds)),
        ("session setups/s", f"{ours} PQXDH + ratchet", partial(ours_setups, True, seconds)),
        ("session setups/s", "PyPI x3dh 1.3 + doubleratchet 1.3", partial(pypi_setups, seconds)),
    ]
    print(f"{'measure':<24}{'implementation':<40}{'per second':>12}")
    for measure, name, run in rows:
        print(f"{measure:<24}{name:<40}{run():>12,.0f}", flush=True)


if __name__ == "__main__":
    main()
