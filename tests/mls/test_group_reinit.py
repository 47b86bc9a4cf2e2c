"""ReInit (RFC 9420 §11.2): the old group closes, its members form a new one linked to it
by a resumption PSK of usage ``reinit``."""

from __future__ import annotations

import os
from typing import Any

import pytest

from sealwire_mls.errors import MLSProtocolError, MLSStateError
from sealwire_mls.group import ApplicationMessage, Group
from sealwire_mls.proposals import ReInit
from sealwire_mls.schedule import MLS10
from sealwire_mls.welcome import MLSMessage


def test_reinit_closes_the_group_and_links_the_new_one(member: Any, group_of: Any) -> None:
    (a, b), _ = group_of([b"alice", b"bob"])
    params = ReInit(group_id=b"new", version=MLS10, cipher_suite=3, extensions=())
    commit, _ = a.commit(os.urandom, reinit=params)
    assert a.merge_pending_commit().reinit == params
    assert b.process(commit).reinit == params
    with pytest.raises(MLSStateError, match="reinitialized"):
        a.encrypt(b"too late", os.urandom)
    nonce = os.urandom(32)
    psk_id, secret = a.reinit_psk(nonce)
    assert b.reinit_psk(nonce) == (psk_id, secret)  # both hold the same link

    alice2, bob2 = member(3, b"alice"), member(3, b"bob")
    link = {(psk_id.psk_group_id, psk_id.psk_epoch): secret}
    new = Group.create(params.cipher_suite, params.group_id, alice2.leaf,
                       encryption_priv=alice2.encryption_priv,
                       signature_priv=alice2.signature_priv, random=os.urandom,
                       resumption_psks=link)  # fmt: skip
    _c, welcome = new.commit(os.urandom, add=[bob2.key_package], psks=[psk_id])
    new.merge_pending_commit()
    assert welcome is not None
    joined = Group.join(MLSMessage.from_bytes(welcome).body, bob2.key_package,
                        init_priv=bob2.init_priv, encryption_priv=bob2.encryption_priv,
                        signature_priv=bob2.signature_priv, resumption_psks=link)  # fmt: skip
    assert joined.epoch_authenticator() == new.epoch_authenticator()
    got = joined.process(new.encrypt(b"hello again", os.urandom))
    assert isinstance(got, ApplicationMessage) and got.data == b"hello again"
    # Without the old group's resumption secret, the Welcome cannot be used.
    with pytest.raises(MLSProtocolError):
        Group.join(MLSMessage.from_bytes(welcome).body, bob2.key_package,
                   init_priv=bob2.init_priv, encryption_priv=bob2.encryption_priv,
                   signature_priv=bob2.signature_priv)  # fmt: skip


def test_reinit_must_travel_alone(group_of: Any) -> None:
    (a, b), _ = group_of([b"alice", b"bob"])
    a.process(b.propose_update(os.urandom))
    params = ReInit(group_id=b"new", version=MLS10, cipher_suite=1, extensions=())
    commit, _ = a.commit(os.urandom, reinit=params)  # stored proposals are not added
    a.merge_pending_commit()
    assert b.process(commit).reinit == params
    (c, d), _ = group_of([b"carol", b"dave"])
    with pytest.raises(MLSProtocolError, match="only proposal"):
        c.commit(os.urandom, reinit=params, remove=[d.leaf_index])
