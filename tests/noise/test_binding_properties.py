"""Hypothesis properties of the binding's decoders: hostile bytes give typed errors only."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.binding import ChannelClosed
from sealwire.errors import AuthenticationError, DecodeError, ProtocolError, SealwireError
from sealwire.testing.contract import handshake, make_party, negotiation_for
from sealwire.transport import memory_pair
from sealwire_noise import NoiseConfigurationError
from sealwire_noise._binding import NoiseBinding, choose_protocol
from sealwire_noise._channel import NoiseChannel

ALICE, BOB = make_party(NoiseBinding), make_party(NoiseBinding)
NEGOTIATION = negotiation_for(ALICE, BOB)
PROPS = settings(max_examples=100, deadline=None)


@PROPS
@given(frame=st.binary(max_size=400))
def test_arbitrary_first_frames_are_refused_with_typed_errors(frame: bytes) -> None:
    binding = BOB.binding
    assert isinstance(binding, NoiseBinding)
    with pytest.raises((DecodeError, AuthenticationError, ProtocolError)):
        binding.start_responder(frame, NEGOTIATION)


@PROPS
@given(name=st.text(max_size=60), body=st.binary(max_size=200))
def test_arbitrary_protocol_names_are_refused(name: str, body: bytes) -> None:
    raw = name.encode()[:64]
    binding = BOB.binding
    assert isinstance(binding, NoiseBinding)
    with pytest.raises(SealwireError):
        binding.start_responder(bytes([len(raw)]) + raw + body, NEGOTIATION)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@PROPS
@given(params=st.dictionaries(st.sampled_from(["patterns", "suites", "postQuantum"]), JSON))
def test_hostile_card_parameters_give_a_choice_or_a_configuration_error(
    params: dict[str, Any],
) -> None:
    try:
        name = choose_protocol({}, params)
    except NoiseConfigurationError:
        return
    assert name.startswith(("Noise_IK_25519_", "Noise_XX_25519_"))


@pytest.fixture(scope="module")
def channels() -> tuple[NoiseChannel, NoiseChannel]:
    pair = asyncio.run(handshake(ALICE, BOB))
    assert isinstance(pair[0], NoiseChannel) and isinstance(pair[1], NoiseChannel)
    return pair[0], pair[1]


@PROPS
@given(record=st.binary(max_size=200))
def test_arbitrary_records_give_typed_errors_and_keep_state(
    channels: tuple[NoiseChannel, NoiseChannel], record: bytes
) -> None:
    _, receiver = channels
    with pytest.raises((DecodeError, AuthenticationError)):
        receiver.open_record(record)


@pytest.mark.parametrize("patterns", [["IK"], ["XX"]])
async def test_a_tampered_card_in_the_handshake_is_refused(patterns: list[str]) -> None:
    import attrs

    alice = make_party(NoiseBinding, options={"patterns": patterns})
    bob = make_party(NoiseBinding, options={"patterns": patterns})
    forged = attrs.evolve(alice.card, card={**alice.card.card, "name": "someone else"})
    alice_binding = NoiseBinding(attrs.evolve(alice.binding.context, card=forged))
    a, b = memory_pair()
    results = await asyncio.gather(
        alice_binding.initiate(a, bob.card, NEGOTIATION),
        bob.binding.respond(b, NEGOTIATION),
        return_exceptions=True,
    )
    assert isinstance(results[1], AuthenticationError | DecodeError)  # bob refuses the card
    if patterns == ["IK"]:
        assert isinstance(results[0], SealwireError)
    else:  # XX: bob checks alice's card on the last message; alice sees the channel end
        assert isinstance(results[0], NoiseChannel)
        with pytest.raises(ChannelClosed):
            await results[0].receive()
