"""Pytest plugin of ``sealwire`` (entry point ``pytest11``, with ``sealwire[testing]``).

It makes the contract suites of :mod:`sealwire.testing` report like a project's
own tests (pytest rewrites their ``assert`` statements, so a failure shows the
values compared). The suites mark their tests for pytest-asyncio themselves, so
they run in ``strict`` and ``auto`` mode alike; a suite that needs a relay (the
mailbox suite) gets it from the ``sealwire-relay`` distribution's plugin.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite(
    "sealwire.testing.contract",
    "sealwire.testing.group_contract",
    "sealwire.testing.mailbox_contract",
    "sealwire.testing.managed_store_contract",
    "sealwire.testing.store_contract",
    "sealwire.testing.transport_contract",
)
