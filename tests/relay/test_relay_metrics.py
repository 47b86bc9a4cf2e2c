"""``GET /metrics``: request durations as a histogram, refusals by reason, one access
line per request (who, what, sizes, result, duration; never a body or a token)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import httpx
import pytest

from sealwire.identity import Identity
from sealwire.relay import RelayClient
from sealwire_relay import RunningRelay
from sealwire_relay._metrics import COUNTERS, GAUGES, HISTOGRAMS


async def test_durations_and_refusals_by_reason(
    relay: RunningRelay,
    clients: Callable[..., RelayClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sealwire.relay.access")
    me = Identity.generate()
    client = clients(me)
    assert await client.fetch() == []
    async with httpx.AsyncClient(base_url=relay.url) as http:
        bad = await http.post(
            "/v1/mailbox/fetch", json={}, headers={"authorization": "Bearer bm90LWEtdG9rZW4"}
        )
        assert bad.status_code == 401
        text = (await http.get("/metrics")).text

    assert 'sealwire_relay_refusals_total{reason="unauthenticated"} 1' in text
    assert "# TYPE sealwire_relay_request_duration_seconds histogram" in text
    count = re.search(
        r'sealwire_relay_request_duration_seconds_count\{route="/v1/mailbox/fetch"\} (\d+)', text
    )
    assert count is not None and int(count.group(1)) == 2
    infinite = 'sealwire_relay_request_duration_seconds_bucket{route="/v1/mailbox/fetch",le="+Inf"}'
    assert f"{infinite} 2" in text
    # every series documented: each HELP line is one of the tables
    helps = set(re.findall(r"^# HELP (\S+)", text, re.M))
    assert helps == set(COUNTERS) | set(GAUGES) | set(HISTOGRAMS)

    lines = [r for r in caplog.records if r.name == "sealwire.relay.access"]
    fetches = [r for r in lines if getattr(r, "route", None) == "/v1/mailbox/fetch"]
    ok, refused = fetches[-2], fetches[-1]
    assert ok.who == me.agent_id  # type: ignore[attr-defined]
    assert ok.status == 200 and ok.result == "ok"  # type: ignore[attr-defined]
    assert refused.status == 401 and refused.result == "unauthenticated"  # type: ignore[attr-defined]
    assert refused.who == "127.0.0.1"  # type: ignore[attr-defined]
    assert all(r.duration_ms >= 0 for r in fetches)  # type: ignore[attr-defined]
    assert "bm90LWEtdG9rZW4" not in caplog.text
