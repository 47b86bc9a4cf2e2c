"""Loopback ports for tests that start servers (core's :func:`sealwire.testing.ports.free_port`)."""

from __future__ import annotations

from sealwire.testing.ports import free_port

__all__ = ["free_port"]
