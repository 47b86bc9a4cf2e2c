"""The relay protocol's wire format, shared by relay clients and relay servers.

Value types of the relay API, the readers that take them off the wire, the
bytes an agent signs to authenticate (and a relay signs to prove itself), and
the payload framing that names the binding a mailbox payload is for.

Bytes travel as unpadded base64url strings inside JSON bodies. Every reader
here raises :class:`~sealwire.errors.DecodeError` naming the field, and
nothing else, on hostile input.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import attrs
import rfc8785

from sealwire.codec import json_is_text
from sealwire.errors import DecodeError
from sealwire.identity import is_agent_id
from sealwire.relay.errors import LimitExceeded

__all__ = [
    "AUTH_LABEL",
    "CLIENT_NONCE_BYTES",
    "DESCRIPTOR_FIELDS",
    "DESCRIPTOR_LABEL",
    "Delivery",
    "FetchedPrekeys",
    "GroupLogEntry",
    "MAILBOX_PATH",
    "MAX_CARDS_PER_FETCH",
    "MAX_ID_CHARS",
    "RELAY_PROOF_LABEL",
    "STREAM_MAX_BATCH",
    "STREAM_FRAME_TARGET_BYTES",
    "STREAM_MAX_FRAME_BYTES",
    "STREAM_PATH",
    "auth_payload",
    "b64d",
    "b64e",
    "canonical_card_json",
    "decode_body",
    "descriptor_payload",
    "delivery_from_json",
    "delivery_to_json",
    "entry_from_json",
    "entry_to_json",
    "get_agent_id",
    "get_agent_ids",
    "get_int",
    "get_str",
    "get_str_list",
    "mailbox_address",
    "parse_mailbox_address",
    "read_stream_frame",
    "relay_proof_payload",
    "stream_frame",
    "unwrap",
    "wrap",
]

MAILBOX_PATH = "/v1/mailboxes/"
"""A mailbox address is the home relay's base URL, this path, and the agent id."""

# Identifiers chosen by clients (message ids, key ids, pool and binding names) are
# stored as keys and echoed back: 200 characters is far above a UUID or a hex hash.
MAX_ID_CHARS = 200
# One card fetch names at most this many agents: a member joining or processing
# a commit asks for the cards it lacks in batches of this size, and the answer
# (at most this many cards of ``max_card_bytes``) stays a bounded body.
MAX_CARDS_PER_FETCH = 256
# A JSON body deeper than this is hostile (json.loads recursion is bounded anyway).
MAX_JSON_DEPTH = 8

STREAM_PATH = "/v1/stream"
"""The WebSocket carrying an agent's sends, acknowledgements and deliveries."""
# One stream frame carries at most this many sends, acknowledgements or
# deliveries: enough to amortise a frame and a commit over many messages, small
# enough that one frame's answer comes back while the next is being read.
STREAM_MAX_BATCH = 256
# The largest stream frame either side sends or accepts: one default-sized
# envelope (256 KiB, 342 KiB as base64) always fits with room to spare, and it
# bounds what one frame makes the other side buffer. A message too large for a
# frame of its own travels over HTTP (whose body limit is 8 MiB).
STREAM_MAX_FRAME_BYTES = 4 * 1024 * 1024
# Senders pack items into frames up to about this size (a single larger item
# goes alone): large WebSocket messages cost more per byte to reassemble and
# delay the first item of the frame behind the last.
STREAM_FRAME_TARGET_BYTES = 256 * 1024


@attrs.frozen(kw_only=True)
class Delivery:
    """A sealed message waiting in a mailbox.

    ``message_id`` is the sender's id (idempotence key together with ``sender``);
    ``sender`` the agent id the relay authenticated; ``envelope`` the opaque
    ciphertext; ``received_at`` UNIX seconds when the (first) relay accepted it.
    """

    message_id: str
    sender: str
    envelope: bytes = attrs.field(repr=lambda v: f"<{len(v)} bytes>")
    received_at: float


