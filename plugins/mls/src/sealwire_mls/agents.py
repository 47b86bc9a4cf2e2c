"""MLS members that are Sealwire agents (the engine itself never needs this module).

A member's leaf carries a ``basic`` credential whose identity is the agent id,
and its signature key is one of the agent's own identity keys, so a member is
authenticated by the agent's signed card: :func:`check_member` refuses a leaf
whose credential or key differs from the card's. The suites an agent can use
are those whose signature scheme is one of its keys (:func:`agent_suites`):
Ed25519 (RFC 9420's 1 and 3, and the post-quantum X-Wing / ML-KEM-768 ones with
Ed25519) and, for an agent made with ``init --post-quantum``, ML-DSA-65 (the
post-quantum ``MLS_192_MLKEM768_AES256GCM_SHA384_MLDSA65``: post-quantum key
exchange and authentication). The binding option ``cipher_suite`` picks one
(:func:`agent_suite`).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

import attrs

from sealwire.errors import ConfigurationError, TrustError
from sealwire.identity import Identity, PublicIdentity, VerifiedCard
from sealwire_mls.credentials import Credential, CredentialType
from sealwire_mls.crypto import PQ_CIPHER_SUITES, cipher_suite
from sealwire_mls.errors import MLSLocalError
from sealwire_mls.extensions import Capabilities
from sealwire_mls.keypackage import KeyPackage, LeafNode, build_key_package

__all__ = [
    "AGENT_SUITES",
    "DEFAULT_AGENT_SUITE",
    "AgentKeyPackage",
    "agent_key_package",
    "agent_signature_key",
    "agent_suite",
    "agent_suites",
    "check_credential_matches_card",
    "check_member",
]

_AGENT_KEYS = ("ed25519", "mldsa65")
"""Signature schemes of an agent's identity keys (Ed25519 always, ML-DSA-65 with
``init --post-quantum``), the only ones a member's leaf may carry."""

AGENT_SUITES = frozenset(
    suite
    for suite in sorted({1, 3, *PQ_CIPHER_SUITES.values()})
    if cipher_suite(suite).signature_scheme in _AGENT_KEYS
)
"""Cipher suites whose signature scheme is an agent identity key's: RFC 9420's suites
1 and 3, the post-quantum (X-Wing, ML-KEM-768) ones with Ed25519, and the ML-KEM-768
one with ML-DSA-65 (for agents that have an ML-DSA-65 key)."""

DEFAULT_AGENT_SUITE = 1
"""MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, when the binding option names none."""


def agent_suite(options: Mapping[str, Any]) -> int:
    """The cipher suite of the MLS binding option ``cipher_suite``: an id (``0xF0A1``
    or ``61601``) or a registered name (``"MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519"``),
    one of :data:`AGENT_SUITES`; :data:`DEFAULT_AGENT_SUITE` when absent.
    :class:`~sealwire.errors.ConfigurationError` for anything else."""
    chosen = options.get("cipher_suite", DEFAULT_AGENT_SUITE)
    if isinstance(chosen, str):
        by_name = {cipher_suite(i).name: i for i in AGENT_SUITES}
        if chosen not in by_name:
            raise ConfigurationError(
                f"[bindings.mls] cipher_suite {chosen!r} is not one an agent can use: "
                + ", ".join(sorted(by_name))
            )
        return by_name[chosen]
    if isinstance(chosen, bool) or not isinstance(chosen, int) or chosen not in AGENT_SUITES:
        raise ConfigurationError(
            f"[bindings.mls] cipher_suite {chosen!r} is not one an agent can use (its "
            "signature scheme must be an agent identity key's, Ed25519 or ML-DSA-65): "
            + ", ".join(f"{i:#06x}" for i in sorted(AGENT_SUITES))
        )
    return chosen


