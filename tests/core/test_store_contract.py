"""The public StateStore contract suite (sealwire.testing.store_contract), run
against MemoryStore and SqliteStore (in memory and in a file)."""

from __future__ import annotations

from pathlib import Path

from sealwire.store import MemoryStore, SqliteStore, StateStore, StoreKey
from sealwire.testing.store_contract import StateStoreContract

KEY = StoreKey.generate()


class TestMemoryStoreContract(StateStoreContract):
    persistent = False
    shared = False

    def open_store(self, location: Path) -> StateStore:
        return MemoryStore()


class TestSqliteMemoryContract(StateStoreContract):
    persistent = False
    shared = False

    def open_store(self, location: Path) -> StateStore:
        return SqliteStore.open(":memory:", KEY)


class TestSqliteFileContract(StateStoreContract):
    def open_store(self, location: Path) -> StateStore:
        return SqliteStore.open(location.with_suffix(".db"), KEY)
