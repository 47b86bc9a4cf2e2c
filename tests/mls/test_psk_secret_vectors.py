"""RFC 9420 psk_secret vectors (``mls/psk_secret.json``).

Format: per case a ``cipher_suite``, a list of ``psks`` (``psk_id``, ``psk``,
``psk_nonce``) and the expected ``psk_secret``.

Checks: each PSK becomes an external PreSharedKeyID (which round-trips
through its encoding); the §8.4 chain over them gives ``psk_secret``.
"""

from __future__ import annotations

from typing import Any

import pytest

from sealwire.testing.vectors import load_json
from sealwire_mls.codec import decode_exact
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSDecodeError
from sealwire_mls.psk import PreSharedKeyID, ResumptionPSKUsage, psk_secret

h = bytes.fromhex


def _check(v: dict[str, Any]) -> None:
    suite = cipher_suite(v["cipher_suite"])
    psks = []
    for p in v["psks"]:
        psk_id = PreSharedKeyID.external(h(p["psk_id"]), h(p["psk_nonce"]))
        assert decode_exact(psk_id.to_bytes(), PreSharedKeyID.decode) == psk_id
        psk_id.check_nonce(suite)
        psks.append((psk_id, h(p["psk"])))
    assert psk_secret(suite, psks).hex() == v["psk_secret"]


def test_psk_secret_vectors(tally: Any, suite_supported: Any) -> None:
    counter = tally("psk_secret")
    counter.run(
        load_json("mls/psk_secret.json"),
        _check,
        name=lambda v: f"suite {v['cipher_suite']} n={len(v['psks'])}",
        supported=suite_supported,
    )
    counter.assert_all_passed()


def test_resumption_id_round_trip_and_bad_type() -> None:
    rid = PreSharedKeyID.resumption(ResumptionPSKUsage.BRANCH, b"g", 7, b"n" * 32)
    assert decode_exact(rid.to_bytes(), PreSharedKeyID.decode) == rid
    bad = b"\x03" + rid.to_bytes()[1:]
    with pytest.raises(MLSDecodeError):
        decode_exact(bad, PreSharedKeyID.decode)
