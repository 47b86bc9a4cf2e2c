"""Every benchmark under ``benchmarks/`` still runs, on tiny sizes: they are not tests
(their figures are read by people), but one that no longer starts measures nothing.

``bench_signal.py`` is left out: its PyPI peers come with ``uv run --group bench``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "bench_config": ["--processes", "2", "--reads", "200"],
    "bench_group_requests": ["--sizes", "10", "--repeat", "1", "--fanout-messages", "5"],
    "bench_mailbox": ["--seconds", "0.2", "--requests", "50"],
    "bench_mls": ["--sizes", "10,100", "--repeat", "1"],
    "bench_mls_pq": ["--sizes", "10", "--repeat", "1"],
    "bench_mls_state": ["--senders", "10", "--messages", "20"],
    "bench_noise": ["--seconds", "0.1"],
    "bench_push": ["--tasks", "50"],
    "bench_relay": ["--messages", "200"],
    "bench_relay_lookup": ["--lookups", "20", "--fresh", "3"],
    "bench_relay_scaleout": ["--pairs", "2", "--messages", "200"],
    "bench_relay_sqlite": ["--messages", "256", "--batch", "64", "--page-sizes", "8192"],
    "bench_sessions": ["--counts", "10"],
    "bench_store": ["--n", "50"],
    "bench_tasks": ["--tasks", "200", "--window", "50"],
    "bench_tls": ["--seconds", "0.1"],
    "dtls": ["--seconds", "0.1"],
    "noise_ratchet": ["--seconds", "0.1"],
    "pq": ["--seconds", "0.1"],
    "signal_records": ["--seconds", "0.1"],
    "stores": ["--steps", "20"],
    "tls_grpc": ["--seconds", "0.1"],
    "tls_pq": ["--seconds", "0.1"],
}


RUNS = [
    *((name, args) for name, args in sorted(TINY.items())),
    ("bench_mailbox", ["--sqlite-stores", "--requests", "32"]),
    ("bench_relay", ["--stream", "--signal", "--messages", "100"]),
]


def test_every_benchmark_is_listed() -> None:
    found = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    assert found - {"bench_signal"} == set(TINY)


@pytest.mark.parametrize(("name", "args"), RUNS, ids=[" ".join([n, *a[:1]]) for n, a in RUNS])
def test_the_benchmark_runs_and_prints_figures(name: str, args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert any(ch.isdigit() for ch in done.stdout), done.stdout
