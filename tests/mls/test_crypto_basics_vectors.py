"""RFC 9420 crypto-basics vectors (``mls/crypto-basics.json``).

Format: per ``cipher_suite``, one case each for ``ref_hash``,
``expand_with_label``, ``derive_secret``, ``derive_tree_secret``,
``sign_with_label`` and ``encrypt_with_label``.

Checks: the derivations equal ``out``; VerifyWithLabel accepts the given
signature and a fresh SignWithLabel; DecryptWithLabel opens the given
ciphertext and a fresh EncryptWithLabel. Unsupported suites are counted.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.testing.vectors import load_json
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSAuthenticationError, MLSProtocolError

h = bytes.fromhex


def _check(v: dict[str, Any]) -> None:
    cs = cipher_suite(v["cipher_suite"])
    r = v["ref_hash"]
    assert cs.ref_hash(r["label"].encode(), h(r["value"])).hex() == r["out"]
    e = v["expand_with_label"]
    out = cs.expand_with_label(h(e["secret"]), e["label"].encode(), h(e["context"]), e["length"])
    assert out.hex() == e["out"]
    d = v["derive_secret"]
    assert cs.derive_secret(h(d["secret"]), d["label"].encode()).hex() == d["out"]
    t = v["derive_tree_secret"]
    out = cs.derive_tree_secret(h(t["secret"]), t["label"].encode(), t["generation"], t["length"])
    assert out.hex() == t["out"]
    s = v["sign_with_label"]
    label, content = s["label"].encode(), h(s["content"])
    cs.verify_with_label(h(s["pub"]), label, content, h(s["signature"]))
    fresh = cs.sign_with_label(h(s["priv"]), label, content)
    cs.verify_with_label(h(s["pub"]), label, content, fresh)
    with pytest.raises(MLSAuthenticationError):
        cs.verify_with_label(h(s["pub"]), label, content + b"x", fresh)
    x = v["encrypt_with_label"]
    label, ctx, pt = x["label"].encode(), h(x["context"]), h(x["plaintext"])
    got = cs.decrypt_with_label(h(x["priv"]), label, ctx, h(x["kem_output"]), h(x["ciphertext"]))
    assert got == pt
    kem_output, ct = cs.encrypt_with_label(h(x["pub"]), label, ctx, pt)
    assert cs.decrypt_with_label(h(x["priv"]), label, ctx, kem_output, ct) == pt
    with pytest.raises(MLSAuthenticationError):
        cs.decrypt_with_label(h(x["priv"]), label, ctx + b"x", kem_output, ct)


def test_crypto_basics_vectors(tally: Any, suite_supported: Any) -> None:
    counter = tally("crypto-basics")
    counter.run(
        load_json("mls/crypto-basics.json"),
        _check,
        name=lambda v: f"suite {v['cipher_suite']}",
        supported=suite_supported,
    )
    counter.assert_all_passed()


def test_unsupported_suite_is_a_protocol_error() -> None:
    with pytest.raises(MLSProtocolError):
        cipher_suite(0x0A0A)


def test_suite_is_cached_and_redacted() -> None:
    assert cipher_suite(1) is cipher_suite(1)
    priv, pub = cipher_suite(1).signature_key_pair()
    assert cipher_suite(1).signature_public_key(priv) == pub
    assert "KeyCache" not in repr(cipher_suite(1))


_SUITE = cipher_suite(1)
_PRIV, _PUB = _SUITE.signature_key_pair()
_SIGNED = _SUITE.sign_with_label(_PRIV, b"FramedContentTBS", b"content")


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["pub", "label", "content", "signature"]),
    st.integers(0, 63),
    st.integers(1, 255),
)
def test_a_verified_signature_remembered_vouches_for_those_bytes_only(
    part: str, index: int, flip: int
) -> None:
    """Verified once, a signature is remembered: the same bytes pass again, and a change
    to any of them is verified afresh, and fails."""
    args = {"pub": _PUB, "label": b"FramedContentTBS", "content": b"content", "signature": _SIGNED}
    _SUITE.verify_with_label(args["pub"], args["label"], args["content"], args["signature"])
    _SUITE.verify_with_label(args["pub"], args["label"], args["content"], args["signature"])
    changed = bytearray(args[part])
    changed[index % len(changed)] ^= flip
    args[part] = bytes(changed)
    with pytest.raises(MLSAuthenticationError):
        _SUITE.verify_with_label(args["pub"], args["label"], args["content"], args["signature"])


def test_each_signature_is_verified_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    suite = cipher_suite(1)
    priv, pub = suite.signature_key_pair()
    calls = []
    signer = suite.signature_checks.signer
    real = type(signer).verify
    monkeypatch.setattr(
        type(signer), "verify", lambda self, *a: (calls.append(a), real(self, *a))[1]
    )
    one, two = (suite.sign_with_label(priv, b"L", m) for m in (b"one", b"two"))
    for _ in range(100):  # a hundred members opening the same message
        suite.verify_with_label(pub, b"L", b"one", one)
    suite.verify_with_label(pub, b"L", b"two", two)
    assert len(calls) == 2