@attrs.frozen
class FetchedPrekeys:
    """A prekey bundle and at most one one-time key per pool (``None``: pool empty)."""

    bundle: bytes
    one_time: Mapping[str, tuple[str, bytes] | None]


@attrs.frozen(kw_only=True)
class GroupLogEntry:
    """One entry of a group's log.

    ``seq`` orders the log (increasing, not necessarily contiguous); ``kind`` is
    ``"commit"`` or ``"application"``; ``epoch`` the epoch the sender was in.
    """

    seq: int
    kind: str
    epoch: int
    sender: str
    message: bytes = attrs.field(repr=lambda v: f"<{len(v)} bytes>")
    received_at: float


def mailbox_address(relay_url: str, agent_id: str) -> str:
    """The mailbox address of ``agent_id`` homed on the relay at ``relay_url``."""
    return relay_url.rstrip("/") + MAILBOX_PATH + agent_id


def parse_mailbox_address(value: str) -> tuple[str | None, str]:
    """``(home relay base URL or None, agent id)``; a bare agent id has no home."""
    if is_agent_id(value):
        return None, value
    base, sep, agent_id = value.rpartition(MAILBOX_PATH)
    if not sep or not base or not is_agent_id(agent_id):
        raise DecodeError("expected an agent id or a mailbox address", field="recipient")
    return base.rstrip("/"), agent_id


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(value: object, field: str, *, max_bytes: int | None = None) -> bytes:
    """Decode an unpadded base64url string; DecodeError naming ``field``."""
    if not isinstance(value, str):
        raise DecodeError("expected a base64url string", field=field)
    if max_bytes is not None and len(value) > (max_bytes * 4 + 2) // 3:
        raise DecodeError("too long", field=field)
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise DecodeError("invalid base64url", field=field) from None


def decode_body(raw: bytes) -> dict[str, Any]:
    """A request or response body: a JSON object, else DecodeError.

    Text is strict UTF-8 and holds no lone surrogate (``"\\ud800"``), which
    no store or answer could write back: every string the relay reads is text.
    """
    try:
        # decoded first: json.loads of bytes would let encoded surrogates through
        text = raw.decode("utf-8") if raw else ""
        value = json.loads(text) if text else {}
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DecodeError("invalid JSON", field="body") from None
    if not isinstance(value, dict):
        raise DecodeError("expected a JSON object", field="body")
    if "\\u" in text and not json_is_text(value):  # only an escape makes a lone surrogate
        raise DecodeError("lone surrogate: not Unicode text", field="body")
    return value


def get_str(body: Mapping[str, Any], name: str, *, max_chars: int = MAX_ID_CHARS) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > max_chars:
        raise DecodeError(f"expected a string of 1..{max_chars} characters", field=name)
    return value


def get_agent_id(body: Mapping[str, Any], name: str = "agent_id") -> str:
    value = body.get(name)
    if not is_agent_id(value):
        raise DecodeError("expected an agent id", field=name)
    assert isinstance(value, str)
    return value


def get_agent_ids(body: Mapping[str, Any], name: str, *, max_items: int) -> list[str]:
    """A list of at most ``max_items`` agent ids, duplicates dropped (order kept)."""
    value = body.get(name)
    if not isinstance(value, list) or len(value) > max_items:
        raise DecodeError(f"expected a list of at most {max_items} agent ids", field=name)
    if not all(is_agent_id(item) for item in value):
        raise DecodeError("expected agent ids", field=name)
    return list(dict.fromkeys(value))


