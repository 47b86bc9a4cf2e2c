"""Supervision of the relay's background tasks (federation forwarders, ...).

A background task that dies must not take a part of the relay down silently:
each one runs under :class:`Supervisor`, which logs every failure, restarts
the task after a backoff (doubling from :data:`RESTART_FIRST_SECONDS` to
:data:`RESTART_MAX_SECONDS`), and exposes each task's state, which
``GET /v1/health`` and ``GET /metrics`` report.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import attrs

from sealwire.errors import ConfigurationError
from sealwire_relay._metrics import Metrics

__all__ = ["Supervisor", "TaskState"]

log = logging.getLogger("sealwire.relay.supervisor")

# Restart delays after a failure: the first is short (a transient error, such as
# a backend reconnecting, heals in well under a second), then doubling up to the
# last so that a task failing for good costs a log line every few seconds, not a
# busy loop.
RESTART_FIRST_SECONDS = 0.1
RESTART_MAX_SECONDS = 5.0
# A task that ran this long before failing is considered to have been healthy:
# its next restart starts from the first delay again.
HEALTHY_AFTER_SECONDS = 30.0


@attrs.frozen
class TaskState:
    """What the supervisor knows of one task: ``running``, ``degraded`` (running but
    unable to work, see :meth:`Supervisor.report`) or ``restarting``."""

    state: str
    restarts: int
    last_error: str | None


class Supervisor:
    """Runs named coroutines for ever: each failure is logged, counted and restarted."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._states: dict[str, TaskState] = {}

    def start(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Run ``factory()`` as the task ``name``, again after each failure or return."""
        if name in self._tasks:
            raise ConfigurationError(f"relay task {name} is started twice")
        self._set(name, TaskState("running", 0, None))
        self._tasks[name] = asyncio.create_task(self._supervise(name, factory), name=name)

    def report(self, name: str, error: str | None) -> None:
        """A running task says it cannot do its work for now (``error``: what, never a
        secret) or that it can again (None): ``degraded`` counts as failing."""
        current = self._states.get(name)
        if current is None or current.state == "restarting":
            return
        if error is not None and current.state != "degraded":
            log.warning("relay task %s degraded: %s", name, error)
            self._set(name, TaskState("degraded", current.restarts, error))
        elif error is None and current.state == "degraded":
            log.warning("relay task %s recovered", name)
            self._set(name, TaskState("running", current.restarts, current.last_error))

    def states(self) -> Mapping[str, TaskState]:
        return dict(self._states)

    def failing(self) -> list[str]:
        """The names of the tasks not running now."""
        return sorted(n for n, s in self._states.items() if s.state != "running")

    async def stop(self) -> None:
        """Cancel every task and wait for them."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def _set(self, name: str, state: TaskState) -> None:
        self._states[name] = state
        self._metrics.set("sealwire_relay_task_up", 1 if state.state == "running" else 0, task=name)

    async def _supervise(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        delay = RESTART_FIRST_SECONDS
        restarts = 0
        while True:
            started = loop.time()
            failure: BaseException | None = None
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: logged here, then restarted
                failure = exc
            if loop.time() - started >= HEALTHY_AFTER_SECONDS:
                delay = RESTART_FIRST_SECONDS
            error = "returned" if failure is None else type(failure).__name__
            log.error(
                "relay task %s failed (%s); restarting in %.1f s",
                name,
                error,
                delay,
                exc_info=failure,
            )
            restarts += 1
            self._metrics.inc("sealwire_relay_task_restarts_total", task=name)
            self._set(name, TaskState("restarting", restarts, error))
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_MAX_SECONDS)
            log.warning("relay task %s restarted (restart %d)", name, restarts)
            self._set(name, TaskState("running", restarts, error))
