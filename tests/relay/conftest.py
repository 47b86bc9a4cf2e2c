"""Every relay test runs against both backends (the fixtures: tests/helpers/relay_fixtures.py)."""

from relay_fixtures import *  # noqa: F403
