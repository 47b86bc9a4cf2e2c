"""The trust store: PINNED, ALLOWLIST and TOFU modes, deny list, check_key, persistence."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sealwire.errors import DecodeError, TrustError
from sealwire.identity import (
    TRUST_NAMESPACE,
    Identity,
    TrustListing,
    TrustMode,
    TrustStore,
    VerifiedCard,
    binding_uri,
    build_identity_extension,
    sign_card,
    verify_card,
)


class FakeStore:
    """A dict-backed stand-in for sealwire.store's StateStore (get/put/delete/keys)."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], bytes] = {}

    def get(self, namespace: str, key: str) -> bytes | None:
        return self.data.get((namespace, key))

    def put(self, namespace: str, key: str, value: bytes) -> None:
        self.data[(namespace, key)] = bytes(value)

    def delete(self, namespace: str, key: str) -> bool:
        return self.data.pop((namespace, key), None) is not None

    def keys(self, namespace: str, prefix: str = "") -> list[str]:
        return sorted(k for ns, k in self.data if ns == namespace and k.startswith(prefix))


class TransactionalFakeStore(FakeStore):
    """Adds transaction(): writes are staged and applied only when the block succeeds."""

    def __init__(self) -> None:
        super().__init__()
        self.transactions = 0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[FakeStore]:
        staged = FakeStore()
        staged.data = dict(self.data)
        yield staged
        self.data = staged.data
        self.transactions += 1


def verified(identity: Identity) -> VerifiedCard:
    extension = build_identity_extension(identity.public, {binding_uri("noise", 1): {}})
    card: dict[str, Any] = {
        "name": "peer",
        "description": "a peer",
        "version": "1",
        "supportedInterfaces": [
            {"url": "tcp://p:1", "protocolBinding": binding_uri("noise", 1)},
        ],
        "capabilities": {"extensions": [extension]},
        "skills": [{"id": "s", "name": "s", "description": "s", "tags": ["s"]}],
    }
    return verify_card(sign_card(card, identity))


def rotated(identity: Identity) -> Identity:
    """Same signing key (so the same agent id), a new agreement key."""
    return Identity(signing_key=identity.signing_key, agreement_key=X25519PrivateKey.generate())


BOB = Identity.generate()
BOB_CARD = verified(BOB)
BOB_ROTATED_CARD = verified(rotated(BOB))
CAROL_CARD = verified(Identity.generate())


def store_for(mode: TrustMode, backing: FakeStore | None = None) -> TrustStore:
    return TrustStore(backing if backing is not None else FakeStore(), mode)


def test_pinned_mode() -> None:
    trust = store_for(TrustMode.PINNED)
    with pytest.raises(TrustError, match="not pinned"):
        trust.check(BOB_CARD)
    trust.pin(BOB.public)
    trust.check(BOB_CARD)
    assert trust.pinned(BOB.agent_id) == BOB.public
    with pytest.raises(TrustError, match=r"differ from its pinned keys.*agreement key"):
        trust.check(BOB_ROTATED_CARD)
    with pytest.raises(TrustError, match="not pinned"):
        trust.check(CAROL_CARD)


def test_allowlist_mode() -> None:
    trust = store_for(TrustMode.ALLOWLIST)
    with pytest.raises(TrustError, match="not on the allow-list"):
        trust.check(BOB_CARD)
    trust.allow(BOB.agent_id)
    trust.check(BOB_CARD)
    trust.check(BOB_ROTATED_CARD)  # allowed by id; nothing pinned
    with pytest.raises(TrustError, match="allow-list"):
        trust.check(CAROL_CARD)
    assert trust.pinned(BOB.agent_id) is None


def test_allowlist_still_honours_an_explicit_pin() -> None:
    trust = store_for(TrustMode.ALLOWLIST)
    trust.allow(BOB.agent_id)
    trust.pin(BOB.public)
    trust.check(BOB_CARD)
    with pytest.raises(TrustError, match="pinned"):
        trust.check(BOB_ROTATED_CARD)


def test_tofu_mode() -> None:
    trust = store_for(TrustMode.TOFU)
    assert trust.pinned(BOB.agent_id) is None
    trust.check(BOB_CARD)  # first sight pins
    assert trust.pinned(BOB.agent_id) == BOB.public
    trust.check(BOB_CARD)
    with pytest.raises(TrustError, match="differ from its pinned keys"):
        trust.check(BOB_ROTATED_CARD)
    assert trust.pinned(BOB.agent_id) == BOB.public  # the refusal changed nothing
    trust.check(CAROL_CARD)


def test_tofu_forget_allows_new_keys() -> None:
    trust = store_for(TrustMode.TOFU)
    trust.check(BOB_CARD)
    trust.forget(BOB.agent_id)
    trust.check(BOB_ROTATED_CARD)
    assert trust.pinned(BOB.agent_id) == BOB_ROTATED_CARD.identity


@pytest.mark.parametrize("mode", list(TrustMode))
def test_denied_is_always_refused(mode: TrustMode) -> None:
    trust = store_for(mode)
    trust.pin(BOB.public)
    trust.allow(BOB.agent_id)
    trust.deny(BOB.agent_id)
    assert trust.is_denied(BOB.agent_id)
    with pytest.raises(TrustError, match="denied"):
        trust.check(BOB_CARD)
    with pytest.raises(TrustError, match="denied"):
        trust.check_key(BOB.agent_id, BOB.public.agreement_key.public_bytes_raw())
    trust.forget(BOB.agent_id)
    assert not trust.is_denied(BOB.agent_id)


