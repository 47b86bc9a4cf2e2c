"""The signature of a webhook call (see :mod:`sealwire.agent._push`): a detached compact
JWS (RFC 7515 Appendix F) by the agent's Ed25519 key over the exact body bytes, and its
check on the receiver's side."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from sealwire.errors import AuthenticationError, DecodeError
from sealwire.identity import Identity, PublicIdentity
from sealwire.identity._jws import (
    JWS_ALG,
    JWS_TYP,
    b64url_encode,
    parse_protected_header,
    sign_detached,
    verify_detached,
)

__all__ = [
    "MAX_NOTIFICATION_AGE",
    "SIGNATURE_HEADER",
    "sign_notification",
    "verify_notification",
]

SIGNATURE_HEADER = "Sealwire-Notification-Signature"
"""The header carrying the agent's detached JWS over the body."""
MAX_NOTIFICATION_AGE = 300
"""Seconds a receiver accepts a notification's ``iat`` away from its own clock: bounds
how long a captured notification can be replayed (its ``jti`` de-duplicates inside)."""
MAX_SIGNATURE_HEADER = 4096
"""Characters of a signature header a receiver looks at (ours are about 400)."""


def sign_notification(
    identity: Identity, body: bytes, *, audience: str, now: int, nonce: str
) -> str:
    """The detached compact JWS (``<protected>..<signature>``) over ``body``."""
    header = {"alg": JWS_ALG, "typ": JWS_TYP, "kid": identity.agent_id, "iat": now,
              "jti": nonce, "aud": audience}  # fmt: skip
    protected = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
    return f"{protected}..{sign_detached(identity.signing_key, protected, body)}"


def verify_notification(
    signature: str,
    body: bytes,
    sender: PublicIdentity,
    *,
    audience: str | None = None,
    now: float | None = None,
    max_age: float = MAX_NOTIFICATION_AGE,
) -> Mapping[str, Any]:
    """Check a webhook call's signature header against the agent that should have sent
    it (the ``identity`` of its verified card); returns the protected header (its
    ``jti`` de-duplicates). :class:`DecodeError` for a malformed header,
    :class:`AuthenticationError` for a signature that does not verify, another
    signer, another webhook (``audience``) or an ``iat`` more than ``max_age`` away."""
    if len(signature) > MAX_SIGNATURE_HEADER:
        raise DecodeError("notification signature too long", field=SIGNATURE_HEADER)
    protected, dot, rest = signature.partition(".")
    payload, dot2, sig = rest.partition(".")
    if not (dot and dot2) or payload:
        raise DecodeError("not a detached compact JWS", field=SIGNATURE_HEADER)
    header = parse_protected_header(protected)
    if header.get("alg") != JWS_ALG or header.get("kid") != sender.agent_id:
        raise AuthenticationError("the notification is not signed by the expected agent")
    if not verify_detached(sender.signing_key, protected, body, sig):
        raise AuthenticationError("the notification's signature does not verify")
    if audience is not None and header.get("aud") != audience:
        raise AuthenticationError("the notification was signed for another webhook")
    issued = header.get("iat")
    clock = time.time() if now is None else now
    if not isinstance(issued, int) or abs(clock - issued) > max_age:
        raise AuthenticationError("the notification is too old or from the future")
    return header
