"""Properties of message framing (RFC 9420 §6): round trips, hostile bytes, tampering."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealwire_mls.codec import encode_varint
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import (
    MLSAuthenticationError,
    MLSDecodeError,
    MLSLocalError,
    MLSProtocolError,
)
from sealwire_mls.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    PrivateMessage,
    Sender,
    WireFormat,
    protect_private,
    unprotect_private,
)
from sealwire_mls.schedule import GroupContext
from sealwire_mls.secret_tree import SecretTree
from sealwire_mls.welcome import MLSMessage

SUITE = cipher_suite(1)
CONTEXT = GroupContext(
    cipher_suite=1,
    group_id=b"group",
    epoch=3,
    tree_hash=b"\x01" * 32,
    confirmed_transcript_hash=b"\x02" * 32,
)
ENCRYPTION_SECRET, SENDER_DATA_SECRET = b"\x03" * 32, b"\x04" * 32
SIG_PRIV, SIG_PUB = SUITE.signature_key_pair()


def _seal(data: bytes, aad: bytes = b"", padding: int = 0, leaf: int = 1) -> bytes:
    content = FramedContent(
        group_id=CONTEXT.group_id,
        epoch=CONTEXT.epoch,
        sender=Sender.member(leaf),
        authenticated_data=aad,
        content_type=ContentType.APPLICATION,
        content=data,
    )
    ac = AuthenticatedContent.sign(SUITE, WireFormat.PRIVATE_MESSAGE, content, SIG_PRIV, CONTEXT)
    tree = SecretTree(SUITE, ENCRYPTION_SECRET, 4)
    message = protect_private(SUITE, ac, tree, SENDER_DATA_SECRET, os.urandom, padding)
    return MLSMessage(WireFormat.PRIVATE_MESSAGE, message).to_bytes()


def _open(data: bytes, tree: SecretTree) -> AuthenticatedContent:
    message = MLSMessage.from_bytes(data)
    if not isinstance(message.body, PrivateMessage):
        raise MLSProtocolError("not a PrivateMessage")
    return unprotect_private(SUITE, message.body, CONTEXT, tree, SENDER_DATA_SECRET, SIG_PUB)


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=20), st.integers(0, 64))
def test_private_round_trip(data: bytes, aad: bytes, padding: int) -> None:
    sealed = _seal(data, aad, padding)
    assert MLSMessage.from_bytes(sealed).to_bytes() == sealed
    ac = _open(sealed, SecretTree(SUITE, ENCRYPTION_SECRET, 4))
    assert (ac.content.content, ac.content.authenticated_data) == (data, aad)
    assert ac.content.sender == Sender.member(1)


SEALED = _seal(b"the quick brown fox", b"aad", 8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_tampering_fails_and_changes_nothing(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(SEALED) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = bytearray(SEALED)
    tampered[index] ^= flip
    tree = SecretTree(SUITE, ENCRYPTION_SECRET, 4)
    with pytest.raises((MLSAuthenticationError, MLSDecodeError, MLSProtocolError)):
        _open(bytes(tampered), tree)
    assert _open(SEALED, tree).content.content == b"the quick brown fox"  # key not consumed


def test_replay_is_rejected() -> None:
    tree = SecretTree(SUITE, ENCRYPTION_SECRET, 4)
    _open(SEALED, tree)
    with pytest.raises(MLSProtocolError):
        _open(SEALED, tree)


def test_wrong_signature_key_fails_without_state_change() -> None:
    tree = SecretTree(SUITE, ENCRYPTION_SECRET, 4)
    body = MLSMessage.from_bytes(SEALED).body
    _, other_pub = SUITE.signature_key_pair()
    with pytest.raises(MLSAuthenticationError):
        unprotect_private(SUITE, body, CONTEXT, tree, SENDER_DATA_SECRET, other_pub)
    assert _open(SEALED, tree).content.content == b"the quick brown fox"


def test_application_data_is_never_public() -> None:
    from sealwire_mls.framing import protect_public

    content = FramedContent(
        group_id=b"group",
        epoch=3,
        sender=Sender.member(0),
        content_type=ContentType.APPLICATION,
        content=b"x",
    )
    ac = AuthenticatedContent.sign(SUITE, WireFormat.PUBLIC_MESSAGE, content, SIG_PRIV, CONTEXT)
    with pytest.raises(MLSLocalError):
        protect_public(SUITE, ac, CONTEXT, b"\x00" * 32)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_message_or_decode_error(data: bytes) -> None:
    try:
        message = MLSMessage.from_bytes(data)
    except MLSDecodeError:
        return
    assert message.to_bytes() == data


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_private_message_bodies(data: bytes) -> None:
    prefix = bytes.fromhex("00010002")  # mls10, mls_private_message
    try:
        message = MLSMessage.from_bytes(prefix + data)
    except MLSDecodeError:
        return
    tree = SecretTree(SUITE, ENCRYPTION_SECRET, 4)
    with pytest.raises((MLSAuthenticationError, MLSDecodeError, MLSProtocolError)):
        unprotect_private(SUITE, message.body, CONTEXT, tree, SENDER_DATA_SECRET, SIG_PUB)


def _ciphertext_span(sealed: bytes) -> tuple[int, int]:
    """Byte range of encrypted_sender_data + ciphertext inside an encoded MLSMessage."""
    body = MLSMessage.from_bytes(sealed).body
    esd, ct = body.encrypted_sender_data, body.ciphertext
    tail = len(encode_varint(len(esd))) + len(esd) + len(encode_varint(len(ct))) + len(ct)
    return len(sealed) - tail, len(sealed)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_ciphertext_tampering_is_an_authentication_error(data: st.DataObject) -> None:
    start, end = _ciphertext_span(SEALED)
    index = data.draw(st.integers(start, end - 1))
    tampered = bytearray(SEALED)
    tampered[index] ^= data.draw(st.integers(1, 255))
    tree = SecretTree(SUITE, ENCRYPTION_SECRET, 4)
    try:
        MLSMessage.from_bytes(bytes(tampered))
    except MLSDecodeError:
        return  # a varint length byte was hit
    with pytest.raises(MLSAuthenticationError):
        _open(bytes(tampered), tree)
    assert _open(SEALED, tree).content.content == b"the quick brown fox"
