"""The CLI's shared pieces: global options anywhere, the exit code table, the spinner."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from sealwire.cli import hoist_globals
from sealwire.cli.output import ExitCode, exit_code_for
from sealwire.errors import ConfigurationError, SealwireError, TrustError
from sealwire.relay import RelayUnavailable
from sealwire.transport import TransportError

SPIN = (
    "from sealwire.cli.output import waiting\n"
    "with waiting('catching up with the relay'):\n"
    "    pass\n"
)


def test_global_options_move_before_the_command() -> None:
    argv = ["send", "card.json", "hi", "--home", "h", "--json", "--log-level=debug", "-q"]
    assert hoist_globals(argv) == [
        "--home", "h", "--json", "--log-level=debug", "send", "card.json", "hi", "-q",
    ]  # fmt: skip
    assert hoist_globals(["send", "c", "--", "--json"]) == ["send", "c", "--", "--json"]
    assert hoist_globals(["card", "--home"]) == ["card", "--home"]  # click says what is missing


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (TransportError("cannot connect"), ExitCode.UNREACHABLE),
        (RelayUnavailable("relay down"), ExitCode.UNREACHABLE),
        (ConfigurationError("bad"), ExitCode.CONFIGURATION),
        (TimeoutError("late"), ExitCode.TIMED_OUT),
        (TrustError("denied"), ExitCode.FAILED),
        (SealwireError("other"), ExitCode.FAILED),
    ],
)
def test_each_kind_of_error_has_its_exit_code(error: BaseException, code: ExitCode) -> None:
    assert exit_code_for(error) is code


def test_the_spinner_shows_on_a_terminal_only() -> None:
    piped = subprocess.run([sys.executable, "-c", SPIN], capture_output=True, timeout=60)
    assert piped.returncode == 0 and piped.stderr == b""
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-c", SPIN], stderr=follower,
                              stdout=subprocess.DEVNULL, timeout=60)  # fmt: skip
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the other side is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert done.returncode == 0
    assert b"catching up with the relay" in seen and b"0:00:00" in seen  # with the elapsed time
