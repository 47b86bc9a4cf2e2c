"""curl as an independent HTTPS client for the interoperability tests."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

__all__ = ["CURL_TIMEOUT", "curl"]

CURL_TIMEOUT = 20.0
"""Seconds curl may take (``--max-time``); the test waits a little longer for it."""


async def curl(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    """Run ``curl --silent --show-error *args``: its exit code and its output (else stderr)."""
    binary = shutil.which("curl")
    assert binary is not None, "curl is not installed (scripts/install-servers.sh)"
    process = await asyncio.create_subprocess_exec(
        binary, "--silent", "--show-error", "--max-time", str(int(CURL_TIMEOUT)), *args,
        cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), CURL_TIMEOUT + 5)
    assert process.returncode is not None
    return process.returncode, (out or err).decode()
