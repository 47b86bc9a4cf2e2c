"""Sealwire: end-to-end security for agent-to-agent (A2A) communication."""

from __future__ import annotations

from importlib.metadata import version as _version

import pluggy

__all__ = ["__version__", "hookimpl"]

__version__ = _version("sealwire")

hookimpl = pluggy.HookimplMarker("sealwire")
"""Marker for plugin hook implementations (``@sealwire.hookimpl``)."""
