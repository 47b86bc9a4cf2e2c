"""The Secret Manager REST fixture (see secret_manager_fixture.py) for the GCP store tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_proxy import FaultProxy

sys_path_entry = str(Path(__file__).parent)


@pytest.fixture(scope="session")
def gcp_url() -> Iterator[str]:
    import sys

    sys.path.insert(0, sys_path_entry)
    try:
        from secret_manager_fixture import SecretManagerFixture
    finally:
        sys.path.remove(sys_path_entry)
    fixture = SecretManagerFixture()
    try:
        yield fixture.url
    finally:
        fixture.close()


class GcpFaults(FaultProxy):
    """The fault proxy, answering in Google's JSON error format."""

    def fail_gcp(self, code: int, status: str, times: int = 1) -> None:
        body = {"error": {"code": code, "message": "injected", "status": status}}
        self.fail(code, json.dumps(body).encode(), times)


@pytest.fixture
def fault_proxy(gcp_url: str) -> Iterator[GcpFaults]:
    proxy = GcpFaults(gcp_url)
    try:
        yield proxy
    finally:
        proxy.close()
