"""The built-in relay backends against the public backend contract suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sealwire_relay import RelayBackend
from sealwire_relay._nats_backend import NatsBackend
from sealwire_relay._sqlite_backend import SqliteBackend
from sealwire_relay.backend_contract import RelayBackendContract


class TestSqliteBackendContract(RelayBackendContract):
    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.folder = tmp_path

    def open_backend(self, location: str) -> RelayBackend:
        return SqliteBackend(self.folder / f"{location}.sqlite3")


class TestNatsBackendContract(RelayBackendContract):
    @pytest.fixture(autouse=True)
    def _server(self, nats_url: str, tmp_path: Path) -> None:
        self.url = nats_url
        self.run = abs(hash(tmp_path)) % 10**8  # one set of streams per test

    def open_backend(self, location: str) -> RelayBackend:
        return NatsBackend([self.url], prefix=f"C{os.getpid()}R{self.run}{location}")
