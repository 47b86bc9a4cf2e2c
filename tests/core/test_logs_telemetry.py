"""sealwire.telemetry: spans around handshakes, seals and relay calls, counters of
messages, bytes and refusals (read with the OpenTelemetry SDK's in-memory exporter
and reader); and nothing at all, at no cost, without the API."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from ports import free_port
from testonly_binding import PlaintextTestPlugin

from sealwire import telemetry
from sealwire.agent import Agent, TaskContext
from sealwire.identity import Identity
from sealwire.plugins import load_registry
from sealwire.relay import RelayClient, RelayError
from sealwire.store import MemoryStore
from sealwire_relay import RelayConfig, running_relay

ROOT = Path(__file__).resolve().parents[2]

# The SDK's providers can be installed once per process: one exporter and one
# reader for the whole session, cleared by each test.
_EXPORTER = InMemorySpanExporter()
_READER = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def _providers() -> None:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
    telemetry.refresh()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER


def _counters() -> dict[tuple[str, tuple[tuple[str, Any], ...]], int]:
    data = _READER.get_metrics_data()
    found: dict[tuple[str, tuple[tuple[str, Any], ...]], int] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, tuple(sorted(point.attributes.items())))
                    found[key] = int(point.value)
    return found


async def _echo(task: TaskContext) -> None:
    await task.complete(f"echo {task.message.parts[0].text}")


async def test_handshake_seal_and_message_counters(spans: InMemorySpanExporter) -> None:
    registry = load_registry(extra_plugins=[PlaintextTestPlugin()], load_entry_points=False)
    server = Agent(Identity.generate(), MemoryStore(), name="s", listen=["tcp://127.0.0.1:0"],
                   registry=registry)  # fmt: skip
    server.on_message(_echo)
    client = Agent(Identity.generate(), MemoryStore(), name="c", registry=registry)
    before = _counters()
    async with server, client:
        await client.send_message(client.peer(server.card.card), "a secret text")
    names = [s.name for s in spans.get_finished_spans()]
    assert names.count("sealwire.handshake") == 1
    handshake = next(s for s in spans.get_finished_spans() if s.name == "sealwire.handshake")
    assert handshake.attributes is not None
    assert handshake.attributes["sealwire.peer"] == server.agent_id
    assert handshake.attributes["sealwire.binding"]
    assert names.count("sealwire.seal") >= 2  # the client's request, the server's answer
    after = _counters()
    sent = ("sealwire.messages", (("direction", "out"),))
    received = ("sealwire.messages", (("direction", "in"),))
    assert after[sent] - before.get(sent, 0) >= 2
    assert after[received] - before.get(received, 0) >= 2
    out_bytes = ("sealwire.bytes", (("direction", "out"),))
    assert after[out_bytes] > before.get(out_bytes, 0)
    for span in spans.get_finished_spans():  # attributes are names and ids, never content
        assert "a secret text" not in str(dict(span.attributes or {}))


async def test_relay_calls_are_spans_and_refusals_counted(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    config = RelayConfig(port=free_port(), identity_path=tmp_path / "relay.key",
                         backend_options={"path": str(tmp_path / "relay.sqlite3")})  # fmt: skip
    before = _counters()
    async with running_relay(config) as relay:
        client = RelayClient(relay.url, Identity.generate())
        try:
            assert await client.fetch() == []
            with pytest.raises(RelayError):
                await client.fetch_group_log(b"no-such-group")
        finally:
            await client.close()
    calls = [s for s in spans.get_finished_spans() if s.name == "sealwire.relay.call"]
    routes = {(s.attributes or {}).get("sealwire.relay.route") for s in calls}
    assert {"/v1/auth/challenge", "/v1/auth/session", "/v1/mailbox/fetch"} <= routes
    refused = {k: v for k, v in _counters().items() if k[0] == "sealwire.refusals"}
    assert any(v > before.get(k, 0) for k, v in refused.items())


def test_without_the_api_nothing_is_made_per_call() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from sealwire import telemetry\n"
        "assert not telemetry.ENABLED\n"
        "a, b = telemetry.span('x', {'k': 1}), telemetry.span('y')\n"
        "assert a is b\n"
        "with a: pass\n"
        "telemetry.count('sealwire.messages', 1, {'direction': 'out'})\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout == "ok\n", done.stderr


def test_with_the_api_but_no_sdk_spans_are_the_shared_no_op() -> None:
    code = (
        "from sealwire import telemetry\n"
        "assert telemetry.ENABLED\n"
        "assert telemetry.span('x') is telemetry.span('y', {'k': 1})\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout == "ok\n", done.stderr


def test_one_import_site() -> None:
    sites = []
    for root in (ROOT / "core" / "src", ROOT / "relay" / "src"):
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                names = (
                    [a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                )  # fmt: skip
                if any(n.split(".")[0] == "opentelemetry" for n in names):
                    sites.append(path.name)
    assert sorted(set(sites)) == ["telemetry.py"]
