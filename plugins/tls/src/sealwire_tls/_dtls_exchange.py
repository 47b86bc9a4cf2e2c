"""The DTLS binding's card exchange (steps 3 and 4 of :mod:`._dtls_binding`): the
initiator's hello (its signed card and an RFC 5705 channel binding), resent until
answered, and the responder's check of that hello and its answer."""

from __future__ import annotations

import base64
import binascii
import datetime
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any

from sealwire.binding import Negotiation
from sealwire.identity import VerifiedCard, verify_card
from sealwire_tls._dtls import DtlsAuthenticationError, DtlsDecodeError, DtlsHandshakeError
from sealwire_tls._dtls_certs import check_dtls_certificate
from sealwire_tls._dtls_channel import KIND_ANSWER, KIND_HELLO, DtlsChannel

__all__ = [
    "CONFIRM_RETRY",
    "EXPORTER_INITIATOR",
    "EXPORTER_LENGTH",
    "EXPORTER_RESPONDER",
    "MAX_HELLO",
    "receive_hello",
    "send_hello",
]

EXPORTER_INITIATOR = b"EXPORTER-sealwire-dtls-initiator"
EXPORTER_RESPONDER = b"EXPORTER-sealwire-dtls-responder"
"""RFC 5705 labels (``EXPORTER`` prefix: private use); one per direction, so an
answer is never the hello reflected."""
EXPORTER_LENGTH = 32
CONFIRM_RETRY = 0.5
"""Seconds before the initiator resends its hello (loopback and LAN round trips are shorter)."""
MAX_HELLO = 64 * 1024
"""A hello is a signed card (a few KB, more with post-quantum keys) and 32 bytes."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(value: Any, field: str) -> bytes:
    if not isinstance(value, str) or len(value) > 256:
        raise DtlsDecodeError("expected base64url", field=field)
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise DtlsDecodeError("expected base64url", field=field) from None


def _json(data: bytes, field: str) -> dict[str, Any]:
    if len(data) > MAX_HELLO:
        raise DtlsDecodeError("message too large", field=field)
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise DtlsDecodeError("not JSON", field=field) from None
    if not isinstance(body, dict):
        raise DtlsDecodeError("expected an object", field=field)
    return body


async def send_hello(
    channel: DtlsChannel,
    card: Mapping[str, Any],
    negotiation: Negotiation,
    deadline: float,
    clock: Callable[[], float],
) -> None:
    """The initiator's side: send its hello, resent every :data:`CONFIRM_RETRY` seconds
    until the responder's answer comes and its channel binding is the expected one."""
    engine = channel.engine
    hello = {
        "card": dict(card),
        "binding": _b64(engine.export(EXPORTER_INITIATOR, negotiation.transcript())),
    }
    await channel.send_message(KIND_HELLO, json.dumps(hello).encode())
    expected = engine.export(EXPORTER_RESPONDER, negotiation.transcript())
    retry = clock() + CONFIRM_RETRY
    while True:
        if clock() >= deadline:
            raise DtlsHandshakeError("the peer did not answer the DTLS card exchange")
        message = await channel.next_message(min(retry, deadline))
        if message is None:
            await channel.send_message(KIND_HELLO, json.dumps(hello).encode())
            retry = clock() + CONFIRM_RETRY
            continue
        kind, body = message
        if kind != KIND_ANSWER:
            channel.reject(DtlsDecodeError("frame before the answer", field="dtls.kind"))
            continue
        answer = _json(body, "dtls.answer")
        binding = _unb64(answer.get("binding"), "dtls.answer.binding")
        if not hmac.compare_digest(binding, expected):
            raise DtlsAuthenticationError(
                "the responder's channel binding differs: the negotiation was altered"
            )
        return


async def receive_hello(
    channel: DtlsChannel,
    negotiation: Negotiation,
    deadline: float,
    *,
    check_trust: Callable[[VerifiedCard], object],
    now: Callable[[], datetime.datetime],
) -> VerifiedCard:
    """The responder's side: wait for the initiator's hello, verify its card (and the
    initiator's certificate against it, and ``check_trust``), compare its channel
    binding, answer; the initiator's verified card."""
    engine = channel.engine
    while True:
        message = await channel.next_message(deadline)
        if message is None:
            raise DtlsHandshakeError("the initiator did not send its card")
        kind, body = message
        if kind != KIND_HELLO:
            channel.reject(DtlsDecodeError("frame before the hello", field="dtls.kind"))
            continue
        break
    hello = _json(body, "dtls.hello")
    card_json = hello.get("card")
    if not isinstance(card_json, dict):
        raise DtlsDecodeError("expected the initiator's card", field="dtls.hello.card")
    card = verify_card(card_json)
    check_dtls_certificate(engine.peer_certificate(), card.identity, now())
    check_trust(card)
    binding = _unb64(hello.get("binding"), "dtls.hello.binding")
    if not hmac.compare_digest(
        binding, engine.export(EXPORTER_INITIATOR, negotiation.transcript())
    ):
        raise DtlsAuthenticationError(
            "the initiator's channel binding differs: the negotiation was altered"
        )
    answer = json.dumps(
        {"binding": _b64(engine.export(EXPORTER_RESPONDER, negotiation.transcript()))}
    ).encode()
    await channel.answer(answer)
    return card