KEY_PACKAGE_LIFETIME = 30 * 24 * 3600
"""Seconds a published KeyPackage stays valid (RFC 9420 §10 asks for a bounded lifetime)."""
CLOCK_SKEW_SECONDS = 3600
"""A KeyPackage's ``not_before`` is set this far in the past, so a member whose clock
runs behind ours by up to an hour still takes it (its span stays within the cap)."""


@attrs.frozen(kw_only=True)
class AgentKeyPackage:
    """A KeyPackage of an agent and the private keys behind it (never in reprs)."""

    key_package: KeyPackage
    init_priv: bytes = attrs.field(repr=False)
    encryption_priv: bytes = attrs.field(repr=False)
    signature_priv: bytes = attrs.field(repr=False)


def agent_key_package(
    identity: Identity,
    *,
    now: int,
    suite_id: int = 1,
    lifetime: int = KEY_PACKAGE_LIFETIME,
) -> AgentKeyPackage:
    """A fresh KeyPackage signed with the agent's identity key, valid from ``now`` (less
    :data:`CLOCK_SKEW_SECONDS`) for ``lifetime`` seconds."""
    signature_priv = agent_signature_key(identity, suite_id)
    built = build_key_package(
        suite_id=suite_id,
        credential=Credential.for_agent(identity.agent_id),
        signature_priv=signature_priv,
        not_before=max(0, now - CLOCK_SKEW_SECONDS),
        not_after=now + lifetime,
        capabilities=Capabilities(
            cipher_suites=tuple(sorted(agent_suites(identity))),
            credentials=(CredentialType.BASIC,),
        ),
    )
    return AgentKeyPackage(
        key_package=built.key_package, init_priv=built.init_priv,
        encryption_priv=built.encryption_priv, signature_priv=signature_priv,
    )  # fmt: skip


def agent_suites(identity: Identity | PublicIdentity) -> frozenset[int]:
    """The suites of :data:`AGENT_SUITES` this agent has the signature key for."""
    schemes = {"ed25519"} | ({"mldsa65"} if identity.mldsa_key is not None else set())
    return frozenset(s for s in AGENT_SUITES if cipher_suite(s).signature_scheme in schemes)


def agent_signature_key(identity: Identity, suite_id: int) -> bytes:
    """The agent's private signature key for ``suite_id`` as the suite loads it (Ed25519's
    raw bytes, ML-DSA-65's seed); MLSLocalError if it has none for that suite."""
    if suite_id not in agent_suites(identity):
        raise MLSLocalError(
            f"cipher suite {suite_id:#06x} needs a signature key this agent does not have"
            " (ML-DSA-65 suites: an identity made with init --post-quantum)"
        )
    if cipher_suite(suite_id).signature_scheme == "mldsa65":
        assert identity.mldsa_key is not None  # agent_suites checked it
        return bytes(identity.mldsa_key.private_bytes_raw())
    return bytes(identity.signing_key.private_bytes_raw())


def check_credential_matches_card(
    credential: Credential, signature_key: bytes, verified_card: VerifiedCard
) -> None:
    """Refuse a member unless it is the agent of ``verified_card`` (TrustError): the basic
    ``credential`` names the card's agent id and ``signature_key`` (the leaf's) is one of
    the card's identity keys, its Ed25519 key or its ML-DSA-65 key (the group's suite
    then verifies every signature with it)."""
    identity = verified_card.identity
    if credential.agent_id() != identity.agent_id:
        raise TrustError("the member's credential does not name the agent of its card")
    keys = [identity.signing_key.public_bytes_raw()]
    if identity.mldsa_key is not None:
        keys.append(identity.mldsa_key.public_bytes_raw())
    if not any(hmac.compare_digest(bytes(signature_key), key) for key in keys):
        raise TrustError("the member's signature key is not a key of its signed card")


def check_member(leaf: LeafNode, card: VerifiedCard) -> None:
    """:func:`check_credential_matches_card` for a member's LeafNode."""
    check_credential_matches_card(leaf.credential, leaf.signature_key, card)
