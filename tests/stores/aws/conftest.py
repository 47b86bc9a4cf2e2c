"""A moto Secrets Manager server (real HTTP on loopback, its own process) for the store tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from fault_proxy import FaultProxy
from ports import free_port

SERVER_START = 60.0
"""Seconds moto may take to import and listen on a loaded 2-core machine."""

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **CREDENTIALS},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(10)
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)  # polling a starting process: no event to wait for
    try:
        yield url
    finally:
        proc.kill()
        proc.wait(10)


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
