"""A test-only session binding: authenticated but NOT encrypted. Never ship it.

It proves the binding contract end to end without any real protocol: both
sides exchange their signed cards and sign the negotiation transcript and
both nonces with their Ed25519 identity keys, so it has mutual
authentication and downgrade detection, and nothing else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from sealwire import hookimpl
from sealwire.binding import (
    Binding,
    BindingInfo,
    ChannelClosed,
    Negotiation,
    PeerIdentity,
    Property,
    SessionBinding,
    Shape,
)
from sealwire.errors import AuthenticationError, DecodeError, TrustError
from sealwire.identity import VerifiedCard, verify_card
from sealwire.transport import FrameStream, TransportClosed

NAME = "testonly-plaintext"


def _decode(data: bytes) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except ValueError:
        raise DecodeError("handshake message is not JSON", field="testonly") from None
    if not isinstance(body, dict):
        raise DecodeError("handshake message is not an object", field="testonly")
    return body


def _signed_part(role: bytes, negotiation: Negotiation, nonce_i: bytes, nonce_r: bytes) -> bytes:
    return b"testonly/" + role + negotiation.transcript() + nonce_i + nonce_r


class PlaintextChannel:
    def __init__(self, stream: FrameStream, peer: VerifiedCard) -> None:
        self._stream = stream
        self._peer = PeerIdentity(
            agent_id=peer.identity.agent_id, identity=peer.identity, card=peer
        )

    @property
    def peer(self) -> PeerIdentity:
        return self._peer

    @property
    def properties(self) -> frozenset[Property]:
        return PlaintextTestBinding.info.properties

    async def send(self, frame: bytes) -> None:
        try:
            await self._stream.send(frame)
        except TransportClosed:
            raise ChannelClosed("closed") from None

    async def receive(self) -> bytes:
        try:
            return await self._stream.receive()
        except TransportClosed:
            raise ChannelClosed("closed") from None

    async def close(self) -> None:
        await self._stream.close()


class PlaintextTestBinding(SessionBinding):
    info = BindingInfo(
        name=NAME,
        version="0",
        major=1,
        shape=Shape.SESSION,
        properties=frozenset({Property.MUTUAL_AUTH}),
        schemes=frozenset({"tcp", "ws"}),
        description="test only: authenticated, not encrypted",
    )

    def _verify_peer(self, card_json: Any) -> VerifiedCard:
        card = verify_card(card_json)
        self.context.trust.check(card)
        return card

    async def initiate(
        self, stream: FrameStream, peer: VerifiedCard, negotiation: Negotiation
    ) -> PlaintextChannel:
        nonce_i = os.urandom(32)
        await stream.send(
            json.dumps({"card": dict(self.context.card.card), "nonce": nonce_i.hex()}).encode()
        )
        answer = _decode(await stream.receive())
        card = self._verify_peer(answer.get("card"))
        if card.identity.agent_id != peer.identity.agent_id:
            raise TrustError("the responder is not the agent we called")
        try:
            nonce_r = bytes.fromhex(answer["nonce"])
            signature = bytes.fromhex(answer["signature"])
        except (KeyError, TypeError, ValueError):
            raise DecodeError("bad responder message", field="testonly") from None
        card.identity.verify(signature, _signed_part(b"r", negotiation, nonce_i, nonce_r))
        mine = self.context.identity.sign(_signed_part(b"i", negotiation, nonce_i, nonce_r))
        await stream.send(json.dumps({"signature": mine.hex()}).encode())
        return PlaintextChannel(stream, card)

    async def respond(self, stream: FrameStream, negotiation: Negotiation) -> PlaintextChannel:
        hello = _decode(await stream.receive())
        card = self._verify_peer(hello.get("card"))
        try:
            nonce_i = bytes.fromhex(hello["nonce"])
        except (KeyError, TypeError, ValueError):
            raise DecodeError("bad initiator message", field="testonly") from None
        nonce_r = os.urandom(32)
        mine = self.context.identity.sign(_signed_part(b"r", negotiation, nonce_i, nonce_r))
        await stream.send(
            json.dumps(
                {
                    "card": dict(self.context.card.card),
                    "nonce": nonce_r.hex(),
                    "signature": mine.hex(),
                }
            ).encode()
        )
        final = _decode(await stream.receive())
        try:
            signature = bytes.fromhex(final["signature"])
        except (KeyError, TypeError, ValueError):
            raise AuthenticationError() from None
        card.identity.verify(signature, _signed_part(b"i", negotiation, nonce_i, nonce_r))
        return PlaintextChannel(stream, card)


class PlaintextTestPlugin:
    """Register with ``load_registry(extra_plugins=[PlaintextTestPlugin()])``."""

    @hookimpl
    def sealwire_bindings(self) -> Sequence[type[Binding]]:
        return [PlaintextTestBinding]