def test_persisted_across_instances() -> None:
    backing = FakeStore()
    store_for(TrustMode.TOFU, backing).check(BOB_CARD)
    store_for(TrustMode.ALLOWLIST, backing).allow(CAROL_CARD.agent_id)
    assert sorted(backing.keys(TRUST_NAMESPACE)) == [
        f"allow/{CAROL_CARD.agent_id}",
        f"pin/{BOB.agent_id}",
    ]
    again = store_for(TrustMode.PINNED, backing)
    again.check(BOB_CARD)
    assert again.pinned(BOB.agent_id) == BOB.public
    with pytest.raises(TrustError):
        again.check(BOB_ROTATED_CARD)


def test_tofu_uses_the_store_transaction() -> None:
    backing = TransactionalFakeStore()
    trust = store_for(TrustMode.TOFU, backing)
    trust.check(BOB_CARD)
    assert backing.transactions == 1
    assert trust.pinned(BOB.agent_id) == BOB.public


def test_check_key() -> None:
    trust = store_for(TrustMode.ALLOWLIST)
    bob_static = BOB.public.agreement_key.public_bytes_raw()
    with pytest.raises(TrustError, match="not been checked"):
        trust.check_key(BOB.agent_id, bob_static)
    trust.allow(BOB.agent_id)
    trust.check(BOB_CARD)
    trust.check_key(BOB.agent_id, bob_static)
    with pytest.raises(TrustError, match="not the agreement key"):
        trust.check_key(BOB.agent_id, CAROL_CARD.identity.agreement_key.public_bytes_raw())
    with pytest.raises(TrustError):
        trust.check_key(BOB.agent_id, bob_static[:31])


def test_check_key_prefers_the_pin() -> None:
    backing = FakeStore()
    trust = store_for(TrustMode.TOFU, backing)
    trust.check(BOB_CARD)
    fresh = store_for(TrustMode.TOFU, backing)  # nothing checked in this process
    fresh.check_key(BOB.agent_id, BOB.public.agreement_key.public_bytes_raw())
    with pytest.raises(TrustError):
        fresh.check_key(BOB.agent_id, BOB_ROTATED_CARD.identity.agreement_key.public_bytes_raw())


def test_bad_agent_ids_rejected() -> None:
    trust = store_for(TrustMode.ALLOWLIST)
    for call in (trust.allow, trust.deny, trust.forget, trust.pinned):
        with pytest.raises(DecodeError):
            call("bob")


def test_corrupt_pin_is_decode_error() -> None:
    backing = FakeStore()
    trust = store_for(TrustMode.PINNED, backing)
    backing.put(TRUST_NAMESPACE, f"pin/{BOB.agent_id}", b"\xff not json")
    with pytest.raises(DecodeError, match="pin"):
        trust.pinned(BOB.agent_id)
    backing.put(TRUST_NAMESPACE, f"pin/{BOB.agent_id}", b'{"v": 99}')
    with pytest.raises(DecodeError, match="format"):
        trust.check(BOB_CARD)
    trust.pin(CAROL_CARD.identity)
    moved = backing.get(TRUST_NAMESPACE, f"pin/{CAROL_CARD.agent_id}")
    assert moved is not None
    backing.put(TRUST_NAMESPACE, f"pin/{BOB.agent_id}", moved)  # pin stored under another id
    with pytest.raises(DecodeError, match="another agent id"):
        trust.pinned(BOB.agent_id)


def test_repr_shows_mode_only() -> None:
    assert repr(store_for(TrustMode.TOFU)) == "TrustStore(mode=TOFU)"


@pytest.mark.parametrize("mode", list(TrustMode))
def test_refusal_leaves_the_store_unchanged(mode: TrustMode) -> None:
    backing = TransactionalFakeStore()
    trust = store_for(mode, backing)
    trust.pin(BOB.public)
    trust.deny(CAROL_CARD.agent_id)
    before = dict(backing.data)
    for card in (BOB_ROTATED_CARD, CAROL_CARD):
        with pytest.raises(TrustError):
            trust.check(card)
    assert backing.data == before


@pytest.mark.parametrize("backing", [FakeStore, TransactionalFakeStore])
def test_listing_shows_pins_allow_and_deny(backing: type[FakeStore]) -> None:
    trust = store_for(TrustMode.ALLOWLIST, backing())
    assert trust.listing() == TrustListing(
        mode=TrustMode.ALLOWLIST, pinned=(), allowed=(), denied=()
    )
    carol = CAROL_CARD.identity.agent_id
    trust.pin(BOB.public)
    trust.allow(carol)
    trust.allow(BOB.agent_id)
    trust.deny(carol)
    listing = trust.listing()
    assert listing.mode is TrustMode.ALLOWLIST
    assert listing.pinned == (BOB.public,)
    assert listing.allowed == tuple(sorted([carol, BOB.agent_id]))
    assert listing.denied == (carol,)
    trust.forget(carol)
    assert trust.listing().allowed == (BOB.agent_id,) and trust.listing().denied == ()
