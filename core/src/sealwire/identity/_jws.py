"""JOSE pieces for card signatures: base64url (RFC 7515 §2) and detached compact JWS.

An agent card signature (A2A v1.0 §8.4.2) is a JWS whose payload is not carried:
``protected`` and ``signature`` are stored in the card, and the payload is the
card's canonical form, recomputed by the verifier. Two algorithms are produced
and accepted here: ``EdDSA`` (RFC 8037 §3.1, Ed25519), which every card carries
and a2a-sdk verifies, and ``ML-DSA-65`` (the JOSE registration of FIPS 204
ML-DSA-65, draft-ietf-cose-dilithium, now RFC 9964: pure ML-DSA, empty
context), the second signature of an agent that has an ML-DSA-65 key.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey, MLDSA65PublicKey

from sealwire.errors import DecodeError

__all__ = [
    "JWS_ALG",
    "JWS_ALG_MLDSA65",
    "JWS_TYP",
    "MAX_PROTECTED_HEADER_CHARS",
    "b64url_decode",
    "b64url_encode",
    "encode_protected_header",
    "parse_protected_header",
    "sign_detached",
    "verify_detached",
]

JWS_ALG = "EdDSA"
"""RFC 8037 §3.1: the JOSE algorithm name for Ed25519 signatures."""

JWS_ALG_MLDSA65 = "ML-DSA-65"
"""draft-ietf-cose-dilithium (RFC 9964) §"JOSE algorithms": the name of ML-DSA-65 signatures."""

JWS_TYP = "JOSE"
"""A2A v1.0 §8.4.2: ``typ`` SHOULD be "JOSE"."""

# A protected header we write is about 100 characters. Hostile cards could carry
# megabytes here; this bounds the base64 and JSON work spent on one entry.
MAX_PROTECTED_HEADER_CHARS = 4096

_ED25519_SIGNATURE_LEN = 64
_MLDSA65_SIGNATURE_LEN = 3309  # FIPS 204 Table 2: ML-DSA-65 signature size
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: object, *, field: str) -> bytes:
    """Strict base64url without padding; :class:`DecodeError` naming ``field`` otherwise.

    Rejects padding, characters outside the URL-safe alphabet and non-zero
    trailing bits, so every value has exactly one accepted encoding.
    """
    if not isinstance(text, str):
        raise DecodeError("expected a base64url string", field=field)
    if len(text) % 4 == 1 or _B64URL_RE.fullmatch(text) is None:
        raise DecodeError("invalid base64url", field=field)
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise DecodeError("invalid base64url", field=field) from exc
    if b64url_encode(data) != text:
        raise DecodeError("non-canonical base64url", field=field)
    return data


def encode_protected_header(kid: str, alg: str = JWS_ALG) -> str:
    """The base64url protected header ``{"alg": alg, "typ": "JOSE", "kid": kid}``."""
    header = {"alg": alg, "typ": JWS_TYP, "kid": kid}
    return b64url_encode(json.dumps(header, separators=(",", ":")).encode("utf-8"))


def parse_protected_header(protected: object) -> Mapping[str, Any]:
    """Decode a protected header to its JSON object (RFC 7515 §7.1); DecodeError otherwise."""
    field = "signatures.protected"
    if isinstance(protected, str) and len(protected) > MAX_PROTECTED_HEADER_CHARS:
        raise DecodeError("protected header too long", field=field)
    raw = b64url_decode(protected, field=field)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DecodeError("protected header is not JSON", field=field) from exc
    if not isinstance(header, dict):
        raise DecodeError("protected header is not a JSON object", field=field)
    return header


def _signing_input(protected: str, payload: bytes) -> bytes:
    # RFC 7515 §5.1 step 5: ASCII(BASE64URL(protected) || '.' || BASE64URL(payload)).
    return protected.encode("ascii") + b"." + b64url_encode(payload).encode("ascii")


def sign_detached(
    key: Ed25519PrivateKey | MLDSA65PrivateKey, protected: str, payload: bytes
) -> str:
    """The base64url signature (Ed25519, or ML-DSA-65 with an empty context) over the JWS
    signing input; the protected header must name the matching ``alg``."""
    return b64url_encode(key.sign(_signing_input(protected, payload)))


def verify_detached(
    key: Ed25519PublicKey | MLDSA65PublicKey, protected: str, payload: bytes, signature: object
) -> bool:
    """Whether ``signature`` is a valid JWS signature by ``key`` (Ed25519 or ML-DSA-65);
    malformed input is just False."""
    try:
        raw = b64url_decode(signature, field="signatures.signature")
    except DecodeError:
        return False
    expected = (
        _MLDSA65_SIGNATURE_LEN if isinstance(key, MLDSA65PublicKey) else _ED25519_SIGNATURE_LEN
    )
    if len(raw) != expected:
        return False
    try:
        key.verify(raw, _signing_input(protected, payload))
    except InvalidSignature:
        return False
    return True
