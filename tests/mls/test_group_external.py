"""Joining by external commit from a GroupInfo (RFC 9420 §12.4.3.2)."""

from __future__ import annotations

import os
from typing import Any

import attrs
import pytest

from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSAuthenticationError, MLSDecodeError, MLSProtocolError
from sealwire_mls.extensions import ExtensionType
from sealwire_mls.group import ApplicationMessage, CommitApplied, Group
from sealwire_mls.welcome import GroupInfo, MLSMessage


def _same(*groups: Group) -> None:
    for g in groups[1:]:
        assert g.epoch == groups[0].epoch
        assert g.epoch_authenticator() == groups[0].epoch_authenticator()
        assert g.export_secret(b"x", b"", 16) == groups[0].export_secret(b"x", b"", 16)


def test_external_join_then_messages(member: Any, group_of: Any) -> None:
    (a, b), _ = group_of([b"alice", b"bob"])
    carol = member(1, b"carol")
    c, commit = Group.join_external(
        b.group_info(), carol.leaf, signature_priv=carol.signature_priv, random=os.urandom
    )
    for g in (a, b):
        event = g.process(commit)
        assert isinstance(event, CommitApplied) and event.added == (c.leaf_index,)
    _same(a, b, c)
    got = a.process(c.encrypt(b"joined from outside", os.urandom))
    assert isinstance(got, ApplicationMessage) and got.data == b"joined from outside"
    # The group goes on normally afterwards.
    commit2, _ = c.commit(os.urandom, remove=[b.leaf_index])
    c.merge_pending_commit()
    a.process(commit2)
    _same(a, c)


def test_resync_replaces_the_joiners_old_leaf(member: Any, group_of: Any) -> None:
    (a, b), _ = group_of([b"alice", b"bob"])
    bob_again = member(1, b"bob")  # same credential, new keys: Bob lost his state
    b2, commit = Group.join_external(a.group_info(), bob_again.leaf,
                                     signature_priv=bob_again.signature_priv,
                                     random=os.urandom, resync=b.leaf_index)  # fmt: skip
    event = a.process(commit)
    assert isinstance(event, CommitApplied) and event.removed == (b.leaf_index,)
    _same(a, b2)
    gone = b.process(commit)
    assert isinstance(gone, CommitApplied) and gone.removed_me


def test_resync_cannot_remove_someone_else(member: Any, group_of: Any) -> None:
    (a, b), _ = group_of([b"alice", b"bob"])
    mallory = member(1, b"mallory")
    with pytest.raises(MLSProtocolError, match="old leaf"):
        Group.join_external(a.group_info(), mallory.leaf, signature_priv=mallory.signature_priv,
                            random=os.urandom, resync=b.leaf_index)  # fmt: skip


def test_group_info_without_external_pub_refuses_external_joins(member: Any) -> None:
    alice = member(1, b"alice")
    a = Group.create(1, b"closed", alice.leaf, encryption_priv=alice.encryption_priv,
                     signature_priv=alice.signature_priv, random=os.urandom)  # fmt: skip
    message = MLSMessage.from_bytes(a.group_info())
    info = message.body
    assert isinstance(info, GroupInfo)
    closed = attrs.evolve(info, extensions=tuple(
        e for e in info.extensions if e.extension_type != ExtensionType.EXTERNAL_PUB
    )).sign(cipher_suite(1), alice.signature_priv)  # fmt: skip
    carol = member(1, b"carol")
    with pytest.raises(MLSProtocolError, match="external_pub"):
        Group.join_external(MLSMessage(message.wire_format, closed).to_bytes(), carol.leaf,
                            signature_priv=carol.signature_priv, random=os.urandom)  # fmt: skip


def test_tampered_external_commit_changes_nothing(member: Any, group_of: Any) -> None:
    (a, b), _ = group_of([b"alice", b"bob"])
    carol = member(1, b"carol")
    _c, commit = Group.join_external(
        b.group_info(), carol.leaf, signature_priv=carol.signature_priv, random=os.urandom
    )
    before = a.epoch_authenticator()
    for index in range(0, len(commit), max(1, len(commit) // 30)):
        tampered = bytearray(commit)
        tampered[index] ^= 0x40
        with pytest.raises((MLSDecodeError, MLSAuthenticationError, MLSProtocolError)):
            a.process(bytes(tampered))
        assert a.epoch_authenticator() == before
    assert isinstance(a.process(commit), CommitApplied)
