"""Configurable limits of the relay and the per-agent rate limiter.

Every limit refuses a request with :class:`LimitExceeded` naming it; none ever
drops something already accepted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import attrs

from sealwire.errors import ConfigurationError
from sealwire.relay.errors import LimitExceeded

__all__ = ["RateLimiter", "RelayLimits"]

# The rate limiter forgets the least recently seen agent beyond this many: a
# forgotten agent starts again with a full bucket, which only ever errs towards
# letting a request through, while memory stays bounded under many identities.
MAX_TRACKED_PRINCIPALS = 100_000
DEDUPE_RETENTION_SECONDS = 7 * 24 * 3600
"""How long an acknowledged message id is remembered, so a late retry of it is
recognised as a duplicate: far above any sender's retry horizon, while the
record of acknowledged ids stays bounded."""


@attrs.frozen(kw_only=True)
class RelayLimits:
    """The relay's limits; every field can be set in the ``[relay.limits]`` table."""

    max_message_bytes: int = 256 * 1024
    """Largest sealed envelope, group message, prekey bundle or key package."""
    max_mailbox_depth: int = 10_000
    """Most unacknowledged messages in one mailbox (and in one federation outbox)."""
    rate_per_second: float = 200.0
    """Sustained requests per second per agent (token bucket refill)."""
    rate_burst: int = 400
    """Requests an agent may make at once (token bucket size)."""
    max_one_time_per_pool: int = 2_000
    """Most one-time prekeys stored per (agent, binding, pool)."""
    max_pools: int = 8
    """Most one-time prekey pools per (agent, binding)."""
    max_key_packages: int = 2_000
    """Most unused KeyPackages stored per agent."""
    max_group_log: int = 1_000_000
    """Most entries in one group log."""
    max_group_members: int = 10_000
    """Most members in one group's member list."""
    max_card_bytes: int = 64 * 1024
    """Largest agent card in the card directory (its RFC 8785 canonical JSON)."""
    max_cards: int = 1_000_000
    """Most agent cards the card directory holds (one per agent)."""
    max_fetch: int = 500
    """Most messages or log entries one fetch returns."""
    max_connections: int = 10_000
    """Most WebSocket connections open at once."""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RelayLimits:
        """Limits from a TOML table; unknown names and non-positive values are errors."""
        fields = {f.name: f for f in attrs.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigurationError(f"unknown relay limits: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            if not ok or (fields[name].type == "int" and not isinstance(value, int)):
                raise ConfigurationError(f"relay limit {name} must be a positive number")
            values[name] = value
        return cls(**values)

    def check_size(self, data: bytes, what: str) -> None:
        if len(data) > self.max_message_bytes:
            raise LimitExceeded(
                "message_size", f"{what} of {len(data)} bytes exceeds {self.max_message_bytes}"
            )


class RateLimiter:
    """A token bucket per principal; the clock is passed in (UNIX or monotonic seconds)."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, principal: str, now: float) -> None:
        """Take one token for ``principal`` or raise LimitExceeded("rate")."""
        tokens, last = self._buckets.pop(principal, (self._burst, now))
        tokens = min(self._burst, tokens + max(0.0, now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[principal] = (tokens, now)
            wait = (1.0 - tokens) / self._rate
            raise LimitExceeded("rate", "too many requests", retry_after=round(wait, 3))
        self._buckets[principal] = (tokens - 1.0, now)
        while len(self._buckets) > MAX_TRACKED_PRINCIPALS:
            self._buckets.popitem(last=False)
