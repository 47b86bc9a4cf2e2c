"""RFC 9420 transcript-hashes vectors (``mls/transcript-hashes.json``).

Format: per ``cipher_suite``, ``confirmation_key``, an encoded
``authenticated_content`` (a commit), ``interim_transcript_hash_before`` and
the expected ``confirmed_transcript_hash_after`` and
``interim_transcript_hash_after``.

Checks: the AuthenticatedContent decodes, holds a Commit and re-encodes byte
for byte; its ``confirmation_tag`` is the MAC of the new confirmed hash under
``confirmation_key``; both transcript hashes match.
"""

from __future__ import annotations

from typing import Any

import pytest

from sealwire.testing.vectors import load_json
from sealwire_mls.codec import decode_exact
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSAuthenticationError
from sealwire_mls.framing import AuthenticatedContent, ContentType
from sealwire_mls.transcript import (
    confirmed_transcript_hash,
    interim_transcript_hash,
    verify_confirmation_tag,
)

h = bytes.fromhex


def _check(v: dict[str, Any]) -> None:
    suite = cipher_suite(v["cipher_suite"])
    ac = decode_exact(h(v["authenticated_content"]), AuthenticatedContent.decode)
    assert ac.to_bytes().hex() == v["authenticated_content"]
    assert ac.content.content_type is ContentType.COMMIT
    confirmed = confirmed_transcript_hash(suite, h(v["interim_transcript_hash_before"]), ac)
    assert confirmed.hex() == v["confirmed_transcript_hash_after"]
    key, tag = h(v["confirmation_key"]), ac.auth.confirmation_tag
    verify_confirmation_tag(suite, key, confirmed, tag)
    with pytest.raises(MLSAuthenticationError):
        verify_confirmation_tag(suite, key, confirmed[::-1], tag)
    assert tag is not None
    interim = interim_transcript_hash(suite, confirmed, tag)
    assert interim.hex() == v["interim_transcript_hash_after"]


def test_transcript_hashes_vectors(tally: Any, suite_supported: Any) -> None:
    counter = tally("transcript-hashes")
    counter.run(
        load_json("mls/transcript-hashes.json"),
        _check,
        name=lambda v: f"suite {v['cipher_suite']}",
        supported=suite_supported,
    )
    counter.assert_all_passed()
