"""Integration tests that run a relay use the relay tests' fixtures (both backends); the
push notification tests a webhook ``receiver`` and a ``serve``d agent (push_webhook)."""

from push_webhook import receiver, serve  # noqa: F401
from relay_fixtures import *  # noqa: F403
