"""Each MLS message is encoded once: a commit's FramedContent is not re-encoded for its
signature, membership tag, transcript hash and wire bytes, nor by a receiver (issue 23)."""

from __future__ import annotations

import os
from typing import Any

import pytest

import sealwire_mls.content as content_module
import sealwire_mls.private_message as private_message
from sealwire_mls.codec import Reader
from sealwire_mls.framing import FramedContent
from sealwire_mls.welcome import MLSMessage


@pytest.fixture
def content_encodings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the FramedContent bodies encoded (one entry per encoding)."""
    calls: list[int] = []
    real = content_module.encode_content_body

    def counting(w: Any, content_type: Any, content: Any) -> None:
        calls.append(content_type)
        real(w, content_type, content)

    # FramedContent encodes its body in sealwire_mls.content, a PrivateMessage its own
    monkeypatch.setattr(content_module, "encode_content_body", counting)
    monkeypatch.setattr(private_message, "encode_content_body", counting)
    return calls


def test_a_commit_is_encoded_once_and_its_receiver_encodes_nothing(
    content_encodings: list[int], group_of: Any
) -> None:
    (alice, bob), _ = group_of([b"alice", b"bob"])
    content_encodings.clear()
    commit, _ = alice.commit(os.urandom)
    assert len(content_encodings) == 1
    alice.merge_pending_commit()
    content_encodings.clear()
    bob.process(commit)
    assert content_encodings == []
    assert bob.epoch_authenticator() == alice.epoch_authenticator()


def test_a_decoded_content_keeps_exactly_its_bytes(group_of: Any) -> None:
    (alice, _bob), _ = group_of([b"alice", b"bob"])
    commit, _ = alice.commit(os.urandom)
    alice.discard_pending_commit()
    body = MLSMessage.from_bytes(commit).body
    encoded = body.content.to_bytes()
    reader = Reader(b"\xff" + encoded + b"\xee")
    reader.uint8()
    decoded = FramedContent.decode(reader)
    assert decoded.to_bytes() == encoded and decoded == body.content
    assert reader.uint8() == 0xEE
