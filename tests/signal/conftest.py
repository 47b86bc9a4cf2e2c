"""Shared helpers for the Signal plugin's tests (a fixture: test files cannot import each other)."""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from signal_binding_world import Clock, Directory

from sealwire_signal import (
    DHKeyPair,
    KemPrekey,
    OneTimePrekey,
    PrekeyBundle,
    Rng,
    SignedPrekey,
    sign_kem_prekey,
    sign_signed_prekey,
)


def seeded_rng(seed: int) -> Rng:
    """A deterministic byte source for tests only (never for real keys)."""
    return random.Random(seed).randbytes


@attrs.frozen(kw_only=True)
class AgentKeys:
    """One test agent's long-term and prekey secrets, and the bundle it would publish."""

    signing: Ed25519PrivateKey
    identity: DHKeyPair
    spk: DHKeyPair
    opk: DHKeyPair
    kem_last_resort: MLKEM768PrivateKey | None
    kem_one_time: MLKEM768PrivateKey | None
    bundle: PrekeyBundle
    one_time: OneTimePrekey
    one_time_kem: KemPrekey | None


def make_agent(rng: Rng, *, pq: bool = True) -> AgentKeys:
    """Deterministic keys from ``rng`` (Ed25519 and ML-KEM from seeds)."""
    signing = Ed25519PrivateKey.from_private_bytes(rng(32))
    identity, spk, opk = (DHKeyPair.generate(rng) for _ in range(3))
    kem_last = MLKEM768PrivateKey.from_seed_bytes(rng(64)) if pq else None
    kem_ot = MLKEM768PrivateKey.from_seed_bytes(rng(64)) if pq else None
    last_prekey = one_time_kem = None
    if kem_last is not None and kem_ot is not None:
        pub = kem_last.public_key().public_bytes_raw()
        last_prekey = KemPrekey(id=100, public=pub, signature=sign_kem_prekey(signing, pub))
        pub = kem_ot.public_key().public_bytes_raw()
        one_time_kem = KemPrekey(id=101, public=pub, signature=sign_kem_prekey(signing, pub))
    spk_pub = SignedPrekey(
        id=1, public=spk.public, signature=sign_signed_prekey(signing, spk.public)
    )
    bundle = PrekeyBundle(
        identity_key=identity.public, signed_prekey=spk_pub, kem_prekey=last_prekey
    )
    return AgentKeys(
        signing=signing, identity=identity, spk=spk, opk=opk, kem_last_resort=kem_last,
        kem_one_time=kem_ot, bundle=bundle, one_time=OneTimePrekey(7, opk.public),
        one_time_kem=one_time_kem,
    )  # fmt: skip


@attrs.frozen
class Kit:
    """What the ``kit`` fixture hands out."""

    seeded_rng: Callable[[int], Rng]
    make_agent: Callable[..., AgentKeys]


@pytest.fixture(scope="session")
def kit() -> Kit:
    return Kit(seeded_rng=seeded_rng, make_agent=make_agent)


@pytest.fixture
def world() -> tuple[Directory, Clock]:
    """An empty prekey directory and a clock the test moves (see ``signal_binding_world``)."""
    return Directory(), Clock()
