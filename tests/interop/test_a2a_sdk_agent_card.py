"""A running agent's own card, as `sealwire card` prints it, is a valid A2A v1.0 card for
a2a-sdk: its parser accepts it, its signature verifier accepts the signature, and our
model codec reads it back to the same JSON."""

from __future__ import annotations

import copy

from a2a.client.card_resolver import parse_agent_card
from a2a.utils.signing import create_signature_verifier
from google.protobuf.json_format import MessageToDict

from sealwire.agent import Agent
from sealwire.codec import from_json, to_json
from sealwire.identity import Identity
from sealwire.model import AgentCard
from sealwire.store import MemoryStore


async def test_agent_card_is_accepted_by_a2a_sdk() -> None:
    identity = Identity.generate()
    agent = Agent(identity, MemoryStore(), name="interop", listen=["tcp://127.0.0.1:0"])
    async with agent:
        card = dict(agent.card.card)
    assert any(
        i["protocolBinding"].startswith("urn:sealwire:binding:")
        for i in card["supportedInterfaces"]
    )

    def key_provider(kid: str | None, jku: str | None):
        assert kid == identity.agent_id
        return identity.signing_key.public_key()

    sdk_card = parse_agent_card(copy.deepcopy(card))
    create_signature_verifier(key_provider, ["EdDSA"])(sdk_card)
    ours = from_json(AgentCard, card)
    assert to_json(ours) == MessageToDict(sdk_card)
