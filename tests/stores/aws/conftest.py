"""A moto Secrets Manager server (real HTTP on loopback, its own process) for the store
tests (tests/helpers/moto_server.py), and a fault proxy answering in AWS's format."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fault_proxy import FaultProxy
from moto_server import CREDENTIALS, moto_server


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


class AwsFaults(FaultProxy):
    """The fault proxy, answering in AWS's JSON error format."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, content_type="application/x-amz-json-1.1")

    def fail_aws(self, code: str, times: int = 1, status: int = 400) -> None:
        body = json.dumps({"__type": code, "message": "injected"}).encode()
        self.fail(status, body, times)


@pytest.fixture
def fault_proxy(moto_url: str) -> Iterator[AwsFaults]:
    proxy = AwsFaults(moto_url)
    try:
        yield proxy
    finally:
        proxy.close()