def canonical_card_json(card: object, *, max_bytes: int) -> bytes:
    """The RFC 8785 form of a whole card (signatures included), as the directory stores it.

    DecodeError when ``card`` is not a JSON object with a canonical form;
    LimitExceeded("card_size") when that form is over ``max_bytes``.
    """
    if not isinstance(card, dict):
        raise DecodeError("expected a JSON object", field="card")
    try:
        data = rfc8785.dumps(card)
    except (rfc8785.CanonicalizationError, ValueError, TypeError, RecursionError):
        raise DecodeError("card has no RFC 8785 canonical form", field="card") from None
    if len(data) > max_bytes:
        raise LimitExceeded("card_size", f"card of {len(data)} bytes exceeds {max_bytes}")
    return data


def get_int(body: Mapping[str, Any], name: str, *, low: int = 0, high: int = 2**63 - 1) -> int:
    value = body.get(name)
    if type(value) is not int or not low <= value <= high:
        raise DecodeError(f"expected an integer in [{low}, {high}]", field=name)
    return value


def get_str_list(body: Mapping[str, Any], name: str, *, max_items: int) -> list[str]:
    value = body.get(name)
    if not isinstance(value, list) or len(value) > max_items:
        raise DecodeError(f"expected a list of at most {max_items} strings", field=name)
    for item in value:
        if not isinstance(item, str) or not item or len(item) > MAX_ID_CHARS:
            raise DecodeError("expected non-empty strings", field=name)
    return value


def delivery_to_json(d: Delivery) -> dict[str, Any]:
    return {
        "message_id": d.message_id,
        "sender": d.sender,
        "envelope": b64e(d.envelope),
        "received_at": d.received_at,
    }


def delivery_from_json(obj: object) -> Delivery:
    if not isinstance(obj, dict):
        raise DecodeError("expected an object", field="delivery")
    at = obj.get("received_at")
    if not isinstance(at, (int, float)):
        raise DecodeError("expected a number", field="received_at")
    return Delivery(
        message_id=get_str(obj, "message_id"),
        sender=get_agent_id(obj, "sender"),
        envelope=b64d(obj.get("envelope"), "envelope"),
        received_at=float(at),
    )


# -- binary stream frames -------------------------------------------------------------

STREAM_HEADER_LENGTH_BYTES = 4
"""A binary stream frame starts with its JSON header's length (big-endian)."""


def stream_frame(header: str, blobs: list[bytes]) -> bytes:
    """A binary stream frame: the header's length, the header (a JSON object whose
    last member is ``"sizes"``, the lengths of ``blobs``), then the blobs as they are.

    ``header`` is the JSON object's text without its closing brace (callers build
    it from pre-serialised items). Envelopes travel as bytes: no base64 (4/3 the
    size) and no JSON string scan, which at 16 KiB cost more than the relay's work.
    """
    sizes = ",".join(str(len(b)) for b in blobs)
    head = f'{header},"sizes":[{sizes}]}}'.encode()
    return len(head).to_bytes(STREAM_HEADER_LENGTH_BYTES, "big") + head + b"".join(blobs)


def read_stream_frame(raw: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """The header and blobs of a :func:`stream_frame`; DecodeError if malformed."""
    if len(raw) < STREAM_HEADER_LENGTH_BYTES:
        raise DecodeError("truncated stream frame", field="frame")
    size = int.from_bytes(raw[:STREAM_HEADER_LENGTH_BYTES], "big")
    start = STREAM_HEADER_LENGTH_BYTES + size
    if start > len(raw):
        raise DecodeError("stream frame header longer than the frame", field="frame")
    header = decode_body(raw[STREAM_HEADER_LENGTH_BYTES:start])
    sizes = header.get("sizes")
    if (
        not isinstance(sizes, list)
        or not all(type(n) is int and n >= 0 for n in sizes)
        or sum(sizes) != len(raw) - start
    ):
        raise DecodeError("blob sizes do not match the frame", field="sizes")
    blobs = []
    for n in sizes:
        blobs.append(raw[start : start + n])
        start += n
    return header, blobs


def entry_to_json(e: GroupLogEntry) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "kind": e.kind,
        "epoch": e.epoch,
        "sender": e.sender,
        "message": b64e(e.message),
        "received_at": e.received_at,
    }


