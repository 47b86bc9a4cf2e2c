"""Integration tests that run a relay use the relay tests' fixtures (both backends)."""

from relay_fixtures import *  # noqa: F403
