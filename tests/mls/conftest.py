"""Shared helpers for the MLS engine tests (fixtures only: test files cannot import each other)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sealwire_mls.crypto import SUPPORTED_CIPHER_SUITES


class VectorTally:
    """Counts vector cases and reports ``<area>: passed/supported/total``."""

    def __init__(self, area: str) -> None:
        self.area = area
        self.total = 0
        self.supported = 0
        self.passed = 0
        self.failures: list[str] = []

    def run(
        self,
        cases: list[Any],
        check: Callable[[Any], None],
        name: Callable[[Any], str],
        supported: Callable[[Any], bool] | None = None,
    ) -> None:
        """Run ``check`` on each supported case, collecting failures by name."""
        for case in cases:
            self.total += 1
            if supported is not None and not supported(case):
                continue
            self.supported += 1
            try:
                check(case)
            except Exception as exc:  # collected and asserted on below
                self.failures.append(f"{name(case)}: {type(exc).__name__}: {exc}")
            else:
                self.passed += 1

    def assert_all_passed(self) -> None:
        """Print the counts and fail if any supported case failed (or none ran)."""
        print(f"{self.area}: {self.passed}/{self.supported}/{self.total}")
        assert self.supported > 0, f"{self.area}: no supported case"
        assert not self.failures, "\n".join(self.failures[:20])
        assert self.passed == self.supported


@pytest.fixture
def tally() -> Callable[[str], VectorTally]:
    """Factory of :class:`VectorTally` counters."""
    return VectorTally


@pytest.fixture
def suite_supported() -> Callable[[Any], bool]:
    """Whether a vector case's ``cipher_suite`` is implemented."""
    return lambda case: case["cipher_suite"] in SUPPORTED_CIPHER_SUITES
