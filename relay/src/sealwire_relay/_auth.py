"""Challenge-response authentication of agents (and peer relays) to a relay.

1. ``POST /v1/auth/challenge`` returns the relay's id and 32 fresh random bytes.
2. The agent signs :func:`auth_payload` (domain label, the relay's id, the
   URL it dialled, which must be the relay's public URL, and the challenge)
   with its Ed25519 identity key (RFC 8032) and sends
   ``POST /v1/auth/session`` with the challenge, the signature and its public
   identity (``PublicIdentity.to_json()``) or its signed card.
3. The relay consumes the challenge (once, before it expires), checks the
   signature against the identity's signing key, and returns a bearer token.

A client that sends ``client_nonce`` with step 1 gets the relay's public
identity and its signature of :func:`relay_proof_payload` back, and checks
them against the relay id it expects (relay-to-relay links always do).

The agent id is always computed from the verified signing key, never taken
from the request. Tokens are random, kept hashed, and expire. No API keys.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from sealwire.errors import AuthenticationError, DecodeError, SealwireError
from sealwire.identity import PublicIdentity, verify_card
from sealwire.relay.errors import LimitExceeded, RelayAuthError
from sealwire.relay.wire import auth_payload, b64d

__all__ = ["Authenticator", "Principal"]

CHALLENGE_BYTES = 32
CHALLENGE_TTL_SECONDS = 60.0
SESSION_TTL_SECONDS = 3600.0
# Outstanding challenges beyond this are refused: each costs a few dozen bytes
# and anyone may ask for one, so the table must not grow without bound.
MAX_PENDING_CHALLENGES = 50_000
# Live sessions beyond this evict the oldest: its agent simply authenticates again.
MAX_SESSIONS = 100_000


@attrs.frozen
class Principal:
    """Who made a request: an agent id, and whether it is a trusted peer relay."""

    agent_id: str
    is_peer_relay: bool = False


class Authenticator:
    """Issues challenges and sessions; ``clock`` and ``random`` are passed in."""

    def __init__(
        self,
        relay_id: str,
        *,
        clock: Callable[[], float],
        random: Callable[[int], bytes],
        url: str,
        peer_relays: frozenset[str] = frozenset(),
    ) -> None:
        self.relay_id = relay_id
        self.url = url
        self._clock = clock
        self._random = random
        self._peer_relays = peer_relays
        self._challenges: OrderedDict[bytes, float] = OrderedDict()
        self._sessions: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()

    def challenge(self) -> bytes:
        now = self._clock()
        while self._challenges and next(iter(self._challenges.values())) < now:
            self._challenges.popitem(last=False)
        if len(self._challenges) >= MAX_PENDING_CHALLENGES:
            raise LimitExceeded("challenges", "too many outstanding challenges")
        value = self._random(CHALLENGE_BYTES)
        self._challenges[value] = now + CHALLENGE_TTL_SECONDS
        return value

    def login(self, body: Mapping[str, Any]) -> tuple[bytes, Principal]:
        """Check a signed challenge; the new bearer token and who it names."""
        challenge = b64d(body.get("challenge"), "challenge", max_bytes=CHALLENGE_BYTES)
        signature = b64d(body.get("signature"), "signature", max_bytes=64)
        public = _public_identity(body)
        expires = self._challenges.pop(challenge, None)  # consumed whatever the outcome
        if expires is None or expires < self._clock():
            raise RelayAuthError("unknown, used or expired challenge")
        dialled = body.get("url")
        if dialled != self.url:
            raise RelayAuthError(
                f"signed for the relay at {str(dialled)[:200]!r}: this relay is {self.url} "
                "(dial its public URL, or set public_url in its configuration)"
            )
        try:
            public.verify(signature, auth_payload(self.relay_id, self.url, challenge))
        except AuthenticationError:
            raise RelayAuthError("signature invalid") from None
        principal = Principal(public.agent_id, public.agent_id in self._peer_relays)
        token = self._random(32)
        self._sessions[_digest(token)] = (principal, self._clock() + SESSION_TTL_SECONDS)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return token, principal

    def principal(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer <token>`` header value."""
        if not authorization or not authorization.startswith("Bearer "):
            raise RelayAuthError("missing bearer token")
        try:
            token = b64d(authorization[7:].strip(), "token", max_bytes=64)
        except DecodeError:
            raise RelayAuthError("malformed bearer token") from None
        entry = self._sessions.get(_digest(token))
        if entry is None or entry[1] < self._clock():
            raise RelayAuthError("unknown or expired session")
        return entry[0]


def _digest(token: bytes) -> bytes:
    # Sessions are looked up by the token's hash: a dict lookup on the token
    # itself would not be constant time, its hash reveals nothing useful.
    return hashlib.sha256(token).digest()


def _public_identity(body: Mapping[str, Any]) -> PublicIdentity:
    try:
        card = body.get("card")
        if card is not None:
            if not isinstance(card, dict):
                raise DecodeError("expected a JSON object", field="card")
            return verify_card(card).identity
        return PublicIdentity.from_json(body.get("identity"))
    except DecodeError:
        raise
    except SealwireError:
        raise RelayAuthError("identity or card not verified") from None
