"""Running ``sealwire`` as separate processes, for the command-line tests."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

__all__ = ["Cli"]

TIMEOUT = 60.0


class Cli:
    """``await cli(*args)`` runs one command in ``cwd`` and returns its output (it must
    succeed); ``await cli.serve(home)`` starts ``serve`` with ``handler`` and waits
    until it serves. Store keys come from each home's key file, never the environment."""

    def __init__(self, cwd: Path, handler: str = "handler:handle") -> None:
        self.cwd = cwd
        self.handler = handler
        self.env = {k: v for k, v in os.environ.items() if k != "SEALWIRE_STORE_KEY"}

    async def __call__(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sealwire.cli", *args, cwd=self.cwd, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        assert proc.returncode == 0, err.decode()
        return out.decode()

    async def serve(self, home: str) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sealwire.cli", "--home", home, "serve", "--handler",
            self.handler, cwd=self.cwd, env=self.env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
        assert b"is serving" in line, line
        return proc
