"""RFC 9420 vector-deserialization vectors (``mls/deserialization.json``).

Format: a list of ``vlbytes_header`` (an encoded §2.1.2 varint length) and
the ``length`` it encodes.

Checks: each header decodes (exactly, no trailing bytes) to ``length`` and
re-encodes to the same bytes; an ``opaque<V>`` with that header reads a
``length``-byte body (up to 64 KiB) and rejects a shorter one.
"""

from __future__ import annotations

from typing import Any

import pytest

from sealwire.testing.vectors import load_json
from sealwire_mls.codec import Reader, decode_exact, encode_varint
from sealwire_mls.errors import MLSDecodeError

h = bytes.fromhex
#: Bodies are built only up to this size (the largest header announces 2^30 - 1).
_MAX_BODY = 1 << 16


def _check(v: dict[str, Any]) -> None:
    header, length = h(v["vlbytes_header"]), v["length"]
    assert decode_exact(header, Reader.varint) == length
    assert encode_varint(length) == header
    if length <= _MAX_BODY:
        body = bytes(length)
        assert decode_exact(header + body, Reader.opaque) == body
    # A body shorter than announced is rejected before any slice is taken.
    short = bytes(min(length, _MAX_BODY) - 1) if length else b""
    with pytest.raises(MLSDecodeError):
        decode_exact(header + short + (b"" if length else b"\x00"), Reader.opaque)


def test_deserialization_vectors(tally: Any) -> None:
    counter = tally("deserialization")
    counter.run(
        load_json("mls/deserialization.json"),
        _check,
        name=lambda v: f"header {v['vlbytes_header']}",
    )
    counter.assert_all_passed()
