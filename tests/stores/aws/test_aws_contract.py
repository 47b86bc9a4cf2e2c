"""sealwire-store-aws holds the public store contract, against moto in server mode."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sealwire.store import MAX_VALUE_SIZE, StateStore, StoreError, StoreKey
from sealwire.testing.store_contract import StateStoreContract
from sealwire_store_aws import open_aws_store

KEY = StoreKey.generate()


def options(moto_url: str, location: Path, **extra: str) -> dict[str, str]:
    prefix = "t/" + hashlib.sha256(str(location).encode()).hexdigest()[:16]
    return {"prefix": prefix, "region": "us-east-1", "endpoint_url": moto_url, **extra}


class TestAwsContract(StateStoreContract):
    model_examples = 15

    @pytest.fixture(autouse=True)
    def _server(self, moto_url: str) -> None:
        self.moto_url = moto_url

    def open_store(self, location: Path) -> StateStore:
        location.mkdir(exist_ok=True)
        # each handle its own cache file: two handles are two hosts
        n = len(list(location.glob("cache*.db")))
        opts = options(self.moto_url, location, cache=f"cache{n}.db")
        return open_aws_store(opts, KEY, location)

    def test_a_refused_value_costs_no_call(self, make_store) -> None:  # type: ignore[no-untyped-def]
        store = make_store()
        calls = store.counter.total
        with pytest.raises(StoreError):
            store.put("ns", "k", b"x" * (MAX_VALUE_SIZE + 1))
        assert store.counter.total == calls


class TestAwsBatchedContract(TestAwsContract):
    """The same contract with the write-ahead cache batching 3 commits. Two handles do
    not see each other's unflushed commits, so the sharing tests are skipped here;
    test_aws_store.py checks what a conflict found at a flush does."""

    model_examples = 8
    shared = False

    def open_store(self, location: Path) -> StateStore:
        location.mkdir(exist_ok=True)
        n = len(list(location.glob("cache*.db")))
        opts = options(self.moto_url, location, cache=f"cache{n}.db", max_unflushed="3")
        return open_aws_store(opts, KEY, location)
