"""sealwire-store-vault holds the public store contract, against a real OpenBao server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sealwire.store import MAX_VALUE_SIZE, StateStore, StoreError, StoreKey
from sealwire.testing.store_contract import StateStoreContract
from sealwire_store_vault import open_vault_store

KEY = StoreKey.generate()


def options(url: str, location: Path, **extra: str) -> dict[str, str]:
    prefix = "t/" + hashlib.sha256(str(location).encode()).hexdigest()[:16]
    return {"url": url, "prefix": prefix, **extra}


class TestVaultContract(StateStoreContract):
    model_examples = 15

    @pytest.fixture(autouse=True)
    def _server(self, vault_url: str) -> None:
        self.vault_url = vault_url

    def open_store(self, location: Path) -> StateStore:
        location.mkdir(exist_ok=True)
        n = len(list(location.glob("cache*.db")))  # each handle its own cache: another host
        return open_vault_store(
            options(self.vault_url, location, cache=f"cache{n}.db"), KEY, location
        )

    def test_a_refused_value_costs_no_call(self, make_store) -> None:  # type: ignore[no-untyped-def]
        store = make_store()
        calls = store.counter.total
        with pytest.raises(StoreError):
            store.put("ns", "k", b"x" * (MAX_VALUE_SIZE + 1))
        assert store.counter.total == calls


class TestVaultBatchedContract(TestVaultContract):
    """With the write-ahead cache batching 3 commits (unflushed commits are not shared)."""

    model_examples = 8
    shared = False

    def open_store(self, location: Path) -> StateStore:
        location.mkdir(exist_ok=True)
        n = len(list(location.glob("cache*.db")))
        opts = options(self.vault_url, location, cache=f"cache{n}.db", max_unflushed="3")
        return open_vault_store(opts, KEY, location)
