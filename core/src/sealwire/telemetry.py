"""OpenTelemetry traces and metrics, when ``opentelemetry-api`` is installed
(``pip install 'sealwire[otel]'``); nothing at all otherwise.

This module is the only place Sealwire imports OpenTelemetry, at the first span
or count (importing Sealwire does not import it). Without the API,
:func:`span` hands back one shared do-nothing context manager and :func:`count`
returns at once: no object is made per call. With the API, spans and counters go
to whatever SDK the application installs (an exporter of its choice); with the
API but no SDK, the API's own no-op implementation takes them.

What is measured:

======================================  ===============================================
span ``sealwire.handshake``             an outgoing session handshake (binding, peer)
span ``sealwire.seal``                  one A2A frame sealed and sent on a session
span ``sealwire.relay.call``            one HTTP call to a relay (route, status)
counter ``sealwire.messages``           frames sent and received (direction)
counter ``sealwire.bytes``              their bytes, before sealing (direction)
counter ``sealwire.refusals``           refusals by reason: a relay's error code, a
                                        handshake refused (its error's class)
======================================  ===============================================

Attributes are names Sealwire chooses (binding names, routes, error codes,
directions) and agent ids; never keys, tokens or content.
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["ENABLED", "count", "refresh", "span"]


def _installed() -> bool:
    """Whether the API is installed, without importing it (that waits for the first span)."""
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except (ImportError, ValueError):
        return False


ENABLED = _installed()
"""Whether the OpenTelemetry API is installed (spans and counters are recorded)."""

_api: tuple[Any, Any] | None = None


def _load() -> tuple[Any, Any]:
    """The API's ``trace`` and ``metrics`` modules, imported at the first use: importing
    Sealwire does not pay for OpenTelemetry's import."""
    global _api
    if _api is None:
        from opentelemetry import metrics, trace

        _api = (trace, metrics)
    return _api


INSTRUMENTATION = "sealwire"
"""The instrumentation scope's name, as exporters show it."""

COUNTERS: Mapping[str, tuple[str, str]] = {
    "sealwire.messages": ("{message}", "A2A frames sent and received on sessions."),
    "sealwire.bytes": ("By", "Bytes of the A2A frames sent and received on sessions."),
    "sealwire.refusals": ("{refusal}", "Refusals by reason: relay error codes, handshakes."),
}

_NO_SPAN = contextlib.nullcontext()
_counters: dict[str, Any] = {}


PROVIDER_RECHECK_SECONDS = 1.0
"""While no SDK's tracer provider is installed, whether one has been is asked again
at most this often: the API's own no-op span costs about 14 µs and looking the
provider up about 3 µs, too much to pay on every frame of an application that
installs no SDK (a2a-sdk brings the API along). Spans start within this long of
an SDK being installed, or at once after :func:`refresh`."""

_tracer: Any = None
_recheck_at = 0.0


def refresh() -> None:
    """Look for an installed tracer provider at the next span (after installing an SDK
    while agents already run; otherwise spans start within a second anyway)."""
    global _recheck_at
    _recheck_at = 0.0


def _current_tracer() -> Any:
    """The installed SDK's tracer, or None while only the API's no-op is there."""
    global _tracer, _recheck_at
    if _tracer is not None:
        return _tracer
    now = time.monotonic()
    if now < _recheck_at:
        return None
    _recheck_at = now + PROVIDER_RECHECK_SECONDS
    trace = _load()[0]
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    # A provider, once installed, is never replaced (the API refuses a second one).
    _tracer = provider.get_tracer(INSTRUMENTATION)
    return _tracer


def span(name: str, attributes: Mapping[str, str | int] | None = None) -> Any:
    """A context manager timing ``name`` as a span (do-nothing without the API or
    without an SDK installed).

    An exception leaving the block is recorded on the span and marks it failed
    (the API's default), by its type and message, which never hold secrets.
    """
    if not ENABLED:
        return _NO_SPAN
    tracer = _current_tracer()
    if tracer is None:
        return _NO_SPAN
    return tracer.start_as_current_span(name, attributes=dict(attributes or {}))


def count(name: str, amount: int = 1, attributes: Mapping[str, str] | None = None) -> None:
    """Add ``amount`` to the counter ``name`` (one of :data:`COUNTERS`)."""
    if not ENABLED:
        return
    counter = _counters.get(name)
    if counter is None:
        unit, description = COUNTERS[name]
        meter = _load()[1].get_meter(INSTRUMENTATION)
        counter = _counters[name] = meter.create_counter(name, unit=unit, description=description)
    counter.add(amount, attributes=dict(attributes or {}))
