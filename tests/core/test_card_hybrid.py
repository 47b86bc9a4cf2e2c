"""Hybrid card signatures (issue 20 item 2): EdDSA and ML-DSA-65 over the same canonical card.

A card that lists an ML-DSA-65 key must carry a valid ML-DSA-65 signature by it as
well as the EdDSA one; the bad inputs of the issue (a second signature over another
card, a missing second signature, a failing one) are refused with a typed error even
though the EdDSA signature verifies; the trust store pins the ML-DSA-65 key too.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey

from sealwire.errors import AuthenticationError, TrustError
from sealwire.identity import (
    Identity,
    TrustMode,
    TrustStore,
    binding_uri,
    build_identity_extension,
    sign_card,
    verify_card,
)

PQ = Identity.generate(post_quantum=True)
NOISE = binding_uri("noise", 1)


def make_card(identity: Identity = PQ, name: str = "alice") -> dict[str, Any]:
    return {
        "name": name,
        "description": "hybrid-signed agent",
        "version": "1.0.0",
        "supportedInterfaces": [
            {"url": "tcp://alice:7000", "protocolBinding": NOISE, "protocolVersion": "1.0"}
        ],
        "capabilities": {
            "extensions": [build_identity_extension(identity.public, {NOISE: {"patterns": ["XX"]}})]
        },
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "echo", "name": "Echo", "description": "echoes", "tags": ["t"]}],
    }


SIGNED = sign_card(make_card(), PQ)


def alg_of(entry: dict[str, str]) -> str:
    text = entry["protected"]
    alg: str = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))["alg"]
    return alg


def test_a_pq_card_carries_both_signatures_and_verifies() -> None:
    assert [alg_of(e) for e in SIGNED["signatures"]] == ["EdDSA", "ML-DSA-65"]
    verified = verify_card(SIGNED)
    assert verified.hybrid_signed and verified.identity == PQ.public


def test_a_classical_card_carries_one_signature() -> None:
    classical = Identity.generate()
    signed = sign_card(make_card(classical), classical)
    assert [alg_of(e) for e in signed["signatures"]] == ["EdDSA"]
    assert not verify_card(signed).hybrid_signed


def test_resigning_replaces_both_entries() -> None:
    again = sign_card(SIGNED, PQ)
    assert [alg_of(e) for e in again["signatures"]] == ["EdDSA", "ML-DSA-65"]
    verify_card(again)


def test_missing_second_signature_is_refused() -> None:
    card = copy.deepcopy(SIGNED)
    del card["signatures"][1]
    with pytest.raises(AuthenticationError, match=r"ML-DSA-65 signature .* is missing"):
        verify_card(card)


def test_failing_ml_dsa_signature_is_refused_though_eddsa_passes() -> None:
    card = copy.deepcopy(SIGNED)
    entry = card["signatures"][1]
    entry["signature"] = ("A" if entry["signature"][0] != "A" else "B") + entry["signature"][1:]
    with pytest.raises(AuthenticationError, match="does not verify"):
        verify_card(card)


def test_ml_dsa_signature_over_another_card_is_refused() -> None:
    other = sign_card(make_card(name="another card"), PQ)
    card = copy.deepcopy(SIGNED)
    card["signatures"][1] = other["signatures"][1]  # a valid ML-DSA signature, other bytes
    with pytest.raises(AuthenticationError, match="does not verify"):
        verify_card(card)


def test_ml_dsa_signature_by_another_key_is_refused() -> None:
    mallory = MLDSA65PrivateKey.generate()
    forged = Identity(signing_key=PQ.signing_key, agreement_key=PQ.agreement_key, mldsa_key=mallory)
    card = copy.deepcopy(SIGNED)  # the card lists PQ's ML-DSA key, mallory signs
    card["signatures"][1] = sign_card(make_card(forged), forged)["signatures"][1]
    with pytest.raises(AuthenticationError):
        verify_card(card)


def test_truncated_or_oversized_ml_dsa_signature_is_refused() -> None:
    for cut in (lambda s: s[:-8], lambda s: s + "AAAA", lambda s: ""):
        card = copy.deepcopy(SIGNED)
        card["signatures"][1]["signature"] = cut(card["signatures"][1]["signature"])
        with pytest.raises(AuthenticationError):
            verify_card(card)


def test_eddsa_removed_leaves_only_pq_which_is_not_enough() -> None:
    card = copy.deepcopy(SIGNED)
    del card["signatures"][0]
    with pytest.raises(AuthenticationError, match="EdDSA"):
        verify_card(card)


class DictStore:
    def __init__(self) -> None:
        self.data: dict[tuple[str, str], bytes] = {}

    def get(self, namespace: str, key: str) -> bytes | None:
        return self.data.get((namespace, key))

    def put(self, namespace: str, key: str, value: bytes) -> None:
        self.data[(namespace, key)] = value

    def delete(self, namespace: str, key: str) -> bool:
        return self.data.pop((namespace, key), None) is not None

    def keys(self, namespace: str, prefix: str = "") -> list[str]:
        return sorted(k for n, k in self.data if n == namespace and k.startswith(prefix))


def test_trust_store_pins_the_ml_dsa_key_too() -> None:
    store = DictStore()
    trust = TrustStore(store, TrustMode.TOFU)
    trust.check(verify_card(SIGNED))
    pinned = trust.pinned(PQ.agent_id)
    assert pinned is not None and pinned.mldsa_key == PQ.public.mldsa_key
    swapped = Identity(
        signing_key=PQ.signing_key,
        agreement_key=PQ.agreement_key,
        mldsa_key=MLDSA65PrivateKey.generate(),
        mlkem_key=PQ.mlkem_key,
    )
    other = verify_card(sign_card(make_card(swapped), swapped))  # same agent id
    assert other.agent_id == PQ.agent_id
    with pytest.raises(TrustError, match="ML-DSA-65 key changed"):
        trust.check(other)
    stripped = Identity(signing_key=PQ.signing_key, agreement_key=PQ.agreement_key)
    with pytest.raises(TrustError, match="ML-DSA-65 key"):
        trust.check(verify_card(sign_card(make_card(stripped), stripped)))
