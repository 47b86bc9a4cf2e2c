"""The health of an agent's components: each unhealthy one with its reason, and a
log line when one turns unhealthy or healthy again."""

from __future__ import annotations

import logging

__all__ = ["HealthBoard"]

log = logging.getLogger(__name__)


class HealthBoard:
    """The components unhealthy now, by name, each with its problem."""

    def __init__(self) -> None:
        self._problems: dict[str, str] = {}

    def problems(self) -> dict[str, str]:
        """A copy of the unhealthy components and their problems (empty: all well)."""
        return dict(self._problems)

    def report(self, component: str, problem: str | None) -> None:
        """Mark ``component`` unhealthy for ``problem``, or healthy again with ``None``."""
        if problem is None:
            if self._problems.pop(component, None) is not None:
                log.info("%s is healthy again", component)
        elif self._problems.get(component) != problem:
            self._problems[component] = problem
            log.warning("%s is unhealthy: %s", component, problem)
