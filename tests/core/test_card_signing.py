"""Signed agent cards: A2A v1.0 §8.4 JWS over RFC 8785, the identity extension, tampering."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealwire.errors import AuthenticationError, DecodeError, LocalProtocolError, TrustError
from sealwire.identity import (
    IDENTITY_EXTENSION_URI,
    MAX_CARD_DEPTH,
    MAX_CARD_SIGNATURES,
    Identity,
    binding_uri,
    build_identity_extension,
    canonical_card_bytes,
    parse_binding_uri,
    sign_card,
    verify_card,
)
from sealwire.identity._jws import sign_detached, verify_detached

ALICE = Identity.generate()
MALLORY = Identity.generate()
NOISE = binding_uri("noise", 1)
SIGNAL = binding_uri("signal", 1)


def make_card(identity: Identity = ALICE, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {NOISE: {"patterns": ["XX", "IK"]}, SIGNAL: {"directory": "r"}}
    card: dict[str, Any] = {
        "name": "alice",
        "description": "test agent",
        "version": "1.0.0",
        "supportedInterfaces": [
            {"url": "tcp://alice:7000", "protocolBinding": NOISE, "protocolVersion": "1.0"},
            {"url": "https://alice/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": "ws://alice:7001", "protocolBinding": NOISE, "protocolVersion": "1.0"},
            {"url": "relay://mbox/alice", "protocolBinding": SIGNAL, "protocolVersion": "1.0"},
        ],
        "capabilities": {
            "streaming": True,
            "extensions": [build_identity_extension(identity.public, params)],
        },
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "echo", "name": "Echo", "description": "echoes", "tags": ["t"]}],
    }
    card.update(extra)
    return card


SIGNED = sign_card(make_card(), ALICE)


def params_of(card: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = card["capabilities"]["extensions"][0]["params"]
    return params


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def header_of(entry: dict[str, str]) -> dict[str, Any]:
    text = entry["protected"]
    header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    return header


def test_sign_and_verify() -> None:
    verified = verify_card(SIGNED)
    assert verified.identity == ALICE.public
    assert verified.agent_id == ALICE.agent_id
    assert verified.name == "alice"
    assert verified.url == "tcp://alice:7000"
    assert verified.card == SIGNED
    assert header_of(SIGNED["signatures"][0]) == {
        "alg": "EdDSA",
        "typ": "JOSE",
        "kid": ALICE.agent_id,
    }


def test_post_quantum_identity_card() -> None:
    pq = Identity.generate(post_quantum=True)
    verified = verify_card(sign_card(make_card(pq), pq))
    assert verified.identity == pq.public
    assert verified.identity.post_quantum


def test_offers_in_preference_order_with_params() -> None:
    offers = verify_card(SIGNED).offers
    assert [(o.name, o.major, o.url) for o in offers] == [
        ("noise", 1, "tcp://alice:7000"),
        ("noise", 1, "ws://alice:7001"),
        ("signal", 1, "relay://mbox/alice"),
    ]
    assert offers[0].uri == NOISE
    assert offers[0].params == {"patterns": ["XX", "IK"]}
    verified = verify_card(SIGNED)
    assert verified.offer("noise") == offers[0]
    assert verified.offer("signal") == offers[2]
    assert verified.offer("mls") is None


def test_offer_without_params_gets_empty_mapping() -> None:
    card = make_card()
    card["supportedInterfaces"].append(
        {"url": "tcp://x", "protocolBinding": binding_uri("mls", 2), "protocolVersion": "1.0"}
    )
    offer = verify_card(sign_card(card, ALICE)).offer("mls")
    assert offer is not None and offer.major == 2 and dict(offer.params) == {}


def test_extension_shape() -> None:
    extension = build_identity_extension(ALICE.public, {NOISE: {"a": 1}}, required=True)
    assert extension["uri"] == IDENTITY_EXTENSION_URI
    assert extension["required"] is True
    assert extension["description"]
    params = extension["params"]
    assert params["agentId"] == ALICE.agent_id
    assert params["signingKey"] == b64(ALICE.public.signing_key.public_bytes_raw())
    assert params["agreementKey"] == b64(ALICE.public.agreement_key.public_bytes_raw())
    assert params["bindings"] == {NOISE: {"a": 1}}
    assert "mldsa65Key" not in params


def test_binding_uris() -> None:
    assert binding_uri("noise", 1) == "urn:sealwire:binding:noise:1"
    assert parse_binding_uri("urn:sealwire:binding:tls:12") == ("tls", 12)
    for bad in ["urn:sealwire:binding:noise", "urn:sealwire:binding:Noise:1", "JSONRPC", None]:
        assert parse_binding_uri(bad) is None
    assert parse_binding_uri("urn:sealwire:binding:noise:01") is None
    with pytest.raises(Exception, match="invalid binding"):
        binding_uri("no:ise", 1)
    with pytest.raises(Exception, match="not a Sealwire binding URI"):
        build_identity_extension(ALICE.public, {"JSONRPC": {}})


def test_resign_replaces_own_signature_and_keeps_others() -> None:
    foreign = {"protected": b64(b'{"alg":"ES256","kid":"web-key"}'), "signature": "AAAA"}
    card = {**SIGNED, "signatures": [foreign, *SIGNED["signatures"]]}
    card["description"] = "changed"
    resigned = sign_card(card, ALICE)
    assert len(resigned["signatures"]) == 2
    assert resigned["signatures"][0] == foreign
    verify_card(resigned)


def test_sign_does_not_mutate_input() -> None:
    card = make_card()
    before = copy.deepcopy(card)
    sign_card(card, ALICE)
    assert card == before


def test_sign_requires_matching_extension() -> None:
    with pytest.raises(LocalProtocolError, match="other keys"):
        sign_card(make_card(MALLORY), ALICE)
    bare = make_card()
    bare["capabilities"]["extensions"] = []
    with pytest.raises(LocalProtocolError, match="identity extension"):
        sign_card(bare, ALICE)


def test_jws_rfc8037_a4_known_answer() -> None:
    # RFC 8037 Appendix A.4: Ed25519 JWS with the RFC 8032 TEST 1 key.
    key = Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    )
    protected = "eyJhbGciOiJFZERTQSJ9"
    payload = b"Example of Ed25519 signing"
    expected = (
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
    )
    assert sign_detached(key, protected, payload) == expected
    assert verify_detached(key.public_key(), protected, payload, expected)
    assert not verify_detached(key.public_key(), protected, payload + b".", expected)
    assert not verify_detached(key.public_key(), protected, payload, expected[:-2])


# --- tampering -------------------------------------------------------------------------


def tampered(edit: Any) -> dict[str, Any]:
    card = copy.deepcopy(SIGNED)
    edit(card)
    return card


def _set_header(card: dict[str, Any], header: dict[str, Any], signature: str | None = None) -> None:
    entry = card["signatures"][0]
    entry["protected"] = b64(json.dumps(header).encode())
    if signature is not None:
        entry["signature"] = signature


def _resign_header(card: dict[str, Any], header: dict[str, Any]) -> None:
    # A valid Ed25519 signature by Alice's key, but under a header we must refuse.
    protected = b64(json.dumps(header).encode())
    signing_input = f"{protected}.{b64(canonical_card_bytes(card))}".encode()
    card["signatures"][0] = {"protected": protected, "signature": b64(ALICE.sign(signing_input))}


def _flip_signature(card: dict[str, Any]) -> None:
    entry = card["signatures"][0]
    raw = bytearray(base64.urlsafe_b64decode(entry["signature"] + "=="))
    raw[10] ^= 0x01
    entry["signature"] = b64(bytes(raw))


def _swap_agreement_key(card: dict[str, Any]) -> None:
    params_of(card)["agreementKey"] = MALLORY.public.to_json()["agreementKey"]


def _swap_identity_keys(card: dict[str, Any]) -> None:
    mallory = MALLORY.public.to_json()
    params_of(card).update(mallory)


TAMPERS = {
    "name": lambda c: c.update(name="mallory"),
    "skill": lambda c: c["skills"][0].update(description="evil"),
    "interface url": lambda c: c["supportedInterfaces"][0].update(url="tcp://evil:1"),
    "interface order": lambda c: c["supportedInterfaces"].reverse(),
    "binding params": lambda c: params_of(c)["bindings"][NOISE].update(patterns=["NN"]),
    "extension required": lambda c: c["capabilities"]["extensions"][0].update(required=False),
    "added field": lambda c: c.update(iconUrl="https://evil/icon.png"),
    "signature byte": _flip_signature,
    "alg none": lambda c: _set_header(c, {"alg": "none", "kid": ALICE.agent_id}, ""),
    "alg HS256": lambda c: _set_header(c, {"alg": "HS256", "typ": "JOSE", "kid": ALICE.agent_id}),
    "kid swap": lambda c: _set_header(c, {"alg": "EdDSA", "typ": "JOSE", "kid": MALLORY.agent_id}),
    "signed alg Ed25519": lambda c: _resign_header(c, {"alg": "Ed25519", "kid": ALICE.agent_id}),
    "signed kid swap": lambda c: _resign_header(c, {"alg": "EdDSA", "kid": MALLORY.agent_id}),
    "signed no kid": lambda c: _resign_header(c, {"alg": "EdDSA"}),
    "signed crit header": lambda c: _resign_header(
        c, {"alg": "EdDSA", "typ": "JOSE", "kid": ALICE.agent_id, "crit": ["exp"]}
    ),
    "agreement key swap": _swap_agreement_key,
    "identity key swap": _swap_identity_keys,
    "signatures removed": lambda c: c.pop("signatures"),
    "signatures empty": lambda c: c.update(signatures=[]),
    "signature from other card": lambda c: c.update(
        signatures=sign_card(make_card(name="other"), ALICE)["signatures"]
    ),
    "garbage protected": lambda c: c["signatures"][0].update(protected="%%%"),
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_tamper_fails_with_clear_error(name: str) -> None:
    card = tampered(TAMPERS[name])
    with pytest.raises(AuthenticationError, match="agent card signature invalid"):
        verify_card(card)


def test_resign_header_helper_makes_valid_signatures() -> None:
    # Guards the tamper cases above: the same helper with the right header verifies.
    card = tampered(lambda c: _resign_header(c, {"alg": "EdDSA", "kid": ALICE.agent_id}))
    assert verify_card(card).agent_id == ALICE.agent_id


def test_mallory_resigning_is_a_different_agent() -> None:
    # A card re-signed by another key verifies only as that other agent: the
    # trust store, not the signature, decides whether it is welcome.
    card = tampered(_swap_identity_keys)
    del card["signatures"]
    verified = verify_card(sign_card(card, MALLORY))
    assert verified.agent_id == MALLORY.agent_id != ALICE.agent_id


def test_agent_id_not_matching_key_is_trust_error() -> None:
    card = tampered(lambda c: params_of(c).update(agentId=MALLORY.agent_id))
    with pytest.raises(TrustError, match="does not match"):
        verify_card(card)


# --- malformed cards -------------------------------------------------------------------


def test_missing_extension_names_the_field() -> None:
    card = tampered(lambda c: c["capabilities"].update(extensions=[]))
    with pytest.raises(DecodeError) as info:
        verify_card(card)
    assert info.value.field == "capabilities.extensions"
    with pytest.raises(DecodeError) as info:
        verify_card({"name": "x"})
    assert info.value.field == "capabilities"


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda c: c["capabilities"]["extensions"][0].pop("params"), "params"),
        (lambda c: params_of(c).pop("signingKey"), "capabilities.extensions.params.signingKey"),
        (lambda c: params_of(c).update(agreementKey="xx"), "params.agreementKey"),
        (
            lambda c: c["capabilities"]["extensions"].append(c["capabilities"]["extensions"][0]),
            "capabilities.extensions",
        ),
    ],
)
def test_malformed_extension(edit: Any, field: str) -> None:
    with pytest.raises(DecodeError) as info:
        verify_card(tampered(edit))
    assert info.value.field is not None and info.value.field.endswith(field)


def test_malformed_sealwire_interface_is_decode_error() -> None:
    card = make_card()
    card["supportedInterfaces"][0]["protocolBinding"] = "urn:sealwire:binding:BAD"
    with pytest.raises(DecodeError) as info:
        verify_card(sign_card(card, ALICE))
    assert info.value.field == "supportedInterfaces[0].protocolBinding"


@pytest.mark.parametrize(
    "url",
    [
        "tcp://[::1:7000",  # urlsplit: Invalid IPv6 URL
        "tcp://alice:99999",  # port out of range
        "tcp://\x00alice:7000",  # reaches the resolver as it is
        "tcp://ali ce:7000",
        "https://alice/a2a\n",
        "tcp://:7000",  # no host
        "//[::1",
    ],
)
def test_a_sealwire_offer_at_a_malformed_url_is_decode_error(url: str) -> None:
    """The URL a peer's card offers is what this agent dials: a hostile card must not
    bring a ValueError (or a control character) into the dial."""
    card = make_card()
    card["supportedInterfaces"][0]["url"] = url
    with pytest.raises(DecodeError) as info:
        verify_card(sign_card(card, ALICE))
    assert info.value.field == "supportedInterfaces[0].url"


def test_too_many_signatures() -> None:
    entry = SIGNED["signatures"][0]
    card = {**SIGNED, "signatures": [entry] * (MAX_CARD_SIGNATURES + 1)}
    with pytest.raises(DecodeError, match="signatures"):
        verify_card(card)


def test_too_deep() -> None:
    nested: Any = "leaf"
    for _ in range(MAX_CARD_DEPTH + 2):
        nested = {"n": nested}
    with pytest.raises(DecodeError, match="deeper"):
        canonical_card_bytes({"a": nested})


def test_non_json_values_rejected() -> None:
    with pytest.raises(DecodeError):
        canonical_card_bytes({"a": b"bytes"})
    with pytest.raises(DecodeError):
        canonical_card_bytes({"a": float("nan")})
    with pytest.raises(DecodeError):
        canonical_card_bytes({"a": 2**60})


# --- canonical form --------------------------------------------------------------------


def _reorder(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reorder(v) for v in value]
    return value


def test_canonical_bytes_independent_of_key_order() -> None:
    reordered = _reorder(SIGNED)
    assert list(reordered) != list(SIGNED)
    assert canonical_card_bytes(reordered) == canonical_card_bytes(SIGNED)
    assert verify_card(reordered).identity == ALICE.public
    assert verify_card(json.loads(json.dumps(reordered, indent=3))).agent_id == ALICE.agent_id


def test_canonical_form_is_rfc8785() -> None:
    card = {"b": [1.0, "é", True, None], "a": {"z": 1e21, "y": "\u2028"}, "signatures": [1]}
    expected = '{"a":{"y":"\u2028","z":1e+21},"b":[1,"é",true]}'
    assert canonical_card_bytes(card) == expected.encode()


def test_canonical_form_drops_what_proto_json_drops() -> None:
    base = canonical_card_bytes(SIGNED)
    padded = copy.deepcopy(SIGNED)
    padded["documentationUrl"] = ""
    padded["securitySchemes"] = {}
    padded["provider"] = None
    padded["skills"][0]["examples"] = []
    params_of(padded)["bindings"][NOISE]["empty"] = {"x": ""}
    assert canonical_card_bytes(padded) == base
    verify_card(padded)
    extension = {"uri": "urn:x", "required": False}
    with_ext = copy.deepcopy(SIGNED)
    with_ext["capabilities"]["extensions"].append(extension)
    without_required = copy.deepcopy(SIGNED)
    without_required["capabilities"]["extensions"].append({"uri": "urn:x"})
    assert canonical_card_bytes(with_ext) == canonical_card_bytes(without_required)
    # streaming is an optional field: an explicit false is kept (A2A v1.0 §8.4.1).
    streaming_false = copy.deepcopy(SIGNED)
    streaming_false["capabilities"]["streaming"] = False
    assert canonical_card_bytes(streaming_false) != base


def test_verified_card_is_a_private_copy() -> None:
    card = copy.deepcopy(SIGNED)
    verified = verify_card(card)
    card["name"] = "changed"
    assert verified.name == verified.card["name"] == "alice"


# --- properties ------------------------------------------------------------------------

SIGNED_TEXT = json.dumps(SIGNED)
ORIGINAL_PAYLOAD = canonical_card_bytes(SIGNED)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(SIGNED_TEXT) - 1), st.characters(codec="ascii"))
def test_any_character_change_is_refused_or_meaningless(position: int, char: str) -> None:
    text = SIGNED_TEXT[:position] + char + SIGNED_TEXT[position + 1 :]
    try:
        card = json.loads(text)
    except ValueError:
        return
    try:
        verified = verify_card(card)
    except (AuthenticationError, DecodeError):
        return
    # Accepted: only if the change did not touch what the signature covers.
    assert canonical_card_bytes(card) == ORIGINAL_PAYLOAD
    assert verified.identity == ALICE.public


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_arbitrary_json_gives_only_typed_errors(value: Any) -> None:
    for card in (value, {"capabilities": {"extensions": [value]}}, {**SIGNED, "signatures": value}):
        with contextlib.suppress(AuthenticationError, DecodeError):
            verify_card(card)


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_sign_verify_round_trip_with_arbitrary_extra_fields(extra: dict[str, Any]) -> None:
    card = make_card()
    card["capabilities"]["extensions"][0]["params"]["bindings"][NOISE]["extra"] = extra
    verified = verify_card(sign_card(card, ALICE))
    assert verified.identity == ALICE.public
