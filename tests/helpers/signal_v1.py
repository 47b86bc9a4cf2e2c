"""Signal session records as the released format version 1 wrote them (JSON, base64,
the card inside): the plugin now writes version 2 and only reads these, so tests and
benchmarks make real v1 records with this copy of the old writer."""

from __future__ import annotations

import json
from typing import Any

from sealwire.ratchet import b64_field, state_to_record

__all__ = ["encode_v1"]


def encode_v1(session: Any) -> bytes:
    """A ``sealwire_signal.Session`` as a version 1 record."""
    pending = None if session.pending is None else session.pending.to_bytes()
    return json.dumps({
        "format": "sealwire-signal/session", "v": 1, "local": session.local_id,
        "peer": session.peer_id, "peer_ik": b64_field(session.peer_identity_key),
        "ad": b64_field(session.associated_data), "base": b64_field(session.base_key),
        "pending": None if pending is None else b64_field(pending),
        "card": b64_field(session.peer_card),
        "ratchet": state_to_record(session.ratchet),
    }, separators=(",", ":")).encode()  # fmt: skip