def entry_from_json(obj: object) -> GroupLogEntry:
    if not isinstance(obj, dict):
        raise DecodeError("expected an object", field="entry")
    kind = obj.get("kind")
    at = obj.get("received_at")
    if kind not in ("commit", "application"):
        raise DecodeError("expected commit or application", field="kind")
    if not isinstance(at, (int, float)):
        raise DecodeError("expected a number", field="received_at")
    return GroupLogEntry(
        seq=get_int(obj, "seq"),
        kind=kind,
        epoch=get_int(obj, "epoch"),
        sender=get_agent_id(obj, "sender"),
        message=b64d(obj.get("message"), "message"),
        received_at=float(at),
    )


# -- authentication ---------------------------------------------------------------

AUTH_LABEL = b"sealwire relay auth v2\x00"
RELAY_PROOF_LABEL = b"sealwire relay proof v1\x00"
CLIENT_NONCE_BYTES = 32


def auth_payload(relay_id: str, url: str, challenge: bytes) -> bytes:
    """The bytes an agent signs: ``AUTH_LABEL || relay_id || 0x00 || url || 0x00 || challenge``.

    ``url`` is the base URL the agent dialled; the relay accepts only its own
    public URL. A relay that passed on another relay's challenge (and its id,
    and its proof of that id) gets a signature naming its own URL, which the
    other relay refuses: an agent may log in wherever a peer's card or an
    invitation sends it without lending its identity to that relay.
    """
    return AUTH_LABEL + relay_id.encode("ascii") + b"\x00" + url.encode() + b"\x00" + challenge


DESCRIPTOR_LABEL = b"sealwire relay descriptor v1\x00"
DESCRIPTOR_FIELDS = ("relay_id", "identity", "url", "version")
"""What a relay's signed descriptor (``GET /v1/info``) says; ``signature`` covers them."""


def descriptor_payload(descriptor: Mapping[str, Any]) -> bytes:
    """What a relay signs in its descriptor: ``DESCRIPTOR_LABEL ||`` the RFC 8785
    canonical JSON of the :data:`DESCRIPTOR_FIELDS` (its id, public identity, URL,
    version). Unknown fields are not covered, so a client reads only these."""
    covered = {name: descriptor.get(name) for name in DESCRIPTOR_FIELDS}
    return DESCRIPTOR_LABEL + rfc8785.dumps(covered)


def relay_proof_payload(client_nonce: bytes, challenge: bytes) -> bytes:
    """What a relay signs to prove its identity to a client that sent ``client_nonce``.

    ``RELAY_PROOF_LABEL || client_nonce || challenge``; a client that knows the
    relay id it expects (a peer relay, a pinned relay) checks it, which makes
    the link mutually authenticated.
    """
    return RELAY_PROOF_LABEL + client_nonce + challenge


# -- payload framing ----------------------------------------------------------------

MAX_BINDING_NAME_BYTES = 255
"""A binding name is one length byte's worth of ASCII."""


def wrap(binding: str, envelope: bytes) -> bytes:
    """A mailbox payload: ``len(name) || name || envelope``, so the receiver knows
    which binding (or which consumer, such as group invitations) it is for."""
    name = binding.encode("ascii")
    if not name or len(name) > MAX_BINDING_NAME_BYTES:
        raise ValueError("a binding name is 1 to 255 ASCII characters")
    return bytes([len(name)]) + name + envelope


def unwrap(payload: bytes) -> tuple[str, bytes]:
    """The binding name and envelope of a :func:`wrap` payload; DecodeError if malformed."""
    if not payload or not payload[0] or len(payload) < 1 + payload[0]:
        raise DecodeError("truncated mailbox payload", field="mailbox.binding")
    size = payload[0]
    try:
        name = payload[1 : 1 + size].decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("bad binding name", field="mailbox.binding") from None
    return name, payload[1 + size :]
