"""Our Noise core against an independent implementation (PyPI ``noiseprotocol``).

For XX, IK, NK and XK with each cipher and hash: our initiator against its
responder and its initiator against our responder, then transport messages
both ways. ``noiseprotocol`` is a dev dependency only; the plugin never imports it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519
from noise.connection import Keypair, NoiseConnection

from sealwire_noise import HandshakeState, NoiseProtocol

PATTERNS = ["XX", "IK", "NK", "XK"]
SUITES = [
    f"{c}_{h}" for c in ("ChaChaPoly", "AESGCM") for h in ("SHA256", "SHA512", "BLAKE2s", "BLAKE2b")
]
PROLOGUE = b"sealwire interop"


def _raw(key: x25519.X25519PrivateKey) -> bytes:
    return key.private_bytes_raw()


def _theirs(name: str, initiator: bool, own: x25519.X25519PrivateKey, peer_pub: bytes) -> Any:
    pattern = NoiseProtocol.from_name(name).pattern
    conn = NoiseConnection.from_name(name.encode())
    conn.set_as_initiator() if initiator else conn.set_as_responder()
    conn.set_prologue(PROLOGUE)
    if pattern.needs_local_static(initiator):
        conn.set_keypair_from_private_bytes(Keypair.STATIC, _raw(own))
    if pattern.needs_remote_static(initiator):
        conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, peer_pub)
    conn.start_handshake()
    return conn


def _ours(
    name: str, initiator: bool, own: x25519.X25519PrivateKey, peer_pub: bytes
) -> HandshakeState:
    pattern = NoiseProtocol.from_name(name).pattern
    return HandshakeState(
        name,
        initiator=initiator,
        random=os.urandom,
        prologue=PROLOGUE,
        static=own if pattern.needs_local_static(initiator) else None,
        remote_static=peer_pub if pattern.needs_remote_static(initiator) else None,
    )


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("we_initiate", [True, False], ids=["ours-init", "theirs-init"])
def test_handshake_and_transport(pattern: str, suite: str, we_initiate: bool) -> None:
    name = f"Noise_{pattern}_25519_{suite}"
    i_key, r_key = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    i_pub, r_pub = (k.public_key().public_bytes_raw() for k in (i_key, r_key))
    if we_initiate:
        ours = _ours(name, True, i_key, r_pub)
        theirs = _theirs(name, False, r_key, i_pub)
    else:
        ours = _ours(name, False, r_key, i_pub)
        theirs = _theirs(name, True, i_key, r_pub)
    n_messages = len(ours.protocol.pattern.messages)
    for index in range(n_messages):
        payload = b"payload %d" % index
        if (index % 2 == 0) == we_initiate:
            assert theirs.read_message(ours.write_message(payload)) == payload
        else:
            assert ours.read_message(theirs.write_message(payload)) == payload
    assert theirs.handshake_finished and ours.is_finished
    assert ours.handshake_hash == theirs.get_handshake_hash()
    expected = r_pub if we_initiate else (None if pattern == "NK" else i_pub)
    assert ours.remote_static == expected
    transport = ours.into_transport()
    for n in range(3):
        assert theirs.decrypt(transport.encrypt(b"to them %d" % n)) == b"to them %d" % n
        assert transport.decrypt(theirs.encrypt(b"to us %d" % n)) == b"to us %d" % n
