"""Known-answer vectors for the post-quantum HPKE KEMs (``sealwire_mls.pqkem``).

* ``hpke-pq/test-vectors.json`` (draft-ietf-hpke-pq, the HPKE working group's
  vectors): for every case whose KEM (ML-KEM-768, ML-KEM-1024, X-Wing) and KDF
  (HKDF) we have, DeriveKeyPair(ikmR) gives skRm/pkRm, Decap(enc, skR) gives
  ``shared_secret``, the receiver's key schedule gives key, base_nonce and
  exporter_secret, every encryption opens in order and every export matches.
  Encap itself is randomized (cryptography's ML-KEM has no derandomized
  encapsulation), so the sender side is checked by round trip.
* ``xwing/test-vectors.json`` (draft-connolly-cfrg-xwing-kem): the key pair from
  the seed, and Decapsulate(ct, sk) = ss.
"""

from __future__ import annotations

from typing import Any

import pytest

from sealwire.testing.vectors import load_json
from sealwire_mls.errors import MLSAuthenticationError, MLSDecodeError, MLSLocalError
from sealwire_mls.hpke import hpke_suite, is_supported
from sealwire_mls.pqkem import KEM_MLKEM768, KEM_MLKEM1024, KEM_XWING, PQKem

h = bytes.fromhex

PQ = (KEM_MLKEM768, KEM_MLKEM1024, KEM_XWING)


def _supported(v: dict[str, Any]) -> bool:
    return v["kem_id"] in PQ and is_supported(v["kem_id"], v["kdf_id"], v["aead_id"])


def _cases() -> list[dict[str, Any]]:
    return [v for v in load_json("hpke-pq/test-vectors.json") if _supported(v)]


def test_the_file_covers_each_of_our_kems() -> None:
    kems = {v["kem_id"] for v in _cases()}
    assert kems == set(PQ)


@pytest.mark.parametrize(
    "v", _cases(), ids=lambda v: f"kem{v['kem_id']:#06x}-kdf{v['kdf_id']}-aead{v['aead_id']}"
)
def test_hpke_pq_vector(v: dict[str, Any]) -> None:
    assert v["mode"] == 0
    suite = hpke_suite(v["kem_id"], v["kdf_id"], v["aead_id"])
    assert suite.post_quantum
    sk_r, pk_r = suite.derive_key_pair(h(v["ikmR"]))
    assert (sk_r.hex(), pk_r.hex()) == (v["skRm"], v["pkRm"])
    assert suite.public_key(h(v["skRm"])).hex() == v["pkRm"]
    info = h(v["info"])
    receiver = suite.setup_r(h(v["enc"]), sk_r, info)
    key, nonce, exporter = receiver.secrets_for_testing_only()
    assert (key.hex(), nonce.hex(), exporter.hex()) == (
        v["key"], v["base_nonce"], v["exporter_secret"],
    )  # fmt: skip
    for e in v["encryptions"]:
        assert receiver.open(h(e["aad"]), h(e["ct"])).hex() == e["pt"]
    for x in v["exports"]:
        assert receiver.export(h(x["exporter_context"]), x["L"]).hex() == x["exported_value"]
    # Sender side: a fresh encapsulation to pkR opens with skR, exports agree.
    enc, sender = suite.setup_s(pk_r, info)
    assert len(enc) == suite.Nenc
    back = suite.setup_r(enc, sk_r, info)
    assert back.open(b"aad", sender.seal(b"aad", b"plaintext")) == b"plaintext"
    assert back.export(b"ctx", 32) == sender.export(b"ctx", 32)


def test_decap_gives_the_vector_shared_secret() -> None:
    for v in _cases():
        kem = PQKem(v["kem_id"])
        ss = kem.decap(h(v["enc"]), kem.load_private(h(v["skRm"])))
        assert ss.hex() == v["shared_secret"]


@pytest.mark.parametrize("i", range(3))
def test_xwing_vector(i: int) -> None:
    v = load_json("xwing/test-vectors.json")[i]
    kem = PQKem(KEM_XWING)
    assert v["sk"] == v["seed"]  # the decapsulation key is the seed itself
    private = kem.load_private(h(v["sk"]))
    assert kem.public_bytes_of(private).hex() == v["pk"]
    assert kem.decap(h(v["ct"]), private).hex() == v["ss"]


# -- bad input: typed errors ------------------------------------------------------------


@pytest.mark.parametrize("kem_id", PQ)
def test_truncated_or_oversized_ciphertexts_and_keys_are_typed_errors(kem_id: int) -> None:
    suite = hpke_suite(kem_id, 2, 2)
    sk, pk = suite.generate_key_pair()
    enc, _ = suite.setup_s(pk, b"")
    for bad in (enc[:-1], enc + b"\x00", b""):
        with pytest.raises(MLSDecodeError):
            suite.setup_r(bad, sk, b"")
    for bad in (pk[:-1], pk + b"\x00", b""):
        with pytest.raises(MLSDecodeError):
            suite.setup_s(bad, b"")
    for bad in (sk[:-1], sk + b"\x00"):
        with pytest.raises(MLSDecodeError):
            suite.setup_r(enc, bad, b"")


@pytest.mark.parametrize("kem_id", (KEM_MLKEM768, KEM_MLKEM1024))
def test_an_ml_kem_public_key_failing_the_modulus_check_is_refused(kem_id: int) -> None:
    suite = hpke_suite(kem_id, 2, 2)
    with pytest.raises(MLSDecodeError):
        suite.setup_s(b"\xff" * suite.Npk, b"")


@pytest.mark.parametrize("kem_id", PQ)
def test_a_forged_ciphertext_of_the_right_size_fails_to_open(kem_id: int) -> None:
    suite = hpke_suite(kem_id, 2, 2)
    sk, pk = suite.generate_key_pair()
    enc, sender = suite.setup_s(pk, b"")
    sealed = sender.seal(b"", b"secret")
    forged = bytes([enc[0] ^ 1]) + enc[1:]
    with pytest.raises(MLSAuthenticationError):  # implicit rejection: another secret
        suite.setup_r(forged, sk, b"").open(b"", sealed)


def test_pq_kems_have_no_auth_mode() -> None:
    suite = hpke_suite(KEM_XWING, 1, 1)
    sk, pk = suite.generate_key_pair()
    with pytest.raises(MLSLocalError):
        suite.setup_s(pk, b"", sk_s=sk)
