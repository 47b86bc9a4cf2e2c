"""An agent's authenticated session at one relay: the lazy challenge-response login
(with the relay's proof of its id when one is pinned), the bearer token, and the
JSON calls over HTTP, authenticated again once when the token is refused.

Authentication is lazy: the first call fetches a challenge, signs it with the
agent's identity key and keeps the bearer token; a call answered "unauthenticated"
(token expired, relay restarted) authenticates again once and is retried.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import httpx

from sealwire import telemetry
from sealwire.errors import DecodeError, SealwireError
from sealwire.identity import Identity, PublicIdentity
from sealwire.relay._transport import transport_error
from sealwire.relay.errors import (
    RelayAuthError,
    RelayError,
    RelayIdentityError,
    RelayUnavailable,
    error_from_wire,
)
from sealwire.relay.wire import (
    CLIENT_NONCE_BYTES,
    auth_payload,
    b64d,
    b64e,
    decode_body,
    get_str,
    relay_proof_payload,
)

__all__ = ["RelaySession"]

# A relay's challenge is a short nonce: a longer one is refused unread.
MAX_CHALLENGE_BYTES = 64


class RelaySession:
    """``identity`` (with its signed ``card`` if given) at the relay at ``url``, over
    ``http``; ``relay_id``, if given, is the relay's expected id: the relay must prove it.

    ``token`` is the bearer token once authenticated (a secret: never logged).
    """

    def __init__(
        self,
        url: str,
        identity: Identity,
        card: Mapping[str, Any] | None,
        *,
        relay_id: str | None,
        http: httpx.AsyncClient,
    ) -> None:
        self.url = url
        self.http = http
        self.token: str | None = None
        self._identity = identity
        self._card = card
        self._relay_id = relay_id
        self._auth_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"RelaySession(url={self.url!r}, agent_id={self._identity.agent_id!r})"

    async def post(self, path: str, body: Mapping[str, Any], token: str | None) -> dict[str, Any]:
        """One JSON request to ``path`` (with ``token``, if any); the answer, or its error."""
        if not telemetry.ENABLED:
            return await self._post_once(path, body, token)
        with telemetry.span("sealwire.relay.call", {"sealwire.relay.route": path}):
            try:
                return await self._post_once(path, body, token)
            except RelayError as exc:
                telemetry.count("sealwire.refusals", 1, {"reason": str(exc.code)})
                raise

    async def _post_once(
        self, path: str, body: Mapping[str, Any], token: str | None
    ) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        try:
            resp = await self.http.post(self.url + path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise transport_error(self.url, exc) from None
        try:
            answer = decode_body(resp.content)
        except DecodeError:
            raise RelayUnavailable(f"relay answered HTTP {resp.status_code}, not JSON") from None
        if resp.status_code != 200:
            raise error_from_wire(resp.status_code, answer)
        return answer

    async def authenticate(self, stale: str | None) -> str:
        """A bearer token: the one held unless it is ``stale`` (refused), else a new one."""
        async with self._auth_lock:
            if self.token is not None and self.token != stale:
                return self.token
            client_nonce = os.urandom(CLIENT_NONCE_BYTES)
            ask = {"client_nonce": b64e(client_nonce)} if self._relay_id else {}
            challenge = await self.post("/v1/auth/challenge", ask, None)
            relay_id = get_str(challenge, "relay_id")
            nonce = b64d(challenge.get("challenge"), "challenge", max_bytes=MAX_CHALLENGE_BYTES)
            if self._relay_id is not None:
                self._check_relay(
                    challenge, relay_id, relay_proof_payload(client_nonce, nonce), self._relay_id
                )
            body: dict[str, Any] = {
                "challenge": b64e(nonce),
                "url": self.url,
                "signature": b64e(self._identity.sign(auth_payload(relay_id, self.url, nonce))),
            }
            if self._card is not None:
                body["card"] = self._card
            else:
                body["identity"] = self._identity.public.to_json()
            self.token = get_str(await self.post("/v1/auth/session", body, None), "token")
            return self.token

    def _check_relay(
        self, answer: Mapping[str, Any], relay_id: str, payload: bytes, expected: str
    ) -> None:
        try:
            public = PublicIdentity.from_json(answer.get("identity"))
            public.verify(b64d(answer.get("relay_signature"), "relay_signature"), payload)
        except SealwireError:
            raise RelayIdentityError(
                f"the relay at {self.url} did not prove its identity (expected {expected})",
                expected=expected,
                claimed=relay_id,
            ) from None
        if public.agent_id != expected or relay_id != expected:
            raise RelayIdentityError(
                f"the relay at {self.url} is {public.agent_id}, not the configured {expected}",
                expected=expected,
                claimed=public.agent_id,
            )

    async def call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """An authenticated call; authenticated again and retried once if the token is refused."""
        token = self.token or await self.authenticate(None)
        try:
            return await self.post(path, body, token)
        except RelayAuthError as exc:
            if exc.code != RelayAuthError.code:
                raise  # forbidden: authenticating again would not help
            return await self.post(path, body, await self.authenticate(token))
