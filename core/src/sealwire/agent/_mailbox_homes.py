"""The relays this agent's mailbox was homed at before the current one.

An agent that moves (its relay is configured anew) leaves its mailbox at the old
relay, and peers holding its old card keep sending there: a peer that never heard
from it since has no other way to reach it. So the mailbox router keeps reading
the mailbox at each relay the agent left, for :data:`PREVIOUS_HOME_SECONDS`
after it left. Its answers go out through the new home, and carry the new card
(a mailbox binding tells the peers it has sessions with of a newer card), so
such a peer's next call goes to the new home.

The record (namespace ``mailbox.homes``) is JSON: ``{"current": url,
"previous": {url: left_at}}``, ``left_at`` in seconds since the epoch.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from sealwire.store import StateStore

__all__ = ["HOMES_NAMESPACE", "MAX_PREVIOUS_HOMES", "PREVIOUS_HOME_SECONDS", "previous_homes"]

log = logging.getLogger("sealwire.agent")

HOMES_NAMESPACE = "mailbox.homes"
HOMES_KEY = "homes"
PREVIOUS_HOME_SECONDS = 7 * 24 * 3600
"""How long the mailbox at a relay this agent left is still read: a week, as long as
a relay remembers acknowledged message ids (peers sending there meanwhile reach the
agent, and learn its new card from the answer)."""
MAX_PREVIOUS_HOMES = 4
"""Relays left that are still read, the most recently left (an agent moving back and
forth reads no more than this)."""


def previous_homes(store: StateStore, current: str, now: float) -> list[str]:
    """Record ``current`` as the mailbox's home relay (base URL); the relays it left less
    than :data:`PREVIOUS_HOME_SECONDS` before ``now``, the longest left first. A
    damaged record is set aside with a warning: what it said is forgotten."""
    raw = store.get(HOMES_NAMESPACE, HOMES_KEY)
    record = _read(raw) if raw is not None else {}
    if record is None:
        log.warning("the record of the relays this agent left is damaged: starting anew")
        record = {}
    left: dict[str, float] = dict(record.get("previous", {}))
    home = record.get("current")
    if home is not None and home != current:
        left[home] = now
    left.pop(current, None)
    kept = sorted(
        (url for url, at in left.items() if 0 <= now - at < PREVIOUS_HOME_SECONDS),
        key=lambda url: left[url],
    )[-MAX_PREVIOUS_HOMES:]
    updated = {"current": current, "previous": {url: left[url] for url in kept}}
    if updated != record:
        store.put(HOMES_NAMESPACE, HOMES_KEY, json.dumps(updated, sort_keys=True).encode())
    return kept


def _read(raw: bytes) -> dict[str, Any] | None:
    """The record, or None if it is not one."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("current"), str):
        return None
    previous = record.get("previous")
    if not isinstance(previous, dict) or not all(
        isinstance(url, str) and isinstance(at, (int, float)) and math.isfinite(at)
        for url, at in previous.items()
    ):
        return None
    return record
