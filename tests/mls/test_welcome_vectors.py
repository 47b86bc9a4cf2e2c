"""RFC 9420 welcome vectors (``mls/welcome.json``).

Format: per ``cipher_suite``, the joiner's ``init_priv``, the GroupInfo
signer's ``signer_pub``, and ``key_package`` and ``welcome`` as MLSMessages.

Checks: both messages decode and re-encode byte for byte; the Welcome entry
for the KeyPackage's reference decrypts with ``init_priv``; the GroupInfo
decrypts with the welcome secret (no PSKs), re-encodes exactly, and its
signature verifies with ``signer_pub``; the key schedule from the joiner
secret gives a confirmation key under which ``confirmation_tag`` is valid.
A Welcome we build for the same KeyPackage opens the same way.
"""

from __future__ import annotations

from typing import Any

import pytest

from sealwire.testing.vectors import load_json
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSAuthenticationError, MLSProtocolError
from sealwire_mls.framing import WireFormat
from sealwire_mls.schedule import key_schedule, welcome_secret
from sealwire_mls.transcript import verify_confirmation_tag
from sealwire_mls.welcome import MLSMessage

h = bytes.fromhex


def _check(v: dict[str, Any]) -> None:
    suite = cipher_suite(v["cipher_suite"])
    kp_msg = MLSMessage.from_bytes(h(v["key_package"]))
    welcome_msg = MLSMessage.from_bytes(h(v["welcome"]))
    assert kp_msg.wire_format is WireFormat.KEY_PACKAGE
    assert welcome_msg.wire_format is WireFormat.WELCOME
    assert kp_msg.to_bytes().hex() == v["key_package"]
    assert welcome_msg.to_bytes().hex() == v["welcome"]
    key_package, welcome = kp_msg.body, welcome_msg.body
    ref = key_package.ref(suite)
    secrets = welcome.group_secrets(suite, ref, h(v["init_priv"]))
    info = welcome.group_info(suite, welcome_secret(suite, secrets.joiner_secret, None))
    info.verify(suite, h(v["signer_pub"]))
    context = info.group_context
    epoch = key_schedule(suite, secrets.joiner_secret, None, context.to_bytes())
    tag = info.confirmation_tag
    verify_confirmation_tag(suite, epoch.confirmation_key, context.confirmed_transcript_hash, tag)
    with pytest.raises(MLSAuthenticationError):
        verify_confirmation_tag(suite, epoch.confirmation_key, b"x", tag)
    # Our own Welcome for the same member opens to the same secrets and info.
    ours = type(welcome).create(
        suite,
        welcome_secret(suite, secrets.joiner_secret, None),
        info,
        [(ref, key_package.init_key, secrets)],
    )
    assert ours.group_secrets(suite, ref, h(v["init_priv"])) == secrets
    assert ours.group_info(suite, epoch.welcome_secret) == info
    with pytest.raises(MLSProtocolError):
        ours.group_secrets(suite, b"not a ref", h(v["init_priv"]))


def test_welcome_vectors(tally: Any, suite_supported: Any) -> None:
    counter = tally("welcome")
    counter.run(
        load_json("mls/welcome.json"),
        _check,
        name=lambda v: f"suite {v['cipher_suite']}",
        supported=suite_supported,
    )
    counter.assert_all_passed()
