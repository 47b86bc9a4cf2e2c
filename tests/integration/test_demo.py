"""The README's demo: two local agents exchange a task over each transport."""

from __future__ import annotations

import pytest

from sealwire.demo import run_demo
from sealwire.errors import ConfigurationError
from sealwire.plugins import load_registry


@pytest.mark.parametrize("transport", ["tcp", "ws", "udp"])
async def test_demo_completes(transport: str, capsys) -> None:
    assert await run_demo(load_registry(), transport=transport) == 0
    out = capsys.readouterr().out
    assert "binding: noise" in out
    assert "artifact word-count: words: 10" in out
    assert out.rstrip().endswith("final state: COMPLETED, 1 artifact(s)")


async def test_demo_without_a_session_binding_says_what_to_install() -> None:
    with pytest.raises(ConfigurationError, match="install sealwire-noise"):
        await run_demo(load_registry(block=["noise"]), transport="tcp")
