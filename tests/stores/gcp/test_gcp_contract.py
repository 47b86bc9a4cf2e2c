"""sealwire-store-gcp holds the public store contract, against the Secret Manager REST
fixture (the documented API; see secret_manager_fixture.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sealwire.store import MAX_VALUE_SIZE, StateStore, StoreError, StoreKey
from sealwire.testing.store_contract import StateStoreContract
from sealwire_store_gcp import open_gcp_store

KEY = StoreKey.generate()


def options(url: str, location: Path, **extra: str) -> dict[str, str]:
    prefix = "t-" + hashlib.sha256(str(location).encode()).hexdigest()[:16]
    return {"project": "test", "prefix": prefix, "endpoint": url, "anonymous": "true", **extra}


class TestGcpContract(StateStoreContract):
    model_examples = 15

    @pytest.fixture(autouse=True)
    def _server(self, gcp_url: str) -> None:
        self.gcp_url = gcp_url

    def open_store(self, location: Path) -> StateStore:
        location.mkdir(exist_ok=True)
        n = len(list(location.glob("cache*.db")))  # each handle its own cache: another host
        return open_gcp_store(options(self.gcp_url, location, cache=f"cache{n}.db"), KEY, location)

    def test_a_refused_value_costs_no_call(self, make_store) -> None:  # type: ignore[no-untyped-def]
        store = make_store()
        calls = store.counter.total
        with pytest.raises(StoreError):
            store.put("ns", "k", b"x" * (MAX_VALUE_SIZE + 1))
        assert store.counter.total == calls


class TestGcpBatchedContract(TestGcpContract):
    """With the write-ahead cache batching 3 commits (unflushed commits are not shared)."""

    model_examples = 8
    shared = False

    def open_store(self, location: Path) -> StateStore:
        location.mkdir(exist_ok=True)
        n = len(list(location.glob("cache*.db")))
        opts = options(self.gcp_url, location, cache=f"cache{n}.db", max_unflushed="3")
        return open_gcp_store(opts, KEY, location)
