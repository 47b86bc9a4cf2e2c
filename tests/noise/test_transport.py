"""Transport phase: implicit nonces, rekey in step (§11.3), datagrams with a replay window."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealwire.errors import AuthenticationError, DecodeError
from sealwire_noise import (
    MAX_NONCE,
    MAX_PAYLOAD_LEN,
    CipherState,
    DatagramTransport,
    NoiseAuthenticationError,
    NoiseConfigurationError,
    NoiseDecodeError,
    NoiseNonceExhausted,
    NoiseStateError,
    ReplayedPacketError,
    ReplayWindow,
    StatelessTransportState,
    TransportState,
    cipher_suite,
)

Build = Callable[..., tuple[TransportState, TransportState]]
PROPS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SUITE = cipher_suite("25519", "ChaChaPoly", "SHA256")


def _cipher_pair(n: int = 0) -> tuple[CipherState, CipherState]:
    key = bytes(range(32))
    return CipherState(SUITE, key, n), CipherState(SUITE, key, n)


@PROPS
@given(payloads=st.lists(st.binary(max_size=64), min_size=1, max_size=30))
def test_round_trip_both_ways(transports: Build, payloads: list[bytes]) -> None:
    ti, tr = transports()
    for p in payloads:
        assert tr.decrypt(ti.encrypt(p)) == p
        assert ti.decrypt(tr.encrypt(p)) == p
    assert ti.send_nonce == tr.receive_nonce == len(payloads)


@pytest.mark.parametrize("every", [1, 3, 7])
def test_count_based_rekey_stays_in_step(every: int) -> None:
    in_step = TransportState(
        send=_cipher_pair()[0], recv=None, handshake_hash=b"", remote_static=None, rekey_after=every
    )
    receiver = TransportState(
        send=None, recv=_cipher_pair()[1], handshake_hash=b"", remote_static=None, rekey_after=every
    )
    lagging = TransportState(
        send=None, recv=_cipher_pair()[1], handshake_hash=b"", remote_static=None
    )
    for n in range(every):
        message = in_step.encrypt(b"m%d" % n)
        assert receiver.decrypt(message) == lagging.decrypt(message)
    message = in_step.encrypt(b"after")  # first message under the rekeyed key
    assert receiver.decrypt(message) == b"after"
    with pytest.raises(NoiseAuthenticationError):
        lagging.decrypt(message)


def test_explicit_rekey_must_be_mirrored(transports: Build) -> None:
    ti, tr = transports()
    ti.rekey_send()
    message = ti.encrypt(b"after rekey")
    with pytest.raises(NoiseAuthenticationError):
        tr.decrypt(message)
    assert tr.receive_nonce == 0
    tr.rekey_receive()
    assert tr.decrypt(message) == b"after rekey"


def test_rekey_matches_the_spec_definition() -> None:
    send, _ = _cipher_pair()
    expected = SUITE.aead(bytes(range(32))).encrypt(SUITE.nonce(MAX_NONCE), bytes(32), b"")[:32]
    send.rekey()
    check = CipherState(SUITE, expected)
    assert send.encrypt_with_ad(b"", b"x") == check.encrypt_with_ad(b"", b"x")


@PROPS
@given(data=st.data())
def test_tampering_fails_and_keeps_the_nonce(transports: Build, data: st.DataObject) -> None:
    ti, tr = transports()
    message = ti.encrypt(data.draw(st.binary(max_size=40)))
    i = data.draw(st.integers(0, len(message) - 1))
    tampered = message[:i] + bytes([message[i] ^ data.draw(st.integers(1, 255))]) + message[i + 1 :]
    with pytest.raises(AuthenticationError):
        tr.decrypt(tampered)
    assert tr.receive_nonce == 0
    tr.decrypt(message)


@PROPS
@given(junk=st.binary(max_size=100))
def test_arbitrary_bytes_give_typed_errors(transports: Build, junk: bytes) -> None:
    _, tr = transports()
    with pytest.raises((DecodeError, AuthenticationError)):
        tr.decrypt(junk)
    assert tr.receive_nonce == 0


def test_limits(transports: Build) -> None:
    ti, tr = transports()
    with pytest.raises(NoiseStateError):
        ti.encrypt(b"x" * (MAX_PAYLOAD_LEN + 1))
    assert len(ti.encrypt(b"x" * MAX_PAYLOAD_LEN)) == 65535
    with pytest.raises(NoiseDecodeError):
        tr.decrypt(b"x" * 65536)
    with pytest.raises(NoiseConfigurationError):
        transports(rekey_after=0)


def test_nonce_exhaustion() -> None:
    send, _ = _cipher_pair(n=MAX_NONCE - 1)
    send.encrypt_with_ad(b"", b"x")  # 2^64-2 is the last usable nonce
    with pytest.raises(NoiseNonceExhausted):
        send.encrypt_with_ad(b"", b"x")
    _, recv = _cipher_pair(n=MAX_NONCE)
    with pytest.raises(NoiseNonceExhausted):
        recv.decrypt_with_ad(b"", b"x" * 16)


def test_one_way_transport_is_one_way(transports: Build) -> None:
    ti, tr = transports("Noise_X_25519_AESGCM_SHA256")
    assert tr.decrypt(ti.encrypt(b"one way")) == b"one way"
    with pytest.raises(NoiseStateError):
        tr.encrypt(b"back")
    with pytest.raises(NoiseStateError):
        ti.decrypt(b"x" * 16)


def test_stateless_transport_any_order() -> None:
    send, recv = _cipher_pair()
    a, b = StatelessTransportState(send, None), StatelessTransportState(None, recv)
    packets = {n: a.encrypt(n, b"n%d" % n) for n in (5, 1, 9)}
    for n in (9, 5, 1):
        assert b.decrypt(n, packets[n]) == b"n%d" % n
    with pytest.raises(NoiseAuthenticationError):
        b.decrypt(2, packets[1])
    with pytest.raises(NoiseNonceExhausted):
        a.encrypt(MAX_NONCE, b"")


# -- replay window ----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(counters=st.lists(st.integers(0, 300), max_size=200))
def test_replay_window_accepts_each_counter_once_within_the_window(counters: list[int]) -> None:
    window, seen, top = ReplayWindow(64), set(), -1
    for c in counters:
        expect_ok = c not in seen and (c > top or top - c < 64)
        try:
            window.check(c)
        except ReplayedPacketError:
            assert not expect_ok
        else:
            assert expect_ok
            window.mark(c)
            seen.add(c)
            top = max(top, c)


def _datagram_pair(rekey_after: int, window: int) -> tuple[DatagramTransport, DatagramTransport]:
    send, recv = _cipher_pair()
    return (
        DatagramTransport(send, None, rekey_after=rekey_after, window=window),
        DatagramTransport(None, recv, rekey_after=rekey_after, window=window),
    )


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), loss=st.floats(0, 0.5))
def test_datagrams_survive_loss_reordering_duplicates_and_rekey(seed: int, loss: float) -> None:
    rng = random.Random(seed)
    a, b = _datagram_pair(rekey_after=32, window=32)
    packets = [(n, a.encrypt(b"d%d" % n)) for n in range(200)]
    # local reordering (within 16 positions), loss and duplication
    delivered = sorted(packets, key=lambda p: p[0] + rng.uniform(0, 16))
    delivered = [p for p in delivered if rng.random() >= loss]
    delivered += rng.sample(delivered, k=len(delivered) // 4)
    accepted: set[int] = set()
    for n, packet in delivered:
        try:
            assert b.decrypt(packet) == b"d%d" % n
        except ReplayedPacketError:
            assert n in accepted or n < max(accepted, default=0) - 32
        else:
            assert n not in accepted
            accepted.add(n)
    assert accepted  # most packets arrive


@PROPS
@given(data=st.data())
def test_datagram_tampering_keeps_window_and_keys(data: st.DataObject) -> None:
    a, b = _datagram_pair(rekey_after=64, window=64)
    packets = [a.encrypt(b"p%d" % n) for n in range(70)]  # crosses an epoch
    packet = packets[data.draw(st.integers(0, 69))]
    i = data.draw(st.integers(0, len(packet) - 1))
    tampered = packet[:i] + bytes([packet[i] ^ data.draw(st.integers(1, 255))]) + packet[i + 1 :]
    with pytest.raises((AuthenticationError, DecodeError, ReplayedPacketError)):
        b.decrypt(tampered)
    assert b.decrypt(packet).startswith(b"p")
    with pytest.raises(ReplayedPacketError):
        b.decrypt(packet)


def test_datagram_truncation_and_far_jumps() -> None:
    a, b = _datagram_pair(rekey_after=64, window=64)
    packet = a.encrypt(b"x")
    with pytest.raises(NoiseDecodeError):
        b.decrypt(packet[:20])
    far = (64 * 10).to_bytes(8, "big") + packet[8:]
    with pytest.raises(NoiseDecodeError):
        b.decrypt(far)
    assert b.decrypt(packet) == b"x"
    with pytest.raises(NoiseConfigurationError):
        _datagram_pair(rekey_after=8, window=64)


def test_datagram_old_epochs_are_erased() -> None:
    a, b = _datagram_pair(rekey_after=64, window=64)
    packets = [a.encrypt(b"%d" % n) for n in range(200)]
    b.decrypt(packets[199])  # epoch 3; epochs 0..1 are gone
    with pytest.raises(ReplayedPacketError):
        b.decrypt(packets[100])
    assert b.decrypt(packets[190]) == b"190"


def test_datagram_time_based_rekey_jumps_to_the_next_epoch() -> None:
    a, b = _datagram_pair(rekey_after=64, window=64)
    assert b.decrypt(a.encrypt(b"before")) == b"before"
    a.next_epoch()
    assert a.send_counter == 64
    packet = a.encrypt(b"after")
    assert int.from_bytes(packet[:8], "big") == 64
    assert b.decrypt(packet) == b"after"  # the receiver derived epoch 1 from the counter
    plain_send, _ = _cipher_pair()  # the epoch-0 key no longer opens new packets
    assert packet[8:] != plain_send.encrypt_at(64, b"", b"after")
