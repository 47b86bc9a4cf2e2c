"""The examples run as their READMEs say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def test_sidecar_example_runs(capsys) -> None:
    path = ROOT / "examples" / "sidecar" / "two_agents.py"
    spec = importlib.util.spec_from_file_location("two_agents", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert await module.main() == 0
    out = capsys.readouterr().out
    assert "over Noise: hello 'good morning'" in out
    assert "over Signal: hello 'are you there?'" in out
