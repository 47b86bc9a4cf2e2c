"""Noise conformance vectors (tests/vectors/noise, README §2).

Formats:

* JSON (``cacophony.txt``, ``snow.txt``, ``snow-extended.txt`` and the three
  ``noise-c-*.txt``): ``{"vectors": [...]}`` per "Noise Test Vector Format"
  rev 1. ``messages`` alternate initiator/responder from the initiator, through
  the handshake into the transport phase (one-way patterns: all from the
  initiator). Keys are private except ``*_remote_static``.
* ``flynn-noise-vectors.txt``: key=value blocks; remote statics derive from the
  pre-messages; one ``preshared_key`` serves every psk token; after the
  handshake, transport message k is initiator->responder on c1 when k is even
  and responder->initiator on c2 when k is odd (even in one-way patterns).

Steps per vector: build both HandshakeStates with the fixed ephemerals
(``fixed_ephemeral_for_testing_only``), check each handshake ciphertext byte
for byte and its decryption, ``handshake_hash`` when given, then every
transport message. Unsupported cases (legacy ``NoisePSK_``, fallback, the old
hfs draft, P256/XChaChaPoly) are counted, never skipped one by one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from sealwire.testing.vectors import load_json, vectors_path
from sealwire_noise import (
    CipherState,
    HandshakeState,
    NoiseConfigurationError,
    NoiseProtocol,
)

JSON_FILES = {
    # file: (total vectors, minimum supported we expect)
    "noise/cacophony.txt": (944, 944),
    "noise/snow.txt": (408, 408),
    "noise/noise-c-basic.txt": (480, 240),
    "noise/snow-extended.txt": (204, 0),
    "noise/noise-c-fallback.txt": (32, 0),
    "noise/noise-c-hybrid.txt": (400, 0),
}


def _hex(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


def _unsupported_reason(vector: dict[str, Any]) -> str | None:
    name = vector.get("protocol_name") or vector.get("name") or ""
    if name.startswith("NoisePSK_"):
        return "legacy pre-rev-32 PSK scheme"
    if vector.get("fallback") or vector.get("hybrid"):
        return "Noise Pipes fallback / old hfs draft"
    try:
        NoiseProtocol.from_name(name)
    except NoiseConfigurationError:
        return "pattern or functions not supported"
    return None


def _json_parties(v: dict[str, Any]) -> tuple[HandshakeState, HandshakeState]:
    name = v.get("protocol_name") or v["name"]

    def psks(side: str) -> list[bytes]:
        if v.get(f"{side}_psks"):
            return [bytes.fromhex(p) for p in v[f"{side}_psks"]]
        return []

    def party(side: str) -> HandshakeState:
        return HandshakeState(
            name,
            initiator=side == "init",
            random=os.urandom,
            prologue=bytes.fromhex(v.get(f"{side}_prologue", "")),
            static=_hex(v.get(f"{side}_static")),
            remote_static=_hex(v.get(f"{side}_remote_static")),
            psks=psks(side),
            fixed_ephemeral_for_testing_only=_hex(v.get(f"{side}_ephemeral")),
        )

    return party("init"), party("resp")


def _run_handshake(
    init: HandshakeState, resp: HandshakeState, messages: list[dict[str, str]]
) -> int:
    """Process handshake messages; return how many the handshake used."""
    pattern = init.protocol.pattern
    for i, msg in enumerate(messages):
        if init.is_finished:
            assert resp.is_finished
            return i
        sender, receiver = (init, resp) if pattern.sender_is_initiator(i) else (resp, init)
        payload = bytes.fromhex(msg["payload"])
        ciphertext = sender.write_message(payload)
        assert ciphertext.hex() == msg["ciphertext"], f"handshake message {i}"
        assert receiver.read_message(ciphertext) == payload
    assert init.is_finished and resp.is_finished
    return len(messages)


def _check_json_vector(v: dict[str, Any]) -> None:
    init, resp = _json_parties(v)
    messages = v["messages"]
    used = _run_handshake(init, resp, messages)
    if v.get("handshake_hash"):
        assert init.handshake_hash.hex() == v["handshake_hash"]
        assert resp.handshake_hash.hex() == v["handshake_hash"]
    one_way = init.protocol.pattern.one_way
    ti, tr = init.into_transport(), resp.into_transport()
    for i in range(used, len(messages)):
        payload = bytes.fromhex(messages[i]["payload"])
        sender, receiver = (ti, tr) if one_way or i % 2 == 0 else (tr, ti)
        ciphertext = sender.encrypt(payload)
        assert ciphertext.hex() == messages[i]["ciphertext"], f"transport message {i}"
        assert receiver.decrypt(ciphertext) == payload


def _count(file: str, vectors: list[dict[str, Any]], check: Any) -> tuple[int, int, list[str]]:
    passed = supported = 0
    failures: list[str] = []
    for v in vectors:
        if _unsupported_reason(v) is not None:
            continue
        supported += 1
        try:
            check(v)
        except Exception as exc:
            failures.append(f"{v.get('protocol_name') or v.get('name')}: {exc!r}"[:200])
        else:
            passed += 1
    print(f"noise {file}: {passed}/{supported}/{len(vectors)}")
    return passed, supported, failures


@pytest.mark.parametrize("file", sorted(JSON_FILES))
def test_json_vectors(file: str) -> None:
    vectors = load_json(file)["vectors"]
    total, min_supported = JSON_FILES[file]
    assert len(vectors) == total
    passed, supported, failures = _count(file, vectors, _check_json_vector)
    assert not failures, failures[:5]
    assert passed == supported >= min_supported


# -- flynn/noise (key=value) ----------------------------------------------------


def _flynn_blocks() -> Iterator[dict[str, str]]:
    text = vectors_path("noise/flynn-noise-vectors.txt").read_text(encoding="ascii")
    for block in text.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.strip().splitlines())
        yield fields


def _public(private_hex: str) -> bytes:
    key = x25519.X25519PrivateKey.from_private_bytes(bytes.fromhex(private_hex))
    return key.public_key().public_bytes_raw()


def _flynn_parties(v: dict[str, str]) -> tuple[HandshakeState, HandshakeState]:
    protocol = NoiseProtocol.from_name(v["handshake"])
    pattern = protocol.pattern
    psks = [bytes.fromhex(v["preshared_key"])] * pattern.psk_count if pattern.has_psk else []

    def party(side: str, other: str, initiator: bool) -> HandshakeState:
        needs_rs = pattern.needs_remote_static(initiator)
        return HandshakeState(
            protocol,
            initiator=initiator,
            random=os.urandom,
            prologue=bytes.fromhex(v.get("prologue", "")),
            static=_hex(v.get(f"{side}_static")),
            remote_static=_public(v[f"{other}_static"]) if needs_rs else None,
            psks=psks,
            fixed_ephemeral_for_testing_only=_hex(v.get(f"gen_{side}_ephemeral")),
        )

    return party("init", "resp", True), party("resp", "init", False)


def _check_flynn_vector(v: dict[str, str]) -> None:
    messages: list[dict[str, str]] = []
    while f"msg_{len(messages)}_payload" in v:
        n = len(messages)
        messages.append({"payload": v[f"msg_{n}_payload"], "ciphertext": v[f"msg_{n}_ciphertext"]})
    init, resp = _flynn_parties(v)
    used = _run_handshake(init, resp, messages)
    # Split() gives c1 and c2 to both sides; flynn also uses c2 in one-way patterns.
    i_c1, i_c2 = init.split()
    r_c1, r_c2 = resp.split()
    for k, msg in enumerate(messages[used:]):
        send, recv = (i_c1, r_c1) if k % 2 == 0 else (r_c2, i_c2)
        _check_transport(send, recv, msg)


def _check_transport(send: CipherState, recv: CipherState, msg: dict[str, str]) -> None:
    payload = bytes.fromhex(msg["payload"])
    ciphertext = send.encrypt_with_ad(b"", payload)
    assert ciphertext.hex() == msg["ciphertext"]
    assert recv.decrypt_with_ad(b"", ciphertext) == payload


def test_flynn_vectors() -> None:
    vectors = [{"protocol_name": v["handshake"], **v} for v in _flynn_blocks()]
    assert len(vectors) == 1920
    passed, supported, failures = _count("flynn-noise-vectors.txt", vectors, _check_flynn_vector)
    assert not failures, failures[:5]
    assert passed == supported == 1920
