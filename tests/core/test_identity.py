"""Identity keys, agent ids, the storage format and the public JSON form."""

from __future__ import annotations

import base64
import contextlib
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.errors import AuthenticationError, DecodeError, TrustError
from sealwire.identity import (
    AGENT_ID_PREFIX,
    Identity,
    PublicIdentity,
    agent_id_for,
    is_agent_id,
)

# RFC 8032 §7.1 TEST 1 secret key.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_AGENT_ID = "sw1eh7ddx5bksrgcytl7bkai36se4nxx3klnk7elksyq57pi74xeg4q"

# A version-1 storage blob kept as an old-format fixture: Ed25519 = RFC 8032 TEST 1,
# X25519 = bytes 0..31, ML-DSA-65 seed = bytes 32..63, ML-KEM-768 seed = bytes 64..127.
STORAGE_V1_PQ = bytes.fromhex(
    "01039d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60" + bytes(range(128)).hex()
)
STORAGE_V1_PQ_AGREEMENT = "j0DFrbaPJWJK5bIU6nZ6bslNgp09e14a0bpvPiE4KF8"

PQ = Identity.generate(post_quantum=True)  # ML-DSA/ML-KEM generation is not free: once


def test_agent_id_known_answer() -> None:
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SEED).public_key()
    assert key.public_bytes_raw() == RFC8032_PUBLIC
    assert agent_id_for(key) == RFC8032_AGENT_ID


def test_agent_id_independent_derivation() -> None:
    identity = Identity.generate()
    raw = identity.public.signing_key.public_bytes_raw()
    body = base64.b32encode(hashlib.sha256(raw).digest()).decode().rstrip("=").lower()
    assert identity.agent_id == AGENT_ID_PREFIX + body
    assert len(identity.agent_id) == 55
    assert is_agent_id(identity.agent_id)


def test_agent_id_is_stable_across_storage_and_json() -> None:
    identity = Identity.generate()
    reloaded = Identity.from_storage_bytes(identity.private_bytes_for_storage())
    assert reloaded.agent_id == identity.agent_id
    assert PublicIdentity.from_json(identity.public.to_json()).agent_id == identity.agent_id


@pytest.mark.parametrize(
    "value",
    ["", "sw1", "sw2" + "a" * 52, "sw1" + "a" * 51, "sw1" + "A" * 52, "sw1" + "1" * 52, 5, None],
)
def test_is_agent_id_rejects(value: object) -> None:
    assert not is_agent_id(value)


@pytest.mark.parametrize("post_quantum", [False, True])
def test_storage_round_trip(post_quantum: bool) -> None:
    identity = PQ if post_quantum else Identity.generate()
    data = identity.private_bytes_for_storage()
    assert data[0] == 1
    assert len(data) == (2 + 64 + 96 if post_quantum else 2 + 64)
    reloaded = Identity.from_storage_bytes(data)
    assert reloaded == identity
    assert reloaded.public == identity.public
    assert reloaded.public.post_quantum is post_quantum
    assert (reloaded.mldsa_key is None) is not post_quantum
    assert (reloaded.mlkem_key is None) is not post_quantum


