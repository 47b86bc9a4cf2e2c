"""The relays an agent's mailbox was homed at before (``previous_homes``): recorded when
the configured relay changes, read for a week after, at most a few, forgotten when
the agent moves back; a damaged record is set aside."""

from __future__ import annotations

import logging

import pytest

from sealwire.agent._mailbox_homes import (
    HOMES_NAMESPACE,
    MAX_PREVIOUS_HOMES,
    PREVIOUS_HOME_SECONDS,
    previous_homes,
)
from sealwire.store import MemoryStore

A, B, C = "https://a.test", "https://b.test", "https://c.test"
T = 1_700_000_000.0
DAY = 24 * 3600.0


def test_a_first_home_has_no_previous_one_and_is_recorded() -> None:
    store = MemoryStore()
    assert previous_homes(store, A, T) == []
    assert previous_homes(store, A, T + DAY) == []
    assert previous_homes(store, B, T + 2 * DAY) == [A]


def test_a_home_left_is_read_for_a_week_then_forgotten() -> None:
    store = MemoryStore()
    previous_homes(store, A, T)
    assert previous_homes(store, B, T) == [A]
    assert previous_homes(store, B, T + PREVIOUS_HOME_SECONDS - 1) == [A]
    assert previous_homes(store, B, T + PREVIOUS_HOME_SECONDS) == []
    assert previous_homes(store, B, T) == []  # forgotten for good, not only filtered


def test_moving_on_keeps_every_home_left_and_moving_back_drops_it() -> None:
    store = MemoryStore()
    previous_homes(store, A, T)
    previous_homes(store, B, T + 1)
    assert previous_homes(store, C, T + 2) == [A, B]  # the longest left first
    assert previous_homes(store, A, T + 3) == [B, C]


def test_only_the_homes_left_last_are_read() -> None:
    store = MemoryStore()
    urls = [f"https://r{k}.test" for k in range(MAX_PREVIOUS_HOMES + 3)]
    for k, url in enumerate(urls):
        previous_homes(store, url, T + k)
    assert previous_homes(store, A, T + len(urls)) == urls[-MAX_PREVIOUS_HOMES:]


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"current": 3, "previous": {}}',
        b'{"current": "https://a.test", "previous": {"https://b.test": "yesterday"}}',
        b'{"current": "https://a.test", "previous": {"https://b.test": NaN}}',
        b'{"current": "https://a.test", "previous": []}',
    ],
)
def test_a_damaged_record_is_set_aside_with_a_warning(
    raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    store.put(HOMES_NAMESPACE, "homes", raw)
    with caplog.at_level(logging.WARNING):
        assert previous_homes(store, C, T) == []
    assert "damaged" in caplog.text
    assert previous_homes(store, A, T + 1) == [C]
