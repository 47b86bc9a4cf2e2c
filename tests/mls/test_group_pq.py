"""Groups on the post-quantum suites (draft-ietf-mls-pq-ciphersuites), and their bad input.

Each suite runs a group through commits with UpdatePaths, an add and a remove,
application messages and the exporter. Bad input: KeyPackages with truncated,
oversized or invalid ML-KEM / X-Wing init keys, Welcomes with truncated or
oversized KEM outputs, and wrong ML-DSA signatures are refused with typed errors
and leave the group as it was.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from sealwire_mls.crypto import (
    PQ_AUTH_CIPHER_SUITES,
    PQ_CIPHER_SUITES,
    SUPPORTED_CIPHER_SUITES,
    CipherSuite,
    cipher_suite,
)
from sealwire_mls.errors import MLSAuthenticationError, MLSDecodeError
from sealwire_mls.group import ApplicationMessage, CommitApplied, Group
from sealwire_mls.keypackage import KeyPackage
from sealwire_mls.welcome import MLSMessage, Welcome

PQ = sorted(PQ_CIPHER_SUITES.values())
SUITES = pytest.mark.parametrize("suite_id", PQ, ids=lambda i: f"{i:#06x}")
AUTH = pytest.mark.parametrize("suite_id", sorted(PQ_AUTH_CIPHER_SUITES), ids=lambda i: f"{i:#06x}")


def test_the_draft_suites_are_registered() -> None:
    assert set(PQ) <= SUPPORTED_CIPHER_SUITES
    assert PQ_CIPHER_SUITES["MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519"] == 0xF0A1
    assert PQ_CIPHER_SUITES["MLS_256_MLKEM1024_AES256GCM_SHA384_MLDSA87"] == 0xF0AB
    # Mapping of draft-ietf-mls-pq-ciphersuites-06 §3 (KEM, KDF, AEAD, hash, signature).
    x = cipher_suite(0xF0A9)
    assert (x.kem_id, x.kdf_id, x.aead_id, x.hash_name, x.signature_scheme) == (
        0x647A, 2, 3, "SHA384", "mldsa44",
    )  # fmt: skip
    assert {cipher_suite(i).signature_scheme for i in PQ_AUTH_CIPHER_SUITES} == {
        "mldsa44", "mldsa65", "mldsa87",
    }  # fmt: skip
    assert all(cipher_suite(i).hpke().post_quantum for i in PQ)


def _view(group: Group) -> tuple[int, bytes, Any]:
    return group.epoch, group.epoch_authenticator(), group.members


def _agree(groups: list[Group]) -> None:
    views = {(g.epoch, g.epoch_authenticator(), g.export_secret(b"pq", b"ctx", 32)) for g in groups}
    assert len(views) == 1


@SUITES
def test_a_group_lives_on_a_pq_suite(
    suite_id: int, member: Callable[[int, bytes], Any], make_group: Callable[..., Any]
) -> None:
    groups, _ = make_group([b"a", b"b", b"c"], suite_id)
    _agree(groups)
    for committer in (1, 2):
        commit, _ = groups[committer].commit(os.urandom)
        groups[committer].merge_pending_commit()
        for i, g in enumerate(groups):
            if i != committer:
                assert isinstance(g.process(commit), CommitApplied)
        _agree(groups)
    d = member(suite_id, b"d")
    commit, welcome = groups[0].commit(os.urandom, add=[d.key_package], remove=[1])
    groups[0].merge_pending_commit()
    groups[2].process(commit)
    assert welcome is not None
    joined = Group.join(
        MLSMessage.from_bytes(welcome).body, d.key_package, init_priv=d.init_priv,
        encryption_priv=d.encryption_priv, signature_priv=d.signature_priv,
    )  # fmt: skip
    live = [groups[0], groups[2], joined]
    _agree(live)
    message = joined.encrypt(b"post-quantum", os.urandom)
    for g in live[:2]:
        event = g.process(message)
        assert isinstance(event, ApplicationMessage) and event.data == b"post-quantum"


# -- bad input ------------------------------------------------------------------------------


def _resigned(kp: KeyPackage, signature_priv: bytes, **changes: Any) -> KeyPackage:
    suite = cipher_suite(kp.cipher_suite)
    return attrs.evolve(kp, **changes).sign(suite, signature_priv)


@SUITES
def test_a_key_package_with_a_bad_init_key_is_refused_and_nothing_changes(
    suite_id: int, member: Callable[[int, bytes], Any], make_group: Callable[..., Any]
) -> None:
    groups, _ = make_group([b"a", b"b"], suite_id)
    d = member(suite_id, b"d")
    key = d.key_package.init_key
    npk = cipher_suite(suite_id).hpke().Npk
    for bad in (key[:-1], key + b"\x00", b"", b"\xff" * npk):
        if bad == b"\xff" * npk and suite_id in (0xF0A1, 0xF0A2, 0xF0A9):
            bad = b"\xff" * (npk - 32) + key[-32:]  # X-Wing: the ML-KEM part fails the check
        kp = _resigned(d.key_package, d.signature_priv, init_key=bad)
        before = _view(groups[0])
        with pytest.raises(MLSDecodeError, match="hpke_public_key"):
            groups[0].commit(os.urandom, add=[kp])
        assert _view(groups[0]) == before
    # The group still works: a good add goes through.
    commit, welcome = groups[0].commit(os.urandom, add=[d.key_package])
    groups[0].merge_pending_commit()
    assert isinstance(groups[1].process(commit), CommitApplied) and welcome is not None


@SUITES
def test_a_welcome_with_a_truncated_or_oversized_kem_output_is_refused(
    suite_id: int, member: Callable[[int, bytes], Any], make_group: Callable[..., Any]
) -> None:
    groups, _ = make_group([b"a"], suite_id)
    d = member(suite_id, b"d")
    _, welcome = groups[0].commit(os.urandom, add=[d.key_package])
    assert welcome is not None
    body = MLSMessage.from_bytes(welcome).body
    assert isinstance(body, Welcome)
    secrets = body.secrets[0]
    kem = secrets.kem_output
    assert len(kem) == cipher_suite(suite_id).hpke().Nenc
    flipped = bytes([kem[0] ^ 1]) + kem[1:]
    for bad in (kem[:-1], kem + b"\x00", b"", flipped):
        tampered = attrs.evolve(body, secrets=(attrs.evolve(secrets, kem_output=bad),))
        with pytest.raises((MLSDecodeError, MLSAuthenticationError)):
            Group.join(
                tampered, d.key_package, init_priv=d.init_priv,
                encryption_priv=d.encryption_priv, signature_priv=d.signature_priv,
            )  # fmt: skip
    joined = Group.join(
        body, d.key_package, init_priv=d.init_priv, encryption_priv=d.encryption_priv,
        signature_priv=d.signature_priv,
    )  # fmt: skip
    assert joined.epoch == 1


@AUTH
def test_a_wrong_ml_dsa_signature_is_refused_and_nothing_changes(
    suite_id: int, member: Callable[[int, bytes], Any], make_group: Callable[..., Any]
) -> None:
    groups, _ = make_group([b"a", b"b"], suite_id)
    suite = cipher_suite(suite_id)
    d, e = member(suite_id, b"d"), member(suite_id, b"e")
    kp = d.key_package
    other = suite.sign_with_label(d.signature_priv, b"KeyPackageTBS", b"another content")
    by_another_key = _resigned(kp, e.signature_priv)  # signed, but not by its leaf's key
    flipped = attrs.evolve(kp, signature=bytes([kp.signature[0] ^ 1]) + kp.signature[1:])
    for bad in (attrs.evolve(kp, signature=other), by_another_key, flipped,
                attrs.evolve(kp, signature=kp.signature[:-1])):  # fmt: skip
        before = _view(groups[0])
        with pytest.raises(MLSAuthenticationError):
            groups[0].commit(os.urandom, add=[bad])
        assert _view(groups[0]) == before


def _bad_kem_outputs(mangle: Callable[[bytes], bytes]) -> Callable[..., tuple[bytes, bytes]]:
    genuine = CipherSuite.encrypt_with_label

    def encrypt(self: CipherSuite, *args: Any) -> tuple[bytes, bytes]:
        kem_output, ciphertext = genuine(self, *args)
        return mangle(kem_output), ciphertext

    return encrypt


@SUITES
@pytest.mark.parametrize(
    "mangle",
    [lambda k: k[:-1], lambda k: k + b"\x00", lambda k: b"", lambda k: bytes([k[0] ^ 1]) + k[1:]],
    ids=["truncated", "oversized", "empty", "forged"],
)
def test_a_signed_commit_with_bad_kem_outputs_is_refused_and_nothing_changes(
    suite_id: int,
    mangle: Callable[[bytes], bytes],
    make_group: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A member (validly signing) sends an UpdatePath whose KEM outputs are bad."""
    groups, _ = make_group([b"a", b"b", b"c"], suite_id)
    with monkeypatch.context() as patch:
        patch.setattr(CipherSuite, "encrypt_with_label", _bad_kem_outputs(mangle))
        bad, _ = groups[0].commit(os.urandom)
    groups[0].discard_pending_commit()
    for receiver in groups[1:]:
        before = _view(receiver)
        with pytest.raises((MLSDecodeError, MLSAuthenticationError)):
            receiver.process(bad)
        assert _view(receiver) == before
    good, _ = groups[0].commit(os.urandom)
    groups[0].merge_pending_commit()
    for receiver in groups[1:]:
        assert isinstance(receiver.process(good), CommitApplied)
    _agree(groups)


@AUTH
def test_a_commit_with_a_wrong_ml_dsa_signature_is_refused_and_nothing_changes(
    suite_id: int, make_group: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The framing is intact (membership tag computed over the bad signature): only
    the ML-DSA signature is wrong, made by another key or over other content."""
    groups, _ = make_group([b"a", b"b"], suite_id)
    suite = cipher_suite(suite_id)
    stranger = suite.signature_key_pair()[0]
    genuine = CipherSuite.sign_with_label
    forgeries: list[Callable[[CipherSuite, bytes, bytes, bytes], bytes]] = [
        lambda self, key, label, content: genuine(self, stranger, label, content),
        lambda self, key, label, content: genuine(self, key, label, content + b"\x00"),
    ]
    for forge in forgeries:
        with monkeypatch.context() as patch:
            patch.setattr(CipherSuite, "sign_with_label", forge)
            bad, _ = groups[0].commit(os.urandom)
        groups[0].discard_pending_commit()
        before = _view(groups[1])
        with pytest.raises(MLSAuthenticationError):
            groups[1].process(bad)
        assert _view(groups[1]) == before
    good, _ = groups[0].commit(os.urandom)
    groups[0].merge_pending_commit()
    assert isinstance(groups[1].process(good), CommitApplied)
