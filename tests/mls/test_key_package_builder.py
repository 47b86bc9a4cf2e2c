"""sealwire_mls.build_key_package: KeyPackages for any suite, credential and lifetime."""

from __future__ import annotations

import pytest

from sealwire_mls import (
    Credential,
    CredentialType,
    MLSAuthenticationError,
    MLSLocalError,
    build_key_package,
    cipher_suite,
    decode_exact,
)
from sealwire_mls.crypto import PQ_CIPHER_SUITES
from sealwire_mls.keypackage import KeyPackage, validate_key_package

NOW = 1_800_000_000
SUITES = [1, 2, 3, 5, *sorted(PQ_CIPHER_SUITES.values())]


@pytest.mark.parametrize("suite_id", SUITES)
def test_a_built_key_package_validates(suite_id: int) -> None:
    suite = cipher_suite(suite_id)
    signature_priv, signature_pub = suite.signature_key_pair()
    built = build_key_package(
        suite_id=suite_id, credential=Credential.for_agent("agent-7"),
        signature_priv=signature_priv, not_before=NOW - 60, not_after=NOW + 86_400,
    )  # fmt: skip
    package = decode_exact(built.key_package.to_bytes(), KeyPackage.decode)
    validate_key_package(package, suite, now=NOW)
    leaf = package.leaf_node
    assert leaf.signature_key == signature_pub and leaf.credential.identity == b"agent-7"
    assert leaf.capabilities.cipher_suites == (suite_id,)
    assert leaf.capabilities.credentials == (CredentialType.BASIC,)
    assert built.init_priv.hex() not in repr(built) and built.encryption_priv.hex() not in repr(
        built
    )


def test_another_key_or_a_bad_lifetime_is_refused() -> None:
    suite = cipher_suite(1)
    signature_priv, _ = suite.signature_key_pair()
    built = build_key_package(
        suite_id=1, credential=Credential.for_agent("a"),
        signature_priv=signature_priv, not_before=NOW, not_after=NOW + 60,
    )  # fmt: skip
    other_priv, _ = suite.signature_key_pair()
    forged = built.key_package.sign(suite, other_priv)  # the leaf still names the first key
    with pytest.raises(MLSAuthenticationError):
        validate_key_package(forged, suite, now=NOW)
    with pytest.raises(MLSLocalError, match="not_before < not_after"):
        build_key_package(
            suite_id=1, credential=Credential.for_agent("a"),
            signature_priv=signature_priv, not_before=NOW, not_after=NOW,
        )  # fmt: skip
