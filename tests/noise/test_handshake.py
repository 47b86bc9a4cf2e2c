"""HandshakeState: patterns, turns, failures that leave state unchanged, the hybrid."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealwire.errors import AuthenticationError, DecodeError
from sealwire_noise import (
    KEM_CIPHERTEXT_LEN,
    KEM_PUBLIC_LEN,
    HandshakeState,
    HandshakeStatus,
    NoiseAuthenticationError,
    NoiseConfigurationError,
    NoiseDecodeError,
    NoiseProtocol,
    NoiseStateError,
    Token,
    parse_pattern,
    supported_patterns,
)

Pair = Callable[..., tuple[HandshakeState, HandshakeState]]
Run = Callable[[HandshakeState, HandshakeState], None]
PROPS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

SUITES = [
    f"{c}_{h}" for c in ("ChaChaPoly", "AESGCM") for h in ("SHA256", "SHA512", "BLAKE2s", "BLAKE2b")
]
PATTERNS = ["XX", "IK", "NK", "XK", "NN", "KK", "IX", "XXpsk3", "NNpsk0+psk2", "XXhfs", "IKhfs"]


def _name(pattern: str, suite: str = "ChaChaPoly_SHA256") -> str:
    dh = "25519+MLKEM768" if "hfs" in pattern else "25519"
    return f"Noise_{pattern}_{dh}_{suite}"


def test_table_has_every_fundamental_and_deferred_pattern() -> None:
    assert len(supported_patterns()) == 3 + 12 + 23
    assert parse_pattern("XX").messages == (
        (Token.E,),
        (Token.E, Token.EE, Token.S, Token.ES),
        (Token.S, Token.SE),
    )
    assert parse_pattern("NNpsk0+psk2").messages[0][0] is Token.PSK
    assert parse_pattern("XXhfs").messages[1][:3] == (Token.E, Token.EE, Token.EKEM1)


@pytest.mark.parametrize(
    "bad",
    [
        "Noise_YY_25519_ChaChaPoly_SHA256",
        "Noise_XXpsk9_25519_ChaChaPoly_SHA256",
        "Noise_XXfallback_25519_ChaChaPoly_SHA256",
        "Noise_XX_P256_ChaChaPoly_SHA256",
        "Noise_XX_25519_XChaChaPoly_SHA256",
        "Noise_XX_25519_ChaChaPoly_MD5",
        "XX",
        "Noise_XXhfs_25519_ChaChaPoly_SHA256",
        "Noise_XX_25519+MLKEM768_ChaChaPoly_SHA256",
        "Noise_Nhfs_25519+MLKEM768_ChaChaPoly_SHA256",
    ],
)
def test_unsupported_names_are_configuration_errors(bad: str) -> None:
    with pytest.raises(NoiseConfigurationError):
        NoiseProtocol.from_name(bad)


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_round_trip(make_pair: Pair, handshake: Run, pattern: str, suite: str) -> None:
    init, resp = make_pair(_name(pattern, suite))
    handshake(init, resp)
    assert init.handshake_hash == resp.handshake_hash
    assert init.remote_static == resp.local_static_public or init.remote_static is None
    ti, tr = init.into_transport(), resp.into_transport()
    assert tr.decrypt(ti.encrypt(b"ping")) == b"ping"
    assert ti.decrypt(tr.encrypt(b"pong")) == b"pong"
    assert ti.remote_static == init.remote_static


def test_remote_static_is_kept_after_the_handshake(make_pair: Pair, handshake: Run) -> None:
    init, resp = make_pair(_name("XX"))
    handshake(init, resp)
    assert init.remote_static is not None and resp.remote_static is not None
    assert init.remote_static == resp.local_static_public
    assert resp.remote_static == init.local_static_public


def test_out_of_turn_calls_are_state_errors(make_pair: Pair, handshake: Run) -> None:
    init, resp = make_pair(_name("XX"))
    assert init.status is HandshakeStatus.WRITE and resp.status is HandshakeStatus.READ
    with pytest.raises(NoiseStateError):
        resp.write_message(b"")
    with pytest.raises(NoiseStateError):
        init.read_message(b"x" * 48)
    with pytest.raises(NoiseStateError):
        init.into_transport()
    handshake(init, resp)
    with pytest.raises(NoiseStateError):
        init.write_message(b"")


def test_prologue_mismatch_fails(make_pair: Pair) -> None:
    init, _ = make_pair(_name("XX"), prologue=b"offers: noise,tls")
    _, resp = make_pair(_name("XX"), prologue=b"offers: noise")
    resp.read_message(init.write_message())  # the first XX message is not authenticated
    message2 = resp.write_message()
    with pytest.raises(NoiseAuthenticationError):
        init.read_message(message2)


def test_missing_keys_and_psks_are_configuration_errors() -> None:
    with pytest.raises(NoiseConfigurationError):
        HandshakeState(_name("XX"), initiator=True, random=os.urandom)
    with pytest.raises(NoiseConfigurationError):
        HandshakeState(_name("NK"), initiator=True, random=os.urandom)
    with pytest.raises(NoiseConfigurationError):
        HandshakeState(_name("NNpsk0"), initiator=True, random=os.urandom, psks=[b"short"])


@pytest.mark.parametrize("pattern", ["NN", "XX", "NX"])
def test_a_peer_key_the_pattern_does_not_pre_share_is_refused(pattern: str) -> None:
    """An undeclared pre-message key would be reported as the peer's static key without
    the handshake authenticating it: refused when the state is made."""
    with pytest.raises(NoiseConfigurationError, match="does not pre-share"):
        HandshakeState(
            _name(pattern), initiator=True, random=os.urandom,
            static=bytes(32) if pattern == "XX" else None, remote_static=b"\x09" * 32,
        )  # fmt: skip


def _advance_to_authenticated(
    make_pair: Pair, pattern: str
) -> tuple[HandshakeState, HandshakeState, bytes]:
    """Run the handshake up to its first message whose payload is encrypted."""
    init, resp = make_pair(_name(pattern))
    sender, receiver = init, resp
    message = sender.write_message(b"payload")
    if pattern.startswith("XX"):  # message 1 is in clear; message 2 is the first authenticated one
        receiver.read_message(message)
        sender, receiver = resp, init
        message = sender.write_message(b"payload")
    return sender, receiver, message


@PROPS
@given(data=st.data())
@pytest.mark.parametrize("pattern", ["XX", "IK", "NK", "XK", "XXhfs"])
def test_tampering_any_byte_fails_and_keeps_state(
    make_pair: Pair, pattern: str, data: st.DataObject
) -> None:
    _, receiver, message = _advance_to_authenticated(make_pair, pattern)
    before = (receiver.status, receiver.handshake_hash, receiver.remote_static)
    index = data.draw(st.integers(0, len(message) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = message[:index] + bytes([message[index] ^ flip]) + message[index + 1 :]
    with pytest.raises(AuthenticationError):
        receiver.read_message(tampered)
    assert (receiver.status, receiver.handshake_hash, receiver.remote_static) == before
    assert receiver.read_message(message) == b"payload"  # the genuine message still works


@PROPS
@given(cut=st.integers(0, 200))
def test_truncation_fails_and_keeps_state(make_pair: Pair, cut: int) -> None:
    _, receiver, message = _advance_to_authenticated(make_pair, "XX")
    with pytest.raises((DecodeError, AuthenticationError)):
        receiver.read_message(message[: max(0, len(message) - 1 - cut)])
    assert receiver.read_message(message) == b"payload"


@PROPS
@given(junk=st.binary(max_size=300))
@pytest.mark.parametrize("pattern", ["XX", "IK", "NK"])
def test_arbitrary_bytes_give_payload_or_typed_error(
    make_pair: Pair, pattern: str, junk: bytes
) -> None:
    _, resp = make_pair(_name(pattern))
    try:
        resp.read_message(junk)
    except (DecodeError, AuthenticationError):
        assert resp.status is HandshakeStatus.READ


def test_oversized_messages(make_pair: Pair) -> None:
    init, resp = make_pair(_name("NN"))
    with pytest.raises(NoiseStateError):
        init.write_message(b"x" * 65535)
    with pytest.raises(NoiseDecodeError):
        resp.read_message(b"x" * 65536)
    assert init.status is HandshakeStatus.WRITE


def test_hybrid_carries_the_kem_and_binds_it(make_pair: Pair) -> None:
    init, resp = make_pair(_name("XXhfs"))
    m1 = init.write_message()
    assert len(m1) == 32 + KEM_PUBLIC_LEN  # e, e1 in clear (no key yet)
    resp.read_message(m1)
    m2 = resp.write_message()
    assert len(m2) == 32 + KEM_CIPHERTEXT_LEN + 16 + 32 + 16 + 16
    init.read_message(m2)
    resp.read_message(init.write_message())
    assert init.handshake_hash == resp.handshake_hash
    ti, tr = init.into_transport(), resp.into_transport()
    assert tr.decrypt(ti.encrypt(b"pq")) == b"pq"


def test_hybrid_kem_ciphertext_tampering_is_caught(make_pair: Pair) -> None:
    init, resp = make_pair(_name("XXhfs"))
    resp.read_message(init.write_message())
    m2 = bytearray(resp.write_message())
    m2[40] ^= 1  # inside the encrypted ML-KEM ciphertext
    with pytest.raises(NoiseAuthenticationError):
        init.read_message(bytes(m2))
    assert init.status is HandshakeStatus.READ


def test_the_handshake_hands_over_once(make_pair: Pair, handshake: Run) -> None:
    init, resp = make_pair(_name("NN"))
    handshake(init, resp)
    init.into_transport()
    with pytest.raises(NoiseStateError):
        init.into_transport()
    resp.split()
    with pytest.raises(NoiseStateError):
        resp.split()
