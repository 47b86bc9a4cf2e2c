"""RFC 9420 message-syntax vectors (``mls/messages.json``).

Format: each case holds hex-encoded structs: ``mls_welcome``,
``mls_group_info``, ``mls_key_package`` and the ``public_message_*`` /
``private_message`` fields are MLSMessages; ``ratchet_tree`` is
``optional<Node> ratchet_tree<V>``; ``group_secrets`` a GroupSecrets; the
``*_proposal`` fields are the bare proposal bodies (``Add``, ``Update``, ...);
``commit`` a Commit.

Checks: every field decodes with its struct (no trailing bytes) and
re-encodes byte for byte; MLSMessages carry the expected wire format (and
content type for PublicMessages). Every (case, field) pair is counted; a
struct whose module (MLS-A's framing/welcome) is not importable is counted
as unsupported, not skipped.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from sealwire.testing.vectors import load_json
from sealwire_mls.codec import Reader, Writer, decode_exact
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.proposals import (
    Add,
    Commit,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ReInit,
    Remove,
    Update,
)
from sealwire_mls.tree import RatchetTree

h = bytes.fromhex

_PROPOSALS: dict[str, type[Proposal]] = {
    "add_proposal": Add,
    "update_proposal": Update,
    "remove_proposal": Remove,
    "pre_shared_key_proposal": PreSharedKey,
    "re_init_proposal": ReInit,
    "external_init_proposal": ExternalInit,
    "group_context_extensions_proposal": GroupContextExtensions,
}
# field -> (wire format name, content type name or None)
_MESSAGES = {
    "mls_welcome": ("WELCOME", None),
    "mls_group_info": ("GROUP_INFO", None),
    "mls_key_package": ("KEY_PACKAGE", None),
    "public_message_application": ("PUBLIC_MESSAGE", "APPLICATION"),
    "public_message_proposal": ("PUBLIC_MESSAGE", "PROPOSAL"),
    "public_message_commit": ("PUBLIC_MESSAGE", "COMMIT"),
    "private_message": ("PRIVATE_MESSAGE", None),
}


def _optional_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _round_trip(data: bytes, decode: Callable[[Reader], Any]) -> Any:
    value = decode_exact(data, decode)
    w = Writer()
    value.encode(w)
    assert w.getvalue() == data, "re-encoding differs"
    return value


def _check_mls_message(data: bytes, field: str) -> None:
    welcome = importlib.import_module("sealwire_mls.welcome")
    framing = importlib.import_module("sealwire_mls.framing")
    msg = _round_trip(data, welcome.MLSMessage.decode)
    wire, content = _MESSAGES[field]
    assert msg.wire_format == framing.WireFormat[wire]
    if content is not None:
        assert msg.body.content.content_type == framing.ContentType[content]


def _check(item: tuple[int, str, str]) -> None:
    _, field, hexdata = item
    data = h(hexdata)
    if field in _PROPOSALS:
        cls = _PROPOSALS[field]
        value = decode_exact(data, cls.decode_body)
        assert isinstance(value, cls)
        w = Writer()
        value.encode_body(w)
        assert w.getvalue() == data
    elif field == "commit":
        _round_trip(data, Commit.decode)
    elif field == "ratchet_tree":
        assert RatchetTree.decode(cipher_suite(1), data).to_bytes() == data
    elif field == "group_secrets":
        _round_trip(data, importlib.import_module("sealwire_mls.welcome").GroupSecrets.decode)
    else:
        _check_mls_message(data, field)


def _supported(item: tuple[int, str, str]) -> bool:
    field = item[1]
    if field in _PROPOSALS or field in ("commit", "ratchet_tree"):
        return True
    needed = ["sealwire_mls.welcome"] + (["sealwire_mls.framing"] if field in _MESSAGES else [])
    return all(_optional_module(name) is not None for name in needed)


def test_messages_vectors(tally: Any) -> None:
    cases = load_json("mls/messages.json")
    items = [(i, k, v) for i, case in enumerate(cases) for k, v in sorted(case.items())]
    assert len(items) == 17 * len(cases)
    counter = tally("messages")
    counter.run(items, _check, name=lambda it: f"case {it[0]} {it[1]}", supported=_supported)
    counter.assert_all_passed()
