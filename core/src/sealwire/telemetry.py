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
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["ENABLED", "count", "span"]


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


def span(name: str, attributes: Mapping[str, str | int] | None = None) -> Any:
    """A context manager timing ``name`` as a span (do-nothing without the API).

    An exception leaving the block is recorded on the span and marks it failed
    (the API's default), by its type and message, which never hold secrets.
    """
    if not ENABLED:
        return _NO_SPAN
    return _started(name, attributes)


@contextlib.contextmanager
def _started(name: str, attributes: Mapping[str, str | int] | None) -> Iterator[Any]:
    tracer = _load()[0].get_tracer(INSTRUMENTATION)
    with tracer.start_as_current_span(name, attributes=dict(attributes or {})) as current:
        yield current


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
