"""moto's AWS server (Secrets Manager and the rest), as its own process on loopback."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

from ports import free_port

__all__ = ["CREDENTIALS", "SERVER_START", "moto_server"]

SERVER_START = 60.0
"""Seconds moto may take to import and listen on a loaded 2-core machine."""

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""What boto3 signs with against moto (which checks no signature)."""


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Start ``python -m moto.server``; yield its URL; kill it."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **CREDENTIALS},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)  # polling a starting process: no event to wait for
        yield url
    finally:
        proc.kill()
        proc.wait(10)
