"""The relay's counters and gauges, rendered in the Prometheus text format.

``GET /metrics`` serves :meth:`Metrics.render` (exposition format 0.0.4).
Label values are names the relay chooses (routes it serves, limit names,
error codes, task names, peer relay ids), never anything a client sends, so
the number of series stays bounded whatever the traffic.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["COUNTERS", "DURATION_BUCKETS", "GAUGES", "HISTOGRAMS", "Metrics"]

Labels = tuple[tuple[str, str], ...]

COUNTERS: Mapping[str, str] = {
    "sealwire_relay_requests_total": "HTTP requests by route and result (ok or an error code).",
    "sealwire_relay_messages_enqueued_total": "Messages accepted into a mailbox or an outbox.",
    "sealwire_relay_messages_acked_total": "Messages acknowledged (removed) from mailboxes.",
    "sealwire_relay_message_bytes_total": "Envelope bytes of the messages accepted.",
    "sealwire_relay_request_bytes_total": "Bytes of HTTP request bodies read.",
    "sealwire_relay_response_bytes_total": "Bytes of HTTP response bodies sent.",
    "sealwire_relay_refusals_total": (
        "Requests refused, by reason: a limit's name (rate, message_size, connections, ...), "
        "unauthenticated or forbidden."
    ),
    "sealwire_relay_task_restarts_total": "Restarts of a supervised background task.",
    "sealwire_relay_prekey_pool_low_total": (
        "Fetches that left a one-time prekey pool or a KeyPackage stock under the low-water mark."
    ),
}
GAUGES: Mapping[str, str] = {
    "sealwire_relay_websockets_open": "WebSocket connections open now.",
    "sealwire_relay_outbox_depth": "Messages waiting in the federation outbox of a peer relay.",
    "sealwire_relay_task_up": "1 while a supervised task runs, 0 while it restarts or is degraded.",
}
HISTOGRAMS: Mapping[str, str] = {
    "sealwire_relay_request_duration_seconds": (
        "Time from a request's arrival to its answer being sent, by route."
    ),
}
DURATION_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip
"""Upper bounds (seconds) of the duration buckets: a relay answers from memory or
SQLite in about a millisecond and from JetStream in a few; the top buckets catch
requests stuck behind a backend that reconnects (its API timeout is 5 s)."""


class _Histogram:
    """Cumulative bucket counts, sum and count of one labelled series."""

    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * len(DURATION_BUCKETS)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(DURATION_BUCKETS):
            if value <= bound:
                self.buckets[i] += 1
        self.count += 1
        self.sum += value


class Metrics:
    """Counters incremented by the relay; gauges read when the metrics are rendered."""

    def __init__(self) -> None:
        self._counters: dict[str, dict[Labels, float]] = {name: {} for name in COUNTERS}
        self._gauges: dict[str, dict[Labels, float]] = {name: {} for name in GAUGES}
        self._histograms: dict[str, dict[Labels, _Histogram]] = {n: {} for n in HISTOGRAMS}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        series = self._counters[name]
        key = tuple(sorted(labels.items()))
        series[key] = series.get(key, 0.0) + amount

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Add one observation (a duration in seconds) to a histogram series."""
        series = self._histograms[name]
        key = tuple(sorted(labels.items()))
        histogram = series.get(key)
        if histogram is None:
            histogram = series[key] = _Histogram()
        histogram.observe(value)

    def observed(self, name: str, **labels: str) -> int:
        """How many observations a histogram series holds (0 when none)."""
        histogram = self._histograms[name].get(tuple(sorted(labels.items())))
        return histogram.count if histogram else 0

    def set(self, name: str, value: float, **labels: str) -> None:
        self._gauges[name][tuple(sorted(labels.items()))] = value

    def value(self, name: str, **labels: str) -> float:
        """The current value of a counter or gauge series (0 when never set)."""
        key = tuple(sorted(labels.items()))
        table = self._counters.get(name) or self._gauges.get(name) or {}
        return table.get(key, 0.0)

    def render(self) -> str:
        lines: list[str] = []
        for kind, helps, tables in (
            ("counter", COUNTERS, self._counters),
            ("gauge", GAUGES, self._gauges),
        ):
            for name, help_text in helps.items():
                lines.append(f"# HELP {name} {help_text}")
                lines.append(f"# TYPE {name} {kind}")
                for labels, value in sorted(tables[name].items()):
                    lines.append(f"{name}{_labels(labels)} {_number(value)}")
        for name, help_text in HISTOGRAMS.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} histogram")
            for labels, histogram in sorted(self._histograms[name].items()):
                for bound, count in zip(DURATION_BUCKETS, histogram.buckets, strict=True):
                    le = (*labels, ("le", repr(bound)))
                    lines.append(f"{name}_bucket{_labels(le)} {count}")
                inf = (*labels, ("le", "+Inf"))
                lines.append(f"{name}_bucket{_labels(inf)} {histogram.count}")
                lines.append(f"{name}_sum{_labels(labels)} {_number(histogram.sum)}")
                lines.append(f"{name}_count{_labels(labels)} {histogram.count}")
        return "\n".join(lines) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)
