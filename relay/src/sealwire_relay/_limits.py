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
    rate_per_second: float = 1_000.0
    """Sustained requests per second per agent (token bucket refill).

    One HTTP request per message is the relay's own ceiling (about 1,300-1,600
    requests/s on a 2-core host): an agent busy sending and acknowledging at the
    relay's full speed stays under this, so the limit only stops an agent looping
    on requests, never one working normally. (It was 200/s: an agent answering a
    few hundred peers a second hit it.)"""
    rate_burst: int = 2_000
    """Requests an agent may make at once (token bucket size): a fan-out of one
    message to 1,000 peers plus the acknowledgements of 1,000 incoming ones."""
    login_rate_per_second: float = 50.0
    """Sustained ``/v1/auth/challenge`` + ``/v1/auth/session`` requests per second
    per client address, separate from the agents' own bucket.

    A fleet behind one NAT shares one address: after a relay restart, 1,000 agents
    each log in again (2 requests each, 2,000 in all). With ``login_burst`` 500,
    ``500 + 50 * 30 = 2,000``: all of them are back within 30 s, half the minute
    allowed, leaving room for retries. A single address still cannot flood: it gets
    at most 50 challenges a second, so at most 3,000 outstanding at once (a
    challenge lives 60 s) out of the relay's 50,000."""
    login_burst: int = 500
    """Login requests one client address may make at once (see ``login_rate_per_second``)."""
    key_fetch_rate_per_requester: float = 10.0
    """Sustained prekey-bundle and KeyPackage fetches per second by one agent.

    Each fetch consumes one-time keys of its target. A session is set up once
    per peer, so an agent fetches once per new peer, not per message; an agent
    sweeping the directory (taking everyone's keys so that sessions fall back to
    last-resort keys) is held to ten targets a second after its burst."""
    key_fetch_burst_per_requester: int = 1_000
    """Fetches one agent may make at once: a group creator adding 1,000 members
    fetches 1,000 KeyPackages in one go."""
    key_fetch_rate_per_target: float = 1.0
    """Sustained fetches per second of one agent's prekeys (and, in a bucket of their
    own, of its KeyPackages), whoever asks.

    This is what keeps a pool from being drained: many requesters together (an
    attacker's extra identities cost nothing) take at most
    ``key_fetch_burst_per_target`` keys at once and one a second after, while the
    owner replenishes on its next ``count_prekeys``. A popular agent contacted by
    more than one new peer a second has the excess told to retry (``retry_after``)."""
    key_fetch_burst_per_target: int = 32
    """Fetches of one agent's keys at once: a third of a 100-key pool (the Signal
    binding's batch), so a burst alone never empties it."""
    prekey_low_water: int = 10
    """A fetch that leaves a one-time prekey pool or an agent's KeyPackage stock with
    fewer than this many keys is logged as needing replenishment and counted in
    ``sealwire_relay_prekey_pool_low_total`` (the agent replenishes itself on its
    next ``count_prekeys``)."""
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

    def check(self, principal: str, now: float, *, limit: str = "rate") -> None:
        """Take one token for ``principal`` or raise LimitExceeded(``limit``) with retry_after."""
        wait = self.wait(principal, now)
        if wait > 0:
            raise LimitExceeded(limit, "too many requests", retry_after=max(round(wait, 3), 0.001))
        self.take(principal, now)

    def wait(self, principal: str, now: float) -> float:
        """Seconds until ``principal`` has a token (0 when it has one now); takes nothing."""
        tokens = self._refill(principal, now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self._rate

    def take(self, principal: str, now: float) -> None:
        """Take one token (after :meth:`wait` said there is one)."""
        self._buckets[principal] = (self._refill(principal, now) - 1.0, now)

    def _refill(self, principal: str, now: float) -> float:
        tokens, last = self._buckets.pop(principal, (self._burst, now))
        tokens = min(self._burst, tokens + max(0.0, now - last) * self._rate)
        self._buckets[principal] = (tokens, now)  # most recently seen last
        while len(self._buckets) > MAX_TRACKED_PRINCIPALS:
            self._buckets.popitem(last=False)
        return tokens
