"""The contract suites run with plain pytest in another project, in pytest-asyncio's
strict and auto modes alike (the ``pytest11`` plugins of sealwire and sealwire-relay)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HELPERS = Path(__file__).resolve().parents[1] / "helpers"

PROJECT_TEST = '''
from sealwire.testing.contract import SessionBindingContract
from sealwire.testing.mailbox_contract import MailboxBindingContract
from sealwire_signal import SignalBinding
from testonly_binding import PlaintextTestBinding


class TestPlaintextContract(SessionBindingContract):
    binding_class = PlaintextTestBinding


class TestSignalContract(MailboxBindingContract):
    binding_class = SignalBinding


class TestBrokenContract(SessionBindingContract):
    """A binding that names the wrong peer: the suite must fail it, and say why."""

    class binding_class(PlaintextTestBinding):
        async def initiate(self, stream, peer, negotiation):
            channel = await super().initiate(stream, peer, negotiation)
            channel._peer = type(channel.peer)(
                agent_id="someone-else", identity=channel.peer.identity
            )
            return channel
'''


def _pytest(project: Path, mode: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(HELPERS)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
         "-o", f"asyncio_mode={mode}", "-o", "asyncio_default_fixture_loop_scope=function",
         str(project)],
        capture_output=True, text=True, cwd=project, env=env, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_the_suites_run_in_another_project(tmp_path: Path, mode: str) -> None:
    (tmp_path / "test_my_plugin.py").write_text(PROJECT_TEST)
    result = _pytest(tmp_path, mode)
    summary = result.stdout.strip().splitlines()[-1]
    assert "1 failed" in summary and "passed" in summary and "error" not in summary, result.stdout
    assert "TestBrokenContract::test_each_side_learns_the_verified_peer" in result.stdout
    assert "assert 'someone-else' ==" in result.stdout  # assertions rewritten: values shown
