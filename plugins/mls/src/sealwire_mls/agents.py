"""MLS members that are Sealwire agents (the engine itself never needs this module).

A member's leaf carries a ``basic`` credential whose identity is the agent id,
and its signature key is the agent's own Ed25519 identity key, so a member is
authenticated by the agent's signed card: :func:`check_member` refuses a leaf
whose credential or key differs from the card's. Only the Ed25519 cipher
suites (RFC 9420's 1 and 3, and the post-quantum X-Wing / ML-KEM-768 ones with
Ed25519) can use the identity key directly; the binding option ``cipher_suite``
picks one (:func:`agent_suite`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sealwire.errors import ConfigurationError, TrustError
from sealwire.identity import Identity, VerifiedCard
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
    "agent_suite",
    "check_credential_matches_card",
    "check_member",
]

AGENT_SUITES = frozenset({1, 3}) | frozenset(
    suite
    for suite in PQ_CIPHER_SUITES.values()
    if cipher_suite(suite).signature_scheme == "ed25519"
)
"""Cipher suites whose signature scheme is Ed25519, the agents' identity key type: RFC
9420's suites 1 and 3, and the post-quantum (X-Wing, ML-KEM-768) ones with Ed25519."""

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
            "signature scheme must be Ed25519, the agents' identity key): "
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
    if suite_id not in AGENT_SUITES:
        raise MLSLocalError(f"cipher suite {suite_id} does not sign with Ed25519")
    signature_priv = identity.signing_key.private_bytes_raw()
    built = build_key_package(
        suite_id=suite_id,
        credential=Credential.for_agent(identity.agent_id),
        signature_priv=signature_priv,
        not_before=max(0, now - CLOCK_SKEW_SECONDS),
        not_after=now + lifetime,
        capabilities=Capabilities(
            cipher_suites=tuple(sorted(AGENT_SUITES)), credentials=(CredentialType.BASIC,)
        ),
    )
    return AgentKeyPackage(
        key_package=built.key_package, init_priv=built.init_priv,
        encryption_priv=built.encryption_priv, signature_priv=signature_priv,
    )  # fmt: skip


def check_credential_matches_card(
    credential: Credential, signature_key: bytes, verified_card: VerifiedCard
) -> None:
    """Refuse a member unless it is the agent of ``verified_card`` (TrustError): the basic
    ``credential`` names the card's agent id and ``signature_key`` (the leaf's) is the
    card's Ed25519 identity key (``VerifiedCard.identity.signing_key``)."""
    if credential.agent_id() != verified_card.identity.agent_id:
        raise TrustError("the member's credential does not name the agent of its card")
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes(signature_key))
    except ValueError:
        raise TrustError("the member's signature key is not an Ed25519 key") from None
    if key.public_bytes_raw() != verified_card.identity.signing_key.public_bytes_raw():
        raise TrustError("the member's signature key is not the key of its signed card")


def check_member(leaf: LeafNode, card: VerifiedCard) -> None:
    """:func:`check_credential_matches_card` for a member's LeafNode."""
    check_credential_matches_card(leaf.credential, leaf.signature_key, card)
