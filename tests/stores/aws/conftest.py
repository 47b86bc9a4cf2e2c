"""A moto Secrets Manager server (real HTTP on loopback, its own process) for the store tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
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


class FaultProxy:
    """A loopback HTTP proxy in front of moto that answers chosen calls with an AWS error.

    ``fail(code, times, status)`` makes the next ``times`` requests get ``code``
    (``times=-1``: every request until ``clear()``). Every request is counted.
    """

    def __init__(self, upstream: str) -> None:
        import http.server
        import threading
        import urllib.request

        proxy = self
        self.upstream = upstream
        self.requests = 0
        self._faults: list[tuple[str, int]] = []
        self._forever: tuple[str, int] | None = None
        self._lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                with proxy._lock:
                    proxy.requests += 1
                    fault = proxy._forever or (proxy._faults.pop(0) if proxy._faults else None)
                if fault is not None:
                    code, status = fault
                    payload = json.dumps({"__type": code, "message": "injected"}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/x-amz-json-1.1")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                request = urllib.request.Request(
                    proxy.upstream + self.path,
                    data=body,
                    headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
                    method="POST",
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        status, data, headers = answer.status, answer.read(), answer.headers
                except urllib.error.HTTPError as err:
                    status, data, headers = err.code, err.read(), err.headers
                    err.close()
                self.send_response(status)
                for name in ("Content-Type", "x-amzn-RequestId"):
                    if headers.get(name):
                        self.send_header(name, headers[name])
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def fail(self, code: str, times: int = 1, status: int = 400) -> None:
        with self._lock:
            if times < 0:
                self._forever = (code, status)
            else:
                self._faults.extend([(code, status)] * times)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._forever = None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@pytest.fixture
def fault_proxy(moto_url: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(moto_url)
    try:
        yield proxy
    finally:
        proxy.close()
