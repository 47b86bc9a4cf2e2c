"""Our card signatures against a2a-sdk's own (a2a.utils.signing, A2ACardResolver).

A card we sign is fetched by a2a-sdk's resolver and accepted by its signature
verifier; a tampered one is refused by both implementations; a card signed by
a2a-sdk's signer with the agent's key verifies with ours; and our canonical
bytes equal a2a-sdk's for the same card.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import httpx
import pytest
from a2a.client.card_resolver import A2ACardResolver, parse_agent_card
from a2a.types import AgentCard
from a2a.utils.signing import (
    InvalidSignaturesError,
    NoSignatureError,
    _canonicalize_agent_card,
    create_agent_card_signer,
    create_signature_verifier,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.json_format import MessageToDict
from jwt.exceptions import InvalidKeyError

from sealwire.errors import AuthenticationError
from sealwire.identity import (
    Identity,
    PublicIdentity,
    binding_uri,
    build_identity_extension,
    canonical_card_bytes,
    sign_card,
    verify_card,
)
from sealwire.identity._jws import JWS_ALG_MLDSA65, encode_protected_header, sign_detached

ALICE = Identity.generate(post_quantum=True)
MALLORY = Identity.generate()
NOISE = binding_uri("noise", 1)


def make_card(*, required: bool = True) -> dict[str, Any]:
    params = {NOISE: {"patterns": ["XX", "IK"], "prologueVersion": 1, "ratio": 0.5, "on": False}}
    return {
        "name": "alice",
        "description": "Grüße, agent ✓",
        "version": "1.0.0",
        "supportedInterfaces": [
            {"url": "tcp://alice:7000", "protocolBinding": NOISE, "protocolVersion": "1.0"},
            {"url": "https://alice/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
        ],
        "provider": {"organization": "Example", "url": "https://example.com"},
        "capabilities": {
            "streaming": False,
            "pushNotifications": True,
            "extensions": [
                build_identity_extension(ALICE.public, params, required=required),
                {"uri": "urn:example:other", "required": False, "params": {"x": ""}},
            ],
        },
        "securitySchemes": {
            "oauth": {
                "oauth2SecurityScheme": {
                    "flows": {
                        "authorizationCode": {
                            "authorizationUrl": "https://a/auth",
                            "tokenUrl": "https://a/token",
                            "scopes": {"read": "Read"},
                            "pkceRequired": False,
                        }
                    }
                }
            }
        },
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": [{"id": "echo", "name": "Echo", "description": "echoes", "tags": ["t"]}],
    }


def key_provider_for(card: dict[str, Any]) -> Any:
    """a2a-sdk key provider: the kid must be the agent id of the card's identity extension."""
    identity = claimed_identity(card)

    def provider(kid: str | None, jku: str | None) -> Ed25519PublicKey:
        if kid != identity.agent_id:
            raise InvalidKeyError(f"unknown kid {kid}")
        return identity.signing_key

    return provider


def claimed_identity(card: dict[str, Any]) -> PublicIdentity:
    """The keys the card claims (not verified: that is the verifier's job)."""
    return PublicIdentity.from_json(card["capabilities"]["extensions"][0]["params"])


def sdk_verify(card: dict[str, Any]) -> None:
    verifier = create_signature_verifier(key_provider_for(card), ["EdDSA"])
    verifier(parse_agent_card(copy.deepcopy(card)))


