"""Shared helpers for the MLS engine tests (fixtures only: test files cannot import each other)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from attrs import frozen

from sealwire_mls.credentials import Credential, CredentialType
from sealwire_mls.crypto import SUPPORTED_CIPHER_SUITES, cipher_suite
from sealwire_mls.extensions import Capabilities
from sealwire_mls.keypackage import KeyPackage, LeafNode, LeafNodeSource, Lifetime


class VectorTally:
    """Counts vector cases and reports ``<area>: passed/supported/total``."""

    def __init__(self, area: str) -> None:
        self.area = area
        self.total = 0
        self.supported = 0
        self.passed = 0
        self.failures: list[str] = []

    def run(
        self,
        cases: list[Any],
        check: Callable[[Any], None],
        name: Callable[[Any], str],
        supported: Callable[[Any], bool] | None = None,
    ) -> None:
        """Run ``check`` on each supported case, collecting failures by name."""
        for case in cases:
            self.total += 1
            if supported is not None and not supported(case):
                continue
            self.supported += 1
            try:
                check(case)
            except Exception as exc:  # collected and asserted on below
                self.failures.append(f"{name(case)}: {type(exc).__name__}: {exc}")
            else:
                self.passed += 1

    def assert_all_passed(self) -> None:
        """Print the counts and fail if any supported case failed (or none ran)."""
        print(f"{self.area}: {self.passed}/{self.supported}/{self.total}")
        assert self.supported > 0, f"{self.area}: no supported case"
        assert not self.failures, "\n".join(self.failures[:20])
        assert self.passed == self.supported


@pytest.fixture
def tally() -> Callable[[str], VectorTally]:
    """Factory of :class:`VectorTally` counters."""
    return VectorTally


@pytest.fixture
def suite_supported() -> Callable[[Any], bool]:
    """Whether a vector case's ``cipher_suite`` is implemented."""
    return lambda case: case["cipher_suite"] in SUPPORTED_CIPHER_SUITES


@frozen
class Member:
    """A would-be group member: its KeyPackage and the private keys behind it."""

    key_package: KeyPackage
    init_priv: bytes
    encryption_priv: bytes
    signature_priv: bytes

    @property
    def leaf(self) -> LeafNode:
        return self.key_package.leaf_node


def make_member(suite_id: int, name: bytes) -> Member:
    """A fresh member with a signed KeyPackage for ``suite_id``."""
    suite = cipher_suite(suite_id)
    sig_priv, sig_pub = suite.signature_key_pair()
    enc_priv, enc_pub = suite.hpke_key_pair()
    init_priv, init_pub = suite.hpke_key_pair()
    leaf = LeafNode(
        encryption_key=enc_pub,
        signature_key=sig_pub,
        credential=Credential.basic(name),
        capabilities=Capabilities(cipher_suites=(suite_id,), credentials=(CredentialType.BASIC,)),
        leaf_node_source=LeafNodeSource.KEY_PACKAGE,
        lifetime=Lifetime(0, 2**63),
    ).sign(suite, sig_priv)
    kp = KeyPackage(cipher_suite=suite_id, init_key=init_pub, leaf_node=leaf).sign(suite, sig_priv)
    return Member(kp, init_priv, enc_priv, sig_priv)


@pytest.fixture
def member() -> Callable[[int, bytes], Member]:
    """Factory of :class:`Member` values."""
    return make_member


def make_group(
    names: list[bytes], suite_id: int = 1, group_id: bytes = b"group"
) -> tuple[list[Any], list[Member]]:
    """A group whose first member created it and added the others in one commit.

    Returns the members' :class:`~sealwire_mls.group.Group` objects and their
    :class:`Member` values, in ``names`` order.
    """
    import os

    from sealwire_mls.group import Group
    from sealwire_mls.welcome import MLSMessage

    people = [make_member(suite_id, name) for name in names]
    first = people[0]
    creator = Group.create(
        suite_id, group_id, first.leaf, encryption_priv=first.encryption_priv,
        signature_priv=first.signature_priv, random=os.urandom,
    )  # fmt: skip
    groups = [creator]
    if len(people) > 1:
        _commit, welcome = creator.commit(os.urandom, add=[p.key_package for p in people[1:]])
        creator.merge_pending_commit()
        assert welcome is not None
        body = MLSMessage.from_bytes(welcome).body
        groups += [
            Group.join(
                body,
                p.key_package,
                init_priv=p.init_priv,
                encryption_priv=p.encryption_priv,
                signature_priv=p.signature_priv,
            )
            for p in people[1:]
        ]
    return groups, people


@pytest.fixture
def group_of() -> Callable[..., tuple[list[Any], list[Member]]]:
    """Factory of small groups (see :func:`make_group`)."""
    return make_group


@pytest.fixture(name="make_group")
def make_group_fixture() -> Callable[..., tuple[list[Any], list[Member]]]:
    """:func:`make_group`, for test modules (they cannot import this one)."""
    return make_group