def test_storage_v1_fixture_still_loads() -> None:
    identity = Identity.from_storage_bytes(STORAGE_V1_PQ)
    assert identity.agent_id == RFC8032_AGENT_ID
    assert identity.public.to_json()["agreementKey"] == STORAGE_V1_PQ_AGREEMENT
    assert identity.public.post_quantum
    assert identity.private_bytes_for_storage() == STORAGE_V1_PQ
    mldsa = MLDSA65PrivateKey.from_seed_bytes(bytes(range(32, 64))).public_key()
    mlkem = MLKEM768PrivateKey.from_seed_bytes(bytes(range(64, 128))).public_key()
    assert identity.public.mldsa_key == mldsa
    assert identity.public.mlkem_key == mlkem


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01",
        b"\x02\x00" + bytes(64),  # unknown version
        b"\x01\x04" + bytes(64),  # unknown flag
        b"\x01\x00" + bytes(63),  # short
        b"\x01\x00" + bytes(65),  # trailing byte
        b"\x01\x01" + bytes(64),  # ML-DSA flag without its seed
        STORAGE_V1_PQ[:-1],
    ],
)
def test_storage_rejects_malformed(data: bytes) -> None:
    with pytest.raises(DecodeError):
        Identity.from_storage_bytes(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_storage_arbitrary_bytes_load_or_decode_error(data: bytes) -> None:
    try:
        identity = Identity.from_storage_bytes(data)
    except DecodeError:
        return
    assert identity.private_bytes_for_storage() == data


def test_secrets_not_in_repr() -> None:
    secrets = [
        PQ.signing_key.private_bytes_raw(),
        PQ.agreement_key.private_bytes_raw(),
        PQ.private_bytes_for_storage(),
    ]
    for text in (repr(PQ), str(PQ), repr(PQ.public)):
        assert PQ.agent_id in text
        for secret in secrets:
            assert secret.hex() not in text
            assert base64.urlsafe_b64encode(secret).decode().rstrip("=") not in text


def test_sign_verify() -> None:
    identity = Identity.generate()
    signature = identity.sign(b"hello")
    identity.public.verify(signature, b"hello")
    with pytest.raises(AuthenticationError):
        identity.public.verify(signature, b"hellO")
    with pytest.raises(AuthenticationError):
        Identity.generate().public.verify(signature, b"hello")
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    with pytest.raises(AuthenticationError):
        identity.public.verify(tampered, b"hello")


@pytest.mark.parametrize("post_quantum", [False, True])
def test_public_json_round_trip(post_quantum: bool) -> None:
    public = (PQ if post_quantum else Identity.generate()).public
    data = public.to_json()
    assert set(data) >= {"agentId", "signingKey", "agreementKey"}
    assert ("mldsa65Key" in data) is post_quantum
    assert ("mlkem768Key" in data) is post_quantum
    assert all("=" not in value for value in data.values())
    assert PublicIdentity.from_json(data) == public
    assert PublicIdentity.from_json({**data, "unknown": 1}) == public


def test_public_equality_by_raw_bytes() -> None:
    identity = Identity.generate()
    again = Identity.from_storage_bytes(identity.private_bytes_for_storage())
    assert identity.public == again.public
    assert hash(identity.public) == hash(again.public)
    assert identity.public is not again.public
    other = Identity(signing_key=identity.signing_key, agreement_key=X25519PrivateKey.generate())
    assert other.agent_id == identity.agent_id
    assert other.public != identity.public


def test_public_identity_validates_agent_id() -> None:
    a, b = Identity.generate(), Identity.generate()
    with pytest.raises(ValueError):
        PublicIdentity(
            agent_id=b.agent_id,
            signing_key=a.public.signing_key,
            agreement_key=a.public.agreement_key,
        )


def test_from_json_agent_id_mismatch_is_trust_error() -> None:
    data = Identity.generate().public.to_json()
    data["agentId"] = Identity.generate().agent_id
    with pytest.raises(TrustError, match="does not match"):
        PublicIdentity.from_json(data)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"signingKey": None}, "identity.signingKey"),
        ({"signingKey": "abc"}, "identity.signingKey"),  # wrong length
        ({"signingKey": "!!!!"}, "identity.signingKey"),  # not base64url
        ({"agreementKey": "AAAA===="}, "identity.agreementKey"),  # padding
        ({"mldsa65Key": "AAAA"}, "identity.mldsa65Key"),
        ({"mlkem768Key": 7}, "identity.mlkem768Key"),
        ({"agentId": "nope"}, "identity.agentId"),
    ],
)
def test_from_json_rejects_malformed(change: dict[str, object], field: str) -> None:
    data: dict[str, object] = {**Identity.generate().public.to_json(), **change}
    with pytest.raises(DecodeError) as info:
        PublicIdentity.from_json(data)
    assert info.value.field == field


def test_from_json_missing_and_wrong_type() -> None:
    data = Identity.generate().public.to_json()
    del data["agreementKey"]
    with pytest.raises(DecodeError, match="agreementKey"):
        PublicIdentity.from_json(data)
    with pytest.raises(DecodeError):
        PublicIdentity.from_json(["not", "an", "object"])


def test_non_canonical_base64url_rejected() -> None:
    data = Identity.generate().public.to_json()
    key = data["signingKey"]  # 43 chars: the last one carries 2 unused bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(key[-1])
    data["signingKey"] = key[:-1] + alphabet[last ^ 1]
    with pytest.raises(DecodeError, match="non-canonical"):
        PublicIdentity.from_json(data)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["agentId", "signingKey", "agreementKey", "mldsa65Key", "x"]),
        st.one_of(st.text(max_size=60), st.integers(), st.none()),
    )
)
def test_from_json_arbitrary_gives_identity_or_typed_error(data: dict[str, object]) -> None:
    with contextlib.suppress(DecodeError, TrustError):
        PublicIdentity.from_json(data)
