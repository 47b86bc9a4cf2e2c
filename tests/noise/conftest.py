"""Shared fixtures of the Noise tests: handshake pairs for any protocol name."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from sealwire_noise import HandshakeState, NoiseProtocol, TransportState

PairFactory = Callable[..., tuple[HandshakeState, HandshakeState]]


def _pair(
    name: str, *, prologue: bytes = b"p", psk: bytes = b"k" * 32
) -> tuple[HandshakeState, HandshakeState]:
    protocol = NoiseProtocol.from_name(name)
    pattern = protocol.pattern
    i_static, r_static = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()

    def party(initiator: bool) -> HandshakeState:
        own, other = (i_static, r_static) if initiator else (r_static, i_static)
        return HandshakeState(
            protocol,
            initiator=initiator,
            random=os.urandom,
            prologue=prologue,
            static=own if pattern.needs_local_static(initiator) else None,
            remote_static=(
                other.public_key().public_bytes_raw()
                if pattern.needs_remote_static(initiator)
                else None
            ),
            psks=[psk] * pattern.psk_count,
        )

    return party(True), party(False)


@pytest.fixture
def make_pair() -> PairFactory:
    """``make_pair(name)`` -> (initiator, responder) with fresh static keys."""
    return _pair


def run_handshake(init: HandshakeState, resp: HandshakeState) -> None:
    index = 0
    while not (init.is_finished and resp.is_finished):
        sender, receiver = (
            (init, resp) if init.protocol.pattern.sender_is_initiator(index) else (resp, init)
        )
        payload = f"hs{index}".encode()
        assert receiver.read_message(sender.write_message(payload)) == payload
        index += 1


@pytest.fixture
def transports(make_pair: PairFactory) -> Callable[..., tuple[TransportState, TransportState]]:
    """``transports(name, **into_transport_kwargs)`` -> finished (initiator, responder)."""

    def build(
        name: str = "Noise_XX_25519_ChaChaPoly_SHA256", **kwargs: object
    ) -> tuple[TransportState, TransportState]:
        init, resp = make_pair(name)
        run_handshake(init, resp)
        return init.into_transport(**kwargs), resp.into_transport(**kwargs)  # type: ignore[arg-type]

    return build


@pytest.fixture
def handshake() -> Callable[[HandshakeState, HandshakeState], None]:
    """``handshake(init, resp)`` runs every message with small payloads."""
    return run_handshake
