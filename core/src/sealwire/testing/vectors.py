"""Locate and load the published conformance vectors.

The repository carries them under ``tests/vectors`` (its README names each
source, revision and licence). They are read from the folder named by
``SEALWIRE_VECTORS`` or, by default, the ``tests/vectors`` folder of the
checkout this package or the working directory belongs to. A missing file is
an error, never a silent skip.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["VECTORS_ENV", "load_json", "vectors_dir", "vectors_path"]

VECTORS_ENV = "SEALWIRE_VECTORS"
_IN_CHECKOUT = Path("tests") / "vectors"


def vectors_dir() -> Path:
    """The vectors folder: ``$SEALWIRE_VECTORS`` or the checkout's ``tests/vectors``."""
    configured = os.environ.get(VECTORS_ENV)
    if configured:
        return Path(configured)
    cwd = Path.cwd().resolve()
    for start in (Path(__file__).resolve(), cwd):
        for parent in start.parents if start.is_file() else (start, *start.parents):
            candidate = parent / _IN_CHECKOUT
            if (parent / "pyproject.toml").is_file() and candidate.is_dir():
                return candidate
    return cwd / _IN_CHECKOUT


def vectors_path(relative: str) -> Path:
    """Path of one vector file; raises ``FileNotFoundError`` when it is missing."""
    path = vectors_dir() / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"test vector file {path} is missing; set {VECTORS_ENV} to the vectors folder"
        )
    return path


def load_json(relative: str) -> Any:
    """Parse one JSON vector file (the Noise ``.txt`` files are JSON too)."""
    return json.loads(vectors_path(relative).read_text(encoding="utf-8"))
