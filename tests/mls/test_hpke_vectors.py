"""RFC 9180 HPKE test vectors (``hpke/test-vectors.json``), plus interop.

Format: one object per (mode, kem_id, kdf_id, aead_id) with ``ikmR``/``ikmE``
(and ``ikmS``, ``psk``, ``psk_id`` for the other modes), the expected key
pairs, ``enc``, ``shared_secret``, ``key_schedule_context``, ``key``,
``base_nonce``, ``exporter_secret``, the sequential ``encryptions`` and the
``exports``.

Checks per case: DeriveKeyPair gives skRm/pkRm (and skEm, skSm); encap with
the fixed ephemeral gives ``enc`` and ``shared_secret``; the key schedule
gives the context, key, nonce and exporter secret; every encryption in
order seals to ``ct`` and opens back; every export matches. Interop: our
single-shot base Seal is opened by ``cryptography``'s HPKE and vice versa.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import hpke as ref
from cryptography.hazmat.primitives.asymmetric import x25519

from sealwire.testing.vectors import load_json
from sealwire_mls.errors import MLSAuthenticationError
from sealwire_mls.hpke import KeyCache, hpke_suite, is_supported

h = bytes.fromhex


def _check_case(v: dict[str, Any]) -> None:
    suite = hpke_suite(v["kem_id"], v["kdf_id"], v["aead_id"])
    sk_r, pk_r = suite.derive_key_pair(h(v["ikmR"]))
    assert (sk_r.hex(), pk_r.hex()) == (v["skRm"], v["pkRm"])
    assert suite.derive_key_pair(h(v["ikmE"])) == (h(v["skEm"]), h(v["pkEm"]))
    send: dict[str, Any] = {}
    if v["mode"] in (1, 3):
        send = {"psk": h(v["psk"]), "psk_id": h(v["psk_id"])}
    recv = dict(send)
    if v["mode"] in (2, 3):
        assert suite.derive_key_pair(h(v["ikmS"])) == (h(v["skSm"]), h(v["pkSm"]))
        send["sk_s"], recv["pk_s"] = h(v["skSm"]), h(v["pkSm"])
    shared, enc = suite.encap_for_testing_only(pk_r, h(v["ikmE"]), send.get("sk_s"))
    assert (shared.hex(), enc.hex()) == (v["shared_secret"], v["enc"])
    ctx_bytes = suite.key_schedule_context_for_testing_only(
        v["mode"], h(v["info"]), send.get("psk_id", b"")
    )
    assert ctx_bytes.hex() == v["key_schedule_context"]
    enc, sender = suite.setup_s_for_testing_only(pk_r, h(v["info"]), h(v["ikmE"]), **send)
    receiver = suite.setup_r(enc, sk_r, h(v["info"]), **recv)
    key, nonce, exporter = sender.secrets_for_testing_only()
    assert (key.hex(), nonce.hex()) == (v["key"], v["base_nonce"])
    assert exporter.hex() == v["exporter_secret"]
    assert receiver.secrets_for_testing_only() == (key, nonce, exporter)
    for e in v["encryptions"]:
        assert sender.seal(h(e["aad"]), h(e["pt"])).hex() == e["ct"]
        assert receiver.open(h(e["aad"]), h(e["ct"])).hex() == e["pt"]
    for x in v["exports"]:
        assert sender.export(h(x["exporter_context"]), x["L"]).hex() == x["exported_value"]
        assert receiver.export(h(x["exporter_context"]), x["L"]).hex() == x["exported_value"]


def test_hpke_vectors(tally: Any) -> None:
    cases = load_json("hpke/test-vectors.json")
    counter = tally("hpke")
    counter.run(
        cases,
        _check_case,
        name=lambda v: f"mode={v['mode']} kem={v['kem_id']} kdf={v['kdf_id']} aead={v['aead_id']}",
        supported=lambda v: is_supported(v["kem_id"], v["kdf_id"], v["aead_id"]),
    )
    counter.assert_all_passed()


_INTEROP = [(0x0001, ref.AEAD.AES_128_GCM), (0x0003, ref.AEAD.CHACHA20_POLY1305)]


@pytest.mark.parametrize(("aead_id", "ref_aead"), _INTEROP)
def test_interop_with_cryptography(aead_id: int, ref_aead: Any) -> None:
    ours = hpke_suite(0x0020, 0x0001, aead_id)
    theirs = ref.Suite(ref.KEM.X25519, ref.KDF.HKDF_SHA256, ref_aead)
    sk, pk = ours.generate_key_pair()
    info, message = b"sealwire interop", b"attack at dawn" * 5
    enc, ct = ours.seal(pk, info, b"", message)
    assert theirs.decrypt(enc + ct, x25519.X25519PrivateKey.from_private_bytes(sk), info) == message
    sealed = theirs.encrypt(message, x25519.X25519PublicKey.from_public_bytes(pk), info)
    assert ours.open(sealed[:32], sk, info, b"", sealed[32:]) == message
    with pytest.raises(MLSAuthenticationError):
        ours.open(sealed[:32], sk, b"other info", b"", sealed[32:])


def test_open_failure_keeps_sequence() -> None:
    suite = hpke_suite(0x0020, 0x0001, 0x0001)
    sk, pk = suite.generate_key_pair()
    enc, sender = suite.setup_s(pk, b"info")
    receiver = suite.setup_r(enc, sk, b"info")
    ct = sender.seal(b"", b"one")
    with pytest.raises(MLSAuthenticationError):
        receiver.open(b"", ct[:-1] + bytes([ct[-1] ^ 1]))
    assert receiver.seq == 0
    assert receiver.open(b"", ct) == b"one"
    assert "secrets redacted" in repr(receiver)


def test_key_cache_is_bounded() -> None:
    cache: KeyCache[int, int] = KeyCache(size=3)
    for i in range(10):
        assert cache.get(i, lambda k: k * 2) == i * 2
    assert cache.get(9, lambda k: -1) == 18  # hit
    assert cache.get(0, lambda k: -1) == -1  # evicted long ago
    assert "4 entries" not in repr(cache) and "3 entries" in repr(cache)
