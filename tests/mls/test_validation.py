"""§12.2 and §7.3 validation rules, one test per rule (named by its rule id)."""

from __future__ import annotations

import os
import time
from typing import Any

import attrs
import pytest

from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSProtocolError
from sealwire_mls.extensions import Extension, RequiredCapabilities
from sealwire_mls.framing import Sender
from sealwire_mls.keypackage import KeyPackage, Lifetime
from sealwire_mls.proposals import GroupContextExtensions, PreSharedKey, ReInit, Remove, Update
from sealwire_mls.psk import PreSharedKeyID, PSKType, ResumptionPSKUsage
from sealwire_mls.validation import check_proposal_list

A, B = Sender.member(0), Sender.member(1)


def _psk() -> PreSharedKeyID:
    return PreSharedKeyID(psktype=PSKType.EXTERNAL, psk_id=b"k", psk_nonce=bytes(32))


def test_val_12_2_a_one_group_context_extensions() -> None:
    gce = GroupContextExtensions(extensions=())
    with pytest.raises(MLSProtocolError, match=r"VAL-12\.2-a"):
        check_proposal_list([(A, gce), (B, gce)], [])


def test_val_12_2_b_remove_twice_or_update_and_remove(member: Any) -> None:
    with pytest.raises(MLSProtocolError, match=r"VAL-12\.2-b"):
        check_proposal_list([(A, Remove(1)), (A, Remove(1))], [])
    leaf = member(1, b"x").leaf
    with pytest.raises(MLSProtocolError, match=r"VAL-12\.2-b"):
        check_proposal_list([(B, Update(leaf)), (A, Remove(1))], [])


def test_val_12_2_c_one_update_per_leaf(member: Any) -> None:
    leaf = member(1, b"x").leaf
    with pytest.raises(MLSProtocolError, match=r"VAL-12\.2-c"):
        check_proposal_list([(B, Update(leaf)), (B, Update(leaf))], [])


def test_val_12_2_d_psk_named_once() -> None:
    with pytest.raises(MLSProtocolError, match=r"VAL-12\.2-d"):
        check_proposal_list([(A, PreSharedKey(_psk())), (B, PreSharedKey(_psk()))], [])


def test_val_12_2_e_required_capabilities_every_member_supports(member: Any) -> None:
    leaf = member(1, b"x").leaf
    required = RequiredCapabilities(extension_types=(0xFF00,)).to_extension()
    with pytest.raises(MLSProtocolError, match=r"VAL-12\.2-e"):
        check_proposal_list([(A, GroupContextExtensions(extensions=(required,)))], [(0, leaf)])


def test_val_7_3_added_leaf_repeating_a_key_is_refused(member: Any, group_of: Any) -> None:
    (a, _b), (alice, _bob) = group_of([b"alice", b"bob"])
    with pytest.raises(MLSProtocolError, match="repeats"):
        a.commit(os.urandom, add=[member(1, b"x").key_package, alice.key_package])
    assert a.epoch == 1  # nothing staged


def test_val_10_1_expired_key_package_is_refused_when_time_is_given(
    member: Any, group_of: Any
) -> None:
    (a, _b), _ = group_of([b"alice", b"bob"])
    suite = cipher_suite(1)
    old = member(1, b"old")
    sig_priv = old.signature_priv
    leaf = attrs.evolve(old.leaf, lifetime=Lifetime(0, 1000)).sign(suite, sig_priv)
    kp = KeyPackage(cipher_suite=1, init_key=old.key_package.init_key, leaf_node=leaf)
    kp = kp.sign(suite, sig_priv)
    with pytest.raises(MLSProtocolError):
        a.commit(os.urandom, add=[kp], now=int(time.time()))
    commit, _ = a.commit(os.urandom, add=[kp])  # no clock given: lifetime not checked
    assert commit


def test_val_12_2_committer_cannot_remove_itself(group_of: Any) -> None:
    (a, _b), _ = group_of([b"alice", b"bob"])
    with pytest.raises(MLSProtocolError, match="itself"):
        a.commit(os.urandom, remove=[a.leaf_index])


def test_val_12_2_f_new_extension_every_member_supports(member: Any) -> None:
    leaf = member(1, b"x").leaf
    unknown = Extension(0xFF01, b"")
    with pytest.raises(MLSProtocolError, match=r"VAL-12\.2-f"):
        check_proposal_list([(A, GroupContextExtensions(extensions=(unknown,)))], [(0, leaf)])
    # A member being removed in the same commit does not count.
    check_proposal_list(
        [(A, GroupContextExtensions(extensions=(unknown,))), (A, Remove(1))], [(1, leaf)]
    )


def test_val_12_1_4_branch_and_late_reinit_psks_are_refused() -> None:
    def psk(usage: ResumptionPSKUsage) -> PreSharedKey:
        return PreSharedKey(PreSharedKeyID.resumption(usage, b"old", 3, bytes(32)))

    with pytest.raises(MLSProtocolError, match=r"VAL-12\.1\.4"):
        check_proposal_list([(A, psk(ResumptionPSKUsage.BRANCH))], [], epoch=0)
    with pytest.raises(MLSProtocolError, match=r"VAL-12\.1\.4"):
        check_proposal_list([(A, psk(ResumptionPSKUsage.REINIT))], [], epoch=5)
    check_proposal_list([(A, psk(ResumptionPSKUsage.REINIT))], [], epoch=0)
    check_proposal_list([(A, psk(ResumptionPSKUsage.APPLICATION))], [], epoch=5)


def test_val_12_1_5_reinit_to_an_older_version_is_refused() -> None:
    old = ReInit(group_id=b"g", version=0, cipher_suite=1, extensions=())
    with pytest.raises(MLSProtocolError, match=r"VAL-12\.1\.5"):
        check_proposal_list([(A, old)], [])
