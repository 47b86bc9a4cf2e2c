"""Members that are Sealwire agents: the credential names the agent, the key is its card's."""

from __future__ import annotations

import os
import time

import attrs
import pytest

from sealwire.agent._card import build_card
from sealwire.errors import TrustError
from sealwire.identity import Identity, VerifiedCard, verify_card
from sealwire_mls.agents import agent_key_package, check_credential_matches_card, check_member
from sealwire_mls.credentials import Credential
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSLocalError
from sealwire_mls.group import ApplicationMessage, Group
from sealwire_mls.keypackage import validate_key_package
from sealwire_mls.welcome import MLSMessage

NOW = int(time.time())


def card_of(identity: Identity) -> VerifiedCard:
    return verify_card(
        build_card(
            identity,
            name="m",
            description="m",
            version="0",
            bindings=[],
            listen_urls=[],
            relay_address=None,
            options={},
        )
    )


MLDSA65_SUITE = 0xF0AA  # MLS_192_MLKEM768_AES256GCM_SHA384_MLDSA65


@pytest.mark.parametrize("suite_id", [1, 3, MLDSA65_SUITE])
def test_agents_form_a_group_and_check_each_other(suite_id: int) -> None:
    alice, bob = Identity.generate(post_quantum=True), Identity.generate(post_quantum=True)
    a, b = (agent_key_package(i, now=NOW, suite_id=suite_id) for i in (alice, bob))
    validate_key_package(b.key_package, cipher_suite(suite_id), now=NOW)
    group = Group.create(
        suite_id,
        b"fleet",
        a.key_package.leaf_node,
        encryption_priv=a.encryption_priv,
        signature_priv=a.signature_priv,
        random=os.urandom,
    )
    _commit, welcome = group.commit(os.urandom, add=[b.key_package])
    group.merge_pending_commit()
    assert welcome is not None
    joined = Group.join(
        MLSMessage.from_bytes(welcome).body,
        b.key_package,
        init_priv=b.init_priv,
        encryption_priv=b.encryption_priv,
        signature_priv=b.signature_priv,
    )
    cards = {i.agent_id: card_of(i) for i in (alice, bob)}
    for _index, leaf in joined.members:
        agent_id = leaf.credential.agent_id()
        assert agent_id is not None
        check_member(leaf, cards[agent_id])
    got = joined.process(group.encrypt(b"hello fleet", os.urandom))
    assert isinstance(got, ApplicationMessage) and got.data == b"hello fleet"


def test_a_leaf_that_is_not_the_card_agent_is_refused() -> None:
    alice, mallory = Identity.generate(), Identity.generate()
    leaf = agent_key_package(mallory, now=NOW).key_package.leaf_node
    with pytest.raises(TrustError, match="credential"):
        check_member(leaf, card_of(alice))
    # Mallory claims Alice's agent id but signs with her own key.
    forged = attrs.evolve(leaf, credential=Credential.for_agent(alice.agent_id))
    with pytest.raises(TrustError, match="signature key"):
        check_member(forged, card_of(alice))
    with pytest.raises(TrustError, match="signature key"):
        check_credential_matches_card(forged.credential, forged.signature_key, card_of(alice))
    check_credential_matches_card(  # Alice's own credential and key pass
        Credential.for_agent(alice.agent_id),
        alice.signing_key.public_key().public_bytes_raw(),
        card_of(alice),
    )


def test_only_suites_of_the_agent_keys_are_used() -> None:
    with pytest.raises(MLSLocalError):
        agent_key_package(Identity.generate(), now=NOW, suite_id=2)  # ECDSA P-256
    with pytest.raises(MLSLocalError, match="ML-DSA-65"):  # a classical identity
        agent_key_package(Identity.generate(), now=NOW, suite_id=MLDSA65_SUITE)
    pq = Identity.generate(post_quantum=True)
    leaf = agent_key_package(pq, now=NOW, suite_id=MLDSA65_SUITE).key_package.leaf_node
    assert MLDSA65_SUITE in leaf.capabilities.cipher_suites
    assert (
        MLDSA65_SUITE
        not in (
            agent_key_package(Identity.generate(), now=NOW).key_package.leaf_node.capabilities
        ).cipher_suites
    )


def test_an_ml_dsa_key_that_is_not_the_card_key_is_refused() -> None:
    alice, mallory = Identity.generate(post_quantum=True), Identity.generate(post_quantum=True)
    leaf = agent_key_package(mallory, now=NOW, suite_id=MLDSA65_SUITE).key_package.leaf_node
    forged = attrs.evolve(leaf, credential=Credential.for_agent(alice.agent_id))
    with pytest.raises(TrustError, match="signature key"):
        check_member(forged, card_of(alice))
    assert alice.mldsa_key is not None
    check_credential_matches_card(  # Alice's own ML-DSA-65 key passes
        Credential.for_agent(alice.agent_id),
        alice.mldsa_key.public_key().public_bytes_raw(),
        card_of(alice),
    )


def test_private_keys_stay_out_of_reprs() -> None:
    kp = agent_key_package(Identity.generate(), now=NOW)
    assert kp.signature_priv.hex() not in repr(kp)