async def sdk_fetch(card: dict[str, Any]) -> AgentCard:
    """Fetch the card over (mock) HTTP with a2a-sdk's resolver and verifier."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps(card).encode())

    transport = httpx.MockTransport(handler)
    async with httpx.AsyncClient(transport=transport) as client:
        resolver = A2ACardResolver(client, "https://alice.example")
        verifier = create_signature_verifier(key_provider_for(card), ["EdDSA"])
        return await resolver.get_agent_card(signature_verifier=verifier)


@pytest.mark.parametrize("required", [True, False])
def test_sdk_accepts_our_signature(required: bool) -> None:
    signed = sign_card(make_card(required=required), ALICE)
    sdk_verify(signed)
    assert verify_card(signed).agent_id == ALICE.agent_id


async def test_sdk_resolver_fetches_and_verifies_our_card() -> None:
    signed = sign_card(make_card(), ALICE)
    agent_card = await sdk_fetch(signed)
    assert agent_card.name == "alice"
    assert agent_card.supported_interfaces[0].protocol_binding == NOISE
    # And the card as an a2a-sdk server would serve it (proto JSON) still verifies with ours.
    served = MessageToDict(agent_card)
    assert verify_card(served).identity == ALICE.public


def test_canonical_bytes_equal_the_sdk_ones() -> None:
    for card in (make_card(), make_card(required=False), sign_card(make_card(), ALICE)):
        ours = canonical_card_bytes(card)
        theirs = _canonicalize_agent_card(parse_agent_card(copy.deepcopy(card)))
        assert ours == theirs.encode("utf-8")


def test_sdk_signed_card_verifies_with_ours() -> None:
    """a2a-sdk signs EdDSA only: for an agent with an ML-DSA-65 key that is not enough
    (the second signature is missing); with our ML-DSA-65 entry beside the sdk's EdDSA
    one, the card verifies, the sdk's signature included."""
    agent_card = parse_agent_card(make_card())
    signer = create_agent_card_signer(
        signing_key=ALICE.signing_key,  # type: ignore[arg-type]  # PyJWT takes key objects
        protected_header={"alg": "EdDSA", "typ": "JOSE", "kid": ALICE.agent_id, "jku": None},
    )
    served = MessageToDict(signer(agent_card))
    with pytest.raises(AuthenticationError, match=r"ML-DSA-65 signature .* is missing"):
        verify_card(served)
    assert ALICE.mldsa_key is not None
    protected = encode_protected_header(ALICE.agent_id, JWS_ALG_MLDSA65)
    signature = sign_detached(ALICE.mldsa_key, protected, canonical_card_bytes(served))
    served["signatures"].append({"protected": protected, "signature": signature})
    assert verify_card(served).identity == ALICE.public
    sdk_verify(served)


def test_sdk_signed_classical_card_verifies_with_ours() -> None:
    bob = Identity.generate()
    card = make_card()
    card["capabilities"]["extensions"][0] = build_identity_extension(bob.public, {})
    signer = create_agent_card_signer(
        signing_key=bob.signing_key,  # type: ignore[arg-type]  # PyJWT takes key objects
        protected_header={"alg": "EdDSA", "typ": "JOSE", "kid": bob.agent_id, "jku": None},
    )
    served = MessageToDict(signer(parse_agent_card(card)))
    assert verify_card(served).identity == bob.public


def test_our_hybrid_card_carries_both_signatures_and_the_sdk_skips_the_pq_one() -> None:
    signed = sign_card(make_card(), ALICE)
    algs = [
        json.loads(base64.urlsafe_b64decode(e["protected"] + "==="))["alg"]
        for e in signed["signatures"]
    ]
    assert algs == ["EdDSA", "ML-DSA-65"]
    sdk_verify(signed)  # the EdDSA one is enough for a2a-sdk
    eddsa_only = copy.deepcopy(signed)
    del eddsa_only["signatures"][1]
    sdk_verify(eddsa_only)
    with pytest.raises(AuthenticationError, match="is missing"):
        verify_card(eddsa_only)  # but not for us: the card lists an ML-DSA-65 key


def _rename(card: dict[str, Any]) -> None:
    card["name"] = "mallory"


def _flip_signature(card: dict[str, Any]) -> None:
    entry = card["signatures"][0]
    first = "A" if entry["signature"][0] != "A" else "B"
    entry["signature"] = first + entry["signature"][1:]


def _swap_agreement_key(card: dict[str, Any]) -> None:
    mallory = MALLORY.public.to_json()["agreementKey"]
    card["capabilities"]["extensions"][0]["params"]["agreementKey"] = mallory


def _change_binding_params(card: dict[str, Any]) -> None:
    card["capabilities"]["extensions"][0]["params"]["bindings"][NOISE]["patterns"] = ["NN"]


def _drop_signatures(card: dict[str, Any]) -> None:
    del card["signatures"]


TAMPERS = {
    "name": _rename,
    "signature byte": _flip_signature,
    "agreement key swap": _swap_agreement_key,
    "binding params": _change_binding_params,
    "signatures removed": _drop_signatures,
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
async def test_tampered_card_refused_by_both(name: str) -> None:
    card = sign_card(make_card(), ALICE)
    TAMPERS[name](card)
    with pytest.raises(AuthenticationError, match="agent card signature invalid"):
        verify_card(card)
    with pytest.raises((InvalidSignaturesError, NoSignatureError)):
        sdk_verify(card)
    with pytest.raises((InvalidSignaturesError, NoSignatureError)):
        await sdk_fetch(card)


def test_alg_none_refused_by_both() -> None:
    card = sign_card(make_card(), ALICE)
    header = json.dumps({"alg": "none", "kid": ALICE.agent_id}).encode()
    card["signatures"][0] = {
        "protected": base64.urlsafe_b64encode(header).rstrip(b"=").decode(),
        "signature": "",
    }
    with pytest.raises(AuthenticationError):
        verify_card(card)
    with pytest.raises(InvalidSignaturesError):
        sdk_verify(card)
