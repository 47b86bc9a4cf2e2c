"""A relay's signed description of itself (``GET /v1/info``): fetched and verified,
so that an agent can pin the relay's id."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs
import httpx

from sealwire.errors import DecodeError, SealwireError
from sealwire.identity import PublicIdentity
from sealwire.relay._transport import (
    DEFAULT_TIMEOUT_SECONDS,
    check_base_url,
    tls_context,
    transport_error,
)
from sealwire.relay.errors import RelayIdentityError, RelayUnavailable
from sealwire.relay.wire import b64d, decode_body, descriptor_payload, get_str

__all__ = ["MAX_SIGNATURE_BYTES", "RelayDescriptor", "fetch_descriptor", "verify_descriptor"]

# An Ed25519 signature is 64 bytes; room for a larger (post-quantum) one, bounded.
MAX_SIGNATURE_BYTES = 8 * 1024


@attrs.frozen
class RelayDescriptor:
    """A relay's signed description of itself (``GET /v1/info``), verified.

    ``relay_id`` is the fingerprint of ``identity``, which signed the rest; pin
    it (``[agent] relay_id``) and every login asks the relay to prove it.
    """

    relay_id: str
    identity: PublicIdentity = attrs.field(repr=False)
    url: str
    version: str


def verify_descriptor(
    answer: Mapping[str, Any], *, url: str, relay_id: str | None = None
) -> RelayDescriptor:
    """The descriptor in ``answer`` if its signature holds, it names ``url`` and (when
    given) is ``relay_id``'s; else :class:`RelayIdentityError` (DecodeError if malformed)."""
    claimed = get_str(answer, "relay_id")
    public = PublicIdentity.from_json(answer.get("identity"))
    signature = b64d(answer.get("signature"), "signature", max_bytes=MAX_SIGNATURE_BYTES)
    expected = relay_id if relay_id is not None else claimed
    try:
        public.verify(signature, descriptor_payload(answer))
    except SealwireError:
        raise RelayIdentityError(
            f"the relay at {url} sent a descriptor its identity did not sign",
            expected=expected,
            claimed=claimed,
        ) from None
    if public.agent_id != claimed:
        raise RelayIdentityError(
            f"the relay at {url} claims {claimed} with the keys of {public.agent_id}",
            expected=expected,
            claimed=public.agent_id,
        )
    if relay_id is not None and claimed != relay_id:
        raise RelayIdentityError(
            f"the relay at {url} is {claimed}, not the expected {relay_id}",
            expected=relay_id,
            claimed=claimed,
        )
    named = get_str(answer, "url").rstrip("/")
    if named != url.rstrip("/"):
        raise RelayIdentityError(
            f"the relay at {url} names itself {named}: use the URL it publishes",
            expected=expected,
            claimed=claimed,
        )
    return RelayDescriptor(claimed, public, named, get_str(answer, "version"))


async def fetch_descriptor(
    url: str, *, ca: str | os.PathLike[str] | None = None, relay_id: str | None = None
) -> RelayDescriptor:
    """Fetch and verify the signed descriptor of the relay at ``url`` (see
    :func:`verify_descriptor`); ``ca`` as for :class:`RelayClient`. What
    ``sealwire init --relay`` calls to learn the relay id it pins."""
    base = url.rstrip("/")
    check_base_url(base)
    verify = tls_context(os.fspath(ca) if ca is not None else None)
    async with httpx.AsyncClient(timeout=DEFAULT_TIMEOUT_SECONDS, verify=verify) as http:
        try:
            resp = await http.get(base + "/v1/info")
        except httpx.HTTPError as exc:
            raise transport_error(base, exc) from None
    try:
        answer = decode_body(resp.content)
    except DecodeError:
        raise RelayUnavailable(f"relay answered HTTP {resp.status_code}, not JSON") from None
    if resp.status_code != 200:
        raise RelayUnavailable(f"relay {base} answered HTTP {resp.status_code} for its descriptor")
    return verify_descriptor(answer, url=base, relay_id=relay_id)
