"""The work a Noise handshake and transport do (issue 23): counted, never timed.

Each test counts calls into ``cryptography`` (or into attrs) during one
handshake or a run of transport messages, so it says what the engine sets up
per message without depending on the machine's speed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519

from sealwire_noise import (
    MAX_NONCE,
    CipherState,
    HandshakeState,
    KeyPair,
    NoiseAuthenticationError,
    NoiseConfigurationError,
    NoiseNonceExhausted,
    NoiseProtocol,
    TransportState,
)

XX = "Noise_XX_25519_ChaChaPoly_SHA256"
IK = "Noise_IK_25519_ChaChaPoly_SHA256"


class Counter:
    """Wraps attributes so that each call is counted, then passed on unchanged."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self.calls: dict[str, int] = {}

    def wrap(self, owner: Any, name: str, *, classmethod_: bool = False) -> None:
        original = getattr(owner, name)
        self.calls[name] = 0

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return original(*args, **kwargs)

        replacement: Callable[..., Any] | classmethod[Any, Any, Any] = counted
        if classmethod_:
            replacement = classmethod(lambda _cls, *a, **k: counted(*a, **k))
        self._monkeypatch.setattr(owner, name, replacement)


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter]:
    yield Counter(monkeypatch)


def _handshake(init: HandshakeState, resp: HandshakeState) -> tuple[TransportState, ...]:
    index = 0
    while not init.is_finished:
        sender, receiver = (init, resp) if index % 2 == 0 else (resp, init)
        receiver.read_message(sender.write_message(b"payload"))
        index += 1
    return init.into_transport(), resp.into_transport()


def _parties(
    name: str, i_static: Any, r_static: Any, r_public: bytes
) -> tuple[HandshakeState, ...]:
    init = HandshakeState(
        name,
        initiator=True,
        random=os.urandom,
        static=i_static,
        remote_static=r_public if "_IK_" in name else None,
    )
    return init, HandshakeState(name, initiator=False, random=os.urandom, static=r_static)


def test_a_protocol_name_is_parsed_once() -> None:
    assert NoiseProtocol.from_name(XX) is NoiseProtocol.from_name(XX)
    with pytest.raises(NoiseConfigurationError):
        NoiseProtocol.from_name("Noise_XX_25519_ChaChaPoly_MD5")


@pytest.mark.parametrize(("name", "public_parses"), [(XX, 4), (IK, 4)])
def test_keys_are_parsed_once_per_handshake(
    counter: Counter, name: str, public_parses: int
) -> None:
    """With static key pairs made once, a handshake loads only the two ephemeral
    private keys and parses each peer public key once (e, s on each side)."""
    protocol = NoiseProtocol.from_name(name)
    dh = protocol.suite.dh
    i_pair = dh.keypair_from_key(x25519.X25519PrivateKey.generate())
    r_pair = dh.keypair_from_key(x25519.X25519PrivateKey.generate())
    counter.wrap(x25519.X25519PrivateKey, "from_private_bytes", classmethod_=True)
    counter.wrap(x25519.X25519PublicKey, "from_public_bytes", classmethod_=True)
    sender, receiver = _handshake(*_parties(name, i_pair, r_pair, r_pair.public))
    assert counter.calls == {"from_private_bytes": 2, "from_public_bytes": public_parses}
    assert receiver.decrypt(sender.encrypt(b"after")) == b"after"


def test_a_key_pair_of_the_wrong_function_is_refused() -> None:
    pair = KeyPair(x25519.X25519PrivateKey.generate(), bytes(56))
    with pytest.raises(NoiseConfigurationError):
        HandshakeState(XX, initiator=True, random=os.urandom, static=pair)


def test_no_hash_context_is_built_per_hash(counter: Counter) -> None:
    """HASH() copies the suite's empty context; no ``Hash`` is set up per message."""
    NoiseProtocol.from_name(XX)  # the suite and its empty context exist already
    key = x25519.X25519PrivateKey.generate()
    counter.wrap(hashes, "Hash")
    _handshake(*_parties(XX, key, x25519.X25519PrivateKey.generate(), b""))
    assert counter.calls["Hash"] == 0


def test_no_key_set_is_copied_per_message(counter: Counter) -> None:
    """A message checkpoints references and restores them on failure; it copies nothing."""
    counter.wrap(attrs, "evolve")
    keys = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    _handshake(*_parties(XX, *keys, b""))
    assert counter.calls["evolve"] == 0


def test_a_failed_message_restores_every_key_variable() -> None:
    """A tampered message 2 of XX fails after ``e`` was read and ``ee`` mixed: the
    initiator's ``re``, ``rs``, ``h`` and nonce are back as they were."""
    keys = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    init, resp = _parties(XX, *keys, b"")
    resp.read_message(init.write_message())
    message = resp.write_message(b"card")
    before = (init.handshake_hash, init.remote_static, init.status)
    tampered = message[:-1] + bytes([message[-1] ^ 1])  # the payload's tag
    with pytest.raises(NoiseAuthenticationError):
        init.read_message(tampered)
    assert (init.handshake_hash, init.remote_static, init.status) == before
    assert init.read_message(message) == b"card"
    resp.read_message(init.write_message())
    assert init.handshake_hash == resp.handshake_hash


def test_transport_builds_no_cipher_per_message(counter: Counter) -> None:
    """Transport messages reuse the AEAD object of their key (one per rekey)."""
    keys = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    init, resp = _parties(XX, *keys, b"")
    suite = init.protocol.suite
    sender, receiver = _handshake(init, resp)
    counter.wrap(type(suite), "aead")  # a frozen attrs instance: patch its class
    for i in range(100):
        assert receiver.decrypt(sender.encrypt(bytes([i]) * 64)) == bytes([i]) * 64
    assert counter.calls["aead"] == 0


def _transport_pair(n: int, rekey_after: int | None) -> tuple[TransportState, TransportState]:
    suite = NoiseProtocol.from_name(XX).suite
    key = bytes(range(32))

    def side(send: bool) -> TransportState:
        cs = CipherState(suite, key, n)
        return TransportState(
            send=cs if send else None,
            recv=None if send else cs,
            handshake_hash=b"",
            remote_static=None,
            rekey_after=rekey_after,
        )

    return side(True), side(False)


def test_the_transport_fast_path_stops_at_the_last_nonce() -> None:
    """2^64-2 is the last nonce a transport message may use, on both sides."""
    sender, receiver = _transport_pair(MAX_NONCE - 3, None)
    for _ in range(3):  # nonces 2^64-4, 2^64-3, 2^64-2
        assert receiver.decrypt(sender.encrypt(b"x")) == b"x"
    assert sender.send_nonce == receiver.receive_nonce == MAX_NONCE
    with pytest.raises(NoiseNonceExhausted):
        sender.encrypt(b"x")
    with pytest.raises(NoiseNonceExhausted):
        receiver.decrypt(b"x" * 17)


@pytest.mark.parametrize("start", [0, 5, 6, 7, 1000])
def test_count_based_rekey_from_any_nonce(start: int) -> None:
    """Both sides rekey after every 7th message counted from nonce 0, wherever they start,
    and the key after a rekey is REKEY(k) (§11.3), as a CipherState computes it."""
    sender, receiver = _transport_pair(start, 7)
    suite = NoiseProtocol.from_name(XX).suite
    expected = CipherState(suite, bytes(range(32)), start)
    for i in range(30):
        message = sender.encrypt(bytes([i]))
        assert message == expected.encrypt_with_ad(b"", bytes([i]))
        if expected.n % 7 == 0:
            expected.rekey()
        assert receiver.decrypt(message) == bytes([i])
