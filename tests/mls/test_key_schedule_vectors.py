"""RFC 9420 key-schedule vectors (``mls/key-schedule.json``).

Format: per ``cipher_suite``, ``group_id``, ``initial_init_secret`` and a list
of ``epochs`` with the generator's inputs (``tree_hash``, ``commit_secret``,
``psk_secret``, ``confirmed_transcript_hash``) and every computed secret.

Checks per epoch ``i``: the GroupContext (epoch ``i``, empty extensions)
encodes to ``group_context`` and decodes back; joiner, welcome and init
secrets and every Table 4 secret match; ``external_pub`` is
``DeriveKeyPair(external_secret)``; the exporter output matches. The next
epoch starts from this epoch's ``init_secret``.
"""

from __future__ import annotations

from typing import Any

from sealwire.testing.vectors import load_json
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.schedule import (
    GroupContext,
    external_init_receive,
    external_init_send,
    joiner_secret,
    key_schedule,
    mls_exporter,
)

h = bytes.fromhex
_SECRETS = [
    "welcome_secret",
    "init_secret",
    "sender_data_secret",
    "encryption_secret",
    "exporter_secret",
    "epoch_authenticator",
    "external_secret",
    "confirmation_key",
    "membership_key",
    "resumption_psk",
]


def _check(v: dict[str, Any]) -> None:
    suite = cipher_suite(v["cipher_suite"])
    init_secret = h(v["initial_init_secret"])
    for epoch, e in enumerate(v["epochs"]):
        context = GroupContext(
            cipher_suite=suite.id,
            group_id=h(v["group_id"]),
            epoch=epoch,
            tree_hash=h(e["tree_hash"]),
            confirmed_transcript_hash=h(e["confirmed_transcript_hash"]),
        )
        encoded = context.to_bytes()
        assert encoded.hex() == e["group_context"]
        assert GroupContext.from_bytes(encoded) == context
        joiner = joiner_secret(suite, init_secret, h(e["commit_secret"]), encoded)
        assert joiner.hex() == e["joiner_secret"]
        secrets = key_schedule(suite, joiner, h(e["psk_secret"]), encoded)
        for name in _SECRETS:
            assert getattr(secrets, name).hex() == e[name], name
        assert secrets.external_pub(suite).hex() == e["external_pub"]
        x = e["exporter"]
        out = mls_exporter(
            suite, secrets.exporter_secret, x["label"].encode(), h(x["context"]), x["length"]
        )
        assert out.hex() == x["secret"]
        init_secret = secrets.init_secret


def test_key_schedule_vectors(tally: Any, suite_supported: Any) -> None:
    counter = tally("key-schedule")
    counter.run(
        load_json("mls/key-schedule.json"),
        _check,
        name=lambda v: f"suite {v['cipher_suite']}",
        supported=suite_supported,
    )
    counter.assert_all_passed()


def test_epoch_secrets_are_redacted() -> None:
    suite = cipher_suite(1)
    secrets = key_schedule(suite, b"\x01" * 32, None, b"ctx")
    assert secrets.epoch_secret.hex() not in repr(secrets)


def test_external_init_round_trip_with_vector_external_key() -> None:
    v = load_json("mls/key-schedule.json")[0]
    suite = cipher_suite(v["cipher_suite"])
    epoch = v["epochs"][0]
    priv, pub = suite.derive_key_pair(h(epoch["external_secret"]))
    assert pub.hex() == epoch["external_pub"]
    kem_output, init_secret = external_init_send(suite, pub)
    assert external_init_receive(suite, priv, kem_output) == init_secret
    assert len(init_secret) == suite.Nh
